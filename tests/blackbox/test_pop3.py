"""POP3 with poplib: USER/PASS and AUTH PLAIN, the failed-login delay, UIDL, TOP, DELE at QUIT,
and the maildrop lock."""

from __future__ import annotations

import poplib
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import PASSWORD, Deadline, auth_plain, make_message, retr, smtp_send, subject_of

SENDER = "sender@example.org"


def deliver(server, address: str, subjects: list[str]) -> list[bytes]:
    """Sends one message per subject to `address` and waits until all are in the maildrop."""
    before = server.stat(address)
    with server.smtp() as s:
        for subj in subjects:
            smtp_send(s, SENDER, [address], make_message(subj, f"Body of {subj}.\r\nSecond line.\r\nThird.\r\n"))
    return server.wait_for_mail(address, before + len(subjects))


def failed_login(server, user: str, password: str, how: str) -> tuple[float, str]:
    """A login that must fail; returns (seconds until the -ERR, its text)."""
    p = server.pop3_connect()
    try:
        start = time.monotonic()
        if how == "userpass":
            # USER never tells whether the user exists.
            assert p.user(user) == b"+OK send PASS"
        with pytest.raises(poplib.error_proto) as e:
            if how == "auth":
                auth_plain(p, user, password)
            else:
                p.pass_(password)
        return time.monotonic() - start, e.value.args[0].decode()
    finally:
        p.close()


def test_user_pass_and_auth_plain(server):
    alice = server.add_user("alice")
    [raw] = deliver(server, alice, ["hello"])
    p = server.pop3_connect()
    assert p.user(alice).startswith(b"+OK")
    assert p.pass_(PASSWORD).startswith(b"+OK")
    assert p.stat() == (1, len(raw))
    p.quit()
    p = server.pop3_connect()
    assert auth_plain(p, alice, PASSWORD).startswith(b"+OK")
    assert p.stat()[0] == 1
    assert retr(p, 1) == raw
    p.quit()
    # The local part alone means the primary domain.
    p = server.pop3_connect()
    p.user("alice")
    p.pass_(PASSWORD)
    assert p.stat()[0] == 1
    p.quit()
    p = server.pop3_connect()
    caps = p.capa()
    p.quit()
    for cap in ("USER", "SASL", "TOP", "UIDL"):
        assert cap in caps, caps
    assert "PLAIN" in caps["SASL"]


def test_failed_login_is_answered_after_the_delay_and_says_nothing_about_the_user(make_server):
    delay = 2.0
    # (Four failures at once from one address: without a ceiling of 2 s, the pauses would
    # double, 2, 4, 8 and 16 s.)
    server = make_server({"pop3.auth_failure_delay": "2s", "pop3.max_auth_failure_delay": "2s"})
    alice = server.add_user("alice")
    cases = [(alice, "wrong-password", "userpass"), (f"nobody@{server.domain}", PASSWORD, "userpass"),
             (alice, "wrong-password", "auth"), (f"nobody@{server.domain}", PASSWORD, "auth")]
    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(lambda c: failed_login(server, *c), cases))
    for (user, _, how), (elapsed, _) in zip(cases, results):
        assert elapsed >= delay, f"{how} {user}: -ERR after {elapsed:.2f}s, before the {delay}s delay"
    texts = {text for _, text in results}
    assert len(texts) == 1, f"the answer must not tell a wrong password from an unknown user: {texts}"
    assert texts.pop().startswith("-ERR")
    # A good login is not delayed.
    start = time.monotonic()
    server.pop3(alice).quit()
    assert time.monotonic() - start < delay


def test_too_many_failed_logins_close_the_session(make_server):
    server = make_server({"pop3.max_auth_failures": 3})
    alice = server.add_user("alice")
    with socket.create_connection(("127.0.0.1", server.pop3_port), timeout=10) as s:
        s.sendall(b"".join(f"USER {alice}\r\nPASS wrong{i}\r\n".encode() for i in range(5)))
        data = b""
        deadline = Deadline(10)
        while not deadline.expired():
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        else:
            pytest.fail(f"the session was not closed: {data!r}")
    lines = data.decode().splitlines()
    assert [line[:4] for line in lines[1:]] == ["+OK ", "-ERR", "+OK ", "-ERR", "+OK ", "-ERR", "-ERR"], lines


def test_uidl_is_stable_across_sessions_and_restarts(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["one", "two", "three"])
    p = server.pop3(alice)
    first = p.uidl()[1]
    assert len(first) == 3
    uids = [line.split()[1] for line in first]
    assert len(set(uids)) == 3
    assert p.uidl(2).split()[2] == uids[1]
    # A message that arrives during a session is not in it; the maildrop is a snapshot.
    deliver_while_open = make_message("four")
    with server.smtp() as s:
        smtp_send(s, SENDER, [alice], deliver_while_open)
    p.quit()
    server.wait_for_mail(alice, 4)
    p = server.pop3(alice)
    again = [line.split()[1] for line in p.uidl()[1]]
    assert again[:3] == uids and again[3] not in uids
    p.dele(1)
    p.quit()
    p = server.pop3(alice)
    after = [line.split()[1] for line in p.uidl()[1]]
    assert after == again[1:], "deleting a message does not change the other UIDs"
    assert subject_of(retr(p, 1)) == "two"
    p.quit()
    server.restart()
    p = server.pop3(alice)
    assert [line.split()[1] for line in p.uidl()[1]] == after
    p.quit()


def test_top(server):
    alice = server.add_user("alice")
    [raw] = deliver(server, alice, ["top"])
    head, body = raw.split(b"\r\n\r\n", 1)
    p = server.pop3(alice)
    resp, lines, _ = p.top(1, 0)
    assert resp.startswith(b"+OK")
    assert lines == head.split(b"\r\n") + [b""], "TOP n 0: the header section and the blank line"
    _, lines, _ = p.top(1, 2)
    assert lines == head.split(b"\r\n") + [b""] + body.split(b"\r\n")[:2]
    with pytest.raises(poplib.error_proto):
        p.top(2, 0)
    p.quit()


def test_dele_takes_effect_only_at_quit(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["first", "second"])

    # Marked, then the connection drops without QUIT: nothing is deleted.
    p = server.pop3(alice)
    p.dele(1)
    assert p.stat()[0] == 1
    assert [line.split()[0] for line in p.list()[1]] == [b"2"]
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    p.close()  # no QUIT: the connection just drops
    assert server.stat(alice) == 2

    # Marked, then RSET, then QUIT: nothing is deleted.
    p = server.pop3(alice)
    p.dele(1)
    p.rset()
    assert p.stat()[0] == 2
    p.quit()
    assert server.stat(alice) == 2

    # Marked, then QUIT: gone for good.
    p = server.pop3(alice)
    p.dele(1)
    assert p.quit().startswith(b"+OK")
    [left] = server.messages(alice)
    assert subject_of(left) == "second"
    assert [u["messages"] for u in server.users() if u["address"] == alice] == [1]


def test_second_login_gets_in_use(server):
    alice = server.add_user("alice")
    deliver(server, alice, ["locked"])
    first = server.pop3(alice)
    second = server.pop3_connect()
    second.user(alice)
    with pytest.raises(poplib.error_proto) as e:
        second.pass_(PASSWORD)
    assert e.value.args[0].startswith(b"-ERR [IN-USE]"), e.value
    with pytest.raises(poplib.error_proto) as e:
        auth_plain(second, alice, PASSWORD)
    assert e.value.args[0].startswith(b"-ERR [IN-USE]"), e.value
    second.close()
    assert first.stat()[0] == 1, "the first session is not disturbed"
    first.quit()
    third = server.pop3_connect()
    third.user(alice)
    assert third.pass_(PASSWORD).startswith(b"+OK"), "the lock is released at QUIT"
    third.quit()
