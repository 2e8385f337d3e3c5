"""Link state in an organization of four servers: a bridgehead dies, every server sees its
connector DOWN in the documented time, mail reroutes over another connector in cost order or
waits visibly, and when the server returns everything is UP again and the waiting mail arrives
exactly once."""

from __future__ import annotations

import time

import orgs
from helpers import make_message, parse_ndr, poll, smtp_send
from orgs import address, connector_state, host, server_state

# DOWN after at most probe_interval + glitch_retries x glitch_retry = 1 + 2 x 0.3 s, then
# pushed to every server at once; generous for a loaded 2-core machine.
DOWN_WITHIN = 12.0


def send(org, frm: str, to: str, subject: str) -> None:
    msg = make_message(subject, sender=address(frm), to=address(to), message_id=f"{subject}@org.test")
    with org[frm].smtp() as s:
        smtp_send(s, address(frm), [address(to)], msg)


def test_a_dead_bridgehead_makes_mail_take_the_next_connector_by_cost(make_server):
    org = orgs.standard(make_server)
    # A second, dearer way between the groups: s1 <-> s4.
    org["s1"].cli("org", "connector", "add", "g1g2-backup", "--between", "G1", "G2", "--cost", "5",
                  "--bridgehead", host("s1"), "--bridgehead", host("s4"))
    org.wait_agree()
    before = org.explain("s1", address("s4"))
    assert before["route"]["connectors"] == ["g1g2"]
    assert before["alternative"]["connectors"] == ["g1g2-backup"]

    started = time.monotonic()
    org["s3"].kill9()
    live = ["s1", "s2", "s4"]
    org.wait_state(live, lambda r: connector_state(r, "g1g2") == "DOWN", DOWN_WITHIN,
                   "g1g2 DOWN")
    took = time.monotonic() - started
    assert took < DOWN_WITHIN
    r = org.routing("s1")
    assert server_state(r, "s3") == "DOWN"
    why = next(c for c in r["connectors"] if c["name"] == "g1g2")["why"]
    assert host("s3") in why, why
    # The route now, and then the mail, take the backup connector.
    now = org.explain("s1", address("s4"))
    assert now["route"]["connectors"] == ["g1g2-backup"], now
    assert now["route"]["next_hop"]["server"] == host("s4")
    send(org, "s1", "s4", "rerouted")
    got = org["s4"].wait_for_mail(address("s4"), 1, timeout=15)
    assert b"Subject: rerouted" in got[0]
    assert f"by {host('s2')}".encode() not in got[0], "it went the way explain said, not via s2"

    # s3 comes back: UP everywhere.
    org["s3"].start()
    org.wait_state(["s1", "s2", "s3", "s4"], lambda r: connector_state(r, "g1g2") == "UP", 20,
                   "g1g2 UP again")
    assert org.explain("s1", address("s4"))["route"]["connectors"] == ["g1g2"]


def test_without_another_route_mail_waits_visibly_and_arrives_once_on_recovery(make_server):
    org = orgs.standard(make_server)
    org["s3"].kill9()
    org.wait_state(["s1", "s2", "s4"], lambda r: connector_state(r, "g1g2") == "DOWN", DOWN_WITHIN,
                   "g1g2 DOWN")
    e = org.explain("s1", address("s4"))
    assert e["route"]["next_hop"]["kind"] == "unreachable", e
    assert "g1g2 is DOWN" in e["route"]["next_hop"]["why"]
    send(org, "s1", "s4", "waiting")
    # It waits on s1, in the unreachable queue, saying why.
    # (The system queue is listed even when empty: wait for the message to be routed into it.)
    def unreachable():
        q = org["s1"].queues().get("unreachable")
        return q if q and q["messages"] >= 1 else None
    q = poll(unreachable, 10, "the message in the unreachable queue on s1")
    assert q["messages"] == 1, q
    assert "g1g2 is DOWN" in (q.get("last_error") or ""), q
    org["s3"].start()
    got = org["s4"].wait_for_mail(address("s4"), 1, timeout=30)
    assert b"Subject: waiting" in got[0]
    # Exactly once: nothing more arrives, nothing is left queued.
    poll(lambda: not any(q["messages"] for q in org["s1"].queues().values()), 10, "s1's queues empty")
    time.sleep(2)
    assert org["s4"].stat(address("s4")) == 1


def test_mail_with_no_route_until_it_expires_gets_a_5_4_4_report(make_server):
    org = orgs.standard(make_server, settings={"queue.expiry": "6s", "queue.delay_notification": "5s"})
    org["s3"].kill9()
    org.wait_state(["s1"], lambda r: connector_state(r, "g1g2") == "DOWN", DOWN_WITHIN, "g1g2 DOWN")
    msg = make_message("nowhere", sender=address("s1"), to=address("s4"), message_id="nowhere@org.test")
    with org["s1"].smtp() as s:
        smtp_send(s, address("s1"), [address("s4")], msg, rcpt_options=["NOTIFY=FAILURE"])
    got = org["s1"].wait_for_mail(address("s1"), 1, timeout=30)
    ndr = parse_ndr(got[0])
    r = ndr.per_recipient[0]
    assert r["Status"] == "5.4.4", dict(r)
    assert "g1g2 is DOWN" in ndr.human, ndr.human
