"""`mailroom track`: every step of a message, by Message-ID, queue ID, sender or recipient, as
JSON and for people."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from helpers import HOSTNAME, event_ids, make_message, of_queue, smtp_send

SENDER = "sender@example.org"
KEYS = {"time", "server", "event_id", "event", "queue_id", "message_id", "sender", "recipient",
        "client_ip", "size", "status", "detail"}
WORDS = {
    1018: "report absorbed",
    1019: "received over SMTP",
    1028: "delivered locally",
    1030: "NDR generated",
    1033: "categorized",
    1036: "queued for local delivery",
    1042: "redirected",
    2001: "delivery failed",
    2002: "report not requested",
}


def times(events):
    return [datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in events]


def check_events(events, queue_id, message_id, sender):
    """Shape common to every event of one message."""
    assert events, "no events"
    assert times(events) == sorted(times(events)), "events are in time order"
    for e in events:
        assert set(e) == KEYS, set(e) ^ KEYS
        assert isinstance(e["event_id"], int)
        assert WORDS[e["event_id"]].lower() in e["event"].lower(), e
        assert (e["queue_id"], e["message_id"], e["sender"], e["server"]) == \
            (queue_id, message_id, sender, HOSTNAME), e
        assert isinstance(e["size"], int) and e["size"] > 0


def positions(events, event_id, recipient=None):
    return [i for i, e in enumerate(events)
            if e["event_id"] == event_id and (recipient is None or e["recipient"] == recipient)]


def test_direct_delivery_by_every_query(server):
    alice = server.add_user("alice")
    mid = "direct.1@client.example.org"
    with server.smtp() as s:
        qid = smtp_send(s, SENDER, [alice], make_message("direct", message_id=mid))
    events = server.wait_track(1028, message_id=mid)
    check_events(events, qid, mid, SENDER)
    assert event_ids(events) == [1019, 1033, 1036, 1028]
    assert [e["recipient"] for e in events] == [alice] * 4
    received, delivered = events[0], events[3]
    assert (received["client_ip"], received["status"]) == ("127.0.0.1", "250")
    assert delivered["status"] == "2.0.0"
    # The same history whatever the question.
    for query in ({"message_id": f"<{mid}>"}, {"message_id": qid}, {"sender": SENDER},
                  {"sender": SENDER.upper()}, {"recipient": alice}, {"recipient": f"<{alice}>"}):
        assert server.track(**query) == events, query
    assert server.track(message_id="nonexistent@nowhere") == []
    assert server.track(recipient="nobody@example.test") == []


def test_alias_expansion(server):
    alice, bob = server.add_user("alice"), server.add_user("bob")
    team = server.add_alias("team", alice, bob)
    with server.smtp() as s:
        qid = smtp_send(s, SENDER, [team], make_message("to the team"))
    events = server.wait_track(1028, count=2, message_id=qid)
    check_events(events, qid, f"{qid}@{HOSTNAME}", SENDER)
    ids = event_ids(events)
    assert sorted(ids) == sorted([1019, 1042, 1042, 1033, 1033, 1036, 1036, 1028, 1028]), ids
    assert [e["recipient"] for e in events if e["event_id"] == 1019] == [team]
    assert sorted(e["recipient"] for e in events if e["event_id"] == 1042) == sorted([alice, bob])
    assert all(team in (e["detail"] or "") for e in events if e["event_id"] == 1042)
    # 1019, then every redirect, then per target 1033 -> 1036 -> 1028.
    assert positions(events, 1019) == [0]
    assert max(positions(events, 1042)) < min(positions(events, 1033))
    for target in (alice, bob):
        [c], [q], [d] = (positions(events, n, target) for n in (1033, 1036, 1028))
        assert c < q < d
    # Asked by a final recipient, the whole history is shown.
    assert server.track(recipient=bob) == events


def test_nested_list_and_duplicate_paths(server):
    """RCPT to a user and to a list that holds a nested list and the same user: one 1019 per RCPT
    as given, one 1042 per expansion step, one 1033/1036/1028 per final recipient."""
    carol, dave, erin = (server.add_user(n) for n in ("carol", "dave", "erin"))
    sub = server.add_list("sub", dave, erin, carol)
    everyone = server.add_list("all", carol, sub)
    with server.smtp() as s:
        qid = smtp_send(s, SENDER, [carol, everyone], make_message("nested"))
    events = server.wait_track(1028, count=3, message_id=qid)
    check_events(events, qid, f"{qid}@{HOSTNAME}", SENDER)
    assert [e["recipient"] for e in events if e["event_id"] == 1019] == [carol, everyone]
    redirects = sorted(e["recipient"] for e in events if e["event_id"] == 1042)
    assert redirects == sorted([carol, sub, dave, erin, carol]), redirects
    for n in (1033, 1036, 1028):
        assert sorted(e["recipient"] for e in events if e["event_id"] == n) == sorted([carol, dave, erin]), n
    assert max(positions(events, 1019)) < min(positions(events, 1042))
    for target in (carol, dave, erin):
        [c], [q], [d] = (positions(events, n, target) for n in (1033, 1036, 1028))
        assert c < q < d
    assert server.wait_for_mail(carol, 1)


def test_quota_failure_and_its_ndr(server):
    alice = server.add_user("alice")
    tiny = server.add_user("tiny", quota=100)
    with server.smtp() as s:
        qid = smtp_send(s, alice, [tiny], make_message("too big for tiny", sender=alice))
    original = of_queue(server.wait_track(1030, message_id=qid), qid)
    check_events(original, qid, f"{qid}@{HOSTNAME}", alice)
    assert event_ids(original) == [1019, 1033, 1036, 2001, 1030]
    failed, ndr_event = original[3], original[4]
    assert (failed["recipient"], failed["status"]) == (tiny, "5.2.2")
    assert failed["detail"] and "full" in failed["detail"]
    m = re.search(r"NDR queued as (\S+)", ndr_event["detail"] or "")
    assert m, ndr_event
    ndr_qid = m.group(1)
    # The report is a message of its own: null sender, to alice, delivered.
    report = server.wait_track(1028, message_id=ndr_qid)
    check_events(report, ndr_qid, f"{ndr_qid}@{HOSTNAME}", "")
    assert event_ids(report) == [1033, 1036, 1028]
    assert all(e["recipient"] == alice for e in report)
    # By sender: alice's message; by recipient alice: the report (alice is its recipient).
    assert {e["queue_id"] for e in server.track(sender=alice)} == {qid}
    assert {e["queue_id"] for e in server.track(recipient=alice)} == {ndr_qid}


def test_human_output_shows_numbers_and_words(server):
    alice, bob = server.add_user("alice"), server.add_user("bob")
    team = server.add_alias("team", alice, bob)
    mid = "human.1@client.example.org"
    with server.smtp() as s:
        qid = smtp_send(s, SENDER, [team], make_message("for people", message_id=mid))
    server.wait_track(1028, count=2, message_id=qid)
    text = server.track_text(message_id=mid)
    assert qid in text and f"<{mid}>" in text and SENDER in text
    for number in (1019, 1042, 1033, 1036, 1028):
        lines = [line for line in text.splitlines() if re.search(rf"\b{number}\b", line)]
        assert lines, f"{number} missing:\n{text}"
        assert all(WORDS[number].lower() in line.lower() for line in lines), lines
    assert alice in text and bob in text and team in text
    assert "no tracking events match" in server.track_text(message_id="nothing@nowhere").lower()
    # Grouped by message, in order: a second message from the same sender is a second group.
    with server.smtp() as s:
        qid2 = smtp_send(s, SENDER, [alice], make_message("second"))
    server.wait_track(1028, message_id=qid2)
    text = server.track_text(sender=SENDER)
    groups = [g for g in re.split(r"(?m)^(?=\S)", text) if g.strip()]
    assert len(groups) == 2, text
    assert qid in groups[0].splitlines()[0] and qid2 in groups[1].splitlines()[0], text
    assert len(re.findall(r"\b1028\b", groups[0])) == 2 and len(re.findall(r"\b1028\b", groups[1])) == 1


def test_since(server):
    alice = server.add_user("alice")
    with server.smtp() as s:
        qid = smtp_send(s, SENDER, [alice], make_message("since"))
    server.wait_track(1028, message_id=qid)
    assert event_ids(server.track(message_id=qid, since="1h")) == [1019, 1033, 1036, 1028]
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    assert len(server.track(message_id=qid, since=today)) == 4
    future = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(timespec="seconds")
    assert server.track(message_id=qid, since=future) == []
    bad = server.cli("track", "--message-id", qid, "--since", "yesterday-ish", check=False)
    assert bad.returncode != 0 and "--since" in bad.stderr


def test_report_not_requested_is_tracked(server):
    alice = server.add_user("alice")
    tiny = server.add_user("tiny", quota=100)
    with server.smtp() as s:
        qid = smtp_send(s, alice, [tiny], make_message("quiet"), rcpt_options=["NOTIFY=NEVER"])
    events = of_queue(server.wait_track(2002, message_id=qid), qid)
    assert event_ids(events) == [1019, 1033, 1036, 2001, 2002]
    assert "2002" in server.track_text(message_id=qid)
