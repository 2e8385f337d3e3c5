"""The seed's broken server: its organization verbs are gone (here: unregistered by
configuration). The others detect it and say why, keep mailing each other, and senders to its
users get a report naming that server and the reason when the mail expires. A routing
configuration that would loop gives 5.4.6, not a loop."""

from __future__ import annotations

import orgs
from helpers import make_message, parse_ndr, poll, smtp_send
from orgs import address, host

EXPIRY = {"queue.expiry": "8s", "queue.delay_notification": "7s"}


def test_a_server_without_its_org_verbs_is_detected_and_named_in_the_ndr(make_server):
    org = orgs.standard(make_server, settings=EXPIRY)
    # s4 loses X-ORG-AUTH (and so every org verb it gates): the seed's reinstalled IIS.
    org["s4"].stop()
    org["s4"].configure({"smtp.disabled_extensions": ["X-ORG-AUTH"]})
    org["s4"].start()
    c = org["s4"].raw_smtp()
    assert not any(e.startswith("X-ORG") for e in c.extensions), c.extensions
    c.close()
    # Its group peer notices, and every other server learns why.
    def s4_down(r):
        s = next(x for x in r["servers"] if x["name"] == host("s4"))
        return s["state"] == "DOWN" and "does not offer X-ORG-AUTH" in (s["why"] or "")
    org.wait_state(["s1", "s2", "s3"], s4_down, 20, "s4 DOWN for want of X-ORG-AUTH")
    # The rest keep mailing each other.
    with org["s1"].smtp() as s:
        smtp_send(s, address("s1"), [address("s3")], make_message("still flowing", sender=address("s1"),
                                                                  to=address("s3")))
        smtp_send(s, address("s1"), [address("s4")],
                  make_message("to the broken one", sender=address("s1"), to=address("s4"),
                               message_id="broken@org.test"),
                  rcpt_options=["NOTIFY=FAILURE"])
    org["s3"].wait_for_mail(address("s3"), 1, timeout=20)
    # The mail for s4 waits where it can go no further, saying why, then fails and is reported.
    got = org["s1"].wait_for_mail(address("s1"), 1, timeout=40)
    ndr = parse_ndr(got[0])
    assert host("s4") in ndr.human and "X-ORG-AUTH" in ndr.human, ndr.human
    r = ndr.per_recipient[0]
    assert r["Action"] == "failed" and r["Status"].startswith("5."), dict(r)
    t = org["s1"].cli("track", "--org", "--message-id", "broken@org.test", "--json").stdout
    assert "does not offer X-ORG-AUTH" in t
    assert org["s4"].stat(address("s4")) == 0


def test_a_routing_loop_gives_5_4_6(make_server):
    # A misconfiguration that loops: the SMTP connector to the outside sends through a smart
    # host that is s1 itself, and s1 lets loopback clients relay. Each pass adds a Received
    # header; the hop limit stops it with 5.4.6, and the sender is told.
    org = orgs.standard(make_server, per_server={"s1": {"smtp.trusted_networks": ["127.0.0.1/32"]}})
    org["s1"].cli("org", "connector", "add", "out", "--smtp", "--address-space", "*", "--cost", "1",
                  "--bridgehead", host("s2"), "--smart-host", f"127.0.0.1:{org['s1'].smtp_port}")
    org.wait_agree()
    e = org.explain("s1", "someone@outside.test")
    assert e["route"]["connectors"] == ["out"] and e["route"]["next_hop"]["server"] == host("s2"), e
    with org["s1"].smtp() as s:
        smtp_send(s, address("s1"), ["someone@outside.test"],
                  make_message("loop", sender=address("s1"), to="someone@outside.test",
                               message_id="loop@org.test"),
                  rcpt_options=["NOTIFY=FAILURE"])
    got = org["s1"].wait_for_mail(address("s1"), 1, timeout=60)
    ndr = parse_ndr(got[0])
    assert ndr.per_recipient[0]["Status"] == "5.4.6", dict(ndr.per_recipient[0])
    assert "Received" in ndr.human or "hops" in ndr.human, ndr.human
    # And it stopped: no copy is still going round.
    poll(lambda: not any(q["messages"] for n in ("s1", "s2") for q in org[n].queues().values()
                         if q["queue"] != "dsn"), 30, "the loop to stop")
