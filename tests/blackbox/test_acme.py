"""Certificates from an ACME CA (issue 22): Pebble, Let's Encrypt's test CA (Debian's `pebble`),
on loopback; mailroom gets a certificate for its name by http-01, every TLS listener serves it,
and it is renewed (a new serial) without a restart. A CA that cannot be reached is a doctor
finding (acme-failed)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from helpers import free_ports, poll


def pebble() -> str:
    p = shutil.which("pebble")
    if p is None:
        pytest.fail("pebble is missing (apt install pebble; scripts/test installs it)")
    return p


def served(port: int) -> tuple[str, str]:
    """The issuer and serial of the certificate an implicit-TLS listener presents."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-issuer", "-serial"],
                         input=der, capture_output=True, timeout=30, check=True).stdout.decode()
    fields = dict(l.split("=", 1) for l in out.strip().splitlines())
    return fields["issuer"], fields["serial"]


@pytest.fixture
def ca(tmp_path):
    """A private Pebble: its API's certificate made here; http-01 checked on the port given."""
    api, mgmt, http01, tls01 = free_ports(4)
    d = tmp_path / "pebble"
    d.mkdir()
    # A root, and the API's certificate signed by it (a self-signed CA certificate is no server
    # certificate to rustls).
    ssl_run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True, timeout=60)
    ssl_run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test root",
            "-keyout", str(d / "root.key"), "-out", str(d / "root.pem"))
    ssl_run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", str(d / "key.pem"), "-out", str(d / "api.csr"))
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                               "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    ssl_run("x509", "-req", "-in", str(d / "api.csr"), "-CA", str(d / "root.pem"),
            "-CAkey", str(d / "root.key"), "-CAcreateserial", "-days", "2",
            "-extfile", str(d / "ext.cnf"), "-out", str(d / "cert.pem"))
    (d / "config.json").write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{api}", "managementListenAddress": f"127.0.0.1:{mgmt}",
        "certificate": str(d / "cert.pem"), "privateKey": str(d / "key.pem"),
        "httpPort": http01, "tlsPort": tls01, "ocspResponderURL": "",
        "externalAccountBindingRequired": False}}))
    log = open(d / "pebble.log", "wb")
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}
    proc = subprocess.Popen([pebble(), "-config", str(d / "config.json")], stdout=log, stderr=log,
                            env=env, cwd=d)
    def listening():
        try:
            socket.create_connection(("127.0.0.1", api), timeout=1).close()
            return True
        except OSError:
            assert proc.poll() is None, (d / "pebble.log").read_text()
            return False

    poll(listening, 20, "pebble listening")
    yield {"directory": f"https://localhost:{api}/dir", "root": d / "root.pem", "http01": http01,
           "log": d / "pebble.log"}
    proc.terminate()
    proc.wait(10)


def test_a_certificate_from_pebble_is_served_by_every_tls_listener_and_renewed_without_restart(
        make_server, ca):
    server = make_server({
        "tls.acme.directory": ca["directory"],
        "tls.acme.contact": ["mailto:postmaster@localhost"],
        "tls.acme.names": ["localhost"],
        "tls.acme.http_listen": f"127.0.0.1:{ca['http01']}",
        "tls.acme.ca_certificate": str(ca["root"]),
        "tls.acme.check_interval": "1s",
        "tls.acme.renew_before": "100000days",  # (every look renews: Pebble's certificates are short)
    }, hostname="localhost", start=False)
    server.start()
    pid = server.proc.pid
    ports = [server.submissions_port, server.imaps_port, server.pop3s_port]

    def pebble_issued():
        got = [served(p) for p in ports]
        return got if all("Pebble" in issuer for issuer, _ in got) else None

    first = poll(pebble_issued, 60, "Pebble's certificate on every TLS listener")
    assert len({serial for _, serial in first}) == 1, first

    def renewed():
        got = [served(p) for p in ports]
        return got if all(s != first[0][1] and "Pebble" in i for i, s in got) else None

    poll(renewed, 60, "a renewed certificate (another serial) on every listener")
    assert server.proc.pid == pid and server.proc.poll() is None  # no restart
    doctor = server.cli("doctor", "--json", check=False)
    assert "acme-failed" not in doctor.stdout


def test_a_ca_that_cannot_be_reached_is_a_doctor_finding(make_server):
    closed = free_ports(2)
    server = make_server({
        "tls.acme.directory": f"https://localhost:{closed[0]}/dir",
        "tls.acme.names": ["localhost"],
        "tls.acme.http_listen": f"127.0.0.1:{closed[1]}",
        "tls.acme.check_interval": "1s",
    }, hostname="localhost")
    poll(lambda: (server.data / "acme" / "status.json").exists(), 20, "the ACME status")
    doctor = server.cli("doctor", "--json", check=False)
    assert doctor.returncode != 0 and "acme-failed" in doctor.stdout, doctor.stdout
