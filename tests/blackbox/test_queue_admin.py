"""The operator's queue actions, `mailroom queue freeze|thaw|retry|delete`, on one message and by
filter, while the server runs; `queue summary`; the confirmations that protect bulk actions."""

from __future__ import annotations

import os
import pty
import subprocess
import time

import pytest

from helpers import (BIN, CLI_TIMEOUT, event_ids, holds, make_message, nospace, of_queue, parse_ndr, poll,
                     smtp_send)
from peers import relay_settings

SLOW = {"queue__retry_schedule": ["1h"], "queue__glitch_retry": "1h"}


@pytest.fixture
def down(make_server, make_peer):
    """A server whose smart host (a peer, not started) is down; alice and bob are local senders."""
    def make(**settings):
        peer = make_peer(start=False)
        server = make_server(relay_settings(peer.address, **settings))
        return server, peer, server.add_user("alice"), server.add_user("bob")
    return make


def send(server, sender: str, rcpt: str, subject: str) -> str:
    with server.smtp() as s:
        return smtp_send(s, sender, [rcpt], make_message(subject, sender=sender, to=rcpt))


def wait_deferred(server, *qids: str) -> None:
    for q in qids:
        server.wait_track(1035, message_id=q)


def attempts(server, qid: str) -> int:
    [m] = server.queue_messages(qid)
    [r] = m["recipients"]
    return r["attempts"]


def act(server, *args: str) -> int:
    """Runs a queue action with --json; returns the number of messages it says it acted on."""
    result = server.queue(*args)
    assert set(result) == {"action", "messages"}, result
    return result["messages"]


def test_freeze_stops_attempts_until_thaw(down):
    server, peer, alice, _ = down()  # quick retries: a thawed message is attempted every second
    frozen = send(server, alice, "x@a.test", "to be frozen")
    other = send(server, alice, "y@a.test", "goes on")
    wait_deferred(server, frozen, other)

    p = server.cli("queue", "freeze", frozen)
    assert p.stdout.strip().startswith("1 message(s) frozen"), p.stdout
    [m] = server.queue_messages(frozen)
    assert m["frozen"] is True
    assert server.queue_messages(other)[0]["frozen"] is False
    # (One retry of the other message first: an attempt of the frozen one that was under way
    # when it was frozen has finished by then.)
    start = attempts(server, other)
    poll(lambda: attempts(server, other) >= start + 1, 5, "another attempt of the other message")
    before = attempts(server, frozen)
    poll(lambda: attempts(server, other) >= start + 3, 8, "two more attempts of the other message")
    assert attempts(server, frozen) == before, "a frozen message is not attempted"

    # The peer comes up: the other message goes; the frozen one stays.
    peer.start()
    [got] = peer.wait_for(1, timeout=5)
    assert got.rcpt_tos == ["y@a.test"]
    peer.stays_at(1, 1.0)
    assert attempts(server, frozen) == before
    events = of_queue(server.track(message_id=frozen), frozen)
    [admin] = [e["detail"] for e in events if e["event_id"] == 2010]
    assert "frozen" in admin, admin

    # Thawed, it goes at its next poll.
    assert act(server, "thaw", frozen) == 1
    [_, got] = peer.wait_for(2, timeout=5)
    assert got.rcpt_tos == ["x@a.test"]
    assert server.queue_messages() == []


def test_delete_with_and_without_ndr(down):
    server, peer, alice, _ = down(**SLOW)
    quiet = send(server, alice, "x@a.test", "deleted quietly")
    loud = send(server, alice, "y@a.test", "deleted with a report")
    wait_deferred(server, quiet, loud)

    p = server.cli("queue", "delete", quiet)
    assert p.stdout.strip().startswith("1 message(s) deleted"), p.stdout
    assert server.queue_messages(quiet) == []
    assert act(server, "delete", "--ndr", loud) == 1
    # Failed at once; the message stays only until its report is made.
    for m in server.queue_messages(loud):
        assert [r["state"] for r in m["recipients"]] == ["failed"], m
    poll(lambda: server.queue_messages(loud) == [], 5, "the deleted message to leave the queue")

    # Only the second one is reported: 5.3.2, naming the recipient.
    [raw] = server.wait_for_mail(alice, 1)
    ndr = parse_ndr(raw)
    [r] = ndr.per_recipient
    assert nospace(r["Final-Recipient"]) == "rfc822;y@a.test"
    assert r["Action"].strip() == "failed"
    assert r["Status"].strip() == "5.3.2"
    assert ndr.original["Subject"] == "deleted with a report"
    for qid, want_report in ((quiet, False), (loud, True)):
        ids = event_ids(of_queue(server.track(message_id=qid), qid))
        assert 2010 in ids
        assert (1030 in ids) == want_report, ids
    holds(lambda: server.stat(alice) == 1, 0.5, "one report only")
    peer.start()
    peer.stays_at(0, 1.0)


def test_actions_by_filter_and_summary(down):
    server, peer, alice, bob = down(**SLOW)
    a = [send(server, alice, f"user{i}@a.test", f"a{i}") for i in range(3)]
    b = [send(server, bob, f"user{i}@b.test", f"b{i}") for i in range(2)]
    wait_deferred(server, *a, *b)

    summary = {row["domain"]: row for row in server.queue("summary")}
    assert set(summary) == {"a.test", "b.test"}
    for domain, n in (("a.test", 3), ("b.test", 2)):
        row = summary[domain]
        assert row["total"] == n
        assert len(row["buckets"]) == 9 and row["buckets"][0] == n and sum(row["buckets"]) == n
        assert row["bucket_minutes"][0] == 5
    text = server.cli("queue", "summary").stdout
    assert any(line.split()[:3] == ["a.test", "3", "3"] for line in text.splitlines()), text

    # Everything waits in the smart host's link queue.
    [link] = [q for k, q in server.queues().items() if k.startswith("link:")]
    assert (link["queue"], link["messages"], link["recipients"], link["state"]) == \
        (f"link:{peer.address}", 5, 5, "Retry")

    # No selection at all is refused unless --yes.
    p = server.cli("queue", "freeze", check=False)
    assert p.returncode != 0 and "--yes" in p.stderr, p.stderr
    assert all(not m["frozen"] for m in server.queue_messages())

    assert act(server, "freeze", "--sender", bob) == 2
    assert sorted(m["queue_id"] for m in server.queue_messages() if m["frozen"]) == sorted(b)
    assert act(server, "freeze", "--domain", "a.test") == 3
    assert act(server, "thaw", "--yes") == 5
    assert [m["queue_id"] for m in server.queue_messages("--recipient", "user1@a.test")] == [a[1]]
    assert sorted(m["queue_id"] for m in server.queue_messages("--sender", alice)) == sorted(a)

    # --older-than: a new message is younger than the others.
    time.sleep(2.2)
    young = send(server, alice, "new@a.test", "young")
    server.wait_track(1035, message_id=young)
    assert act(server, "freeze", "--older-than", "2s") == 5
    assert [m["queue_id"] for m in server.queue_messages() if not m["frozen"]] == [young]
    assert sorted(m["queue_id"] for m in server.queue_messages("--older-than", "2s")) == sorted(a + b)
    assert act(server, "thaw", "--older-than", "2s") == 5

    # retry by domain
    assert act(server, "retry", "--domain", "b.test") == 2
    for q in b:
        server.wait_track(2010, count=1, message_id=q)

    # A bulk delete needs --yes when there is nobody to ask...
    p = server.cli("queue", "delete", "--domain", "b.test", check=False)
    assert p.returncode != 0 and "--yes" in p.stderr, p.stderr
    assert len(server.queue_messages("--domain", "b.test")) == 2
    assert act(server, "delete", "--domain", "b.test", "--yes") == 2
    assert server.queue_messages("--domain", "b.test") == []

    # ...and asks on a terminal.
    p = cli_on_tty(server, ["queue", "delete", "--domain", "a.test"], "n\n")
    assert p.returncode != 0 and "Delete 4 messages" in p.stderr, p.stderr
    assert len(server.queue_messages("--domain", "a.test")) == 4
    p = cli_on_tty(server, ["queue", "delete", "--domain", "a.test"], "y\n")
    assert p.returncode == 0 and p.stdout.strip().startswith("4 message(s) deleted"), (p.stdout, p.stderr)
    assert server.queue_messages() == []
    assert server.queue("summary") == []
    assert server.stat(alice) == 0 and server.stat(bob) == 0, "deleted without NDR"


def cli_on_tty(server, args: list[str], answer: str) -> subprocess.CompletedProcess:
    """Runs the command with a terminal as standard input and types `answer` into it."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([BIN, "--data", str(server.data), *args], stdin=slave,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        os.close(slave)
        slave = -1
        os.write(master, answer.encode())
        out, err = proc.communicate(timeout=CLI_TIMEOUT)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
