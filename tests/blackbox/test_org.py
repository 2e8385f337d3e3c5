"""An organization of four real servers in two routing groups (see orgs.py): mail between
users homed on different servers, routing as `routing explain` says, org verbs only after org
authentication."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

import orgs
from helpers import make_message, smtp_send
from orgs import address, host


@pytest.fixture
def org(make_server):
    return orgs.standard(make_server)


def test_mail_reaches_users_on_every_other_server_and_explain_matches(org):
    sender = address("s1")
    rcpts = [address(s) for s in ("s2", "s3", "s4")]
    # The route each recipient takes from s1, as routing explain says.
    routes = {r: org.explain("s1", r)["route"] for r in rcpts}
    assert routes[address("s2")]["path"] == [host("s1"), host("s2")]
    assert routes[address("s3")]["path"] == [host("s1"), host("s2"), host("s3")]
    assert routes[address("s3")]["connectors"] == ["g1g2"]
    assert routes[address("s4")]["next_hop"]["server"] == host("s2")
    forged = [f"Authentication-Results: {host(n)}; dkim=pass; dmarc=pass" for n in ("s2", "s3", "s4")]
    msg = make_message("across the org", sender=sender, to=", ".join(rcpts), message_id="org1@org.test",
                       extra_headers=forged)
    with org["s1"].smtp() as s:
        smtp_send(s, sender, rcpts, msg)
    for name in ("s2", "s3", "s4"):
        got = org[name].wait_for_mail(address(name), 1, timeout=20)
        assert b"Subject: across the org" in got[0]
        # RFC 8601 §5: results that claim any server of the organization were removed where
        # the message came in (s1), so the home server's own claims cannot be forged.
        assert b"Authentication-Results" not in got[0], got[0]
    # Every server on the way wrote its part: s1 received and handed on (1019, 1020, 1031).
    ev = org["s1"].track(message_id="org1@org.test")
    ids = {e["event_id"] for e in ev}
    assert {1019, 1033, 1034, 1020, 1031} <= ids, ev
    # One merged history from every server, ending in a verdict per recipient.
    t = json.loads(org["s1"].cli("track", "--org", "--message-id", "org1@org.test", "--json").stdout)
    assert t["unreachable"] == []
    assert {e["server"] for e in t["events"]} == {host(s) for s in ("s1", "s2", "s3", "s4")}
    assert {1019, 1033, 1034, 1020, 1031, 1036, 1028} <= {e["event_id"] for e in t["events"]}
    verdicts = {v["recipient"]: v for v in t["verdicts"]}
    for name in ("s2", "s3", "s4"):
        assert verdicts[address(name)] == {"recipient": address(name), "verdict": "delivered",
                                           "server": host(name)}, t["verdicts"]
    text = org["s3"].cli("track", "--org", "--message-id", "org1@org.test").stdout
    assert f"{address('s4')}: delivered to its mailbox on {host('s4')}" in text, text
    # s4's copy passed s2 and s3: it says so in its Received headers.
    got = org["s4"].messages(address("s4"))[0]
    for hop in ("s1", "s2", "s3"):
        assert f"by {host(hop)}".encode() in got, got


def test_org_verbs_need_org_authentication(org):
    c = org["s1"].raw_smtp()
    assert "X-ORG-AUTH" in c.extensions and "X-LINKSTATE" not in c.extensions
    for verb in ("X-LINKSTATE DIGEST 00", "X-ORG-META eyJ9", "X-LINKSTATE FIRST YWJj"):
        r = c.cmd(verb)
        assert r.code == 530 and r.enhanced == "5.7.0", (verb, r)
    # A proof without a challenge, and a challenge for another organization.
    r = c.cmd("X-ORG-AUTH PROOF 00ff")
    assert r.code == 503, r
    r = c.cmd("X-ORG-AUTH HELLO 0000000000000000 intruder.test 00ff")
    assert r.code == 535 and r.enhanced == "5.7.8", r
    c.close()


def _token(org) -> dict:
    """The join token's content (the organization's id and secret), as `org create` printed it:
    secrets are never printed again, so the harness keeps it."""
    body = org.token.split(".", 1)[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _proof(secret: str, side: str, org_id: str, client: str, server: str, cn: str, sn: str,
           binding: str = "") -> str:
    """The proof, computed here independently; `binding` is the TLS session's tls-exporter
    (RFC 9266) in hex, empty in clear, as these probes are."""
    mac = hmac.new(bytes.fromhex(secret), digestmod=hashlib.sha256)
    for part in ("mailroom-org-auth-v2", side, org_id, client, server, cn, sn, binding):
        b = part.encode()
        mac.update(len(b).to_bytes(4, "big") + b)
    return mac.hexdigest()


def _hello(c, t: dict, client: str, cn: str):
    r = c.cmd(f"X-ORG-AUTH HELLO {t['org']} {client} {cn}")
    assert r.code == 334, r
    sn, sproof = r.lines[0].split()
    # The server proves itself first.
    assert sproof == _proof(t["secret"], "server", t["org"], client, host("s1"), cn, sn)
    return sn


def test_replayed_auth_and_bad_chunks_are_refused_harmlessly(org):
    t = _token(org)
    client, cn = "probe.org.test", "0a0b0c0d"
    c = org["s1"].raw_smtp()
    sn = _hello(c, t, client, cn)
    good = _proof(t["secret"], "client", t["org"], client, host("s1"), cn, sn)
    # A proof made for a TLS session (another binding) does not pass in this one.
    relayed = _proof(t["secret"], "client", t["org"], client, host("s1"), cn, sn, "77" * 32)
    assert c.cmd(f"X-ORG-AUTH PROOF {relayed}").code == 535
    sn = _hello(c, t, client, cn)
    good = _proof(t["secret"], "client", t["org"], client, host("s1"), cn, sn)
    r = c.cmd(f"X-ORG-AUTH PROOF {good}")
    assert r.code == 235 and r.enhanced == "2.7.0", r
    c.ehlo()
    assert {"X-LINKSTATE", "X-ORG-META", "X-ORG-TRACK"} <= c.extensions
    # Out of order, unlabelled, not base64, oversized: refused, and the session goes on.
    table = [
        ("X-LINKSTATE NEXT YWJj", 503),
        ("X-LINKSTATE LAST", 503),
        ("X-LINKSTATE MIDDLE YWJj", 501),
        ("X-LINKSTATE FIRST !!!notbase64", 501),
        ("X-LINKSTATE FIRST " + "QUFB" * 300, 501),
        ("X-ORG-META not-metadata", 501),
    ]
    for line, code in table:
        r = c.cmd(line)
        assert r.code == code, (line[:40], r)
    # A transfer that is not a state of this organization is refused whole.
    assert c.cmd("X-LINKSTATE FIRST eyJpZCI6").code == 250
    r = c.cmd("X-LINKSTATE LAST Im90aGVyIn0=")
    assert r.code == 554, r
    assert c.cmd("NOOP").code == 250
    c.close()
    # The same proof in a new session (a replay): the server's nonce is new, the proof fails.
    c = org["s1"].raw_smtp()
    _hello(c, t, client, cn)
    r = c.cmd(f"X-ORG-AUTH PROOF {good}")
    assert r.code == 535 and r.enhanced == "5.7.8", r
    assert c.cmd("X-LINKSTATE DIGEST 00").code == 530
    c.close()
    # Nothing changed: the servers still agree, and mail flows.
    org.wait_agree()


def test_user_move_takes_the_mailbox_along_nothing_lost_or_doubled(org):
    bob = address("s2")
    with org["s1"].smtp() as s:
        for i in range(2):
            smtp_send(s, address("s1"), [bob], make_message(f"before move {i}", sender=address("s1"), to=bob))
    before = org["s2"].wait_for_mail(bob, 2, timeout=20)
    # Every folder goes along, with flags, keywords and dates (IMAP).
    m = org["s2"].imap(bob)
    m.create("Projects")
    note = b"Subject: a note\r\n\r\nin a folder\r\n"
    assert m.append("Projects", "(\\Flagged $Todo)", '"01-Oct-2026 10:00:00 +0000"', note)[0] == "OK"
    m.select("INBOX")
    m.store("1", "+FLAGS", "(\\Seen)")
    m.logout()
    out = org["s2"].cli("user", "move", bob, host("s4")).stdout
    assert "3 message(s)" in out, out
    # Every server learns the new home; the old one has no mailbox for bob any more.
    org.wait_agree()
    assert all(u["address"] != bob for u in org["s2"].users())
    assert {u["address"]: u["home"] for u in org.show("s1")["users"]}[bob] == host("s4")
    # The messages are on s4, byte for byte, once; bob's password came along.
    org["s4"].passwords[bob] = org["s2"].passwords[bob]
    after = org["s4"].wait_for_mail(bob, 2, timeout=20)
    assert sorted(after) == sorted(before)
    m = org["s4"].imap(bob)
    m.select("Projects", readonly=True)
    typ, data = m.fetch("1", "(FLAGS INTERNALDATE BODY.PEEK[])")
    assert data[0][1] == note
    assert b"\\Flagged" in data[0][0] and b"$Todo" in data[0][0], data[0][0]
    assert b'INTERNALDATE "01-Oct-2026 10:00:00 +0000"' in data[0][0], data[0][0]
    m.select("INBOX", readonly=True)
    flags = [d for d in m.fetch("1:*", "(FLAGS)")[1]]
    assert sum(b"\\Seen" in f for f in flags) == 1, flags
    assert b'(\\HasNoChildren \\Sent) "/" Sent' in m.list()[1]
    m.logout()
    # New mail for bob now goes to s4, from anywhere.
    with org["s3"].smtp() as s:
        smtp_send(s, address("s3"), [bob], make_message("after move", sender=address("s3"), to=bob))
    got = org["s4"].wait_for_mail(bob, 3, timeout=20)
    assert any(b"Subject: after move" in m for m in got)
    # Run again (say after an interruption): nothing doubles.
    again = org["s2"].cli("user", "move", bob, host("s4"), check=False)
    assert again.returncode != 0 and "no mailbox here" in again.stderr, again.stderr
    assert org["s4"].stat(bob) == 3
