"""IMAP with imaplib, IMAPClient and a raw client: login, special-use folders, APPEND and FETCH
byte-exact, SEARCH, flags across sessions, COPY/MOVE with UIDPLUS, EXPUNGE, IDLE seeing SMTP
delivery, CONDSTORE/QRESYNC resync, POP3 and IMAP on one mailbox, restarts, quotas, bad input."""

from __future__ import annotations

import imaplib
import re
import socket
import time
import zlib

import pytest
from imapclient import IMAPClient

from helpers import PASSWORD, Deadline, make_message, poll, smtp_send
from imaps import RawIMAP, untagged

SENDER = "sender@example.org"


def deliver(server, address: str, subjects: list[str], body: str = "Body text.\r\n") -> None:
    before = server.stat(address)
    with server.smtp() as s:
        for subj in subjects:
            smtp_send(s, SENDER, [address], make_message(subj, body))
    server.wait_for_mail(address, before + len(subjects))


def client(server, address: str) -> IMAPClient:
    c = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=10)
    c.login(address, PASSWORD)
    # IMAPClient's APPEND reads its capability cache without filling it first.
    c.capabilities()
    return c


def test_login_capabilities_and_failures(server):
    alice = server.add_user("alice")
    with RawIMAP(server.imap_port) as r:
        assert r.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
        assert b"AUTH=PLAIN" in r.greeting and b"STARTTLS" in r.greeting
        _, done = r.command(f'LOGIN "{alice}" "wrong"')
        assert done == b"t1 NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
        # Nothing but the login commands before login.
        _, done = r.command("SELECT INBOX")
        assert done.startswith(b"t2 BAD Log in first")
        # AUTHENTICATE PLAIN with an initial response (SASL-IR).
        import base64
        ir = base64.b64encode(f"\0{alice}\0{PASSWORD}".encode()).decode()
        _, done = r.command(f"AUTHENTICATE PLAIN {ir}")
        assert done.startswith(b"t3 OK [CAPABILITY ") and b"UIDPLUS" in done and b"QRESYNC" in done
    m = server.imap_connect()
    m.authenticate("PLAIN", lambda _: f"\0{alice}\0{PASSWORD}".encode())
    assert m.state == "AUTH"
    m.logout()


def test_new_users_have_special_use_folders(server):
    alice = server.add_user("alice")
    with RawIMAP(server.imap_port) as r:
        r.login(alice)
        lines, done = r.command('LIST "" "*"')
        assert b"OK" in done
        got = sorted(lines)
        assert got == sorted([
            b'* LIST (\\HasNoChildren) "/" INBOX\r\n',
            b'* LIST (\\HasNoChildren \\Drafts) "/" Drafts\r\n',
            b'* LIST (\\HasNoChildren \\Junk) "/" Junk\r\n',
            b'* LIST (\\HasNoChildren \\Sent) "/" Sent\r\n',
            b'* LIST (\\HasNoChildren \\Trash) "/" Trash\r\n',
        ])
        lines, _ = r.command('LIST (SPECIAL-USE) "" "*" RETURN (SUBSCRIBED)')
        assert len(lines) == 4 and all(b"\\Subscribed" in l for l in lines), lines
        lines, _ = r.command('LIST "" "%" RETURN (STATUS (MESSAGES UIDNEXT))')
        assert b'* STATUS INBOX (MESSAGES 0 UIDNEXT 1)\r\n' in lines
        lines, _ = r.command('LIST "" ""')
        assert lines == [b'* LIST (\\Noselect) "/" ""\r\n']


def test_append_then_fetch_byte_exact(server):
    alice = server.add_user("alice")
    msg = (b"From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: Draft\r\n"
           b"Date: Tue, 01 Dec 2026 10:00:00 +0100\r\nMessage-ID: <d1@example.org>\r\n\r\n"
           b"Line one\r\n\r\n.dot line\r\ntrailing  \r\n")
    with RawIMAP(server.imap_port) as r:
        r.login(alice)
        # A synchronizing literal: the server asks for it with "+".
        r.send(b'a1 APPEND Drafts (\\Draft $Todo) "01-Dec-2026 10:00:00 +0100" {%d}\r\n' % len(msg))
        assert r.line().startswith(b"+ ")
        r.send(msg + b"\r\n")
        _, done = r.until("a1")
        m = re.match(rb"a1 OK \[APPENDUID (\d+) 1\] ", done)
        assert m, done
        # A non-synchronizing literal (LITERAL+) in one write.
        r.send(b"a2 APPEND Drafts {%d+}\r\n" % len(msg) + msg + b"\r\n")
        _, done = r.until("a2")
        assert done.startswith(b"a2 OK [APPENDUID %s 2]" % m.group(1))
        lines, done = r.command("SELECT Drafts")
        assert b"* 2 EXISTS\r\n" in lines
        assert f"* OK [UIDVALIDITY {m.group(1).decode()}] UIDs valid\r\n".encode() in lines
        lines, _ = r.command("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])")
        assert lines[0] == (b'* 1 FETCH (FLAGS (\\Draft \\Recent $Todo) INTERNALDATE "01-Dec-2026 09:00:00 +0000" '
                            b"RFC822.SIZE %d BODY[] {%d}\r\n" % (len(msg), len(msg)) + msg + b")\r\n")
        lines, _ = r.command("FETCH 1 (BODY[HEADER.FIELDS (subject date)] BODY.PEEK[TEXT]<5.8>)")
        fields = b"Subject: Draft\r\nDate: Tue, 01 Dec 2026 10:00:00 +0100\r\n\r\n"
        assert lines[0] == (b'* 1 FETCH (BODY[HEADER.FIELDS (SUBJECT DATE)] {%d}\r\n' % len(fields) + fields +
                            b" BODY[TEXT]<5> {8}\r\none\r\n\r\n. FLAGS (\\Seen \\Draft \\Recent $Todo))\r\n")
        # Missing mailbox: TRYCREATE (RFC 9051 §6.3.12).
        _, done = r.command(b"APPEND Nowhere {1+}\r\nx")
        assert b"NO [TRYCREATE]" in done
    # imaplib reads the same octets.
    m = server.imap(alice)
    m.select("Drafts", readonly=True)
    typ, data = m.fetch("2", "(RFC822)")
    assert data[0][1] == msg
    m.logout()


def test_fetch_structure_with_imapclient(server):
    alice = server.add_user("alice")
    mixed = (b"From: a@example.org\r\nTo: alice@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
             b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
             b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there\r\n"
             b"--XX\r\nContent-Type: application/octet-stream; name=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             b"AAECAw==\r\n--XX--\r\n")
    c = client(server, alice)
    c.append("INBOX", mixed)
    c.select_folder("INBOX")
    data = c.fetch([1], ["ENVELOPE", "BODYSTRUCTURE", "BINARY.SIZE[2]", "BODY.PEEK[1]"])[1]
    env = data[b"ENVELOPE"]
    assert env.subject == b"=?utf-8?q?Gr=C3=BC=C3=9Fe?="
    assert env.from_[0].mailbox == b"a" and env.from_[0].host == b"example.org"
    bs = data[b"BODYSTRUCTURE"]
    assert bs.is_multipart and bs[1] == b"MIXED"
    assert bs[0][0][:2] == (b"TEXT", b"PLAIN") and bs[0][1][:2] == (b"APPLICATION", b"OCTET-STREAM")
    assert data[b"BINARY.SIZE[2]"] == 4
    assert data[b"BODY[1]"] == b"Hello there"
    assert c.search(["SUBJECT", "Grüße"], charset="UTF-8") == [1]
    c.logout()
    # Decoded content with NUL octets comes as a literal8 (RFC 3516 §4.3), which IMAPClient
    # does not read.
    with RawIMAP(server.imap_port) as r:
        r.login(alice)
        r.command("EXAMINE INBOX")
        lines, _ = r.command("FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[1]<0.5>)")
        assert lines == [b"* 1 FETCH (BINARY[2] ~{4}\r\n\x00\x01\x02\x03 BINARY[1]<0> {5}\r\nHello)\r\n"]


def test_search(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["apple pie", "banana split", "cherry tart"], body="Crunchy crust.\r\n")
    m = server.imap(alice)
    m.select("INBOX")
    m.store("2", "+FLAGS", "(\\Flagged)")
    m.store("3", "+FLAGS", "(\\Seen $Label1)")
    cases = [
        (["ALL"], b"1 2 3"),
        (["SUBJECT", "banana"], b"2"),
        (["FROM", "sender@example.org"], b"1 2 3"),
        (["HEADER", "Subject", "tart"], b"3"),
        (["BODY", "crunchy"], b"1 2 3"),
        (["TEXT", "apple"], b"1"),
        (["FLAGGED"], b"2"),
        (["UNSEEN"], b"1 2"),
        (["KEYWORD", "$Label1"], b"3"),
        (["NOT", "FLAGGED", "UNSEEN"], b"1"),
        (["OR", "SUBJECT", "apple", "SUBJECT", "cherry"], b"1 3"),
        (["2:*"], b"2 3"),
        (["UID", "1,3"], b"1 3"),
        (["LARGER", "1"], b"1 2 3"),
        (["SMALLER", "10"], b""),
        (["SINCE", "1-Jan-2000"], b"1 2 3"),
        (["BEFORE", "1-Jan-2000"], b""),
        (["SENTSINCE", "1-Jan-2000"], b"1 2 3"),
        (["SUBJECT", "nothing-like-this"], b""),
    ]
    for criteria, want in cases:
        typ, data = m.search(None, *criteria)
        assert (typ, data) == ("OK", [want]), criteria
    typ, data = m.search("KOI8-R", "ALL")
    assert typ == "NO" and data[0].startswith(b"[BADCHARSET (UTF-8 US-ASCII)]")
    with pytest.raises(imaplib.IMAP4.error, match="unknown search criterion"):
        m.search(None, "WHATEVER")
    m.logout()


def test_esearch_and_searchres_exactly(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["one", "two", "three", "four"])
    with RawIMAP(server.imap_port) as r:
        r.login(alice)
        r.command("SELECT INBOX")
        r.command("STORE 2,4 +FLAGS (\\Seen)")
        lines, done = r.command("UID SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN", tag="e1")
        assert lines == [b'* ESEARCH (TAG "e1") UID MIN 1 MAX 3 ALL 1,3 COUNT 2\r\n']
        lines, done = r.command("SEARCH RETURN (SAVE) SEEN")
        assert lines == [] and b"OK" in done
        lines, _ = r.command("FETCH $ (UID)")
        assert lines == [b"* 2 FETCH (UID 2)\r\n", b"* 4 FETCH (UID 4)\r\n"]
        lines, _ = r.command("SEARCH RETURN (COUNT) SUBJECT nothing", tag="e2")
        assert lines == [b'* ESEARCH (TAG "e2") COUNT 0\r\n']


def test_flags_and_expunge_across_two_sessions(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["m1", "m2", "m3"])
    with RawIMAP(server.imap_port) as a, RawIMAP(server.imap_port) as b:
        a.login(alice)
        b.login(alice)
        a.command("SELECT INBOX")
        b.command("SELECT INBOX")
        lines, _ = a.command("STORE 2 +FLAGS (\\Flagged)")
        assert lines == [b"* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n"]
        lines, _ = b.command("NOOP")
        assert lines == [b"* 2 FETCH (FLAGS (\\Flagged))\r\n"]   # (UID only with CONDSTORE, as Dovecot)
        a.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        lines, _ = a.command("EXPUNGE")
        assert lines == [b"* 1 EXPUNGE\r\n", b"* 2 RECENT\r\n"]
        # No EXPUNGE during a FETCH by number (RFC 9051 §7.5.1)...
        lines, _ = b.command("FETCH 1:* (UID)")
        assert lines == [b"* 1 FETCH (UID 1)\r\n", b"* 2 FETCH (UID 2)\r\n", b"* 3 FETCH (UID 3)\r\n"]
        # ...but at NOOP.
        lines, _ = b.command("NOOP")
        assert lines == [b"* 1 EXPUNGE\r\n"]
        lines, _ = b.command("FETCH 1:* (UID FLAGS)")
        assert lines == [b"* 1 FETCH (UID 2 FLAGS (\\Flagged))\r\n", b"* 2 FETCH (UID 3 FLAGS ())\r\n"]


def test_copy_move_and_uidplus(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["keep", "move me", "copy me"])
    with RawIMAP(server.imap_port) as r:
        r.login(alice)
        r.command("CREATE Archive")
        lines, _ = r.command("SELECT Archive")
        v = re.search(rb"UIDVALIDITY (\d+)", b"".join(lines)).group(1)
        r.command("SELECT INBOX")
        _, done = r.command("UID COPY 3 Archive")
        assert done.split(b" ", 1)[1] == b"OK [COPYUID %s 3 1] UID COPY completed\r\n" % v
        lines, done = r.command("MOVE 2 Archive")
        assert lines == [b"* OK [COPYUID %s 2 2] Moved\r\n" % v, b"* 2 EXPUNGE\r\n", b"* 2 RECENT\r\n"]
        assert done.split(b" ", 1)[1] == b"OK MOVE completed\r\n"
        _, done = r.command("COPY 1 Missing")
        assert b"NO [TRYCREATE]" in done
        lines, _ = r.command("STATUS Archive (MESSAGES UIDNEXT)")
        assert lines == [b"* STATUS Archive (MESSAGES 2 UIDNEXT 3)\r\n"]
        # UID EXPUNGE removes only the named \Deleted messages (RFC 4315 §2.1).
        r.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")
        lines, _ = r.command("UID EXPUNGE 3")
        assert lines == [b"* 2 EXPUNGE\r\n", b"* 1 RECENT\r\n"]
        lines, _ = r.command("FETCH 1:* (UID)")
        assert lines == [b"* 1 FETCH (UID 1)\r\n"]
        # CLOSE expunges without a word; UNSELECT would not.
        _, done = r.command("CLOSE")
        assert b"OK" in done
        lines, _ = r.command("STATUS INBOX (MESSAGES)")
        assert lines == [b"* STATUS INBOX (MESSAGES 0)\r\n"]


def test_idle_sees_mail_delivered_over_smtp_in_every_session(server):
    alice = server.add_user("alice")
    sessions = [RawIMAP(server.imap_port) for _ in range(2)]
    try:
        for i, r in enumerate(sessions):
            r.login(alice)
            r.command("SELECT INBOX")
            r.send(b"i%d IDLE\r\n" % i)
            assert r.line().startswith(b"+ ")
        start = time.monotonic()
        with server.smtp() as s:
            smtp_send(s, SENDER, [alice], make_message("while idling"))
        for r in sessions:
            assert r.line() == b"* 1 EXISTS\r\n"
        assert time.monotonic() - start < 5
        # The new message is \Recent in exactly one of them, the first told (RFC 3501 §2.3.2).
        told = []
        for i, r in enumerate(sessions):
            r.send(b"DONE\r\n")
            while (line := r.line()) != b"i%d OK IDLE terminated\r\n" % i:
                told.append(line)
        assert told == [b"* 1 RECENT\r\n"], told
    finally:
        for r in sessions:
            r.close()
    # IMAPClient's IDLE too.
    c = client(server, alice)
    c.select_folder("INBOX")
    c.idle()
    with server.smtp() as s:
        smtp_send(s, SENDER, [alice], make_message("second"))
    got = c.idle_check(timeout=5)
    c.idle_done()
    assert (2, b"EXISTS") in got
    c.logout()


def test_condstore_and_qresync_resync(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["q1", "q2", "q3", "q4"])
    with RawIMAP(server.imap_port) as a:
        a.login(alice)
        lines, _ = a.command("ENABLE QRESYNC")
        assert lines == [b"* ENABLED QRESYNC\r\n"]
        lines, _ = a.command("SELECT INBOX")
        v = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(lines)).group(1))
        modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))
        a.command("LOGOUT")
    with RawIMAP(server.imap_port) as b:
        b.login(alice)
        b.command("SELECT INBOX")
        b.command("STORE 2 +FLAGS (\\Answered)")
        b.command("STORE 4 +FLAGS.SILENT (\\Deleted)")
        b.command("EXPUNGE")
    with RawIMAP(server.imap_port) as a:
        a.login(alice)
        a.command("ENABLE QRESYNC")
        lines, done = a.command(f"SELECT INBOX (QRESYNC ({v} {modseq} 1:4))")
        assert b"* VANISHED (EARLIER) 4\r\n" in lines, lines
        fetched = [l for l in lines if b"FETCH" in l]
        assert len(fetched) == 1 and re.match(rb"\* 2 FETCH \(UID 2 FLAGS \(\\Answered( \\Recent)?\) MODSEQ \(\d+\)\)", fetched[0]), fetched
        new = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))
        assert new > modseq
        # CHANGEDSINCE after the resync: nothing more.
        lines, _ = a.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {new} VANISHED)")
        assert lines == []
        lines, _ = a.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)")
        assert lines[0] == b"* VANISHED (EARLIER) 4\r\n"
        # A conditional STORE that lost the race (RFC 7162 §3.1.3).
        _, done = a.command(f"STORE 2 (UNCHANGEDSINCE {modseq}) +FLAGS (\\Seen)")
        assert done.split(b" ", 1)[1].startswith(b"OK [MODIFIED 2]"), done
        # With QRESYNC, expunges come as VANISHED.
        a.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        lines, _ = a.command("EXPUNGE")
        assert lines == [b"* VANISHED 1\r\n"]


def test_qresync_past_the_expunge_history(make_server):
    """With imap.expunge_history = 2, a client that resyncs from before the oldest expunge still
    remembered is told every UID of its known set that is gone (RFC 7162 §3.2.5.1), computed
    from the UIDs still there; one that resyncs within the history gets the exact list."""
    server = make_server({"imap.expunge_history": 2})
    alice = server.add_user("alice")
    deliver(server, alice, [f"h{i}" for i in range(1, 9)])
    with RawIMAP(server.imap_port) as a:
        a.login(alice)
        a.command("ENABLE QRESYNC")
        lines, _ = a.command("SELECT INBOX")
        v = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(lines)).group(1))
        old = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))
        # Another session expunges UIDs 2, 4, 6 and 8, one EXPUNGE each; this one idles.
        with RawIMAP(server.imap_port) as b:
            b.login(alice)
            b.command("SELECT INBOX")
            for uid in (2, 4, 6, 8):
                b.command(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
                _, done = b.command(f"UID EXPUNGE {uid}")
                assert b" OK " in done, done
                if uid == 6:
                    status, _ = b.command("STATUS INBOX (HIGHESTMODSEQ)")
                    recent = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(status)).group(1))
        # The session still open learns of all four, though only two are remembered.
        lines, _ = a.command("NOOP")
        assert b"* VANISHED 2,4,6,8\r\n" in lines, lines
        a.command("LOGOUT")
    with RawIMAP(server.imap_port) as c:
        c.login(alice)
        c.command("ENABLE QRESYNC")
        # From before the history: every known UID that is gone.
        lines, _ = c.command(f"SELECT INBOX (QRESYNC ({v} {old} 1:8))")
        assert b"* VANISHED (EARLIER) 2,4,6,8\r\n" in lines, lines
        # The same through UID FETCH ... VANISHED, narrowed to the set asked for.
        lines, _ = c.command(f"UID FETCH 3:7 (FLAGS) (CHANGEDSINCE {old} VANISHED)")
        assert lines[0] == b"* VANISHED (EARLIER) 4,6\r\n", lines
        # From within the history: exactly what was expunged since.
        lines, _ = c.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {recent} VANISHED)")
        assert lines == [b"* VANISHED (EARLIER) 8\r\n"], lines


def test_pop3_and_imap_agree(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["p1", "p2"])
    with RawIMAP(server.imap_port) as r:
        r.login(alice)
        r.command("SELECT INBOX")
        p = server.pop3(alice)
        uidl = p.uidl()[1]
        p.dele(1)
        p.quit()
        assert len(uidl) == 2
        lines, _ = r.command("NOOP")
        assert lines == [b"* 1 EXPUNGE\r\n", b"* 1 RECENT\r\n"]
        r.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        r.command("EXPUNGE")
    assert server.stat(alice) == 0


def test_uids_survive_a_restart(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["r1", "r2"])
    m = server.imap(alice)
    typ, data = m.status("INBOX", "(UIDVALIDITY UIDNEXT)")
    m.select("INBOX")
    uids = m.uid("SEARCH", "ALL")[1]
    m.logout()
    server.restart()
    m = server.imap(alice)
    assert m.status("INBOX", "(UIDVALIDITY UIDNEXT)")[1] == data
    m.select("INBOX")
    assert m.uid("SEARCH", "ALL")[1] == uids
    m.logout()


def test_folders_create_rename_delete_subscribe(server):
    alice = server.add_user("alice")
    with RawIMAP(server.imap_port) as r:
        r.login(alice)
        assert r.command("CREATE Projects/2026/Q4")[1].endswith(b"OK CREATE completed\r\n")
        # The parents CREATE implies are \Noselect until made (as Dovecot has them).
        lines, _ = r.command('LIST "" "Projects/%"')
        assert lines == [b'* LIST (\\Noselect \\HasChildren) "/" Projects/2026\r\n']
        assert r.command("CREATE Projects")[1].endswith(b"OK CREATE completed\r\n")
        assert b"ALREADYEXISTS" in r.command("CREATE Projects")[1]
        assert b"USEATTR" in r.command("CREATE X (USE (\\Bogus))")[1]
        assert b"OK" in r.command("CREATE Stuff (USE (\\Archive))")[1]
        lines, _ = r.command('LIST "" Stuff')
        assert lines == [b'* LIST (\\HasNoChildren \\Archive) "/" Stuff\r\n']
        assert b"OK" in r.command("RENAME Projects Work")[1]
        lines, _ = r.command('LIST "" "Work*"')
        assert [l.split()[-1] for l in lines] == [b"Work", b"Work/2026", b"Work/2026/Q4"]
        # A folder with children may be deleted (RFC 3501 §6.3.4): it stays as \Noselect.
        assert r.command("DELETE Work")[1].endswith(b"OK DELETE completed\r\n")
        lines, _ = r.command('LIST "" "Work"')
        assert lines == [b'* LIST (\\Noselect \\HasChildren) "/" Work\r\n']
        assert b"NONEXISTENT" in r.command("DELETE Nope")[1]
        assert b"OK" in r.command("SUBSCRIBE Work/2026")[1]
        lines, _ = r.command('LSUB "" "Work/*"')
        assert lines == [b'* LSUB (\\Noselect) "/" Work/2026\r\n']
        lines, _ = r.command('LSUB "" "%"')
        assert b'* LSUB (\\Noselect) "/" Work\r\n' in lines
        lines, _ = r.command('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
        assert b'* LIST (\\NonExistent) "/" Work ("CHILDINFO" ("SUBSCRIBED"))\r\n' in lines
        # Modified UTF-7 names (RFC 3501 §5.1.3).
        assert b"OK" in r.command("CREATE Entw&APw-rfe")[1]
        lines, _ = r.command('LIST "" "Entw*"')
        assert lines == [b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe\r\n']
        assert b"NO [CANNOT] INBOX cannot be deleted" in r.command("DELETE inbox")[1]
        lines, _ = r.command("NAMESPACE")
        assert lines == [b'* NAMESPACE (("" "/")) NIL NIL\r\n']


def test_quota_counts_every_folder(make_server):
    server = make_server()
    alice = server.add_user("alice", quota=2000)
    msg = b"Subject: big\r\n\r\n" + b"x" * 900 + b"\r\n"
    with RawIMAP(server.imap_port) as r:
        r.login(alice)
        assert b"OK" in r.command(b"APPEND Sent {%d+}\r\n" % len(msg) + msg)[1]
        lines, _ = r.command("GETQUOTAROOT INBOX")
        assert lines == [b'* QUOTAROOT INBOX ""\r\n', b'* QUOTA "" (STORAGE 1 1)\r\n']
        assert b"OK" in r.command(b"APPEND Drafts {%d+}\r\n" % len(msg) + msg)[1]
        _, done = r.command(b"APPEND Drafts {%d+}\r\n" % len(msg) + msg)
        assert b"NO [OVERQUOTA]" in done
        r.command("SELECT Sent")
        assert b"NO [OVERQUOTA]" in r.command("COPY 1 Trash")[1]
        assert b"NOPERM" in r.command('SETQUOTA "" (STORAGE 10)')[1]


def test_bad_input_gets_a_reason_and_the_session_goes_on(make_server):
    server = make_server({"imap.max_line": 8192, "imap.max_literal": 4096})
    alice = server.add_user("alice")
    with RawIMAP(server.imap_port) as r:
        assert r.command("FROB")[1] == b"t1 BAD unknown command FROB\r\n"
        r.send(b"\r\n* NOOP\r\n")
        assert r.line().startswith(b"* BAD ")
        r.login(alice)
        assert r.command("FETCH 1 FLAGS")[1].startswith(b"t3 BAD No mailbox selected")
        r.command("SELECT INBOX")
        assert r.command("FETCH 1 FLAGS")[1].split(b" ", 1)[1] == b"BAD Invalid message sequence number: the mailbox is empty\r\n"
        assert b"BAD" in r.command("FETCH 1:2 (FLAGS BODY[1.])")[1]
        deep = "SEARCH " + "NOT " * 40 + "ALL"
        assert b"nested more than" in r.command(deep)[1]
        # A synchronizing literal over the limit is refused before it is sent.
        r.send(b"big APPEND INBOX {5000}\r\n")
        assert r.line() == b"big NO [TOOBIG] literal of 5000 octets is over the limit of 4096\r\n"
        assert r.command("NOOP")[1].split(b" ", 1)[1] == b"OK NOOP completed\r\n"
        # A line over the limit ends the session with a reason.
        r.send(b"x NOOP " + b"a" * 9000 + b"\r\n")
        assert r.line().startswith(b"* BYE line over 8192 octets")


def test_starttls_then_login(server):
    alice = server.add_user("alice")
    m = server.imap_connect()
    m.starttls(ssl_context=server.tls_context())
    m.login(alice, PASSWORD)
    m.select("INBOX")
    m.logout()
    c = IMAPClient("127.0.0.1", port=server.imaps_port, ssl=True, ssl_context=server.tls_context(), timeout=10)
    c.login(alice, PASSWORD)
    # Over IMAPS the user's folders, with their attributes, as over STARTTLS.
    assert sorted(c.list_folders()) == sorted([
        ((b"\\HasNoChildren",), b"/", "INBOX"),
        ((b"\\HasNoChildren", b"\\Drafts"), b"/", "Drafts"),
        ((b"\\HasNoChildren", b"\\Junk"), b"/", "Junk"),
        ((b"\\HasNoChildren", b"\\Sent"), b"/", "Sent"),
        ((b"\\HasNoChildren", b"\\Trash"), b"/", "Trash"),
    ])
    c.logout()


def test_the_remaining_commands(server):
    """ID, CHECK, UNSELECT, literal8 APPEND, GETQUOTA, ENABLE IMAP4rev2, AUTHENTICATE
    SCRAM-SHA-256 (scramp computes), LOGOUT."""
    import base64
    from scramp import ScramClient
    alice = server.add_user("alice", quota=10_000_000)
    with RawIMAP(server.imap_port) as r:
        client = ScramClient(["SCRAM-SHA-256"], alice, PASSWORD)
        first = base64.b64encode(client.get_client_first().encode())
        r.send(b"s1 AUTHENTICATE SCRAM-SHA-256 " + first + b"\r\n")
        challenge = r.line()
        assert challenge.startswith(b"+ "), challenge
        client.set_server_first(base64.b64decode(challenge[2:].strip()).decode())
        r.send(base64.b64encode(client.get_client_final().encode()) + b"\r\n")
        final = r.line()
        assert final.startswith(b"+ "), final
        # scramp checks the server's signature: the server knew the password too.
        client.set_server_final(base64.b64decode(final[2:].strip()).decode())
        r.send(b"\r\n")
        _, done = r.until("s1")
        assert done.startswith(b"s1 OK [CAPABILITY "), done
        lines, _ = r.command('ID ("name" "test")')
        assert lines == [b'* ID ("name" "mailroom" "version" "0.1.0")\r\n']
        lines, _ = r.command("ENABLE IMAP4rev2")
        assert lines == [b"* ENABLED IMAP4rev2\r\n"]
        # A literal8 may carry NUL octets (RFC 3516 §4.4).
        data = b"Subject: bin\r\n\r\n\x00\x01binary\r\n"
        _, done = r.command(b"APPEND INBOX ~{%d+}\r\n" % len(data) + data)
        assert b"OK [APPENDUID" in done, done
        lines, _ = r.command("SELECT INBOX")
        # IMAP4rev2: no RECENT, and the LIST of the mailbox (RFC 9051 §6.3.2).
        assert not any(b"RECENT" in l for l in lines) and b'* LIST () "/" INBOX\r\n' in lines, lines
        lines, _ = r.command("FETCH 1 (BODY.PEEK[TEXT])")
        assert lines == [b"* 1 FETCH (BODY[TEXT] {10}\r\n\x00\x01binary\r\n)\r\n"]
        # With IMAP4rev2 a plain SEARCH answers with ESEARCH (RFC 9051 §7.3.4).
        lines, _ = r.command("SEARCH ALL", tag="e")
        assert lines == [b'* ESEARCH (TAG "e") ALL 1\r\n']
        assert r.command("CHECK")[1].split(b" ", 1)[1] == b"OK CHECK completed\r\n"
        r.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
        # UNSELECT leaves \Deleted messages in place (RFC 3691), CLOSE would not.
        assert r.command("UNSELECT")[1].split(b" ", 1)[1] == b"OK UNSELECT completed\r\n"
        lines, _ = r.command("STATUS INBOX (MESSAGES DELETED SIZE)")
        assert lines == [b"* STATUS INBOX (MESSAGES 1 DELETED 1 SIZE %d)\r\n" % len(data)]
        lines, _ = r.command('GETQUOTA ""')
        assert lines == [b'* QUOTA "" (STORAGE 1 9765)\r\n']
        lines, done = r.command("LOGOUT")
        assert lines == [b"* BYE Logging out\r\n"] and b"OK LOGOUT" in done


class DeflateIMAP(imaplib.IMAP4):
    """imaplib with RFC 4978 COMPRESS=DEFLATE: Python's zlib does the raw deflate (wbits -15),
    every write sync-flushed; `wire` counts the compressed octets each way."""

    def compress(self) -> None:
        imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        assert typ == "OK", data
        self._out = zlib.compressobj(wbits=-15)
        self._in = zlib.decompressobj(wbits=-15)
        self._plain = b""
        self.wire = [0, 0]

    def send(self, data: bytes) -> None:
        if not hasattr(self, "_out"):
            return super().send(data)
        raw = self._out.compress(data) + self._out.flush(zlib.Z_SYNC_FLUSH)
        self.wire[0] += len(raw)
        self.sock.sendall(raw)

    def _more(self) -> None:
        raw = self.sock.recv(65536)
        if not raw:
            raise imaplib.IMAP4.abort("connection closed")
        self.wire[1] += len(raw)
        self._plain += self._in.decompress(raw)

    def read(self, size: int) -> bytes:
        if not hasattr(self, "_out"):
            return super().read(size)
        while len(self._plain) < size:
            self._more()
        out, self._plain = self._plain[:size], self._plain[size:]
        return out

    def readline(self) -> bytes:
        if not hasattr(self, "_out"):
            return super().readline()
        while b"\n" not in self._plain:
            self._more()
        end = self._plain.index(b"\n") + 1
        out, self._plain = self._plain[:end], self._plain[end:]
        return out


def test_compress_deflate_with_zlib(server):
    alice = server.add_user("alice")
    body = "".join(f"Line {i} of a report that repeats itself a good deal.\r\n" for i in range(2000))
    deliver(server, alice, ["Big report"], body)
    m = server.imap(alice)
    m.select("INBOX", readonly=True)
    plain = m.fetch("1", "(BODY.PEEK[])")[1][0][1]
    m.logout()
    c = DeflateIMAP("127.0.0.1", server.imap_port)
    c.login(alice, PASSWORD)
    assert b" COMPRESS=DEFLATE" in c.capability()[1][0]
    c.compress()
    c.select("INBOX")
    # The same octets come, in a tenth of the wire octets or less.
    assert c.fetch("1", "(BODY.PEEK[])")[1][0][1] == plain
    assert c.wire[1] < len(plain) / 10, (c.wire, len(plain))
    # A message appended through compression is stored as sent.
    msg = b"Subject: packed\r\n\r\n" + b"zzzz\r\n" * 5000
    typ, data = c.append("INBOX", None, None, msg)
    assert typ == "OK", data
    assert c.fetch("2", "(BODY.PEEK[])")[1][0][1] == msg
    assert c.wire[0] < len(msg) / 10
    typ, data = c._simple_command("COMPRESS", "DEFLATE")
    assert typ == "NO" and data == [b"[COMPRESSIONACTIVE] DEFLATE is already active"]
    c.logout()
