"""Sender authentication: SPF, DKIM and DMARC of mail from outside, checked against zones served by
the loopback DNS server (mailroom-testdns) and recorded in Authentication-Results (RFC 8601); a
DMARC p=reject failure refused with 550 5.7.1. DKIM signing of mail sent from this server's
domain, with the key `mailroom dkim generate` makes, verified by an independent verifier (dkimpy).
The sending side's signatures are made by dkimpy too, with keys made by openssl.

These servers have `smtp.inside_networks = []`, so that loopback clients count as outside."""

from __future__ import annotations

import json
import subprocess

import dkim
import pytest

from helpers import DOMAIN, HOSTNAME, PASSWORD, RawSMTP, make_message, subject_of
from peers import zone

SIGNER = "news.example.org"        # signs with DKIM, SPF allows loopback, DMARC p=reject
NO_SPF = "nospf.example.org"       # SPF allows only 192.0.2.1, no DKIM, DMARC p=none
STRICT = "strict.example.org"      # SPF allows only 192.0.2.1, DMARC p=reject
QUARANTINE = "shady.example.org"   # SPF allows only 192.0.2.1, DMARC p=quarantine


def rsa_key() -> tuple[bytes, str]:
    """A private key (PKCS#1 PEM) and the p= value of its public key."""
    pem = subprocess.run(["openssl", "genrsa", "-traditional", "2048"], capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem,
                         capture_output=True, check=True).stdout
    import base64
    return pem, base64.b64encode(der).decode()


def txt(name: str, text: str) -> str:
    parts = " ".join(f'"{text[i:i + 250]}"' for i in range(0, len(text), 250))
    return f"{name} IN TXT {parts}"


@pytest.fixture(scope="module")
def signer_key():
    return rsa_key()


@pytest.fixture
def mx(make_server, make_dns, signer_key):
    _, p = signer_key
    dns = make_dns({
        SIGNER: zone(SIGNER, '@ IN TXT "v=spf1 ip4:127.0.0.1 -all"',
                     txt("s1._domainkey", f"v=DKIM1; k=rsa; p={p}"),
                     '_dmarc IN TXT "v=DMARC1; p=reject"'),
        NO_SPF: zone(NO_SPF, '@ IN TXT "v=spf1 ip4:192.0.2.1 -all"',
                     '_dmarc IN TXT "v=DMARC1; p=none"'),
        STRICT: zone(STRICT, '@ IN TXT "v=spf1 ip4:192.0.2.1 -all"',
                     '_dmarc IN TXT "v=DMARC1; p=reject"'),
        QUARANTINE: zone(QUARANTINE, '@ IN TXT "v=spf1 ip4:192.0.2.1 -all"',
                         '_dmarc IN TXT "v=DMARC1; p=quarantine"'),
        # The DMARC tree walk (RFC 9989 §4.10) asks _dmarc.example.org and _dmarc.org too: they
        # do not exist, as on the internet.
        "example.org": zone("example.org"),
        "org": zone("org"),
    })
    server = make_server({"dns.nameservers": [dns.address], "smtp.inside_networks": []})
    server.alice = server.add_user("alice")
    return server


def signed(sender: str, subject: str, key: bytes, domain: str = SIGNER) -> bytes:
    msg = make_message(subject, sender=sender, to=f"alice@{DOMAIN}")
    sig = dkim.sign(msg, b"s1", domain.encode(), key, include_headers=[b"From", b"To", b"Subject"])
    return sig + msg


def send(server, sender: str, message: bytes):
    with RawSMTP(server.smtp_port) as c:
        c.ehlo()
        assert c.cmd(f"MAIL FROM:<{sender}>").code == 250
        assert c.cmd(f"RCPT TO:<{server.alice}>").code == 250
        return c.data(message)


def auth_results(copy: bytes) -> str:
    head = copy.split(b"\r\n\r\n")[0].decode()
    fields = head.replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n")
    [ar] = [f for f in fields if f.startswith("Authentication-Results:")]
    return ar


def test_spf_dkim_and_dmarc_pass(mx, signer_key):
    r = send(mx, f"list@{SIGNER}", signed(f"list@{SIGNER}", "all pass", signer_key[0]))
    assert r.code == 250, r
    [copy] = mx.wait_for_mail(mx.alice, 1)
    ar = auth_results(copy)
    assert ar.startswith(f"Authentication-Results: {HOSTNAME};"), ar
    for want in ("spf=pass", f"smtp.mailfrom=list@{SIGNER}", "dkim=pass", f"header.i=@{SIGNER}",
                 "dmarc=pass", f"header.from={SIGNER}"):
        assert want in ar, (want, ar)
    events = mx.wait_track(1019, recipient=mx.alice)
    assert any("spf=pass dkim=pass dmarc=pass" in (e["detail"] or "") for e in events), events


def test_spf_and_dkim_failures_are_reported(mx, signer_key):
    r = send(mx, f"a@{NO_SPF}", make_message("spf fails", sender=f"a@{NO_SPF}"))
    assert r.code == 250, f"DMARC p=none: accepted ({r})"
    tampered = signed(f"list@{SIGNER}", "tampered", signer_key[0]).replace(b"Hello.", b"Hellx.")
    # SPF passes for SIGNER from loopback, so DMARC still passes on SPF; DKIM fails.
    r = send(mx, f"list@{SIGNER}", tampered)
    assert r.code == 250, r
    copies = {subject_of(c): auth_results(c) for c in mx.wait_for_mail(mx.alice, 2)}
    assert "spf=fail" in copies["spf fails"] and "dmarc=fail" in copies["spf fails"], copies
    assert "dkim=none" in copies["spf fails"], copies
    # (mail-auth reports a body that no longer matches its hash as neutral, RFC 6376 §6.1.3.)
    assert "dkim=neutral (body hash did not verify)" in copies["tampered"], copies
    assert "spf=pass" in copies["tampered"], copies


def test_a_dmarc_reject_failure_is_refused_and_monitor_mode_only_reports(mx):
    r = send(mx, f"ceo@{STRICT}", make_message("forged", sender=f"ceo@{STRICT}"))
    assert (r.code, r.enhanced) == (550, "5.7.1"), r
    assert f"DMARC check of {STRICT} (p=reject)" in r.text, r
    r = send(mx, f"x@{QUARANTINE}", make_message("shady", sender=f"x@{QUARANTINE}"))
    assert r.code == 250, r
    events = mx.wait_track(1019, recipient=mx.alice)
    assert any("quarantined by the sender domain's DMARC policy" in (e["detail"] or "")
               for e in events), events
    mx.cli("config", "set", "sender_auth.dmarc_policy", "monitor")
    r = send(mx, f"ceo@{STRICT}", make_message("forged, monitored", sender=f"ceo@{STRICT}"))
    assert r.code == 250, r
    copies = {subject_of(c): c for c in mx.wait_for_mail(mx.alice, 2)}
    assert "dmarc=fail" in auth_results(copies["forged, monitored"])


def test_an_outside_client_may_not_use_a_local_sender(mx):
    with RawSMTP(mx.smtp_port) as c:
        c.ehlo()
        r = c.cmd(f"MAIL FROM:<{mx.alice}>")
        assert (r.code, r.enhanced) == (550, "5.7.1") and "anonymous client outside" in r.text, r
    # Nor in the From: field, under an envelope sender of its own.
    r = send(mx, f"a@{NO_SPF}", make_message("as alice", sender=f"Alice <{mx.alice}>"))
    assert (r.code, r.enhanced) == (550, "5.7.1"), r
    assert f"From: address <{mx.alice}> refused" in r.text, r
    mx.cli("config", "set", "smtp.local_senders_from_outside", "accept")
    assert send(mx, f"a@{NO_SPF}", make_message("as alice", sender=mx.alice)).code == 250


def test_forged_authentication_results_naming_this_server_are_removed(mx):
    forged = [f"Authentication-Results: {HOSTNAME.upper()}; spf=pass; dkim=pass; dmarc=pass",
              f"Authentication-Results: (looks checked)\r\n {HOSTNAME};\r\n\tdmarc=pass",
              "Authentication-Results: mx.other.example; spf=pass"]
    r = send(mx, f"a@{NO_SPF}", make_message("forged results", sender=f"a@{NO_SPF}",
                                             extra_headers=forged))
    assert r.code == 250, r
    [copy] = mx.wait_for_mail(mx.alice, 1)
    head = copy.split(b"\r\n\r\n")[0].decode()
    fields = head.replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n")
    results = [f for f in fields if f.lower().startswith("authentication-results:")]
    assert len(results) == 2, results
    ours, theirs = results
    assert ours.startswith(f"Authentication-Results: {HOSTNAME};") and "spf=fail" in ours, ours
    assert theirs == "Authentication-Results: mx.other.example; spf=pass", theirs


def test_a_second_author_does_not_hide_a_spoofed_one(mx, signer_key):
    # SPF passes for SIGNER; STRICT (p=reject) is confirmed by nothing.
    msg = make_message("two authors", sender=f"list@{SIGNER}, ceo@{STRICT}")
    r = send(mx, f"list@{SIGNER}", msg)
    assert (r.code, r.enhanced) == (550, "5.7.1"), r
    assert f"DMARC check of {STRICT}" in r.text, r


def test_too_large_to_check_dkim_still_gets_dmarc_from_spf(mx, signer_key):
    mx.cli("config", "set", "sender_auth.max_verify_size", "4096")
    body = ("x" * 70 + "\r\n") * 100
    r = send(mx, f"ceo@{STRICT}", make_message("large forgery", body=body, sender=f"ceo@{STRICT}"))
    assert (r.code, r.enhanced) == (550, "5.7.1"), f"no signature could pass: enforced ({r})"
    # A signature that was not checked proves nothing: anyone can write one.
    sig = (f"DKIM-Signature: v=1; a=rsa-sha256; d={STRICT}; s=s1; h=from; bh=AAAA; "
           "b=AAAA").encode()
    msg = sig + b"\r\n" + make_message("large, signed", body=body, sender=f"ceo@{STRICT}")
    r = send(mx, f"ceo@{STRICT}", msg)
    assert (r.code, r.enhanced) == (550, "5.7.1"), r
    # SPF still passes for SIGNER: accepted, and the header says why DKIM was not checked.
    big = signed(f"list@{SIGNER}", "large, aligned SPF", signer_key[0]) + body.encode()
    assert send(mx, f"list@{SIGNER}", big).code == 250
    [copy] = mx.wait_for_mail(mx.alice, 1)
    ar = auth_results(copy)
    assert "dkim=neutral (message too large to check)" in ar and "dmarc=pass" in ar, ar


def test_a_header_section_too_long_to_check_is_refused_from_outside(mx):
    mx.cli("config", "set", "smtp.spool_threshold", "65536")
    # The From: comes after 72 KiB of other fields, out of sight of a check of the first 64.
    padding = "".join(f"X-Padding-{i}: {'p' * 60}\r\n" for i in range(1000)).encode()
    r = send(mx, f"a@{NO_SPF}", padding + make_message("long head", sender=mx.alice))
    assert (r.code, r.enhanced) == (552, "5.3.4"), r
    # A message of header fields only (no empty line, no body) is whole, and passes.
    r = send(mx, f"a@{NO_SPF}", f"From: a@{NO_SPF}\r\nSubject: head only\r\n".encode())
    assert r.code == 250, r


def test_mail_from_this_domain_is_dkim_signed_and_dkimpy_verifies_it(mx, make_peer):
    out = json.loads(mx.cli("dkim", "generate", DOMAIN, "--json").stdout)
    assert out["name"] == f"mailroom._domainkey.{DOMAIN}" and out["record"].startswith("v=DKIM1; k=rsa; p=")
    p = mx.cli("dkim", "generate", DOMAIN, check=False)
    assert p.returncode != 0 and "already exists" in p.stderr, p.stderr
    records = {f"mailroom._domainkey.{DOMAIN}.".encode(): out["record"].encode()}

    def dnsfunc(name, timeout=5):
        return records.get(name, b"")

    peer = make_peer()
    mx.stop()
    mx.configure({"outbound.smart_host": f"127.0.0.1:{peer.port}"})
    mx.start()
    bob = mx.add_user("bob")
    with RawSMTP(mx.submission_port) as c:
        c.ehlo()
        c.starttls(mx.tls_context(), HOSTNAME)
        c.ehlo()
        import base64
        assert c.cmd("AUTH PLAIN " + base64.b64encode(f"\0{mx.alice}\0{PASSWORD}".encode())
                     .decode()).code == 235
        r = c.transaction(mx.alice, ["friend@elsewhere.example", bob],
                          make_message("signed by mailroom", sender=mx.alice,
                                       to="friend@elsewhere.example"))
        assert r.code == 250, r
    [sent] = peer.wait_for(1)
    assert sent.content.startswith(b"Received: ") and b"DKIM-Signature: " in sent.content
    assert dkim.verify(sent.content, dnsfunc=dnsfunc), "dkimpy verifies the copy that left"
    [local] = mx.wait_for_mail(bob, 1)
    assert dkim.verify(local, dnsfunc=dnsfunc), "and the copy delivered here"
    assert not dkim.verify(local.replace(b"Hello.", b"Hellx."), dnsfunc=dnsfunc)
    # Mail from outside is not signed with this domain's key, even with a From: of this domain.
    mx.cli("config", "set", "smtp.local_senders_from_outside", "accept")
    r = send(mx, f"list@{NO_SPF}", make_message("not ours", sender=mx.alice))
    assert r.code == 250, r
    copies = {subject_of(c): c for c in mx.wait_for_mail(mx.alice, 1)}
    assert b"DKIM-Signature" not in copies["not ours"]
