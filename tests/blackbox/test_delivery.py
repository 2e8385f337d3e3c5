"""Receiving with smtplib (sendmail, DATA), a pipelined session and BDAT, to a user, an alias and a
nested distribution list, and reading every copy back with poplib, byte for byte."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import (poll, DOT_BODY, HOSTNAME, Deadline, RawSMTP, check_copy, dot_stuff, header_fields,
                     make_message, message_id_of, queue_id_of, smtp_send)

SENDER = "sender@example.org"


@pytest.fixture
def org(server):
    """Users alice..erin; alias team -> alice, bob; list all -> carol + nested list sub -> dave, erin."""
    users = {name: server.add_user(name) for name in ("alice", "bob", "carol", "dave", "erin")}
    team = server.add_alias("team", users["alice"], users["bob"])
    sub = server.add_list("sub", users["dave"], users["erin"])
    everyone = server.add_list("all", users["carol"], sub)
    targets = {
        "user": (users["alice"], [users["alice"]]),
        "alias": (team, [users["alice"], users["bob"]]),
        "list": (everyone, [users["carol"], users["dave"], users["erin"]]),
    }
    return server, users, targets


def bdat_chunks(message: bytes) -> list[bytes]:
    """Splits a message into chunks at awkward places: between CR and LF, just before a line
    that starts with '.', in the middle of a line, and a one-octet chunk."""
    cr = message.index(b"\r\n", message.index(b"\r\n\r\n") + 4)  # first CRLF of the body
    dot = message.index(b"\r\n.", cr + 2) + 2                     # start of a '.' line
    cuts = sorted({cr + 1, dot, dot + 1, dot + 7, len(message) - 3})
    chunks, prev = [], 0
    for c in cuts:
        chunks.append(message[prev:c])
        prev = c
    chunks.append(message[prev:])
    assert b"".join(chunks) == message and all(chunks)
    return chunks


def send_bdat(c: RawSMTP, sender: str, rcpts: list[str], chunks: list[bytes]) -> str:
    assert "CHUNKING" in c.extensions
    assert c.cmd(f"MAIL FROM:<{sender}>").code == 250
    for r in rcpts:
        assert c.cmd(f"RCPT TO:<{r}>").code == 250
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        c.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
        r = c.reply()
        assert r.code == 250, (i, r)
    return queue_id_of(r)


def send_pipelined(c: RawSMTP, sender: str, rcpts: list[str], message: bytes) -> str:
    """MAIL, every RCPT and DATA in one write; then the text."""
    assert "PIPELINING" in c.extensions
    group = f"MAIL FROM:<{sender}>\r\n" + "".join(f"RCPT TO:<{r}>\r\n" for r in rcpts) + "DATA\r\n"
    c.send(group.encode())
    replies = c.replies(len(rcpts) + 2)
    assert [r.code for r in replies] == [250] * (len(rcpts) + 1) + [354], [str(r) for r in replies]
    c.send(dot_stuff(message) + b".\r\n")
    r = c.reply()
    assert r.code == 250, r
    return queue_id_of(r)


def send_by(method: str, server, rcpts: list[str], message: bytes) -> str | None:
    """Sends `message` with one of the four methods; returns the queue ID when the method sees it."""
    if method == "sendmail":
        with server.smtp() as s:
            assert s.sendmail(SENDER, rcpts, message) == {}
        return None
    if method == "data":
        with server.smtp() as s:
            return smtp_send(s, SENDER, rcpts, message)
    with server.raw_smtp() as c:
        if method == "pipelined":
            return send_pipelined(c, SENDER, rcpts, message)
        return send_bdat(c, SENDER, rcpts, bdat_chunks(message))


@pytest.mark.parametrize("target", ["user", "alias", "list"])
@pytest.mark.parametrize("method", ["sendmail", "data", "pipelined", "bdat"])
def test_every_copy_is_byte_exact(org, method, target):
    server, users, targets = org
    address, expected = targets[target]
    # Half the messages bring their own Message-ID, half get one from the server.
    mid = f"{method}.{target}@client.example.org" if method in ("sendmail", "bdat") else None
    message = make_message(f"{method} to {target}", DOT_BODY, sender=SENDER, to=address, message_id=mid)

    queue_id = send_by(method, server, [address], message)

    seen_ids = set()
    for rcpt in expected:
        [copy] = server.wait_for_mail(rcpt, 1)
        added = check_copy(copy, sender=SENDER, rcpt=rcpt, original=message, queue_id=queue_id)
        seen_ids.add(added["queue_id"])
        assert message_id_of(copy) == (mid or f"{added['queue_id']}@{HOSTNAME}")
    assert len(seen_ids) == 1, "all copies of one message carry the same queue ID"
    if mid:
        assert {e["queue_id"] for e in server.track(message_id=mid)} == seen_ids
    for other in set(users.values()) - set(expected):
        assert server.stat(other) == 0, f"{other} was not a recipient"


def test_message_id_added_only_when_missing(server):
    alice = server.add_user("alice")
    with_mid = make_message("with", message_id="given.1@client.example.org")
    without = make_message("without")
    with server.smtp() as s:
        q1 = smtp_send(s, SENDER, [alice], with_mid)
        q2 = smtp_send(s, SENDER, [alice], without)
    first, second = server.wait_for_mail(alice, 2)
    check_copy(first, sender=SENDER, rcpt=alice, original=with_mid, queue_id=q1)
    check_copy(second, sender=SENDER, rcpt=alice, original=without, queue_id=q2)
    assert [v for n, v in header_fields(first) if n.lower() == "message-id"] == ["<given.1@client.example.org>"]
    assert [v for n, v in header_fields(second) if n.lower() == "message-id"] == [f"<{q2}@{HOSTNAME}>"]


@pytest.mark.parametrize("method", ["sendmail", "pipelined", "bdat"])
def test_recipient_reached_twice_gets_one_copy(org, method):
    """alice directly, through the alias, through a list that holds both, and given again in
    capitals, all in one transaction (the pipelined variant writes MAIL, four RCPTs and DATA at once):
    one copy each for alice and bob."""
    server, users, targets = org
    alice, bob = users["alice"], users["bob"]
    both = server.add_list("both", alice, targets["alias"][0])
    message = make_message(f"once each ({method})", DOT_BODY)
    queue_id = send_by(method, server, [alice, targets["alias"][0], both, alice.upper()], message)
    [a] = server.wait_for_mail(alice, 1)
    [b] = server.wait_for_mail(bob, 1)
    check_copy(a, sender=SENDER, rcpt=alice, original=message, queue_id=queue_id)
    check_copy(b, sender=SENDER, rcpt=bob, original=message, queue_id=queue_id)
    # Everything was delivered in one go: by now a second copy would be there.
    assert server.stat(alice) == 1


def test_several_transactions_in_one_session(server):
    alice = server.add_user("alice")
    messages = [make_message(f"number {i}", f"Body {i}\r\n.{i}\r\n") for i in range(5)]
    with server.smtp() as s:
        ids = [smtp_send(s, SENDER, [alice], m) for m in messages]
        assert s.noop()[0] == 250
    assert len(set(ids)) == 5, "every transaction gets its own queue ID"
    copies = server.wait_for_mail(alice, 5)
    for copy, original, qid in zip(copies, messages, ids):
        check_copy(copy, sender=SENDER, rcpt=alice, original=original, queue_id=qid)


def test_bdat_is_verbatim_and_may_be_pipelined(server):
    """BDAT text is not dot-stuffed: a line holding only '.' is content, not an end. Chunks may
    be pipelined and the last one may be empty (BDAT 0 LAST)."""
    alice = server.add_user("alice")
    message = make_message("bdat verbatim", "before\r\n.\r\n..\r\nafter\r\n")
    chunks = bdat_chunks(message)
    with server.raw_smtp() as c:
        wire = f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{alice}>\r\n".encode()
        for chunk in chunks:
            wire += f"BDAT {len(chunk)}\r\n".encode() + chunk
        wire += b"BDAT 0 LAST\r\n"
        c.send(wire)
        replies = c.replies(2 + len(chunks) + 1)
        assert [r.code for r in replies] == [250] * len(replies), [str(r) for r in replies]
        qid = queue_id_of(replies[-1])
        assert c.cmd("NOOP").code == 250
    [copy] = server.wait_for_mail(alice, 1)
    check_copy(copy, sender=SENDER, rcpt=alice, original=message, queue_id=qid)


def test_helo_and_8bit_body(server):
    """HELO (no extensions) gives 'with SMTP'; an 8-bit body with BODY=8BITMIME comes back intact."""
    alice = server.add_user("alice")
    plain = make_message("helo")
    eight = make_message("8bit", "Grüße aus Köln — ½ €\r\n".encode())
    with server.raw_smtp(ehlo=False) as c:
        assert c.cmd("HELO client.example.org").code == 250
        q1 = queue_id_of(c.transaction(SENDER, [alice], plain))
    with server.raw_smtp() as c:
        q2 = queue_id_of(c.transaction(SENDER, [alice], eight, mail_params="BODY=8BITMIME"))
    first, second = server.wait_for_mail(alice, 2)
    check_copy(first, sender=SENDER, rcpt=alice, original=plain, queue_id=q1, protocol="SMTP")
    check_copy(second, sender=SENDER, rcpt=alice, original=eight, queue_id=q2)


def test_null_sender_return_path(server):
    """A message from the null sender is delivered with 'Return-Path: <>'."""
    alice = server.add_user("alice")
    message = make_message("bounce-like", sender="MAILER-DAEMON@example.org")
    with server.smtp() as s:
        assert s.sendmail("", [alice], message) == {}
    [copy] = server.wait_for_mail(alice, 1)
    check_copy(copy, sender="", rcpt=alice, original=message)


def test_ehlo_advertises_the_extensions(server):
    with server.raw_smtp(ehlo=False) as c:
        assert c.greeting.code == 220 and c.greeting.text.startswith(f"{HOSTNAME} ")
        r = c.ehlo()
        assert r.lines[0].startswith(HOSTNAME)
        for kw in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN", "CHUNKING", "SIZE"):
            assert kw in c.extensions, r
        assert "SIZE 26214400" in r.lines, "the configured maximum is advertised"


def test_concurrent_sessions_each_message_once(server):
    """Ten sessions at once, five messages each, to an alias of two users: 50 copies each."""
    alice, bob = server.add_user("alice"), server.add_user("bob")
    team = server.add_alias("team", alice, bob)

    def session(n: int) -> list[tuple[str, bytes]]:
        with server.smtp() as s:
            out = []
            for i in range(5):
                m = make_message(f"session {n} message {i}")
                out.append((smtp_send(s, SENDER, [team], m), m))
            return out

    with ThreadPoolExecutor(10) as pool:
        sent = [x for batch in pool.map(session, range(10)) for x in batch]
    assert len({qid for qid, _ in sent}) == 50
    by_subject = {dict(header_fields(m))["Subject"]: (qid, m) for qid, m in sent}
    for rcpt in (alice, bob):
        copies = server.wait_for_mail(rcpt, 50)
        subjects = [dict(header_fields(c))["Subject"] for c in copies]
        assert sorted(subjects) == sorted(by_subject), "each message exactly once"
        for copy, subject in zip(copies, subjects):
            qid, original = by_subject[subject]
            check_copy(copy, sender=SENDER, rcpt=rcpt, original=original, queue_id=qid)


def test_text_arriving_in_small_pieces(server):
    """DATA text cut at every CR, LF and '.', and a BDAT command with its chunk cut every 7 octets,
    each piece in its own TCP segment: the server must reassemble them exactly."""
    alice = server.add_user("alice")
    message = make_message("in pieces", DOT_BODY)
    with server.raw_smtp() as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{alice}>").code == 250
        assert c.cmd("DATA").code == 354
        wire = dot_stuff(message) + b".\r\n"
        cuts = [i for i in range(1, len(wire)) if wire[i - 1:i] in (b"\r", b"\n", b".")] + [len(wire)]
        prev = 0
        for cut in cuts:
            c.send(wire[prev:cut])
            prev = cut
            time.sleep(0.002)  # let each piece travel on its own
        q1 = queue_id_of(c.reply())
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{alice}>").code == 250
        wire = f"BDAT {len(message)} LAST\r\n".encode() + message
        for i in range(0, len(wire), 7):
            c.send(wire[i:i + 7])
            time.sleep(0.002)
        q2 = queue_id_of(c.reply())
    first, second = server.wait_for_mail(alice, 2)
    check_copy(first, sender=SENDER, rcpt=alice, original=message, queue_id=q1)
    check_copy(second, sender=SENDER, rcpt=alice, original=message, queue_id=q2)


def test_no_accepted_message_waits_for_the_queue_scan(make_server):
    """Four sessions send back to back; after each round every accepted message must be in the
    mailbox within seconds. With no periodic scan to fall back on, a lost notification shows."""
    server = make_server({"queue.poll_interval": "1h"})
    alice = server.add_user("alice")
    message = make_message("prompt delivery")

    def session(n: int) -> int:
        with server.smtp() as s:
            for _ in range(n):
                smtp_send(s, SENDER, [alice], message)
        return n

    sent = 0
    budget = Deadline(10)
    while not budget.expired():
        with ThreadPoolExecutor(4) as pool:
            sent += sum(pool.map(session, [50] * 4))
        server.wait_for_count(alice, sent, timeout=5)


def test_large_messages_are_spooled_and_delivered_byte_for_byte(make_server, make_peer):
    """A message far past smtp.spool_threshold goes to a spool file as it arrives; it is read back
    whole over POP3 and relayed whole to a real peer, and its file goes once nothing needs it. A
    file left by a message that was never acknowledged is removed when the server starts."""
    from peers import relay_settings

    peer = make_peer()
    server = make_server(relay_settings(peer.address, smtp__spool_threshold=65536), start=False)
    spool = server.data / "spool"
    spool.mkdir(exist_ok=True)
    (spool / "06H0000000000000").write_bytes(b"never acknowledged")
    server.start()
    assert not (spool / "06H0000000000000").exists(), "the orphan is swept at start-up"
    alice = server.add_user("alice")
    body = "".join(f"line {i:07d} of a large message, to see it arrive whole\r\n" for i in range(80000))
    message = make_message("large", body, to=alice)
    assert len(message) > 4_000_000
    with server.smtp() as s:
        qid = smtp_send(s, "bob@example.org", [alice, "carol@far.test"], message)
    [copy] = server.wait_for_mail(alice, 1)
    check_copy(copy, sender="bob@example.org", rcpt=alice, original=message, queue_id=qid)
    [got] = peer.wait_for(1, timeout=30)
    assert got.content.endswith(message)
    assert len(list(spool.iterdir())) == 1, "one file, shared by the mailbox copy"
    p = server.pop3(alice)
    # TOP streams the header section and the first lines of the body.
    _, top, _ = p.top(1, 2)
    assert top[-2:] == [b"line 0000000 of a large message, to see it arrive whole",
                        b"line 0000001 of a large message, to see it arrive whole"], top[-3:]
    p.dele(1)
    p.quit()
    poll(lambda: not list(spool.iterdir()), 10, "the spool file deleted with the last copy")
