"""Outbound SMTP: mailroom relays to a real third-party SMTP server (aiosmtpd) on loopback, through
a smart host or by the MX records that mailroom-testdns serves, and keeps to what the peer
advertises (DSN, SIZE, 8BITMIME, SMTPUTF8, EHLO itself)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from helpers import (DOT_BODY, HOSTNAME, event_ids, make_message, nospace, of_queue, parse_ndr, poll, queue_id_of,
                     smtp_send)
from peers import check_relayed, relay_settings, zone

MX_ZONES = {
    # Preference order: the lower preference (primary) is listed last on purpose.
    "pref.test": zone("pref.test",
                      "@ IN MX 20 backup.pref.test.",
                      "@ IN MX 10 primary.pref.test.",
                      "primary IN A 127.0.0.2",
                      "backup IN A 127.0.0.1"),
    # mx1 (preferred) refuses connections: nothing listens on 127.0.0.3.
    "example.org": zone("example.org",
                        "@ IN MX 10 mx1.example.org.",
                        "@ IN MX 20 mx2.example.org.",
                        "mx1 IN A 127.0.0.3",
                        "mx2 IN A 127.0.0.1"),
    # No MX, only an address: the implicit MX.
    "amx.test": zone("amx.test", "@ IN A 127.0.0.1"),
    "null.test": zone("null.test", "@ IN MX 0 ."),
}


def send_with_dsn_params(server, sender: str, original: bytes) -> str:
    """MAIL with RET and ENVID; bob with NOTIFY and ORCPT, carol with no parameter."""
    with server.raw_smtp() as c:
        r = c.cmd(f"MAIL FROM:<{sender}> RET=HDRS ENVID=abc")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;x@y")
        assert r.code == 250, r
        r = c.cmd("RCPT TO:<carol@example.org>")
        assert r.code == 250, r
        r = c.data(original)
        assert r.code == 250, r
    return queue_id_of(r)


def check_dsn_params_passed_on(got, sender: str) -> None:
    assert got.mail_from == sender
    assert got.rcpt_tos == ["bob@example.org", "carol@example.org"], "one transaction for both"
    assert got.mail_param("RET") == "HDRS"
    assert got.mail_param("ENVID") == "abc"
    assert got.rcpt_param(0, "NOTIFY") == "SUCCESS,FAILURE"
    assert got.rcpt_param(0, "ORCPT") == "rfc822;x@y"
    assert got.rcpt_param(1, "NOTIFY") is None, "no NOTIFY was given for carol"
    assert got.helo == HOSTNAME


def test_smart_host_gets_the_exact_message_and_the_dsn_parameters(make_server, make_peer):
    peer = make_peer()
    server = make_server(relay_settings(peer.address))
    alice = server.add_user("alice")
    original = make_message("to the smart host", DOT_BODY, sender=alice, to="bob@example.org",
                            message_id="relay.1@client.example.org")
    qid = send_with_dsn_params(server, alice, original)

    [got] = peer.wait_for(1)
    check_relayed(got, original, qid)
    check_dsn_params_passed_on(got, alice)

    # Tracking: routed at receipt, then started and succeeded, for each recipient.
    events = of_queue(server.wait_track(1031, count=2, message_id=qid), qid)
    for rcpt in ("bob@example.org", "carol@example.org"):
        mine = [e for e in events if e["recipient"] == rcpt]
        assert event_ids(mine) == [1019, 1033, 1034, 1020, 1031], mine
        assert mine[3]["detail"] == "to 127.0.0.1 [127.0.0.1]"
        assert mine[4]["detail"] == "accepted by 127.0.0.1 without TLS (STARTTLS not offered)"
        assert mine[4]["status"].startswith("2.")
    # The peer speaks DSN, so it reports on NOTIFY=SUCCESS itself: no "relayed" report here.
    peer.stays_at(1, 0.5)
    assert 2004 not in event_ids(server.track(message_id=qid))
    assert server.stat(alice) == 0
    assert server.queue_messages(qid) == [], "the message has left the queue"


def test_mx_preference_fallback_and_implicit_mx(make_server, make_peer, make_dns):
    backup = make_peer()                                   # 127.0.0.1
    primary = make_peer(host="127.0.0.2", port=backup.port)
    dns = make_dns(MX_ZONES)
    server = make_server(relay_settings(outbound__port=backup.port, dns__nameservers=[dns.address]))
    alice = server.add_user("alice")

    # The preferred MX gets the mail while it is up.
    pref = make_message("to the primary", sender=alice, to="bob@pref.test", message_id="pref.1@client.example.org")
    with server.smtp() as s:
        qid_pref = smtp_send(s, alice, ["bob@pref.test"], pref)
    [got] = primary.wait_for(1)
    check_relayed(got, pref, qid_pref)
    assert got.rcpt_tos == ["bob@pref.test"]
    events = of_queue(server.wait_track(1031, message_id=qid_pref), qid_pref)
    assert [e["detail"] for e in events if e["event_id"] in (1020, 1031)] == \
        ["to primary.pref.test [127.0.0.2]",
         "accepted by primary.pref.test without TLS (STARTTLS not offered)"]

    # mx1 refuses the connection: the same attempt goes on to mx2, message and DSN parameters intact.
    original = make_message("by MX", DOT_BODY, sender=alice, to="bob@example.org",
                            message_id="mx.1@client.example.org")
    qid = send_with_dsn_params(server, alice, original)
    [got] = backup.wait_for(1)
    check_relayed(got, original, qid)
    check_dsn_params_passed_on(got, alice)
    events = of_queue(server.wait_track(1031, count=2, message_id=qid), qid)
    assert 1035 not in event_ids(events), "falling back to mx2 is not a retry"
    assert {e["detail"] for e in events if e["event_id"] == 1020} == {"to mx2.example.org [127.0.0.1]"}
    assert {e["detail"] for e in events if e["event_id"] == 1031} == {"accepted by mx2.example.org without TLS (STARTTLS not offered)"}

    # No MX record, an A record: delivered to that address.
    implicit = make_message("implicit MX", sender=alice, to="dan@amx.test", message_id="amx.1@client.example.org")
    with server.smtp() as s:
        qid_amx = smtp_send(s, alice, ["dan@amx.test"], implicit)
    [_, got] = backup.wait_for(2)
    check_relayed(got, implicit, qid_amx)
    assert got.rcpt_tos == ["dan@amx.test"]
    assert len(primary.received) == 1
    assert server.stat(alice) == 0, "no report of any kind"


@pytest.mark.parametrize("rcpt, status, words", [
    ("nobody@null.test", "5.1.10", "null MX"),
    ("nobody@nx.example.org", "5.1.2", "does not exist"),
], ids=["null-mx", "nxdomain"])
def test_destination_that_takes_no_mail_fails_at_once(make_server, make_peer, make_dns, rcpt, status, words):
    peer = make_peer()
    dns = make_dns(MX_ZONES)
    server = make_server(relay_settings(outbound__port=peer.port, dns__nameservers=[dns.address]))
    alice = server.add_user("alice")
    with server.smtp() as s:
        qid = smtp_send(s, alice, [rcpt], make_message("nowhere to go", sender=alice, to=rcpt))
    [raw] = server.wait_for_mail(alice, 1)
    ndr = parse_ndr(raw)
    [r] = ndr.per_recipient
    assert nospace(r["Final-Recipient"]) == f"rfc822;{rcpt}"
    assert r["Action"].strip() == "failed"
    assert r["Status"].strip() == status
    assert nospace(r["Diagnostic-Code"]).startswith(f"smtp;550{status}")
    assert words.lower() in ndr.human.lower() and rcpt in ndr.human
    events = of_queue(server.track(message_id=qid), qid)
    assert event_ids(events) == [1019, 1033, 1034, 2001, 1030]
    assert events[3]["status"] == status
    assert peer.connections == 0 and peer.received == []


def test_per_domain_smart_hosts(make_server, make_peer):
    one, two = make_peer(), make_peer()
    server = make_server(relay_settings(outbound__smart_hosts={"one.test": one.address, "two.test": two.address}))
    alice = server.add_user("alice")
    original = make_message("two ways", sender=alice, to="x@one.test, y@two.test", message_id="split.1@client.example.org")
    with server.smtp() as s:
        qid = smtp_send(s, alice, ["x@one.test", "y@two.test"], original)
    [a] = one.wait_for(1)
    [b] = two.wait_for(1)
    assert (a.rcpt_tos, b.rcpt_tos) == (["x@one.test"], ["y@two.test"])
    check_relayed(a, original, qid)
    check_relayed(b, original, qid)


def test_an_idle_connection_is_reused_up_to_max_messages_per_connection(make_server, make_peer):
    """Messages sent one after another: each finds the previous one's connection idle and uses it,
    until it has carried max_messages_per_connection."""
    peer = make_peer()
    server = make_server(relay_settings(peer.address, outbound__max_messages_per_connection=2))
    alice = server.add_user("alice")
    with server.smtp() as s:
        for i in range(5):
            smtp_send(s, alice, [f"r{i}@example.org"], make_message(f"reuse {i}", sender=alice, to=f"r{i}@example.org"))
            peer.wait_for(i + 1)
    got = peer.received
    assert [g.rcpt_tos for g in got] == [[f"r{i}@example.org"] for i in range(5)]
    assert [g.connection for g in got] == [1, 1, 2, 2, 3]
    assert peer.connections == 3


def test_a_message_waiting_for_the_only_connection_gets_it_when_it_is_free(make_server, make_peer):
    """One connection allowed to the destination. The peer holds its reply to the first message's
    text while a second message comes in; once the first is through, the second must go over the
    same connection (idle now), well before outbound.idle_timeout."""
    gate = threading.Event()
    peer = make_peer(hold_data=gate)
    server = make_server(relay_settings(peer.address, outbound__max_connections_per_domain=1,
                                        outbound__idle_timeout="30s"))
    alice = server.add_user("alice")
    try:
        with server.smtp() as s:
            smtp_send(s, alice, ["r1@example.org"], make_message("first", sender=alice, to="r1@example.org"))
            poll(lambda: peer.data_held == 1, 5, "the first message's text at the peer")
            smtp_send(s, alice, ["r2@example.org"], make_message("second", sender=alice, to="r2@example.org"))
        time.sleep(1.0)  # the second one now waits for the connection the first one holds
        gate.set()
        got = peer.wait_for(2, timeout=3)
    except AssertionError:
        server.kill9()  # stopping would take 10 s: a delivery waits for a connection slot
        raise
    assert [g.rcpt_tos for g in got] == [["r1@example.org"], ["r2@example.org"]]
    assert [g.connection for g in got] == [1, 1], "the second message used the first one's connection"


def test_helo_fallback_for_a_peer_without_ehlo(make_server, make_peer):
    peer = make_peer(ehlo=False)
    server = make_server(relay_settings(peer.address))
    alice = server.add_user("alice")
    original = make_message("plain old SMTP", DOT_BODY, sender=alice, to="bob@example.org",
                            message_id="helo.1@client.example.org")
    with server.smtp() as s:
        qid = smtp_send(s, alice, ["bob@example.org"], original, mail_options=["ENVID=e1"])
    [got] = peer.wait_for(1)
    check_relayed(got, original, qid)
    assert got.helo == HOSTNAME
    assert got.mail_params == [] and got.rcpt_params == [[]], "no extension may be used after HELO"


UTF8_RCPT = "jörg@example.org"


def eight_bit_message(sender: str) -> bytes:
    return make_message("8-bit body", "Grüße aus dem Büro.\r\n".encode(), sender=sender,
                        to="bob@example.org", message_id="8bit.1@client.example.org",
                        extra_headers=["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
                                       "Content-Transfer-Encoding: 8bit"])


def utf8_message(sender: str) -> bytes:
    return ("From: " + sender + "\r\nTo: " + UTF8_RCPT + "\r\nSubject: Grüße\r\n"
            "Message-ID: <utf8.1@client.example.org>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nHallo Jörg.\r\n").encode()


def send_raw(server, mail: str, rcpt: str, message: bytes) -> str:
    with server.raw_smtp() as c:
        r = c.cmd(mail)
        assert r.code == 250, r
        r = c.cmd(rcpt)
        assert r.code == 250, r
        r = c.data(message)
        assert r.code == 250, r
    return queue_id_of(r)


def test_size_8bitmime_and_smtputf8_are_passed_to_a_peer_that_offers_them(make_server, make_peer):
    peer = make_peer()
    server = make_server(relay_settings(peer.address))
    alice = server.add_user("alice")
    eight = eight_bit_message(alice)
    qid8 = send_raw(server, f"MAIL FROM:<{alice}> BODY=8BITMIME", "RCPT TO:<bob@example.org>", eight)
    [got] = peer.wait_for(1)
    check_relayed(got, eight, qid8)
    assert got.mail_param("BODY") == "8BITMIME"
    utf8 = utf8_message(alice)
    qidu = send_raw(server, f"MAIL FROM:<{alice}> SMTPUTF8 BODY=8BITMIME", f"RCPT TO:<{UTF8_RCPT}>", utf8)
    [_, got] = peer.wait_for(2)
    check_relayed(got, utf8, qidu, protocol="UTF8SMTP")  # RFC 6531 §4.3
    assert got.rcpt_tos == [UTF8_RCPT]
    assert got.mail_param("SMTPUTF8") == ""
    assert server.stat(alice) == 0


@pytest.mark.parametrize("case", ["size", "8bitmime", "smtputf8"])
def test_what_the_peer_cannot_take_bounces(make_server, make_peer, case):
    """Too big for the peer's SIZE: 5.3.4; 8-bit text to a peer without 8BITMIME: 5.6.3; a
    message that needs SMTPUTF8 to a peer without it: 5.6.7. Nothing reaches the peer."""
    alice_address = "alice@example.test"
    if case == "size":
        peer = make_peer(size=1000)
        mail, rcpt = f"MAIL FROM:<{alice_address}>", "RCPT TO:<bob@example.org>"
        message = make_message("too big", ("z" * 70 + "\r\n") * 30, sender=alice_address, to="bob@example.org")
        status = "5.3.4"
    elif case == "8bitmime":
        peer = make_peer(eightbitmime=False)
        mail, rcpt = f"MAIL FROM:<{alice_address}> BODY=8BITMIME", "RCPT TO:<bob@example.org>"
        message, status = eight_bit_message(alice_address), "5.6.3"
    else:
        peer = make_peer(smtputf8=False)
        mail, rcpt = f"MAIL FROM:<{alice_address}> SMTPUTF8 BODY=8BITMIME", f"RCPT TO:<{UTF8_RCPT}>"
        message, status = utf8_message(alice_address), "5.6.7"
    server = make_server(relay_settings(peer.address))
    alice = server.add_user("alice")
    qid = send_raw(server, mail, rcpt, message)
    [raw] = server.wait_for_mail(alice, 1)
    ndr = parse_ndr(raw)
    [r] = ndr.per_recipient
    assert r["Action"].strip() == "failed"
    assert r["Status"].strip() == status, r["Status"]
    events = of_queue(server.track(message_id=qid), qid)
    assert [e["status"] for e in events if e["event_id"] == 2001] == [status]
    assert 1035 not in event_ids(events), "a permanent problem is not retried"
    assert peer.received == []


def test_smart_host_applies_on_reload(make_server, make_peer):
    """Issue 21: outbound.smart_host (and the other outbound keys) applied only after a restart;
    Postfix's relayhost applies on `postfix reload`."""
    first, second = make_peer(), make_peer()
    server = make_server(relay_settings(first.address))
    alice = server.add_user("alice")
    with server.smtp() as s:
        smtp_send(s, alice, ["bob@example.org"], make_message("before", sender=alice, to="bob@example.org"))
    first.wait_for(1)
    server.cli("config", "set", "outbound.smart_host", second.address)   # (applied by the server)
    with server.smtp() as s:
        smtp_send(s, alice, ["bob@example.org"], make_message("after", sender=alice, to="bob@example.org"))
    [got] = second.wait_for(1)
    assert b"Subject: after" in got.content
    first.stays_at(1, 0.5)
    status = json.loads(server.cli("status", "--json").stdout)
    assert status["restart_needed"] == [], status
