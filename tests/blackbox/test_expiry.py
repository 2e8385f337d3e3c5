"""Delay reports and expiry: a destination that keeps saying "try later" gets a delay DSN sent
after queue.delay_notification and an expiry NDR (5.4.7) after queue.expiry, each only as the
recipient's NOTIFY asks. Both are valid RFC 3464 reports."""

from __future__ import annotations

import email.utils
import re
from datetime import timedelta

from helpers import event_ids, make_message, nospace, of_queue, parse_ndr, smtp_send
from peers import relay_settings, zone

GREYLIST = "451 4.7.0 greylisted, try later"
DELAY_S, EXPIRY_S = 1, 3

# sender -> NOTIFY (None: no NOTIFY parameter) -> reports expected: delay, expiry
CASES = {
    "alice": ("FAILURE", False, True),
    "bob": ("DELAY,FAILURE", True, True),
    "carol": ("NEVER", False, False),
    "dave": (None, True, True),
}


def test_delay_and_expiry_reports_as_notify_asks(make_server, make_peer, make_dns):
    peer = make_peer(on_rcpt=lambda address: GREYLIST)
    dns = make_dns({"example.org": zone("example.org", "@ IN MX 10 mx.example.org.", "mx IN A 127.0.0.1")})
    server = make_server(relay_settings(outbound__port=peer.port, dns__nameservers=[dns.address],
                                        queue__delay_notification=f"{DELAY_S}s", queue__expiry=f"{EXPIRY_S}s"))
    qids = {}
    with server.smtp() as s:
        for name, (notify, _, _) in CASES.items():
            sender = server.add_user(name)
            rcpt = f"{name}.friend@example.org"
            qids[name] = smtp_send(s, sender, [rcpt], make_message(f"slow mail from {name}", sender=sender, to=rcpt),
                                   rcpt_options=[f"NOTIFY={notify}"] if notify else [])

    # Every message expires: 2001 with 5.4.7 for each.
    for name, qid in qids.items():
        events = server.wait_track(2001, message_id=qid, timeout=EXPIRY_S + 8)
        [failed] = [e for e in of_queue(events, qid) if e["event_id"] == 2001]
        assert failed["status"] == "5.4.7", failed
    for name, (notify, want_delay, want_expiry) in CASES.items():
        address = f"{name}@example.test"
        rcpt = f"{name}.friend@example.org"
        reports = server.wait_for_mail(address, int(want_delay) + int(want_expiry))
        parsed = [parse_ndr(raw) for raw in reports]
        events = of_queue(server.track(message_id=qids[name]), qids[name])
        ids = event_ids(events)
        assert ids.count(2003) == int(want_delay), (name, ids)
        assert ids.count(1030) == int(want_expiry), (name, ids)
        assert ids.count(1035) >= 2, "it kept trying"
        if want_delay:
            delay = parsed.pop(0)
            check_delay_report(delay, rcpt, name)
        if want_expiry:
            [expiry] = parsed
            check_expiry_report(expiry, rcpt, name)
        if not want_expiry:
            assert 2002 in ids, "the decision not to report is tracked"


def check_common(report, rcpt: str, name: str):
    assert report.message["To"].addresses[0].addr_spec == f"{name}@example.test"
    assert f"slow mail from {name}" in report.message["Subject"]
    assert nospace(report.per_message["Reporting-MTA"]) == "dns;mx.example.test"
    [r] = report.per_recipient
    assert nospace(r["Final-Recipient"]) == f"rfc822;{rcpt}"
    assert nospace(r["Remote-MTA"]) == "dns;mx.example.org"
    assert r["Diagnostic-Code"].split(";", 1)[1].strip() == GREYLIST
    assert report.original["Subject"] == f"slow mail from {name}"
    return r


def check_delay_report(report, rcpt: str, name: str):
    r = check_common(report, rcpt, name)
    assert r["Action"].strip() == "delayed"
    assert re.fullmatch(r"4\.\d{1,3}\.\d{1,3}", r["Status"].strip()), r["Status"]
    arrival = email.utils.parsedate_to_datetime(report.per_message["Arrival-Date"])
    until = email.utils.parsedate_to_datetime(r["Will-Retry-Until"])
    assert abs(until - arrival - timedelta(seconds=EXPIRY_S)) <= timedelta(seconds=1), (arrival, until)
    assert rcpt in report.human and GREYLIST in report.human


def check_expiry_report(report, rcpt: str, name: str):
    r = check_common(report, rcpt, name)
    assert r["Action"].strip() == "failed"
    assert r["Status"].strip() == "5.4.7"
    assert r["Will-Retry-Until"] is None
    human = report.human
    assert rcpt in human
    # How long it tried, where, and the last error.
    m = re.search(r"(\d+) seconds?", human)
    assert m and EXPIRY_S <= int(m.group(1)) <= EXPIRY_S + 2, human
    assert "mx.example.org" in human
    assert GREYLIST in human
