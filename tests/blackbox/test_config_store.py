"""The config store: every change a version with its origin and diff; rollback, backup, restore
and verify; reloads that keep sessions; secrets' files private."""

from __future__ import annotations

import json
import os
import signal
import stat

from helpers import make_message, poll, smtp_send

SENDER = "sender@example.org"


def history(m) -> list[dict]:
    return json.loads(m.cli("config", "history", "--json").stdout)


def test_set_get_diff_and_rollback_make_versions(server):
    v0 = history(server)[-1]["version"]
    out = server.cli("config", "set", "smtp.max_recipients", "5").stdout
    assert "applied by the running server" in out, out
    assert server.cli("config", "get", "smtp.max_recipients").stdout.strip() == "5"
    h = history(server)
    assert h[-1]["origin"] == "set smtp.max_recipients" and h[-1]["version"] == v0 + 1
    assert h[-1]["changes"] == [{"key": "smtp.max_recipients", "old": "100", "new": "5"}]
    # Applied to new sessions at once: the sixth recipient is refused.
    users = [server.add_user(f"u{i}") for i in range(6)]
    c = server.raw_smtp()
    assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
    codes = [c.cmd(f"RCPT TO:<{u}>").code for u in users]
    assert codes[5] == 452, codes
    c.close()
    d = server.cli("config", "diff", str(v0), "current").stdout
    assert "smtp.max_recipients: 100 -> 5" in d, d
    # An invalid value is refused and nothing is written.
    text = server.config_path.read_text()
    p = server.cli("config", "set", "smtp.max_recipients", "0", check=False)
    assert p.returncode != 0 and "smtp.max_recipients" in p.stderr and "nothing was changed" in p.stderr
    assert server.config_path.read_text() == text and len(history(server)) == len(h)
    server.cli("config", "rollback", str(v0))
    assert server.cli("config", "get", "smtp.max_recipients").stdout.strip() == "100"
    assert history(server)[-1]["origin"] == f"rollback {v0}"
    # A change that the running server cannot make in place says so.
    out = server.cli("config", "set", "queue.expiry", "1d").stdout
    assert "except what needs a restart: queue.expiry" in out, out
    out = server.cli("config", "set", "pop3.auth_lockout", "1m").stdout
    assert "except what needs a restart: pop3.auth_lockout" in out, out
    s = json.loads(server.cli("status", "--json").stdout)
    assert s["restart_needed"] == ["pop3.auth_lockout", "queue.expiry"], s


def test_backups_verify_and_restore_and_every_damage_is_refused(server, tmp_path):
    good = tmp_path / "good.json"
    out = server.cli("config", "backup", str(good)).stdout
    assert "SHA-256" in out
    assert stat.S_IMODE(os.stat(good).st_mode) == 0o600, "backups are private"
    assert stat.S_IMODE(os.stat(server.config_path).st_mode) == 0o600, "so is the file"
    assert "a good backup of version" in server.cli("config", "verify", str(good)).stdout
    raw = good.read_bytes()
    damaged = {
        "truncated": (raw[: len(raw) // 2], "truncated or damaged"),
        "foreign": (b"<?xml version='1.0'?><metabase/>", "not a mailroom config backup"),
        "checksum": (raw.replace(b"max_recipients = 100", b"max_recipients = 101"), "corrupt"),
    }
    for name, (data, why) in damaged.items():
        f = tmp_path / f"{name}.json"
        f.write_bytes(data)
        for cmd in (("config", "verify", str(f)), ("config", "restore", str(f))):
            p = server.cli(*cmd, check=False)
            assert p.returncode != 0 and why in p.stderr, (name, cmd, p.stderr)
    server.cli("config", "set", "smtp.max_recipients", "9")
    before = len(history(server))
    out = server.cli("config", "restore", str(good)).stdout
    assert "restoring version" in out and "recorded version" in out, out
    assert server.cli("config", "get", "smtp.max_recipients").stdout.strip() == "100"
    h = history(server)
    assert len(h) == before + 1 and h[-1]["origin"].startswith("restore "), h[-1]
    # The restore is itself a version: it can be undone.
    server.cli("config", "rollback", str(h[-2]["version"]))
    assert server.cli("config", "get", "smtp.max_recipients").stdout.strip() == "9"
    assert server.cli("config", "verify").stdout.strip() == "the config store verifies"


def test_sighup_reloads_without_dropping_a_session(server):
    alice = server.add_user("alice")
    c = server.raw_smtp()
    assert "DSN" in c.extensions
    text = server.config_path.read_text().replace('"DSN", ', "")
    server.config_path.write_text(text)
    os.kill(server.proc.pid, signal.SIGHUP)
    poll(lambda: history(server)[-1]["origin"] == "file (SIGHUP)", 10, "the reload to be recorded")
    fresh = server.raw_smtp()
    assert "DSN" not in fresh.extensions, fresh.extensions
    fresh.close()
    # The session opened before the reload goes on.
    assert c.transaction(SENDER, [alice], make_message("across a reload", to=alice)).code == 250
    c.close()
    server.wait_for_mail(alice, 1)


def test_history_keeps_the_configured_number_of_versions(server):
    server.cli("config", "set", "config.history", "3")
    for n in range(5):
        server.cli("config", "set", "smtp.max_errors", str(20 + n))
    h = history(server)
    assert len(h) == 3 and h[-1]["changes"][0]["new"] == "24", h
    p = server.cli("config", "rollback", "1", check=False)
    assert p.returncode != 0 and "no version 1" in p.stderr, p.stderr
