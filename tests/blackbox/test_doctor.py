"""The fault-injection suite of `doctor` and `repair` on one server (the organization's faults
are in test_doctor_org.py). Each fault is injected into a running server; doctor must report it
with the right code, the evidence and the fix; repair, where it can, restores the flow of mail,
shown by a message that then arrives, and leaves the mailboxes' checksum as it was."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from doctors import checksums, doctor, finding, findings, repair, service, status, wait_healthy
from helpers import BIN, Mailroom, make_message, poll, smtp_send

SENDER = "sender@example.org"

FAST = {"supervisor.restart_interval": "300ms", "queue.poll_interval": "200ms"}


@pytest.fixture
def mx(make_server) -> Mailroom:
    m = make_server(settings=FAST)
    m.alice = m.add_user("alice")
    m.cli("config", "backup")
    with m.smtp() as s:
        smtp_send(s, SENDER, [m.alice], make_message("before the fault", to=m.alice))
    m.wait_for_mail(m.alice, 1)
    return m


def mail_arrives(m: Mailroom, subject: str, count: int) -> None:
    with m.smtp() as s:
        smtp_send(s, SENDER, [m.alice], make_message(subject, to=m.alice))
    m.wait_for_mail(m.alice, count)


def test_a_healthy_server_has_no_finding_above_info(mx):
    report = wait_healthy(mx)
    assert all(f["severity"] == "info" for f in report["findings"]), report
    s = status(mx)
    assert {x["name"]: x["state"] for x in s["services"]} == {
        n: "running" for n in ("queue-manager", "routing-engine", "local-delivery", "smtp-send",
                               "link-state", "smtp-receive", "submission", "pop3", "imap")}
    assert s["config_file"] == "applied"
    out = repair(mx)
    assert out["changed"] == [], out


def test_smtp_extensions_removed_from_the_registrations(mx):
    before = checksums(mx)
    mx.cli("config", "set", "smtp.extensions", '["SIZE", "PIPELINING"]')
    c = mx.raw_smtp()
    assert "DSN" not in c.extensions and "CHUNKING" not in c.extensions, c.extensions
    c.close()
    rc, report = doctor(mx)
    assert rc == 1
    f = finding(report, "ehlo-missing-verbs")
    assert "8BITMIME" in f["summary"] and "DSN" in f["summary"], f
    assert any("advertised: SIZE PIPELINING" in e for e in f["evidence"]), f
    assert f["fix"] == "mailroom repair"
    assert finding(report, "extension-unregistered")["fix"] == "mailroom repair"
    out = repair(mx)
    assert any("registered again: 8BITMIME" in c for c in out["changed"]), out
    c = mx.raw_smtp()
    assert {"DSN", "CHUNKING", "8BITMIME"} <= set(c.extensions), c.extensions
    c.close()
    mail_arrives(mx, "after the repair", 2)
    assert out["before"]["mailboxes"] == before["mailboxes"]
    wait_healthy(mx)
    assert repair(mx)["changed"] == [], "a second repair changes nothing"


def test_the_routing_engine_disabled(mx, make_peer):
    peer = make_peer()
    mx.configure({"outbound.smart_host": f"127.0.0.1:{peer.port}", "smtp.trusted_networks": ["127.0.0.1/32"]})
    mx.restart()
    mx.cli("config", "set", "services.routing-engine.enabled", "false")
    poll(lambda: service(mx, "routing-engine")["state"] == "stopped", 10, "routing-engine stopped")
    with mx.smtp() as s:
        smtp_send(s, SENDER, ["far@remote.example"], make_message("outbound", to="far@remote.example"))
    rc, report = doctor(mx)
    f = finding(report, "service-disabled")
    assert rc == 1 and f["severity"] == "error" and "routing-engine" in f["summary"], f
    assert f["fix"] == "mailroom config set services.routing-engine.enabled true"
    # Local mail needs no route; the outbound message waits, untouched.
    mail_arrives(mx, "local still flows", 2)
    assert peer.received == [], "nothing is routed while the routing engine is stopped"
    out = repair(mx)
    assert any("enabled the routing-engine service" in c for c in out["changed"]), out
    poll(lambda: len(peer.received) == 1, 10, "the waiting message to go out")
    wait_healthy(mx)


def test_a_service_defined_to_run_in_something_that_does_not_implement_it(mx, make_peer):
    peer = make_peer()
    mx.configure({"outbound.smart_host": f"127.0.0.1:{peer.port}", "smtp.trusted_networks": ["127.0.0.1/32"]})
    mx.restart()
    mx.cli("config", "set", "services.routing-engine.runs", "smtp-receive")
    s = service(mx, "routing-engine")
    assert s["state"] == "failed" and "does not implement routing-engine" in s["reason"], s
    assert "1083" in s["reason"]
    with mx.smtp() as c:
        smtp_send(c, SENDER, ["far@remote.example"], make_message("outbound", to="far@remote.example"))
    _, report = doctor(mx)
    f = finding(report, "service-definition")
    assert "routing-engine" in f["summary"] and "smtp-receive" in f["evidence"][0], f
    assert f["fix"] == "mailroom repair"
    assert not findings(report, "service-failed"), "one finding per cause"
    out = repair(mx)
    assert any("runs in routing-engine again" in c for c in out["changed"]), out
    poll(lambda: len(peer.received) == 1, 10, "the waiting message to go out")
    assert service(mx, "routing-engine")["state"] == "running"
    wait_healthy(mx)


def test_a_port_already_taken(make_server):
    m = make_server(settings=FAST, start=False)
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", m.smtp_port))
    holder.listen(1)
    try:
        m.spawn()
        poll(lambda: m.cli("status", check=False).returncode == 0, 15, "the server to answer status")
        s = service(m, "smtp-receive")
        assert s["state"] == "failed" and "in use" in s["reason"], s
        assert f"held by pid {os.getpid()} (" in s["reason"], s
        assert service(m, "pop3")["state"] == "running", "the other services run"
        _, report = doctor(m)
        f = finding(report, "port-in-use")
        assert f["severity"] == "error" and "smtp.listen" in f["fix"], f
        assert any(f"127.0.0.1:{m.smtp_port}" in e for e in f["evidence"]), f
        out = repair(m)
        assert out["changed"] == [], "repair cannot free a port, and says it changed nothing"
    finally:
        holder.close()
    # Freed: the supervisor's next try starts the service; mail flows.
    poll(lambda: service(m, "smtp-receive")["state"] == "running", 10, "smtp-receive to start")
    alice = m.add_user("alice")
    with m.smtp() as c:
        smtp_send(c, SENDER, [alice], make_message("the port is free", to=alice))
    m.wait_for_mail(alice, 1)
    m.cli("config", "backup")
    wait_healthy(m)


def test_a_second_server_on_one_data_directory_refuses_to_start(mx):
    p = subprocess.run([BIN, "--data", str(mx.data), "serve"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "already running" in p.stderr, p.stderr
    mail_arrives(mx, "the first one is unharmed", 2)


def test_a_legacy_key_and_a_retired_component(mx):
    text = mx.config_path.read_text()
    text = text.replace("[queue]\n", "[queue]\nscan_interval = \"30s\"\n")
    text += "\n[services.imc]\nenabled = true\nruns = \"imc\"\n"
    mx.config_path.write_text(text)
    mx.cli("config", "reload")
    _, report = doctor(mx)
    f = finding(report, "config-legacy-key")
    assert "queue.scan_interval" in f["summary"] and f["fix"] == "mailroom config unset queue.scan_interval", f
    r = finding(report, "config-retired-service")
    assert "imc" in r["summary"] and "MSExchangeIMC" in r["why"], r
    before = checksums(mx)
    out = repair(mx)
    said = "\n".join(out["changed"])
    assert "legacy key queue.scan_interval" in said and "retired component imc" in said, said
    assert out["after"] == before
    assert "scan_interval" not in mx.config_path.read_text()
    mail_arrives(mx, "after the repair", 2)
    wait_healthy(mx)


def test_the_config_file_corrupted(mx):
    good = mx.config_path.read_text()
    mx.config_path.write_bytes(good.encode()[: len(good) // 2] + b"\n[smtp\x00garbage")
    p = mx.cli("config", "reload", check=False)
    assert p.returncode != 0 and "unchanged" in p.stderr, p.stderr
    mail_arrives(mx, "the running server keeps its version", 2)
    _, report = doctor(mx)
    f = finding(report, "config-invalid")
    assert f["fix"].startswith("mailroom repair") and "mailroom.toml" in f["evidence"][0], f
    out = repair(mx)
    assert any("put back the configuration file from version" in c for c in out["changed"]), out
    assert mx.config_path.read_text() == good
    mx.restart()
    mail_arrives(mx, "after a restart", 3)
    wait_healthy(mx)


def test_the_config_changed_outside_mailroom(mx):
    text = mx.config_path.read_text()
    mx.config_path.write_text(text.replace("max_recipients = 100", "max_recipients = 7"))
    _, report = doctor(mx)
    f = finding(report, "config-changed-outside")
    assert any("smtp.max_recipients: 100 -> 7" in e for e in f["evidence"]), f
    assert f["fix"].startswith("mailroom config reload"), f
    assert status(mx)["config_file"] == "changed (not reloaded)"
    mx.cli("config", "reload")
    history = json.loads(mx.cli("config", "history", "--json").stdout)
    assert history[-1]["origin"] == "file (config reload)", history[-1]
    assert history[-1]["changes"] == [{"key": "smtp.max_recipients", "old": "100", "new": "7"}]
    assert mx.cli("config", "get", "smtp.max_recipients").stdout.strip() == "7"
    wait_healthy(mx)
    # And it can be undone.
    mx.cli("config", "rollback", str(history[-2]["version"]))
    assert mx.cli("config", "get", "smtp.max_recipients").stdout.strip() == "100"


def test_a_data_directory_deleted(mx):
    import shutil
    shutil.rmtree(mx.data / "spool")
    _, report = doctor(mx)
    f = finding(report, "data-dir-missing")
    assert "spool" in f["summary"] and f["fix"] == "mailroom repair", f
    out = repair(mx)
    assert any("made the missing directory" in c for c in out["changed"]), out
    big = make_message("a large one", body="x" * 200 + "\r\n" * 1, to=mx.alice)
    big = big + (b"y" * 998 + b"\r\n") * 300
    with mx.smtp() as s:
        smtp_send(s, SENDER, [mx.alice], big)
    mx.wait_for_mail(mx.alice, 2)
    wait_healthy(mx)


def test_dns_where_configured_the_name_resolves_and_the_mx_points_here(make_server, make_dns):
    from peers import zone
    wrong = make_dns({"example.test": zone("example.test", "@ IN MX 10 mx.elsewhere.example.")})
    m = make_server(settings={**FAST, "dns.nameservers": [wrong.address]})
    _, report = doctor(m)
    h = finding(report, "dns-hostname")
    assert "mx.example.test" in h["summary"], h
    x = finding(report, "dns-mx")
    assert "mx.elsewhere.example" in x["evidence"][0] and "example.test" in x["summary"], x
    right = make_dns({"example.test": zone("example.test", "@ IN MX 10 mx.example.test.",
                                           "mx IN A 127.0.0.1")})
    m.stop()
    m.configure({"dns.nameservers": [right.address]})
    m.start()
    _, report = doctor(m)
    assert not findings(report, "dns-hostname") and not findings(report, "dns-mx"), report


def test_doctor_and_repair_make_nothing_where_there_is_no_store(tmp_path):
    data = tmp_path / "data"
    subprocess.run([BIN, "--data", str(data), "init", "--domain", "example.test"], check=True,
                   capture_output=True, timeout=30)
    (data / "mailroom.db").unlink()
    for ext in ("-wal", "-shm"):
        (data / f"mailroom.db{ext}").unlink(missing_ok=True)
    p = subprocess.run([BIN, "--data", str(data), "doctor", "--json"], capture_output=True, text=True, timeout=30)
    report = json.loads(p.stdout)
    assert p.returncode == 1 and "the file does not exist" in finding(report, "store-unreadable")["evidence"][0], report
    p = subprocess.run([BIN, "--data", str(data), "repair"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "does not make one" in p.stderr, p.stderr
    assert not (data / "mailroom.db").exists(), "doctor and repair only look"


def test_moving_a_listener_to_a_taken_address_keeps_the_old_one(mx):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = holder.getsockname()[1]
    try:
        mx.cli("config", "set", "smtp.listen", f'["127.0.0.1:{taken}"]')
        s = service(mx, "smtp-receive")
        assert s["state"] == "failed" and f"still listening on 127.0.0.1:{mx.smtp_port}" in s["reason"], s
        mail_arrives(mx, "still on the old address", 2)
    finally:
        holder.close()
    # Freed: the next try moves it.
    poll(lambda: service(mx, "smtp-receive")["state"] == "running", 10, "the listener to move")
    assert service(mx, "smtp-receive")["listen"] == [f"127.0.0.1:{taken}"]


def test_one_listener_taken_leaves_the_others_serving(make_server):
    """Issue 21: one listener that could not bind (the POP3S port taken) took the service's
    other listeners down with it. POP3 on its plain port serves; status and doctor name the
    address that failed and its key; once freed, the supervisor binds it."""
    m = make_server(settings=FAST, start=False)
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", m.pop3s_port))
    holder.listen(1)
    try:
        m.start()
        s = service(m, "pop3")
        assert s["state"] == "degraded", s
        assert f"cannot listen on 127.0.0.1:{m.pop3s_port}" in s["reason"], s
        assert s["listen"] == [f"127.0.0.1:{m.pop3_port}"], s
        alice = m.add_user("alice")
        import poplib
        p = poplib.POP3("127.0.0.1", m.pop3_port, timeout=10)
        assert p.getwelcome().startswith(b"+OK")
        p.quit()
        _, report = doctor(m)
        f = finding(report, "port-in-use")
        assert "pop3.tls_listen" in f["fix"] and "one of its addresses" in f["summary"], f
    finally:
        holder.close()
    poll(lambda: service(m, "pop3")["state"] == "running", 10, "pop3s to be bound")
    assert len(service(m, "pop3")["listen"]) == 2


def test_doctor_on_a_config_and_store_that_cannot_be_read_is_not_healthy(mx):
    """Issue 21: when neither the file nor any stored version of the configuration loaded,
    doctor printed "healthy" and exited 0."""
    mx.stop()
    mx.config_path.write_text("[smtp\nbroken")
    mx.sql("UPDATE config_version SET text = '[smtp' || text")
    p = mx.cli("doctor", "--json", check=False)
    report = json.loads(p.stdout)
    assert p.returncode == 1 and not report["healthy"], report
    f = finding(report, "config-invalid")
    assert f["severity"] == "error" and "neither the configuration file nor any stored version" in f["summary"], f
    assert any("stored version" in e for e in f["evidence"]), f
    # A store that is not a store at all.
    (mx.data / "mailroom.db").write_bytes(b"not a database" * 100)
    for ext in ("-wal", "-shm"):
        (mx.data / f"mailroom.db{ext}").unlink(missing_ok=True)
    p = mx.cli("doctor", "--json", check=False)
    report = json.loads(p.stdout)
    assert p.returncode == 1 and finding(report, "store-unreadable")["severity"] == "error", report


def test_doctor_only_reads(mx):
    """Issue 21: doctor migrated the store and wrote a probe file into the spool. Run on a
    stopped server's data directory, it changes no file there, and an older store is reported,
    not migrated."""
    mx.stop()

    def state():
        return {p.relative_to(mx.data): (p.stat().st_size, p.stat().st_mtime_ns)
                for p in mx.data.rglob("*") if p.is_file()}
    before = state()
    rc, report = doctor(mx)
    assert finding(report, "server-not-running")
    assert state() == before, "doctor wrote to the data directory"
    mx.sql("UPDATE meta SET value = '11' WHERE key = 'schema_version'")
    before = state()
    rc, report = doctor(mx)
    f = finding(report, "store-unreadable")
    assert "schema version is 11" in f["evidence"][0] and "migrates it" in f["evidence"][0], f
    assert state() == before
    import sqlite3
    db = sqlite3.connect(mx.data / "mailroom.db")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("11",)
    db.close()


def test_every_smtp_listener_is_probed(mx):
    """Issue 21: the EHLO probe covered smtp.listen only. Registrations lost show on the
    submission listeners too, the implicit-TLS one reached through its TLS."""
    mx.cli("config", "set", "smtp.extensions", '["SIZE", "PIPELINING", "STARTTLS", "AUTH"]')
    _, report = doctor(mx)
    probed = " ".join(e for f in findings(report, "ehlo-missing-verbs") for e in f["evidence"])
    for key, port in (("smtp.listen", mx.smtp_port), ("submission.listen", mx.submission_port),
                      ("submission.tls_listen", mx.submissions_port)):
        assert f"127.0.0.1:{port} ({key}) advertised" in probed, probed
    # The implicit-TLS one offers AUTH (under TLS), the other two STARTTLS and no AUTH.
    assert f"127.0.0.1:{mx.submissions_port} (submission.tls_listen) advertised: SIZE" in probed, probed
    repair(mx)
    wait_healthy(mx)


def test_disabled_extensions_are_a_choice_that_repair_keeps(mx):
    """Issue 21: smtp.disabled_extensions, documented as the administrator's choice, was reported
    as damage and emptied by repair. Recorded in the config store, it is information; repair
    keeps it unless asked with --reset."""
    mx.cli("config", "set", "smtp.disabled_extensions", '["DSN"]')
    c = mx.raw_smtp()
    assert "DSN" not in c.extensions, c.extensions
    c.close()
    report = wait_healthy(mx)
    f = finding(report, "extension-disabled")
    assert f["severity"] == "info" and "DSN" in f["summary"], f
    assert "set smtp.disabled_extensions" in f["evidence"][0], f
    out = repair(mx)
    assert out["changed"] == [], out
    assert mx.cli("config", "get", "smtp.disabled_extensions").stdout.strip() == '["DSN"]'
    out = json.loads(mx.cli("repair", "--json", "--reset", "smtp.disabled_extensions").stdout)
    assert out["changed"] == ["reset smtp.disabled_extensions to its default, as asked"], out
    c = mx.raw_smtp()
    assert "DSN" in c.extensions, c.extensions
    c.close()
    # Changed outside mailroom and not applied: nobody's recorded choice, damage to repair.
    text = mx.config_path.read_text()
    mx.config_path.write_text(text.replace("[smtp]\n", "[smtp]\ndisabled_extensions = [\"CHUNKING\"]\n", 1))
    out = repair(mx)
    assert any("CHUNKING" in c and "not an administrator's choice" in c for c in out["changed"]), out


def test_dns_is_checked_with_the_resolver_delivery_uses(mx):
    """Issue 21: DNS checks ran only when dns.nameservers was set. Without it doctor uses the
    system's resolver, as delivery does; this server's .test names are special-use names the
    public DNS never answers, and it says so instead of looking them up."""
    report = wait_healthy(mx)
    f = finding(report, "dns-skipped")
    assert f["severity"] == "info" and "mx.example.test" in f["summary"] and "example.test" in f["summary"], f
