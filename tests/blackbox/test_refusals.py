"""Refusals: unknown users, relay tricks, size, SMTP smuggling, long lines, too many recipients,
mail loops. Each refusal has its own reply; nothing refused is delivered, nothing accepted is lost,
and the session goes on (a sentinel message sent afterwards in the same session arrives alone)."""

from __future__ import annotations

import pytest

from helpers import (DOMAIN, RawSMTP, Reply, check_copy, header_fields, make_message, queue_id_of, smtp_send,
                     subject_of)

SENDER = "sender@example.org"
MAX_SIZE = 10000
MAX_RCPTS = 5


@pytest.fixture
def limited(make_server):
    """A server with a small message size and recipient limit; users alice and victim."""
    server = make_server({"smtp.max_message_size": MAX_SIZE, "smtp.max_recipients": MAX_RCPTS})
    server.add_user("alice")
    server.add_user("victim")
    return server


def send_sentinel(c: RawSMTP, server, rcpts: list[str]) -> None:
    """Proves the session still works and that nothing else was delivered: the mailboxes are empty,
    and a last message, sent in the same session, arrives and is the only one in each mailbox."""
    for r in rcpts:
        assert server.stat(r) == 0, f"something was delivered to {r}"
    assert c.cmd("NOOP").code == 250
    sentinel = make_message("sentinel")
    assert c.transaction(SENDER, rcpts, sentinel).code == 250
    for r in rcpts:
        [copy] = server.wait_for_mail(r, 1)
        check_copy(copy, sender=SENDER, rcpt=r, original=sentinel)


def send_text(c: RawSMTP, verb: str, rcpt: str, message: bytes) -> Reply:
    """One transaction with DATA (dot-stuffed) or a single BDAT LAST chunk (verbatim)."""
    if verb == "DATA":
        return c.transaction(SENDER, [rcpt], message)
    assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
    assert c.cmd(f"RCPT TO:<{rcpt}>").code == 250
    c.send(f"BDAT {len(message)} LAST\r\n".encode() + message)
    return c.reply()


def test_unknown_local_user_is_550_5_1_1(limited):
    alice = f"alice@{DOMAIN}"
    with limited.smtp() as s:
        s.ehlo()
        assert s.mail(SENDER)[0] == 250
        code, text = s.rcpt(f"nobody@{DOMAIN}")
        assert (code, text.split()[0]) == (550, b"5.1.1"), text
        s.rset()
        # sendmail with one good and one unknown recipient: the good one still gets it.
        refused = s.sendmail(SENDER, [alice, f"nobody@{DOMAIN}"], make_message("partly"))
        assert list(refused) == [f"nobody@{DOMAIN}"]
        assert refused[f"nobody@{DOMAIN}"][0] == 550
    [copy] = limited.wait_for_mail(alice, 1)
    assert subject_of(copy) == "partly"


RELAY_TRICKS = [
    f"user%other.example@{DOMAIN}",
    f'"user@other.example"@{DOMAIN}',
    f"user@other.example@{DOMAIN}",
    f"other.example!user@{DOMAIN}",
    f"@{DOMAIN}:user@other.example",
    "user@other.example",
]


@pytest.mark.parametrize("rcpt", RELAY_TRICKS)
def test_relay_tricks_are_554_5_7_1(limited, rcpt):
    user = limited.add_user("user")  # the local part exists here: still no relaying through it
    with limited.raw_smtp() as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        r = c.cmd(f"RCPT TO:<{rcpt}>")
        assert (r.code, r.enhanced) == (554, "5.7.1"), r
        r = c.cmd("DATA")
        assert r.code // 100 == 5, f"DATA without an accepted recipient: {r}"
        assert c.cmd("RSET").code == 250
        send_sentinel(c, limited, [user])


def test_size_parameter_over_the_limit_is_552_5_3_4(limited):
    alice = f"alice@{DOMAIN}"
    with limited.raw_smtp() as c:
        assert f"SIZE {MAX_SIZE}" in c.cmd("EHLO client.example.org").text.splitlines()
        r = c.cmd(f"MAIL FROM:<{SENDER}> SIZE={MAX_SIZE + 1}")
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        r = c.cmd(f"MAIL FROM:<{SENDER}> SIZE={MAX_SIZE}")
        assert r.code == 250, r
        assert c.cmd("RSET").code == 250
        send_sentinel(c, limited, [alice])


def sized_message(size: int, subject: str = "big") -> bytes:
    """A message of exactly `size` octets, in short lines."""
    head = make_message(subject, b"")
    line = b"x" * 78 + b"\r\n"
    body = line * ((size - len(head)) // len(line))
    rest = size - len(head) - len(body)
    if rest:
        assert rest >= 2
        body += b"y" * (rest - 2) + b"\r\n"
    message = head + body
    assert len(message) == size
    return message


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
def test_oversize_message_is_552_5_3_4(limited, verb):
    alice = f"alice@{DOMAIN}"
    message = sized_message(MAX_SIZE + 1)
    with limited.raw_smtp() as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{alice}>").code == 250
        if verb == "DATA":
            r = c.data(message)
        else:
            half = len(message) // 2
            c.send(f"BDAT {half}\r\n".encode() + message[:half])
            r = c.reply()
            if r.code == 250:  # the limit may be noticed at the first or the last chunk
                c.send(f"BDAT {len(message) - half} LAST\r\n".encode() + message[half:])
                r = c.reply()
        assert (r.code, r.enhanced) == (552, "5.3.4"), r
        # Exactly the limit is accepted (dot-stuffing does not count).
        exact = sized_message(MAX_SIZE, "exactly the limit").replace(b"\r\nxx", b"\r\n.x")
        r = send_text(c, verb, alice, exact)
        assert r.code == 250, r
    [copy] = limited.wait_for_mail(alice, 1)
    check_copy(copy, sender=SENDER, rcpt=alice, original=exact, queue_id=queue_id_of(r))


SMUGGLING = {
    "LF.LF": b"\n.\n",
    "CRLF.LF": b"\r\n.\n",
    "LF.CRLF": b"\n.\r\n",
    "CR.CR": b"\r.\r",
    "CRLF.CR": b"\r\n.\r",
}


@pytest.mark.parametrize("pattern", list(SMUGGLING.values()), ids=list(SMUGGLING))
def test_smtp_smuggling_is_refused_and_not_executed(limited, pattern):
    """A lenient server would end the message at the pattern and run the commands after it as a
    second transaction to victim. Here data ends only at the final CRLF.CRLF, the whole message is
    refused (554 5.6.0, bare LF/CR), and the next reply is the NOOP's."""
    alice, victim = f"alice@{DOMAIN}", f"victim@{DOMAIN}"
    payload = (
        b"From: sender@example.org\r\nTo: alice@example.test\r\nSubject: smuggling\r\n\r\nHello"
        + pattern
        + f"MAIL FROM:<evil@x>\r\nRCPT TO:<{victim}>\r\nDATA\r\n".encode()
        + b"From: evil@x\r\nSubject: smuggled\r\n\r\nsmuggled\r\n.\r\n"
    )
    with limited.raw_smtp() as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{alice}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(payload)
        r = c.reply()
        assert r.code // 100 == 5 and r.enhanced == "5.6.0", r
        assert "bare" in r.text.lower(), r
        r = c.cmd("NOOP")
        assert (r.code, r.text) == (250, "2.0.0 OK"), f"a smuggled command was answered: {r}"
        send_sentinel(c, limited, [alice, victim])


@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
def test_text_line_over_1000_octets_is_refused(limited, verb):
    alice = f"alice@{DOMAIN}"
    longest = make_message("longest line", b"y" * 998 + b"\r\n")      # 1000 octets with CRLF
    too_long = make_message("too long line", b"z" * 999 + b"\r\n")    # 1001 octets
    with limited.raw_smtp() as c:
        r = send_text(c, verb, alice, too_long)
        assert r.code // 100 == 5, r
        assert c.cmd("NOOP").code == 250
        r = send_text(c, verb, alice, longest)
        assert r.code == 250, r
        qid = queue_id_of(r)
    [copy] = limited.wait_for_mail(alice, 1)
    check_copy(copy, sender=SENDER, rcpt=alice, original=longest, queue_id=qid)


def test_line_of_998_octets_starting_with_a_dot_is_accepted(limited):
    alice = f"alice@{DOMAIN}"
    message = make_message("dot-led longest line", b"." + b"d" * 997 + b"\r\n")
    with limited.smtp() as s:
        qid = smtp_send(s, SENDER, [alice], message)   # smtplib sends the line as 999 octets + CRLF
    [copy] = limited.wait_for_mail(alice, 1)
    check_copy(copy, sender=SENDER, rcpt=alice, original=message, queue_id=qid)


def test_more_than_max_recipients_is_452_4_5_3(limited):
    users = [limited.add_user(f"member{i}") for i in range(MAX_RCPTS + 1)]
    message = make_message("many recipients")
    with limited.raw_smtp() as c:
        c.send(f"MAIL FROM:<{SENDER}>\r\n".encode() + b"".join(f"RCPT TO:<{u}>\r\n".encode() for u in users))
        replies = c.replies(len(users) + 1)
        assert [r.code for r in replies] == [250] * (MAX_RCPTS + 1) + [452], [str(r) for r in replies]
        assert replies[-1].enhanced == "4.5.3"
        r = c.data(message)
        assert r.code == 250, r
    # The first MAX_RCPTS recipients get the message (all in one delivery); the last gets nothing.
    for u in users[:MAX_RCPTS]:
        [copy] = limited.wait_for_mail(u, 1)
        check_copy(copy, sender=SENDER, rcpt=u, original=message)
    assert limited.stat(users[-1]) == 0


def with_received(n: int) -> bytes:
    trace = [f"Received: from hop{i}.example.org by hop{i + 1}.example.org; Thu, 27 Nov 2025 10:00:{i:02d} +0000"
             for i in range(n)]
    return make_message(f"{n} hops", extra_headers=trace)


def test_sixteen_received_headers_is_554_5_4_6(limited):
    alice = f"alice@{DOMAIN}"
    with limited.smtp() as s:
        s.ehlo()
        s.mail(SENDER)
        s.rcpt(alice)
        code, text = s.data(with_received(16))
        assert (code, text.split()[0]) == (554, b"5.4.6"), text
        fifteen = with_received(15)
        qid = smtp_send(s, SENDER, [alice], fifteen)
    [copy] = limited.wait_for_mail(alice, 1)
    check_copy(copy, sender=SENDER, rcpt=alice, original=fifteen, queue_id=qid)
    assert sum(n == "Received" for n, _ in header_fields(copy)) == 16


@pytest.mark.parametrize("text", [b"a\nb\r\n", b"a\rb\r\n", b"a\r\n.\nb\r\n", b"ends with CR\r"],
                         ids=["LF", "CR", "CRLF.LF", "final-CR"])
def test_bare_lf_or_cr_in_bdat_is_refused(limited, text):
    alice = f"alice@{DOMAIN}"
    with limited.raw_smtp() as c:
        r = send_text(c, "BDAT", alice, b"Subject: bare\r\n\r\n" + text)
        assert (r.code, r.enhanced) == (554, "5.6.0"), r
        send_sentinel(c, limited, [alice])


def test_connection_limits_are_shared_by_every_listener(make_server):
    """smtp.max_connections counts the connections of all SMTP listeners together, and a
    client past its share gets 421 4.7.0 at once; a slot given back is free again."""
    import socket as s_

    from helpers import free_ports

    from helpers import edit_toml

    extra = free_ports(1)[0]
    server = make_server({"smtp.max_connections": 2}, start=False)
    conf = server.data / "mailroom.toml"
    listen = [f"127.0.0.1:{server.smtp_port}", f"127.0.0.1:{extra}"]
    conf.write_text(edit_toml(conf.read_text(), {"smtp.listen": listen}))
    server.start()

    def greet(port):
        c = s_.create_connection(("127.0.0.1", port), timeout=10)
        return c, c.recv(512)

    a, ga = greet(server.smtp_port)
    b, gb = greet(extra)
    assert ga.startswith(b"220") and gb.startswith(b"220")
    c, gc = greet(server.smtp_port)
    assert gc.startswith(b"421 4.7.0") and b"Too many connections" in gc, gc
    c.close()
    a.close()

    def third():
        c, g = greet(extra)
        c.close()
        return g.startswith(b"220")
    from helpers import poll
    poll(third, 5, "a slot free again once a connection closed")
    b.close()
