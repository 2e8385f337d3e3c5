"""Shadow redundancy: a server of the organization that accepted mail and then dies loses
nothing. The sender keeps a shadow copy of what it handed on until the next server confirms it;
when that server goes DOWN without confirming, the shadow is sent again over another route, and
when the dead server comes back and passes its own copies on, the home server drops them as
duplicates: every message arrives exactly once."""

from __future__ import annotations

import time

import orgs
from helpers import make_message, poll, smtp_send
from orgs import address, connector_state, host

N = 3


def test_mail_in_flight_to_a_dead_server_arrives_exactly_once(make_server):
    org = orgs.standard(make_server)
    org["s1"].cli("org", "connector", "add", "g1g2-backup", "--between", "G1", "G2", "--cost", "5",
                  "--bridgehead", host("s1"), "--bridgehead", host("s4"))
    org.wait_agree()
    # s2 takes mail but sends nothing on: the mail is "in flight" there when it dies.
    org["s2"].cli("queue", "disable", "--all")
    with org["s1"].smtp() as s:
        for i in range(N):
            msg = make_message(f"shadow {i}", sender=address("s1"), to=address("s4"),
                               message_id=f"shadow{i}@org.test")
            smtp_send(s, address("s1"), [address("s4")], msg)
    shadow = f"shadow:{host('s2')}"
    q = poll(lambda: (org["s1"].queues().get(shadow) or {}).get("messages") == N and org["s1"].queues()[shadow],
             15, "s1 holding shadows for s2")
    assert "kept until it confirms" in (q.get("last_error") or "") or q["messages"] == N
    assert sum(m["messages"] for k, m in org["s2"].queues().items() if k.startswith("link:")) == N

    org["s2"].kill9()
    org.wait_state(["s1"], lambda r: connector_state(r, "g1g2") == "DOWN", 15, "g1g2 DOWN")
    e = org.explain("s1", address("s4"))
    assert e["route"]["connectors"] == ["g1g2-backup"] and e["route"]["path"] == [host("s1"), host("s4")], e
    # The shadows go again, over the backup connector, straight to s4.
    got = org["s4"].wait_for_mail(address("s4"), N, timeout=30)
    assert sorted(m.split(b"Subject: ")[1].split(b"\r\n")[0] for m in got) == \
        [f"shadow {i}".encode() for i in range(N)]
    for m in got:   # the way explain said: s1 straight to s4
        assert f"by {host('s2')}".encode() not in m and f"by {host('s1')}".encode() in m
    ev = org["s1"].track(sender=address("s1"))
    assert sum(e["event_id"] == 2023 for e in ev) == N, ev   # resubmitted
    assert sum(e["event_id"] == 2021 for e in ev) >= 2 * N   # held for s2, then for s4

    # s2 returns and sends its own copies on: s4 drops them.
    org["s2"].start()
    org["s2"].cli("queue", "enable", "--all")
    try:
        poll(lambda: len([e for e in org["s4"].track(recipient=address("s4")) if e["event_id"] == 2020]) == N,
             40, "s4 dropping the duplicates from s2")
    except AssertionError:
        for n in ("s2", "s3", "s4"):
            print("diagnosis:", n, org[n].cli("queue", "show").stdout, org[n].cli("routing", "show").stdout)
        print("diagnosis: track s4", org["s4"].cli("track", "--recipient", address("s4")).stdout[-6000:])
        for n in ("s2", "s3"):
            print("diagnosis: track", n, org[n].cli("track", "--recipient", address("s4")).stdout[-8000:])
        raise
    for name in ("s1", "s2", "s3"):
        poll(lambda: not any(q["messages"] for q in org[name].queues().values()), 30,
             f"{name}'s queues empty (every shadow released)")
    time.sleep(1)
    assert org["s4"].stat(address("s4")) == N
