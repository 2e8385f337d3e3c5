"""The command line and the configuration file: refusals that name the file, key and reason;
`serve` on an empty directory; directory administration while the server runs; clean stop."""

from __future__ import annotations

import json
import os
import smtplib
import poplib
import re
import shutil
import signal
import socket
import subprocess

import pytest

from helpers import (BIN, CLI_TIMEOUT, PASSWORD, Mailroom, RawSMTP, check_copy, make_message, poll, port_is_free,
                     smtp_send, subject_of)

SENDER = "sender@example.org"


def serve_once(data) -> subprocess.CompletedProcess:
    """`serve` that is expected to refuse to start (killed after a timeout if it does start)."""
    return subprocess.run([BIN, "--data", str(data), "serve"], capture_output=True, text=True,
                          timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("settings, key, reason", [
    ({"smtp.bogus_key": 5}, "smtp.bogus_key", "unknown field"),
    ({"bogus.thing": 1}, "bogus", "unknown field"),
    ({"pop3.max_auth_failure": 3}, "pop3.max_auth_failure", "unknown field"),
    ({"smtp.max_recipients": 0}, "smtp.max_recipients", "at least 1"),
    ({"smtp.max_recipients": "many"}, "smtp.max_recipients", "invalid type"),
    ({"pop3.auth_failure_delay": "soon"}, "pop3.auth_failure_delay", ""),
    ({"smtp.listen": ["nowhere"]}, "smtp.listen", "invalid socket address"),
    ({"server.hostname": "bad host"}, "server.hostname", "not a valid host name"),
    ({"server.bogus": 1}, "server.bogus", "unknown field"),
], ids=["unknown-key", "unknown-section", "typo", "zero", "type", "duration", "address", "hostname",
        "server-key"])
def test_bad_config_refuses_to_start_and_says_where(make_server, settings, key, reason):
    server = make_server(settings, start=False)
    p = serve_once(server.data)
    assert p.returncode != 0
    m = re.search(rf"mailroom\.toml: {re.escape(key)}(\[\d+\])?: (.*)", p.stderr)
    assert m, p.stderr
    assert reason in m.group(2), p.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.smtp_port), timeout=1).close()


def test_serve_on_an_empty_directory_writes_a_config_for_localhost(tmp_path):
    if not (port_is_free(2525) and port_is_free(2110)):
        pytest.skip("the default ports 2525/2110 are in use on this machine")
    server = Mailroom(tmp_path, domain="localhost", hostname="localhost")
    server.smtp_port, server.pop3_port = 2525, 2110
    assert not server.data.exists()
    try:
        try:
            server.start()
        except RuntimeError:
            if "cannot listen" in server.log():
                pytest.skip("another process took the default ports 2525/2110")
            raise
        text = server.config_path.read_text()
        assert 'domains = ["localhost"]' in text and 'hostname = "localhost"' in text
        assert '"127.0.0.1:2525"' in text and '"127.0.0.1:2110"' in text
        alice = server.add_user("alice@localhost")
        message = make_message("default config", to=alice)
        with server.smtp() as s:
            qid = smtp_send(s, SENDER, [alice], message)
        [copy] = server.wait_for_mail(alice, 1)
        check_copy(copy, sender=SENDER, rcpt=alice, original=message, queue_id=qid, hostname="localhost")
        assert "postmaster@localhost" in [u["address"] for u in server.users()]
    finally:
        assert server.stop() == 0
    assert "no configuration found" in server.log()
    assert "created the mailbox postmaster@localhost" in server.log()


def test_user_add_for_a_foreign_domain_fails_clearly(server):
    p = server.cli("user", "add", "bob@other.example", "--password-stdin", input="pw\n", check=False)
    assert p.returncode != 0
    assert "other.example" in p.stderr and "not a local domain" in p.stderr, p.stderr
    p = server.cli("alias", "add", "team@other.example", f"x@{server.domain}", check=False)
    assert p.returncode != 0 and "not a local domain" in p.stderr, p.stderr
    # Only the postmaster mailbox that `init` created.
    assert [u["address"] for u in server.users()] == [f"postmaster@{server.domain}"]
    # And for the record: a local user is fine, a second time is not.
    server.add_user("bob")
    p = server.cli("user", "add", f"bob@{server.domain}", "--password-stdin", input="pw\n", check=False)
    assert p.returncode != 0
    assert sorted(u["address"] for u in server.users()) == [f"bob@{server.domain}", f"postmaster@{server.domain}"]


def test_directory_changes_apply_while_the_server_runs(server):
    alice = server.add_user("alice", quota=5000)
    with server.smtp() as s:
        s.ehlo()
        s.mail(SENDER)
        assert s.rcpt(f"late@{server.domain}")[0] == 550
        late = server.add_user("late")
        s.rset()
        smtp_send(s, SENDER, [late, alice], make_message("for the newcomer"))
    server.wait_for_mail(late, 1)
    # A new password works at once, the old one no longer.
    server.cli("user", "passwd", alice, "--password-stdin", input="new-" + PASSWORD + "\n")
    server.passwords[alice] = "new-" + PASSWORD
    assert server.stat(alice) == 1
    with pytest.raises(poplib.error_proto):
        server.pop3(alice, password=PASSWORD)
    # Quota and user list.
    server.cli("user", "quota", alice, "none")
    [entry] = [u for u in server.users() if u["address"] == alice]
    assert entry["quota"] is None and entry["messages"] == 1 and entry["used"] > 0
    # Deleting a user with mail needs --purge; afterwards the address is unknown.
    assert server.cli("user", "del", alice, check=False).returncode != 0
    server.cli("user", "del", alice, "--purge")
    with server.smtp() as s:
        s.ehlo()
        s.mail(SENDER)
        assert s.rcpt(alice)[0] == 550
    # Aliases and lists, with JSON listings.
    server.add_alias("team", late)
    server.add_list("crew", late, f"team@{server.domain}")
    aliases = json.loads(server.cli("alias", "list", "--json").stdout)
    lists = json.loads(server.cli("list", "list", "--json").stdout)
    assert aliases == [{"address": f"root@{server.domain}", "members": [f"postmaster@{server.domain}"]},
                       {"address": f"team@{server.domain}", "members": [late]}]
    assert lists == [{"address": f"crew@{server.domain}", "members": [late, f"team@{server.domain}"]}]


def test_list_loops_are_detected(server):
    bob = server.add_user("bob")
    a, b = f"loop-a@{server.domain}", f"loop-b@{server.domain}"
    server.add_list(a, b)
    server.add_list(b, a)
    server.add_list("mixed", a, bob)
    with server.raw_smtp() as c:
        assert c.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        r = c.cmd(f"RCPT TO:<{a}>")
        assert (r.code, r.enhanced) == (550, "5.4.6"), r
        r = c.cmd(f"RCPT TO:<mixed@{server.domain}>")
        assert r.code == 250, "a loop beside a real member is cut; the member still gets the message"
        r = c.data(make_message("through a loop"))
        assert r.code == 250, r
    [copy] = server.wait_for_mail(bob, 1)
    assert b"through a loop" in copy


def test_sigterm_stops_cleanly(server):
    alice = server.add_user("alice")
    c = RawSMTP(server.smtp_port)
    c.ehlo()
    with server.smtp() as s:
        smtp_send(s, SENDER, [alice], make_message("before the stop"))
    server.wait_for_mail(alice, 1)
    server.proc.send_signal(signal.SIGTERM)
    r = c.reply()  # the idle session is told
    assert (r.code, r.enhanced) == (421, "4.3.2"), r
    c.close()
    assert server.proc.wait(15) == 0
    poll(lambda: not _accepts(server.smtp_port), 5, "the listener to close")
    assert server.stop() == 0
    server.start()
    assert server.stat(alice) == 1


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_init_does_not_overwrite(server):
    p = server.cli("init", "--domain", "other.example", check=False)
    assert p.returncode != 0 and "already exists" in p.stderr, p.stderr
    assert f'domains = ["{server.domain}"]' in server.config_path.read_text()


def test_init_provisions_the_postmaster_mailbox(server):
    """RFC 5321 §4.5.1: postmaster, in any case, and the bare <Postmaster>, reach a mailbox that
    `init` created; an administrator gives it a password and reads it over POP3."""
    postmaster = f"postmaster@{server.domain}"
    [entry] = [u for u in server.users() if u["address"] == postmaster]
    assert entry["messages"] == 0
    with server.smtp() as s:
        smtp_send(s, SENDER, [f"PostMaster@{server.domain.upper()}"], make_message("to the postmaster"))
    with RawSMTP(server.smtp_port) as raw:
        raw.ehlo()
        assert raw.cmd(f"MAIL FROM:<{SENDER}>").code == 250
        assert raw.cmd("RCPT TO:<Postmaster>").code == 250
        assert raw.data(make_message("bare postmaster")).code == 250
    # Nobody can read it until it has a password.
    with pytest.raises(poplib.error_proto):
        server.pop3(postmaster, password="")
    server.cli("user", "passwd", postmaster, "--password-stdin", input=PASSWORD + "\n")
    server.passwords[postmaster] = PASSWORD
    [one, two] = server.wait_for_mail(postmaster, 2)
    assert {subject_of(one), subject_of(two)} == {"to the postmaster", "bare postmaster"}
    # `init --force` on a server that has one leaves it as it is.
    server.cli("init", "--domain", server.domain, "--hostname", server.hostname, "--force",
               "--smtp", f"127.0.0.1:{server.smtp_port}", "--pop3", f"127.0.0.1:{server.pop3_port}")
    assert server.stat(postmaster) == 2


def test_a_data_directory_that_cannot_be_locked_is_refused(make_server):
    """Issue 21: a lock error other than "already running" started the server without its lock
    on the data directory, so a second server could deliver the same mail again."""
    server = make_server(start=False)
    (server.data / "mailroom.lock").mkdir()
    p = server.refused_start()
    assert p.returncode != 0, p.stderr
    assert "cannot be locked" in p.stderr and "mailroom.lock" in p.stderr, p.stderr


@pytest.mark.parametrize("args", [["track", "--sender", SENDER], ["queue", "list"], ["user", "list"],
                                  ["config", "history"], ["doctor"], ["status"]],
                         ids=["track", "queue", "user", "config", "doctor", "status"])
def test_a_reader_that_goes_away_ends_the_command_quietly(server, args):
    """Issue 21: `mailroom track … | head -1` panicked on the broken pipe (exit 101 and a
    backtrace). Standard output here is a pipe whose reader is already gone."""
    server.add_user("alice")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as s:
        smtp_send(s, SENDER, [f"alice@{server.domain}"], make_message("pipe"))
    read, write = os.pipe()
    os.close(read)
    try:
        p = subprocess.run([BIN, "--data", str(server.data), *args], stdout=write, stderr=subprocess.PIPE,
                           text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    finally:
        os.close(write)
    assert "panicked" not in p.stderr and "Broken pipe" not in p.stderr, p.stderr
    assert p.returncode == 0, (p.returncode, p.stderr)


def test_man_pages_and_completions_are_generated_from_the_command_line(tmp_path):
    """`mailroom man DIR` writes a page per command that man renders; `mailroom completion
    SHELL` prints a script that the shell accepts (issue 22)."""
    out = subprocess.run([BIN, "man", str(tmp_path)], capture_output=True, text=True,
                         timeout=CLI_TIMEOUT)
    assert out.returncode == 0, out.stderr
    pages = {p.name for p in tmp_path.iterdir()}
    for page in ("mailroom.1", "mailroom-sendmail.1", "mailroom-queue.1", "mailroom-queue-show.1",
                 "mailroom-config-show.1"):
        assert page in pages, sorted(pages)
    text = (tmp_path / "mailroom-queue-show.1").read_text()
    assert text.startswith(".ie \\n(.g .ds Aq") or ".TH" in text, text[:200]
    assert "\\-\\-quarantined" in text
    if shutil.which("groff"):
        r = subprocess.run(["groff", "-k", "-man", "-Tutf8", "-ww", str(tmp_path / "mailroom.1")],
                           capture_output=True, text=True, timeout=CLI_TIMEOUT)
        assert r.returncode == 0 and "sendmail" in r.stdout and not r.stderr, r.stderr
    for shell, check in (("bash", ["bash", "-n"]), ("zsh", ["zsh", "-n"]), ("fish", ["fish", "-n"])):
        script = subprocess.run([BIN, "completion", shell], capture_output=True, text=True,
                                timeout=CLI_TIMEOUT)
        assert script.returncode == 0 and "sendmail" in script.stdout, script.stderr
        if shutil.which(check[0]):
            f = tmp_path / f"completion.{shell}"
            f.write_text(script.stdout)
            r = subprocess.run([*check, str(f)], capture_output=True, text=True, timeout=CLI_TIMEOUT)
            assert r.returncode == 0, r.stderr


def test_config_show_prints_the_configuration_in_effect(make_server):
    """`config show` as postconf: every key with defaults; `--non-default` as postconf -n."""
    server = make_server({"smtp.max_recipients": 7}, start=False)
    full = server.cli("config", "show").stdout.splitlines()
    assert "smtp.max_recipients = 7" in full
    assert "queue.expiry = \"2days\"" in full or any(l.startswith("queue.expiry = ") for l in full)
    assert len(full) > 100
    changed = server.cli("config", "show", "--non-default").stdout.splitlines()
    assert "smtp.max_recipients = 7" in changed
    assert f"server.hostname = \"{server.hostname}\"" in changed
    assert not any(l.startswith("queue.expiry") for l in changed), changed
