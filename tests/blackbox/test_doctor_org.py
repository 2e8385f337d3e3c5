"""The fault-injection suite in an organization: two real servers (s1, s2 in one routing group,
alice@s1, bob@s2) joined as an operator joins them. `doctor --org` probes every server over the
organization channel, authenticated; each fault is found with its code, evidence and fix, and
repair (where it can) brings the mail back, the mailboxes' checksum unchanged."""

from __future__ import annotations

import orgs
from doctors import checksums, doctor, finding, findings, repair, wait_finding, wait_healthy
from helpers import make_message, poll, smtp_send
from orgs import address, host

FAST = {"supervisor.restart_interval": "300ms", "queue.poll_interval": "200ms"}


def pair(make_server) -> orgs.Org:
    org = orgs.build(make_server, {"G1": ["s1", "s2"]}, settings=FAST)
    org.wait_agree()
    for n in ("s1", "s2"):
        org[n].cli("config", "backup")
    return org


def send(org: orgs.Org, frm: str, to: str, subject: str) -> None:
    with org[frm].smtp() as s:
        smtp_send(s, address(frm), [address(to)], make_message(subject, sender=address(frm), to=address(to)))


def test_a_healthy_org_has_no_finding_above_info(make_server):
    org = pair(make_server)
    send(org, "s1", "s2", "hello")
    org["s2"].wait_for_mail(address("s2"), 1)
    for n in ("s1", "s2"):
        report = wait_healthy(org[n], "--org")
        assert all(f["severity"] == "info" for f in report["findings"]), report
    # The EHLO probe authenticated: with the org verbs gone from s1's own registrations the
    # probe of s1 would name them (the next test); here it names nothing.
    _, report = doctor(org["s1"], "--server", host("s2"))
    assert not findings(report, "org-peer-verbs-missing"), report


def test_a_peer_whose_org_verbs_are_missing(make_server):
    org = pair(make_server)
    send(org, "s1", "s2", "before")
    org["s2"].wait_for_mail(address("s2"), 1)
    # The seed's server: its registrations lose the organization's verbs.
    org["s2"].cli("config", "set", "smtp.disabled_extensions", '["X-ORG-AUTH"]')
    f = wait_finding(org["s1"], "org-peer-verbs-missing", "--org")
    assert f["server"] == host("s2") and "X-ORG-AUTH" in " ".join(f["evidence"]), f
    assert f["fix"] == f"mailroom repair   # on {host('s2')}", f
    down = wait_finding(org["s1"], "org-server-down", timeout=20)
    assert host("s2") in down["summary"] and "X-ORG-AUTH" in down["evidence"][0], down
    # On s2 itself: its own listener does not advertise them.
    _, own = doctor(org["s2"])
    mine = finding(own, "ehlo-missing-verbs")
    assert "X-ORG-AUTH" in mine["summary"] and mine["severity"] == "error", mine
    send(org, "s1", "s2", "while broken")
    out = repair(org["s2"])
    assert any("unregistered no longer: X-ORG-AUTH" in c for c in out["changed"]), out
    org["s2"].wait_for_mail(address("s2"), 2, timeout=30)
    wait_healthy(org["s1"], "--org", timeout=20)


def test_a_queue_stuck_on_a_dead_peer(make_server):
    org = pair(make_server)
    org["s2"].kill9()
    send(org, "s1", "s2", "to the dead one")
    f = wait_finding(org["s1"], "org-server-down", timeout=20)
    assert host("s2") in f["summary"], f
    # The message waits for it, with the last error, in the queue routing gave it.
    def stuck():
        _, r = doctor(org["s1"], "--queue-age", "1s")
        return [f for f in r["findings"] if f["code"] in ("queue-unreachable", "queue-retry", "queue-old")]
    q = poll(stuck, 20, "the stuck queue to be reported")
    assert any(f["code"] == "queue-old" for f in q), q
    assert any(any("refused" in e or "DOWN" in e for e in f["evidence"]) for f in q), q
    _, report = doctor(org["s1"], "--org")
    p = finding(report, "org-peer-unreachable")
    assert p["server"] == host("s2") and p["fix"] == f"mailroom doctor   # on {host('s2')}", p
    # Nothing to repair here (the peer is down, not broken); it comes back and the mail flows.
    assert repair(org["s1"])["changed"] == []
    org["s2"].start()
    org["s2"].wait_for_mail(address("s2"), 1, timeout=30)
    wait_healthy(org["s1"], "--org", timeout=20)


def test_this_servers_entry_lost_from_the_directory_is_put_back(make_server):
    # s5 is a relay with no users of its own, so that another administrator may remove it.
    org = orgs.build(make_server, {"G1": ["s1", "s5"]}, settings=FAST)
    org.wait_agree()
    before = checksums(org["s5"])
    org["s5"].stop()
    org["s1"].cli("org", "server", "del", host("s5"))
    org["s5"].start()
    f = wait_finding(org["s5"], "org-self-missing", timeout=20)
    assert f["fix"] == "mailroom repair" and host("s5") in f["evidence"][0], f
    out = repair(org["s5"])
    assert any("back into the organization's directory" in c for c in out["changed"]), out
    assert out["after"] == before
    org.wait_agree(timeout=20)
    assert host("s5") in [x["name"] for x in org.show("s1")["servers"]]
    with org["s5"].smtp() as c:
        smtp_send(c, "someone@org.test", [address("s1")],
                  make_message("found again", sender="someone@org.test", to=address("s1")))
    org["s1"].wait_for_mail(address("s1"), 1, timeout=30)
    assert repair(org["s5"])["changed"] == []


def test_mailflow_probes_go_there_and_back_and_name_where_they_stop(make_server):
    org = pair(make_server)
    before = {n: checksums(org[n]) for n in ("s1", "s2")}
    rc, report = doctor(org["s1"], "--mailflow")
    ok = finding(report, "mailflow-ok")
    assert rc == 0 and ok["server"] == host("s2"), report
    assert ok["summary"].startswith(f"{host('s1')} -> {host('s2')} -> {host('s1')}: "), ok
    assert "(there " in ok["summary"], ok
    assert any("probe from" in e and "answered" in e for e in ok["evidence"]), ok
    # Probes reach no mailbox, on either side.
    for n in ("s1", "s2"):
        assert checksums(org[n])["mailboxes"] == before[n]["mailboxes"], n
    # The probe mailbox takes mail from the organization's servers only, on every server (so
    # nobody can have one relayed there and consumed).
    for at, to in (("s2", "s2"), ("s1", "s2")):
        c = org[at].raw_smtp()
        assert c.cmd("MAIL FROM:<someone@outside.test>").code == 250
        r = c.cmd(f"RCPT TO:<mailroom-probe@{host(to)}>")
        assert r.code == 550 and "organization only" in r.text, (at, r)
        c.close()
    # Each server confirmed what it consumed: no shadow copy of a probe or an answer stays.
    poll(lambda: not any(q["messages"] for n in ("s1", "s2") for q in org[n].queues().values()),
         15, "the probes' shadow copies to be released")
    # Only servers of the organization are probed.
    _, report = doctor(org["s1"], "--mailflow", "--server", "mx.typo.example")
    nope = finding(report, "mailflow-failed")
    assert "not a server of the organization" in nope["summary"], nope
    # s2 cannot route the answer back: the probe is answered there and stops there.
    org["s2"].cli("config", "set", "services.routing-engine.enabled", "false")
    rc, report = doctor(org["s1"], "--mailflow", "--mailflow-timeout", "2s")
    bad = finding(report, "mailflow-failed")
    assert rc == 1 and bad["severity"] == "error", report
    assert f"stopped at {host('s2')}" in bad["summary"], bad
    assert bad["fix"].startswith("mailroom track --org --message-id mailroom-probe."), bad
    repair(org["s2"])
    rc, report = doctor(org["s1"], "--mailflow")
    assert rc == 0 and findings(report, "mailflow-ok"), report


def test_a_peer_without_a_certificate_makes_the_channel_run_in_clear(make_server):
    org = pair(make_server)
    s2 = org["s2"]
    # The channel runs over TLS: the mail s1 hands to s2 says so in s1's tracking.
    send(org, "s1", "s2", "over tls")
    s2.wait_for_mail(address("s2"), 1)
    sent = org["s1"].wait_track(1031, recipient=address("s2"))
    assert any("over TLSv1.3" in (e["detail"] or "") for e in sent), sent
    # s2 loses its certificate (a running server keeps the one it loaded; at the next start it
    # has none): it offers no STARTTLS, and mail still flows, in clear.
    for f in ("cert.pem", "key.pem"):
        (s2.data / "tls" / f).unlink()
    s2.restart()
    f = wait_finding(org["s1"], "org-peer-no-tls", "--org")
    assert f["severity"] == "warning" and host("s2") in f["summary"], f
    assert "STARTTLS not offered" in f["evidence"][0], f
    _, own = doctor(s2)
    assert finding(own, "tls-unavailable")["severity"] == "error", own
    send(org, "s1", "s2", "in clear")
    s2.wait_for_mail(address("s2"), 2)
    before = checksums(s2)
    out = repair(s2)
    assert any("self-signed certificate" in c for c in out["changed"]), out
    assert checksums(s2) == before
    wait_healthy(org["s1"], "--org")
