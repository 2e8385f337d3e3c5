"""TLS on every listener, authenticated submission, and what a server on the internet must refuse:
STARTTLS (RFC 3207), STLS (RFC 2595), implicit TLS (RFC 8314), SMTP AUTH (RFC 4954), the relay
battery on every listener, spoofed senders, password guessing and the STARTTLS injection
(CVE-2011-0411). Driven with Python's smtplib/poplib/ssl, swaks, msmtp, fetchmail and
`openssl s_client`, against the self-signed certificate that `mailroom init` made, trusted
explicitly."""

from __future__ import annotations

import base64
import poplib
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from helpers import DOMAIN, HOSTNAME, PASSWORD, RawSMTP, make_message, subject_of

OUTSIDE = "someone@peer.example.org"


def need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed (scripts/test installs it)"
    return path


@pytest.fixture
def mx(make_server, make_peer):
    """A server whose outbound mail goes to a third-party peer, with alice and bob."""
    peer = make_peer()
    server = make_server({"outbound.smart_host": f"127.0.0.1:{peer.port}",
                          "smtp.max_errors": 50})
    server.peer = peer
    server.alice = server.add_user("alice")
    server.bob = server.add_user("bob")
    return server


def plain(user: str, password: str = PASSWORD) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def submission(server, *, tls: bool = True, login: str | None = None) -> RawSMTP:
    """A session on the STARTTLS submission port: EHLO, STARTTLS and EHLO again, AUTH PLAIN."""
    c = RawSMTP(server.submission_port)
    c.ehlo()
    if tls:
        c.starttls(server.tls_context(), HOSTNAME)
        c.ehlo()
    if login:
        r = c.cmd(f"AUTH PLAIN {plain(login)}")
        assert (r.code, r.enhanced) == (235, "2.7.0"), r
    return c


def test_auth_is_refused_before_starttls_and_accepted_after(mx):
    with RawSMTP(mx.submission_port) as c:
        c.ehlo()
        assert "STARTTLS" in c.extensions and "AUTH" not in c.extensions, c.extensions
        r = c.cmd(f"AUTH PLAIN {plain(mx.alice)}")
        assert (r.code, r.enhanced) == (538, "5.7.11"), r
        r = c.cmd(f"MAIL FROM:<{mx.alice}>")
        assert (r.code, r.enhanced) == (530, "5.7.0"), r
        c.starttls(mx.tls_context(), HOSTNAME)
        r = c.ehlo()
        assert "AUTH SCRAM-SHA-256 PLAIN LOGIN" in r.lines and "STARTTLS" not in c.extensions, r
        r = c.cmd(f"MAIL FROM:<{mx.alice}>")
        assert (r.code, r.enhanced) == (530, "5.7.0") and "Authentication required" in r.text, r
        r = c.cmd(f"AUTH PLAIN {plain(mx.alice, 'wrong')}")
        assert (r.code, r.enhanced) == (535, "5.7.8"), r
        r = c.cmd(f"AUTH PLAIN {plain(mx.alice)}")
        assert (r.code, r.enhanced) == (235, "2.7.0"), r
        # Logged in, alice relays to the outside and sends to bob here.
        r = c.transaction(mx.alice, [OUTSIDE, mx.bob],
                          make_message("submitted", sender=mx.alice, to=OUTSIDE))
        assert r.code == 250, r
    [out] = mx.peer.wait_for(1)
    assert out.rcpt_tos == [OUTSIDE]
    [copy] = mx.wait_for_mail(mx.bob, 1)
    received = copy.split(b"\r\n\r\n")[0].decode()
    assert "with ESMTPSA\r\n\t(TLSv1.3 with cipher TLS13_" in received, received
    events = mx.wait_track(1019, recipient=mx.bob)
    assert "TLSv1.3 with cipher" in events[0]["detail"], events
    assert f"authenticated as {mx.alice}" in events[0]["detail"], events


def test_smtplib_submits_over_starttls_and_over_implicit_tls(mx):
    with smtplib.SMTP("127.0.0.1", mx.submission_port, timeout=10) as s:
        s.starttls(context=mx.tls_context())
        s.login(mx.alice, PASSWORD)
        s.sendmail(mx.alice, [mx.bob], make_message("starttls", sender=mx.alice, to=mx.bob))
    ctx = mx.tls_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with smtplib.SMTP_SSL("127.0.0.1", mx.submissions_port, timeout=10, context=ctx) as s:
        s.ehlo()
        assert "auth" in s.esmtp_features and "starttls" not in s.esmtp_features, s.esmtp_features
        s.login(mx.alice, PASSWORD)
        s.sendmail(mx.alice, [mx.bob], make_message("implicit", sender=mx.alice, to=mx.bob))
    copies = mx.wait_for_mail(mx.bob, 2)
    assert sorted(subject_of(c) for c in copies) == ["implicit", "starttls"]


def test_swaks_submits_with_tls_and_auth_and_cannot_auth_without_tls(mx):
    swaks = need("swaks")
    common = [swaks, "--server", "127.0.0.1", "--auth", "PLAIN", "--auth-user", mx.alice,
              "--auth-password", PASSWORD, "--from", mx.alice, "--to", mx.bob,
              "--h-From", mx.alice, "--h-Subject", "swaks"]
    tls = ["--tls-verify", "--tls-ca-path", str(mx.certificate)]
    p = subprocess.run(common + ["--port", str(mx.submission_port), "--tls"] + tls,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "235 2.7.0" in p.stdout and "queued as" in p.stdout, p.stdout
    p = subprocess.run(common + ["--port", str(mx.submissions_port), "--tlsc"] + tls,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    # Without TLS the server offers no AUTH at all, so swaks cannot send the password.
    p = subprocess.run(common + ["--port", str(mx.submission_port)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "did not advertise authentication" in p.stderr, p.stdout
    assert len(mx.wait_for_mail(mx.bob, 2)) == 2


def test_a_spoofed_sender_is_refused(mx):
    mx.add_alias("alice.a", mx.alice)
    team = mx.add_list("team", mx.alice, mx.bob)
    with submission(mx, login=mx.alice) as c:
        for sender in (mx.bob, team, "ceo@peer.example.org"):
            r = c.cmd(f"MAIL FROM:<{sender}>")
            assert (r.code, r.enhanced) == (553, "5.7.1"), (sender, r)
            assert f"not an address of {mx.alice}" in r.text, r
        # Her own alias is hers.
        assert c.cmd(f"MAIL FROM:<alice.a@{DOMAIN}>").code == 250
        assert c.cmd(f"RCPT TO:<{mx.bob}>").code == 250
        r = c.data(make_message("spoof", sender=mx.bob, to=mx.bob))
        assert (r.code, r.enhanced) == (553, "5.7.1") and "From: address" in r.text, r
        # Two From fields, the forged one first (what mail programs show): refused too.
        assert c.cmd(f"MAIL FROM:<{mx.alice}>").code == 250
        assert c.cmd(f"RCPT TO:<{mx.bob}>").code == 250
        r = c.data(f"From: {mx.bob}\r\n".encode() + make_message("two froms", sender=mx.alice))
        assert (r.code, r.enhanced) == (553, "5.7.1") and "exactly one From" in r.text, r
        r = c.transaction(mx.alice, [mx.bob], make_message("honest", sender=f"alice.a@{DOMAIN}"))
        assert r.code == 250, r
    [copy] = mx.wait_for_mail(mx.bob, 1)
    assert subject_of(copy) == "honest"


def test_repeated_bad_passwords_are_slowed_then_locked_out(make_server):
    server = make_server({"submission.auth_failure_delay": "200ms",
                          "submission.max_auth_failure_delay": "800ms",
                          "submission.max_auth_failures_per_ip": 4,
                          "submission.max_auth_failures_per_account": 6,
                          "submission.max_auth_failures": 10,
                          "pop3.max_auth_failures_per_ip": 4})
    alice = server.add_user("alice")
    pauses = []
    with submission(server) as c:
        for _ in range(4):
            start = time.monotonic()
            r = c.cmd(f"AUTH PLAIN {plain(alice, 'guess')}")
            pauses.append(time.monotonic() - start)
            assert (r.code, r.enhanced) == (535, "5.7.8"), r
        # Locked out: even the right password is not checked now.
        r = c.cmd(f"AUTH PLAIN {plain(alice)}")
        assert (r.code, r.enhanced) == (454, "4.7.0") and "from your address" in r.text, r
    assert pauses[0] >= 0.2 and pauses[1] >= 0.4 and pauses[2] >= 0.8 and pauses[3] >= 0.8, pauses
    assert pauses[3] < 2.5, f"the pause stops growing at its ceiling: {pauses}"
    # Another address may still try, but the account itself locks after 6 failures in all.
    with RawSMTP(server.submission_port, source="127.0.0.2") as c:
        c.ehlo()
        c.starttls(server.tls_context(), HOSTNAME)
        c.ehlo()
        for _ in range(2):
            assert c.cmd(f"AUTH PLAIN {plain(alice, 'guess')}").code == 535
    with RawSMTP(server.submission_port, source="127.0.0.3") as c:
        c.ehlo()
        c.starttls(server.tls_context(), HOSTNAME)
        c.ehlo()
        r = c.cmd(f"AUTH PLAIN {plain(alice)}")
        assert (r.code, r.enhanced) == (454, "4.7.0") and "for this account" in r.text, r
        # Another account from this address is not affected.
        bob = server.add_user("bob")
        assert c.cmd(f"AUTH PLAIN {plain(bob)}").code == 235
    # The count is the server's, not the protocol's: POP3 from the first address is locked out
    # too (under [pop3]'s own limit, which the submission failures reach).
    p = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    p.user(alice)
    with pytest.raises(poplib.error_proto, match="too many failed logins from your address"):
        p.pass_(PASSWORD)
    log = server.log(whole=True)
    assert PASSWORD not in log and "guess" not in log, "no password in the log"


RELAY_BATTERY = [
    "user@other.example",
    f"user%other.example@{DOMAIN}",
    f'"user@other.example"@{DOMAIN}',
    f"user@other.example@{DOMAIN}",
    f"other.example!user@{DOMAIN}",
    f"@{DOMAIN}:user@other.example",
    "user%other.example@[127.0.0.1]",
    "user@[127.0.0.1]",
    f"user@{DOMAIN}.other.example",
    f'"user%other.example"@{DOMAIN}',
]
TRICKS = [r for r in RELAY_BATTERY if DOMAIN in r.split(":")[0].rsplit("@", 1)[-1]
          and not r.startswith("@") and ".other." not in r]


@pytest.mark.parametrize("listener", ["smtp", "submission", "submissions"])
def test_the_relay_battery_is_refused_on_every_listener(mx, listener):
    """Unauthenticated, nothing leaves for another domain; authenticated, the tricks that hide a
    foreign address in a local one are still refused. Nothing reaches the outside peer."""
    user = mx.add_user("user")
    if listener == "smtp":
        c = RawSMTP(mx.smtp_port)
        c.ehlo()
        refused = RELAY_BATTERY
    else:
        if listener == "submission":
            c = submission(mx, login=user)
        else:
            c = RawSMTP(mx.submissions_port, context=mx.tls_context())
            c.ehlo()
            assert c.cmd(f"AUTH PLAIN {plain(user)}").code == 235
        refused = TRICKS
    with c:
        for rcpt in refused:
            assert c.cmd(f"MAIL FROM:<{user}>").code == 250
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            assert r.code in (501, 550, 554) and r.enhanced.startswith("5."), (rcpt, r)
            assert c.cmd("RSET").code == 250
    # Unauthenticated on submission: not even MAIL.
    with submission(mx) as c:
        r = c.cmd(f"MAIL FROM:<{user}>")
        assert (r.code, r.enhanced) == (530, "5.7.0"), r
    time.sleep(0.5)
    assert mx.peer.received == [], "nothing was relayed"


def test_a_pipelined_starttls_injection_has_no_effect(mx):
    with RawSMTP(mx.submission_port) as c:
        c.ehlo()
        # The MAIL and RCPT after STARTTLS would run "under TLS" if they were kept.
        c.send(f"STARTTLS\r\nMAIL FROM:<{mx.alice}>\r\nRCPT TO:<{OUTSIDE}>\r\n".encode())
        r = c.reply()
        assert (r.code, r.enhanced) == (554, "5.5.0") and "discarded" in r.text, r
        r = c.cmd("NOOP")
        assert r.code == 250, f"the injected commands got no reply: {r}"
        # The session is still in clear, and a clean STARTTLS works.
        c.starttls(mx.tls_context(), HOSTNAME)
        c.ehlo()
    with RawSMTP(mx.smtp_port) as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")
        assert c.reply().code == 554
        assert c.cmd("NOOP").code == 250
    s = socket.create_connection(("127.0.0.1", mx.pop3_port), timeout=10)
    try:
        assert s.recv(512).startswith(b"+OK")
        s.sendall(f"STLS\r\nUSER {mx.alice}\r\nPASS {PASSWORD}\r\n".encode())
        time.sleep(0.3)
        got = s.recv(4096)
        assert got.startswith(b"-ERR commands sent after STLS were discarded"), got
        assert got.count(b"\r\n") == 1, f"USER and PASS were not answered: {got!r}"
    finally:
        s.close()
    time.sleep(0.3)
    assert mx.peer.received == []


def msmtprc(mx, tmp_path, auth: str):
    """An msmtp configuration for alice on the STARTTLS submission port, trusting the server's
    certificate explicitly, with `auth AUTH` (`on`: msmtp picks the mechanism)."""
    rc = tmp_path / "msmtprc"
    rc.write_text(f"""account default
host 127.0.0.1
port {mx.submission_port}
tls on
tls_starttls on
tls_trust_file {mx.certificate}
tls_host_override {HOSTNAME}
auth {auth}
user {mx.alice}
password {PASSWORD}
from {mx.alice}
""")
    rc.chmod(0o600)
    return rc


def test_msmtp_submits_over_starttls_with_auth(mx, tmp_path):
    msmtp = need("msmtp")
    rc = msmtprc(mx, tmp_path, "on")
    message = make_message("via msmtp", sender=mx.alice, to=mx.bob)
    p = subprocess.run([msmtp, "-C", str(rc), mx.bob], input=message, capture_output=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    [copy] = mx.wait_for_mail(mx.bob, 1)
    assert subject_of(copy) == "via msmtp"
    assert b"with ESMTPSA\r\n\t(TLSv1.3 with cipher" in copy


def scram_login(c: RawSMTP, user: str, password: str = PASSWORD):
    """AUTH SCRAM-SHA-256 driven by scramp (an independent client): the last reply, and
    whether the server proved that it holds the user's secret."""
    from scramp import ScramClient
    client = ScramClient(["SCRAM-SHA-256"], user, password)
    r = c.cmd("AUTH SCRAM-SHA-256 " + base64.b64encode(client.get_client_first().encode()).decode())
    assert r.code == 334, r
    client.set_server_first(base64.b64decode(r.text).decode())
    r = c.cmd(base64.b64encode(client.get_client_final().encode()).decode())
    if r.code != 334:
        return r, False
    client.set_server_final(base64.b64decode(r.text).decode())  # raises unless it verifies
    return c.cmd(""), True


def test_scram_sha_256_logs_in_without_sending_the_password(mx, tmp_path):
    with submission(mx) as c:
        assert "AUTH SCRAM-SHA-256 PLAIN LOGIN" in c.ehlo().lines
        r, _ = scram_login(c, mx.alice, "wrong")
        assert (r.code, r.enhanced) == (535, "5.7.8"), r
        r, proved = scram_login(c, "nobody")
        assert r.code == 535 and not proved, r
        r, proved = scram_login(c, mx.alice)
        assert (r.code, r.enhanced) == (235, "2.7.0") and proved, r
        r = c.transaction(mx.alice, [mx.bob], make_message("scram", sender=mx.alice, to=mx.bob))
        assert r.code == 250, r
    assert any(f"user={mx.alice} mechanism=SCRAM-SHA-256" in line
               for line in mx.log(whole=True).splitlines()), "the log names the mechanism"
    # A password set before mailroom knew SCRAM: SCRAM fails until one PLAIN login makes the
    # secret, then works.
    mx.stop()
    assert mx.sql("UPDATE users SET password = substr(password, 1, instr(password, ' ') - 1) "
                  "WHERE address = ?", mx.bob) == 1
    mx.start()
    from doctors import doctor, finding, findings
    _, report = doctor(mx)
    assert finding(report, "users-without-scram")["evidence"] == [mx.bob], report
    with submission(mx) as c:
        r, _ = scram_login(c, mx.bob)
        assert r.code == 535, r
        assert c.cmd(f"AUTH PLAIN {plain(mx.bob)}").code == 235
    assert not findings(doctor(mx)[1], "users-without-scram"), "the PLAIN login made the secret"
    with submission(mx) as c:
        r, proved = scram_login(c, mx.bob)
        assert r.code == 235 and proved, r
    # msmtp (GNU SASL) with the mechanism named.
    rc = msmtprc(mx, tmp_path, "scram-sha-256")
    p = subprocess.run([need("msmtp"), "-C", str(rc), mx.bob],
                       input=make_message("via msmtp, scram", sender=mx.alice, to=mx.bob),
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode()
    subjects = {subject_of(m) for m in mx.wait_for_mail(mx.bob, 2)}
    assert subjects == {"scram", "via msmtp, scram"}, subjects
    # POP3 takes SCRAM-SHA-256 too (RFC 5034 AUTH; poplib sends the lines, scramp computes).
    from scramp import ScramClient
    p = poplib.POP3("127.0.0.1", mx.pop3_port, timeout=10)
    assert p.capa()["SASL"] == ["SCRAM-SHA-256", "PLAIN"]
    client = ScramClient(["SCRAM-SHA-256"], mx.bob, PASSWORD)
    r = p._shortcmd("AUTH SCRAM-SHA-256 " + base64.b64encode(client.get_client_first().encode())
                    .decode())
    client.set_server_first(base64.b64decode(r[2:]).decode())
    r = p._shortcmd(base64.b64encode(client.get_client_final().encode()).decode())
    client.set_server_final(base64.b64decode(r[2:]).decode())
    r = p._shortcmd("")
    assert r.startswith(b"+OK maildrop has 2"), r
    p.quit()


def test_fetchmail_retrieves_over_pop3_with_stls(mx, tmp_path):
    fetchmail = need("fetchmail")
    with smtplib.SMTP("127.0.0.1", mx.smtp_port, timeout=10) as s:
        s.sendmail("x@peer.example.org", [mx.bob], make_message("for fetchmail", to=mx.bob))
    mx.wait_for_mail(mx.bob, 1)
    out = tmp_path / "fetched.mbox"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f"""poll 127.0.0.1 service {mx.pop3_port} protocol pop3 timeout 10
  user "{mx.bob}" password "{PASSWORD}" is "bob" here
  sslproto "TLS1.2+" sslcertck sslcertfile "{mx.certificate}" sslcommonname "{HOSTNAME}"
  mda "/bin/sh -c 'cat >> {out}'"
""")
    rc.chmod(0o600)
    p = subprocess.run([fetchmail, "-v", "-f", str(rc), "--idfile", str(tmp_path / "ids"),
                        "--nosyslog"], capture_output=True, text=True, timeout=60,
                       env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stdout + p.stderr
    log = p.stdout + p.stderr
    assert "POP3> STLS" in log and "upgrade to TLS succeeded" in log, log
    assert "POP3> USER" in log.split("upgrade to TLS succeeded")[1], "the password came after TLS"
    assert b"Subject: for fetchmail" in out.read_bytes()
    assert mx.stat(mx.bob) == 0, "fetchmail deleted what it fetched"


def test_pop3_passwords_need_tls_off_loopback_and_pop3s_works(mx):
    ctx = mx.tls_context()
    p = poplib.POP3("127.0.0.1", mx.pop3_port, timeout=10)
    assert "STLS" in p.capa() and "USER" in p.capa(), "from loopback USER is offered in clear"
    p.stls(context=ctx)
    p.user(mx.alice)
    assert p.pass_(PASSWORD).startswith(b"+OK")
    p.quit()
    p = poplib.POP3_SSL("127.0.0.1", mx.pop3s_port, timeout=10, context=ctx)
    assert "STLS" not in p.capa()
    p.user(mx.alice)
    assert p.pass_(PASSWORD).startswith(b"+OK")
    p.quit()
    mx.stop()
    mx.configure({"pop3.plaintext_login": "never"})
    mx.start()
    p = poplib.POP3("127.0.0.1", mx.pop3_port, timeout=10)
    with pytest.raises(poplib.error_proto, match="Plaintext authentication disallowed"):
        p.user(mx.alice)
    p.stls(context=ctx)
    p.user(mx.alice)
    assert p.pass_(PASSWORD).startswith(b"+OK")
    p.quit()


@pytest.mark.parametrize("where", ["smtp", "submission", "submissions", "pop3", "pop3s"])
def test_openssl_negotiates_tls_1_2_and_1_3_only(mx, where):
    openssl = need("openssl")
    port = {"smtp": mx.smtp_port, "submission": mx.submission_port,
            "submissions": mx.submissions_port, "pop3": mx.pop3_port,
            "pop3s": mx.pop3s_port}[where]
    starttls = {"smtp": ["-starttls", "smtp"], "submission": ["-starttls", "smtp"],
                "pop3": ["-starttls", "pop3"]}.get(where, [])

    def handshake(version: str) -> str:
        # SECLEVEL=0 lets this client offer the old versions: a refusal is the server's.
        p = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", *starttls,
                            f"-{version}", "-cipher", "DEFAULT@SECLEVEL=0",
                            "-CAfile", str(mx.certificate), "-verify_return_error",
                            "-verify_hostname", HOSTNAME],
                           input="QUIT\r\n", capture_output=True, text=True, timeout=30)
        return p.stdout + p.stderr

    for version, name in (("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")):
        out = handshake(version)
        assert f"New, {name}, Cipher is" in out and "Verify return code: 0 (ok)" in out, out
    for version in ("tls1", "tls1_1"):
        out = handshake(version)
        assert "Cipher is (NONE)" in out and "alert handshake failure" in out, out


def peer_tls_context(tmp_path) -> ssl.SSLContext:
    """A certificate for the outside peer (self-signed: opportunistic TLS does not verify)."""
    cert, key = tmp_path / "peer.pem", tmp_path / "peer.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=peer.example.org", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def test_outbound_mail_uses_starttls_when_offered_and_tracking_says_so(make_server, make_peer,
                                                                        tmp_path):
    tls_peer = make_peer(tls_context=peer_tls_context(tmp_path))
    server = make_server({"outbound.smart_host": f"127.0.0.1:{tls_peer.port}",
                          "smtp.trusted_networks": ["127.0.0.1/32"]})
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.sendmail("a@example.org", [OUTSIDE], make_message("over tls", to=OUTSIDE))
    [got] = tls_peer.wait_for(1)
    assert got.tls.startswith("TLSv1."), got
    events = server.wait_track(1031, recipient=OUTSIDE)
    assert "over TLSv1.3 with cipher" in events[-1]["detail"], events

    # A peer without STARTTLS gets the mail in clear, and tracking says why.
    plain_peer = make_peer()
    server.stop()
    server.configure({"outbound.smart_host": f"127.0.0.1:{plain_peer.port}"})
    server.start()
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as s:
        s.sendmail("a@example.org", [OUTSIDE], make_message("in clear", to=OUTSIDE))
    [got] = plain_peer.wait_for(1)
    assert got.tls == ""
    events = server.wait_track(1031, count=2, recipient=OUTSIDE)
    assert any("without TLS (STARTTLS not offered)" in (e["detail"] or "") for e in events), events


def test_clients_by_ip_address_do_not_flood_the_log(mx):
    """Issue 21: a client that sends its IP address as the TLS server name (many do when told
    to connect to an address) logged a rustls "Illegal SNI" warning each time, a third of the
    log. Ten such connections now leave no warning; the handshake works as before."""
    openssl = need("openssl")
    for _ in range(10):
        p = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{mx.submissions_port}",
                            "-servername", "127.0.0.1", "-CAfile", str(mx.certificate)],
                           input="QUIT\r\n", capture_output=True, text=True, timeout=30)
        assert "Cipher is TLS_" in p.stdout, p.stdout + p.stderr
    log = mx.log()
    assert "Illegal SNI" not in log and "WARN" not in log, log[-2000:]
