"""Positive delivery status notifications (RFC 3461/3464) for NOTIFY=SUCCESS: "delivered" for a
local mailbox, "relayed" when the next server does not speak DSN, "expanded" for a local list
(whose members then get no success report of their own)."""

from __future__ import annotations

import re

from helpers import (HOSTNAME, check_copy, event_ids, holds, make_message, nospace, of_queue, parse_ndr,
                     queue_id_of, smtp_send)
from peers import check_relayed, relay_settings


def success_report_event(server, qid: str, recipient: str) -> dict:
    [e] = [e for e in of_queue(server.wait_track(2004, message_id=qid), qid)
           if e["event_id"] == 2004 and e["recipient"] == recipient]
    return e


def test_local_delivery_with_notify_success(server):
    alice, bob = server.add_user("alice"), server.add_user("bob")
    original = make_message("please confirm", sender=alice, to=bob)
    with server.smtp() as s:
        qid = smtp_send(s, alice, [bob], original, mail_options=["RET=HDRS", "ENVID=env-7"],
                        rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;Bob@Example.Test"])
        # Without NOTIFY only failures are reported.
        plain = smtp_send(s, alice, [bob], make_message("no news is good news", sender=alice, to=bob))
    copies = server.wait_for_mail(bob, 2)
    check_copy(copies[0], sender=alice, rcpt=bob, original=original, queue_id=qid)

    [raw] = server.wait_for_mail(alice, 1)
    dsn = parse_ndr(raw)
    assert "please confirm" in dsn.message["Subject"]
    assert dsn.per_message["Original-Envelope-Id"].strip() == "env-7"
    [r] = dsn.per_recipient
    assert r["Action"].strip() == "delivered"
    assert r["Status"].strip().startswith("2.")
    assert nospace(r["Final-Recipient"]) == f"rfc822;{bob}"
    assert nospace(r["Original-Recipient"]) == "rfc822;Bob@Example.Test"
    assert r["Diagnostic-Code"] is None or r["Diagnostic-Code"].strip().startswith("smtp;")
    assert dsn.original_type == "text/rfc822-headers"
    assert dsn.original["Subject"] == "please confirm"
    assert bob in dsn.human
    e = success_report_event(server, qid, bob)
    m = re.search(r"queued as (\S+)", e["detail"])
    assert m and dsn.message["Message-ID"].strip("<>") == f"{m.group(1)}@{HOSTNAME}"
    assert 2004 not in event_ids(server.track(message_id=plain))
    holds(lambda: server.stat(alice) == 1, 0.5, "a single report")


def test_relay_to_a_peer_without_dsn_reports_relayed(make_server, make_peer):
    peer = make_peer(dsn=False)
    server = make_server(relay_settings(peer.address))
    alice = server.add_user("alice")
    original = make_message("handed on", sender=alice, to="bob@example.org, carol@example.org",
                            message_id="relayed.1@client.example.org")
    with server.raw_smtp() as c:
        assert c.cmd(f"MAIL FROM:<{alice}> ENVID=rel-1").code == 250
        assert c.cmd("RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org").code == 250
        assert c.cmd("RCPT TO:<carol@example.org> NOTIFY=FAILURE").code == 250
        r = c.data(original)
        assert r.code == 250, r
    qid = queue_id_of(r)

    # The peer, which does not speak DSN, gets no DSN parameter.
    [got] = peer.wait_for(1)
    check_relayed(got, original, qid)
    assert got.rcpt_tos == ["bob@example.org", "carol@example.org"]
    assert got.mail_params == [] and got.rcpt_params == [[], []]

    [raw] = server.wait_for_mail(alice, 1)
    dsn = parse_ndr(raw)
    assert dsn.per_message["Original-Envelope-Id"].strip() == "rel-1"
    [r] = dsn.per_recipient  # only bob asked for SUCCESS
    assert nospace(r["Final-Recipient"]) == "rfc822;bob@example.org"
    assert nospace(r["Original-Recipient"]) == "rfc822;bob@example.org"
    assert r["Action"].strip() == "relayed"
    assert r["Status"].strip().startswith("2.")
    assert nospace(r["Remote-MTA"]) == "dns;127.0.0.1"
    assert "bob@example.org" in dsn.human and "carol@example.org" not in dsn.human
    success_report_event(server, qid, "bob@example.org")
    assert [e["recipient"] for e in server.track(message_id=qid) if e["event_id"] == 2004] == ["bob@example.org"]


def test_list_with_notify_success_reports_expanded(server):
    alice, bob, carol = server.add_user("alice"), server.add_user("bob"), server.add_user("carol")
    team = server.add_list("team", bob, carol)
    original = make_message("to the team", sender=alice, to=team)
    with server.smtp() as s:
        qid = smtp_send(s, alice, [team], original, rcpt_options=["NOTIFY=SUCCESS"])
    server.wait_for_mail(bob, 1)
    server.wait_for_mail(carol, 1)
    events = of_queue(server.wait_track(1028, count=2, message_id=qid), qid)
    assert sorted(e["recipient"] for e in events if e["event_id"] == 1028) == [bob, carol]

    [raw] = server.wait_for_mail(alice, 1)
    dsn = parse_ndr(raw)
    [r] = dsn.per_recipient
    assert nospace(r["Final-Recipient"]) == f"rfc822;{team}"
    assert r["Action"].strip() == "expanded"
    assert r["Status"].strip().startswith("2.")
    assert team in dsn.human
    success_report_event(server, qid, team)
    # The members' deliveries are not reported: the one report is all.
    assert [e["recipient"] for e in server.track(message_id=qid) if e["event_id"] == 2004] == [team]
    holds(lambda: server.stat(alice) == 1, 0.5, "a single report")
