"""An unreadable queue record does not stop the queue: at the next start it is moved to
quarantine (event 2011, `queue show --quarantined`) and every other message is delivered."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from helpers import event_ids, make_message, of_queue, poll, smtp_send
from peers import relay_settings

BY_QUEUE_ID = "(SELECT id FROM queue WHERE queue_id = ?)"


def queue_three(make_server, make_peer, **settings):
    """Three messages waiting for a smart host that is down; the server is then stopped."""
    peer = make_peer(start=False)
    server = make_server(relay_settings(peer.address, **settings))
    alice = server.add_user("alice")
    qids = []
    with server.smtp() as s:
        for i in range(3):
            rcpt = f"user{i}@example.org"
            qids.append(smtp_send(s, alice, [rcpt], make_message(f"message {i}", sender=alice, to=rcpt)))
    for q in qids:
        server.wait_track(1035, message_id=q)
    server.stop()
    return server, peer, qids


def quarantined(server) -> dict[str, dict]:
    return {q["queue_id"]: q for q in server.queue("show", "--quarantined")}


def test_corrupt_records_are_quarantined_and_the_rest_is_delivered(make_server, make_peer):
    server, peer, (bad_rcpt, bad_msg, good) = queue_three(make_server, make_peer)
    assert server.sql(f"UPDATE queue_rcpt SET state = 'bogus' WHERE msg = {BY_QUEUE_ID}", bad_rcpt) == 1
    assert server.sql("UPDATE queue SET kind = 'bogus' WHERE queue_id = ?", bad_msg) == 1
    assert server.cli("queue", "show", "--quarantined").stdout.strip() == "no quarantined records"

    peer.start()
    started = datetime.now(timezone.utc)
    server.start()
    [got] = peer.wait_for(1, timeout=8)
    assert got.rcpt_tos == ["user2@example.org"]
    for q in (bad_rcpt, bad_msg):
        server.wait_track(2011, message_id=q, timeout=5)

    q = quarantined(server)
    assert set(q) == {bad_rcpt, bad_msg}
    for qid, words in ((bad_rcpt, "state"), (bad_msg, "kind")):
        entry = q[qid]
        assert words in entry["reason"], entry
        assert qid in entry["record"] and "bogus" in entry["record"], entry
        when = datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        assert started - timedelta(seconds=1) <= when <= datetime.now(timezone.utc)
        [e] = [e for e in of_queue(server.track(message_id=qid), qid) if e["event_id"] == 2011]
        assert "quarantine" in e["detail"], e
    text = server.cli("queue", "show", "--quarantined").stdout
    assert bad_rcpt in text and bad_msg in text

    # Out of the queue: nothing left to show, to count or to deliver.
    poll(lambda: server.queue_messages() == [], 5, "the delivered message to leave the queue")
    assert sum(x["messages"] for x in server.queue("list")) == 0
    assert 1031 in event_ids(server.track(message_id=good))
    peer.stays_at(1, 0.5)
    assert server.stat("alice@example.test") == 0, "quarantine sends no report"


def test_a_corrupt_record_not_yet_due_is_quarantined_at_start(make_server, make_peer):
    server, peer, (bad, _, _) = queue_three(make_server, make_peer, queue__retry_schedule=["1h"],
                                            queue__glitch_retry="1h")
    assert server.sql("UPDATE queue SET kind = 'bogus' WHERE queue_id = ?", bad) == 1
    server.start()
    poll(lambda: bad in quarantined(server), 3, "the corrupt record in quarantine")
    assert 2011 in event_ids(server.track(message_id=bad))
    link = [x for x in server.queue("list") if x["queue"].startswith("link:")]
    assert [x["messages"] for x in link] == [2]
