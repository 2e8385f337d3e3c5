"""Crash safety: SIGKILL right after a `250` loses nothing and delivers nothing twice, whether the
delivery had happened or not; restarts (clean or not) do not deliver again."""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest

from helpers import (check_copy, event_ids, make_message, of_queue, parse_ndr, poll, queue_id_of,
                     subject_of)

SENDER = "sender@example.org"
# No periodic queue scan during these tests: what the restarted server delivers, it finds in its
# start-up scan. (Sentinels sent after that go back to the suite's short scan interval.)
NO_PERIODIC_SCAN = {"queue.poll_interval": "1h"}


@pytest.fixture
def server(make_server):
    return make_server(NO_PERIODIC_SCAN)


def subjects(messages: list[bytes]) -> Counter:
    return Counter(subject_of(m) for m in messages)


def send_then_kill(server, rcpts: list[str], messages: list[bytes]) -> list[str]:
    """Sends the messages in one session and SIGKILLs the server the moment the last 250 is read.
    Returns the queue IDs."""
    ids = []
    with server.raw_smtp() as c:
        for m in messages:
            r = c.transaction(SENDER, rcpts, m)
            assert r.code == 250, r
            ids.append(queue_id_of(r))
        server.kill9()
    return ids


def restart_adds_nothing(server, rcpts: list[str], expected: dict[str, int], kill: bool = False) -> None:
    """Stops the server (cleanly, or with SIGKILL), starts it again (the start-up scan runs), sends
    a sentinel and checks that each mailbox grew by exactly that one message."""
    if kill:
        server.kill9()
    else:
        assert server.stop() == 0
    server.configure({"queue.poll_interval": "1s"})
    server.start()
    name = f"sentinel {uuid.uuid4()}"
    with server.raw_smtp() as c:
        assert c.transaction(SENDER, rcpts, make_message(name)).code == 250
    for r in rcpts:
        got = server.wait_for_mail(r, expected[r] + 1)
        assert subjects(got)[name] == 1


def test_kill_right_after_250_delivers_exactly_once(server):
    alice = server.add_user("alice")
    message = make_message("survives a crash", "important\r\n.\r\n")
    [qid] = send_then_kill(server, [alice], [message])
    server.start()
    [copy] = server.wait_for_mail(alice, 1)
    check_copy(copy, sender=SENDER, rcpt=alice, original=message, queue_id=qid)
    restart_adds_nothing(server, [alice], {alice: 1})
    # Once more, now that everything is delivered, with a crash instead of a clean stop.
    restart_adds_nothing(server, [alice], {alice: 2}, kill=True)
    assert event_ids(of_queue(server.track(message_id=qid), qid)).count(1028) == 1


def test_several_messages_and_several_crashes(server):
    alice, bob = server.add_user("alice"), server.add_user("bob")
    team = server.add_alias("team", alice, bob)
    sent = Counter()
    all_ids = []
    for round_ in range(3):
        if server.proc is None or server.proc.poll() is not None:
            server.start()
        batch = [make_message(f"round {round_} message {i}", f"text {round_}.{i}\r\n") for i in range(4)]
        all_ids += send_then_kill(server, [team], batch)
        sent.update(subjects(batch))
    server.start()
    for r in (alice, bob):
        got = server.wait_for_mail(r, sum(sent.values()))
        assert subjects(got) == sent, f"{r}: every message exactly once"
    restart_adds_nothing(server, [alice, bob], {alice: 12, bob: 12})
    for qid in all_ids:
        assert event_ids(of_queue(server.track(message_id=qid), qid)).count(1028) == 2, qid


def test_kill_during_data_delivers_nothing(make_server):
    server = make_server()
    alice = server.add_user("alice")
    with server.raw_smtp() as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        assert c.cmd(f"RCPT TO:<{alice}>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(make_message("never finished", "half of it\r\n"))
        server.kill9()
    server.start()
    sentinel = make_message("after the unfinished one")
    with server.raw_smtp() as c:
        assert c.transaction(SENDER, [alice], sentinel).code == 250
    [copy] = server.wait_for_mail(alice, 1)
    check_copy(copy, sender=SENDER, rcpt=alice, original=sentinel)


def test_report_survives_a_crash_and_is_sent_once(server):
    alice = server.add_user("alice")
    tiny = server.add_user("tiny", quota=100)
    message = make_message("bounces after a crash", sender=alice)
    with server.raw_smtp() as c:
        r = c.transaction(alice, [tiny], message)
        assert r.code == 250, r
        qid = queue_id_of(r)
        server.kill9()
    server.start()
    [raw] = server.wait_for_mail(alice, 1)
    ndr = parse_ndr(raw)
    assert ndr.per_recipient[0]["Status"].strip() == "5.2.2"
    assert server.stop() == 0
    server.configure({"queue.poll_interval": "1s"})
    server.start()
    with server.raw_smtp() as c:
        assert c.transaction(SENDER, [alice], make_message("sentinel")).code == 250
    got = server.wait_for_mail(alice, 2)
    assert subjects(got)["sentinel"] == 1
    events = event_ids(of_queue(server.track(message_id=qid), qid))
    assert events.count(2001) == 1 and events.count(1030) == 1, events


def test_crash_under_concurrent_load(server):
    """Four sessions send to an alias non-stop; the server is killed twice mid-stream. Every
    acknowledged message reaches both users exactly once; an unacknowledged one at most once."""
    alice, bob = server.add_user("alice"), server.add_user("bob")
    team = server.add_alias("team", alice, bob)
    acked, attempted, lock = [], [], threading.Lock()

    def sender(name: str, stop: threading.Event) -> None:
        try:
            with server.raw_smtp() as c:
                i = 0
                while not stop.is_set():
                    subject = f"{name} message {i}"
                    i += 1
                    with lock:
                        attempted.append(subject)
                    if c.transaction(SENDER, [team], make_message(subject)).code == 250:
                        with lock:
                            acked.append(subject)
        except (OSError, AssertionError):
            pass  # the server died under this session

    for round_ in range(2):
        stop = threading.Event()
        threads = [threading.Thread(target=sender, args=(f"r{round_}s{n}", stop)) for n in range(4)]
        for t in threads:
            t.start()
        goal = 20 * (round_ + 1)
        poll(lambda: len(acked) >= goal, 20, f"{goal} acknowledged messages")
        server.kill9()
        stop.set()
        for t in threads:
            t.join(15)
            assert not t.is_alive()
        server.start()
    assert len(acked) >= 40

    def everything_acknowledged(rcpt: str):
        got = subjects(server.messages(rcpt))
        return got if set(acked) <= set(got) else None

    for rcpt in (alice, bob):
        got = poll(lambda: everything_acknowledged(rcpt), 10, f"every acknowledged message for {rcpt}")
        assert max(got.values()) == 1, [k for k, v in got.items() if v > 1]
        assert set(got) <= set(attempted)
