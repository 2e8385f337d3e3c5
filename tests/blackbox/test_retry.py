"""Retries: a peer that is down, or that says 4xx, gets the message later; a peer that says 5xx
fails the recipient at once, and the sender's report quotes what it said. The queue viewer shows
a waiting message where it waits and why."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone

import pytest

from helpers import event_ids, make_message, nospace, of_queue, parse_ndr, smtp_send
from peers import check_relayed, relay_settings, zone

ZONES = {"example.org": zone("example.org", "@ IN MX 10 mx.example.org.", "mx IN A 127.0.0.1")}


def parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.fixture
def by_mx(make_server, make_peer, make_dns):
    """A server that routes example.org by MX (mx.example.org, 127.0.0.1) to a peer that is not
    started yet; a factory taking the peer's options and extra settings."""
    def make(peer_options=None, **settings):
        peer = make_peer(start=False, **(peer_options or {}))
        dns = make_dns(ZONES)
        server = make_server(relay_settings(outbound__port=peer.port, dns__nameservers=[dns.address], **settings))
        return server, server.add_user("alice"), peer
    return make


def test_a_peer_that_is_down_is_waited_for_and_retry_sends_at_once(by_mx):
    # Long waits: only the administrator's retry can bring the message out within the test.
    server, alice, peer = by_mx(queue__retry_schedule=["1h"], queue__glitch_retry="1h")
    original = make_message("waiting", sender=alice, to="bob@example.org", message_id="wait.1@client.example.org")
    with server.smtp() as s:
        qid = smtp_send(s, alice, ["bob@example.org"], original)
    [deferred] = [e for e in of_queue(server.wait_track(1035, message_id=qid), qid) if e["event_id"] == 1035]
    assert deferred["status"].startswith("4.") and "next attempt" in deferred["detail"]

    # The link queue of the destination, in Retry, says when and why.
    queues = server.queues()
    assert {"local", "retry", "unreachable", "dsn"} <= set(queues), "the system queues are always listed"
    link = queues["link:example.org"]
    assert link["state"] == "Retry"
    assert (link["messages"], link["recipients"]) == (1, 1)
    now = datetime.now(timezone.utc)
    assert timedelta(minutes=55) < parse_time(link["next_retry"]) - now <= timedelta(hours=1)
    assert "mx.example.org" in link["last_error"], link["last_error"]
    assert 0 <= link["oldest_age_seconds"] < 60
    assert all(queues[k]["state"] == "Empty" for k in ("local", "retry", "unreachable", "dsn"))

    # The message, by queue ID, by Message-ID and by queue name.
    [m] = server.queue_messages(qid)
    assert (m["queue_id"], m["message_id"], m["sender"], m["frozen"]) == (qid, "wait.1@client.example.org", alice, False)
    assert m["size"] == link["size"] > len(original)
    [r] = m["recipients"]
    assert (r["address"], r["state"]) == ("bob@example.org", "retry")
    assert r["attempts"] >= 1 and "mx.example.org" in r["last_reply"], r
    assert parse_time(r["next_attempt"]) == parse_time(link["next_retry"])
    for target in ("<wait.1@client.example.org>", "example.org", "link:example.org"):
        assert [x["queue_id"] for x in server.queue_messages(target)] == [qid], target
    assert server.queue_messages("retry") == [] and server.queue_messages("other.example") == []

    # The peer comes up; the administrator says retry: it goes now, not in an hour, once.
    peer.start()
    done = server.queue("retry", qid)
    assert done["messages"] == 1 and "retry" in done["action"], done
    [got] = peer.wait_for(1, timeout=5)
    check_relayed(got, original, qid)
    events = of_queue(server.wait_track(1031, message_id=qid), qid)
    ids = event_ids(events)
    assert 2010 in ids and ids.index(2010) < ids.index(1031)
    assert "retry" in events[ids.index(2010)]["detail"]
    peer.stays_at(1, 1.0)
    assert server.queue_messages(qid) == []
    assert "link:example.org" not in server.queues() or server.queues()["link:example.org"]["messages"] == 0
    assert server.stat(alice) == 0


@pytest.mark.parametrize("where", ["RCPT", "DATA"])
def test_a_permanent_refusal_fails_at_once_and_the_report_quotes_it(by_mx, where):
    refusal = "550 5.1.1 no such user here" if where == "RCPT" else "554 5.6.0 content rejected here"
    if where == "RCPT":
        options = {"on_rcpt": lambda address: refusal if address.startswith("nobody@") else None}
    else:
        options = {"on_data": lambda envelope: refusal}
    server, alice, peer = by_mx(options)
    peer.start()
    original = make_message("refused", sender=alice, to="nobody@example.org")
    rcpts = ["nobody@example.org", "bob@example.org"] if where == "RCPT" else ["nobody@example.org"]
    with server.smtp() as s:
        qid = smtp_send(s, alice, rcpts, original)

    [raw] = server.wait_for_mail(alice, 1)
    ndr = parse_ndr(raw)
    [r] = ndr.per_recipient
    status = refusal.split()[1]
    assert nospace(r["Final-Recipient"]) == "rfc822;nobody@example.org"
    assert r["Action"].strip() == "failed"
    assert r["Status"].strip() == status
    assert r["Diagnostic-Code"].strip().startswith("smtp;")
    assert r["Diagnostic-Code"].split(";", 1)[1].strip() == refusal, r["Diagnostic-Code"]
    assert nospace(r["Remote-MTA"]) == "dns;mx.example.org"
    assert refusal.split(" ", 2)[2] in ndr.human and "mx.example.org" in ndr.human

    events = of_queue(server.track(message_id=qid), qid)
    failed = [e for e in events if e["event_id"] == 2001]
    assert [(e["recipient"], e["status"]) for e in failed] == [("nobody@example.org", status)]
    assert 1035 not in event_ids(events), "a 5xx is not retried"
    if where == "RCPT":
        # The other recipient of the same message went through.
        [got] = peer.wait_for(1)
        assert got.rcpt_tos == ["bob@example.org"]
        assert "bob@example.org" not in ndr.human
    else:
        assert peer.received == []
    assert server.queue_messages(qid) == []


def test_a_temporary_refusal_is_retried_and_then_delivered(by_mx):
    lock = threading.Lock()
    calls = []

    def once(address):
        with lock:
            calls.append(address)
            return "451 4.3.0 try again later" if len(calls) == 1 else None

    server, alice, peer = by_mx({"on_rcpt": once})
    peer.start()
    original = make_message("second time lucky", sender=alice, to="bob@example.org",
                            message_id="lucky.1@client.example.org")
    with server.smtp() as s:
        qid = smtp_send(s, alice, ["bob@example.org"], original)
    [got] = peer.wait_for(1, timeout=8)
    check_relayed(got, original, qid)
    events = of_queue(server.wait_track(1031, message_id=qid), qid)
    ids = event_ids(events)
    assert ids == [1019, 1033, 1034, 1020, 1035, 1020, 1031], ids
    deferred = events[4]
    assert deferred["status"] == "4.3.0"
    assert "451 4.3.0 try again later" in deferred["detail"] and "next attempt" in deferred["detail"]
    assert re.search(r"accepted by mx\.example\.org", events[6]["detail"])
    assert calls == ["bob@example.org", "bob@example.org"]
    peer.stays_at(1, 0.5)
    assert server.stat(alice) == 0, "no report: it was delivered"
