"""The log as people and tools read it (issue 22, docs/logging.md): a message's whole story is
one `grep` of its queue ID (one line when it is received, one per recipient outcome), and every
failed login, on every protocol, is one line that the shipped fail2ban filter matches, while no
successful login does."""

from __future__ import annotations

import imaplib
import poplib
import re
import shutil
import smtplib
import subprocess
from pathlib import Path

import pytest

from helpers import DOMAIN, PASSWORD, free_ports, make_message, poll, queue_id_of

REPO = Path(__file__).resolve().parents[2]
FILTER = REPO / "packaging" / "fail2ban" / "filter.d" / "mailroom.conf"
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def fields(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in FIELD.findall(line)}


def story(server, queue_id: str) -> list[str]:
    return [l for l in server.log(whole=True).splitlines() if f"queue_id={queue_id}" in l]


def test_a_message_story_is_one_grep_of_its_queue_id(make_server):
    """Received once; then one line per recipient: sent (local), bounced (an alias that leads
    nowhere: 5.1.1) and deferred (a smart host that refuses connections)."""
    closed = free_ports(1)[0]
    server = make_server({"outbound.smart_host": f"127.0.0.1:{closed}",
                          "smtp.trusted_networks": ["127.0.0.0/8"]})
    server.add_user("alice")
    server.add_alias("ghost", f"nobody-here@{DOMAIN}")
    rcpts = [f"alice@{DOMAIN}", f"ghost@{DOMAIN}", "carol@elsewhere.example"]
    with server.raw_smtp() as s:
        reply = s.transaction("sender@example.org", rcpts,
                              make_message("story", sender="sender@example.org"))
    qid = queue_id_of(reply)

    def outcomes():
        lines = [fields(l) for l in story(server, qid) if " delivery " in l]
        return lines if len(lines) >= 3 else None

    done = poll(outcomes, 15, "three delivery lines")
    lines = story(server, qid)
    received = [fields(l) for l in lines if " received " in l]
    assert len(received) == 1, lines
    r = received[0]
    assert r["client_addr"] == "127.0.0.1" and r["sender"] == "<sender@example.org>", r
    assert r["nrcpt"] == "3" and int(r["size"]) > 0 and r["message_id"].startswith("<"), r
    assert r["tls"] == "none" and r["user"] == "-", r
    by = {d["recipient"]: d for d in done}
    assert by[f"<alice@{DOMAIN}>"]["status"] == "sent"
    assert by[f"<alice@{DOMAIN}>"]["relay"] == "local"
    assert by[f"<alice@{DOMAIN}>"]["dsn"] == "2.0.0"
    assert by[f"<nobody-here@{DOMAIN}>"]["status"] == "bounced"
    assert by[f"<nobody-here@{DOMAIN}>"]["dsn"].startswith("5.1.")
    assert by["<carol@elsewhere.example>"]["status"] == "deferred"
    assert by["<carol@elsewhere.example>"]["dsn"].startswith("4.")
    for d in done:
        assert float(d["delay"]) >= 0 and d["reply"], d


def fail_logins(server) -> int:
    """Wrong passwords on IMAP, POP3 and submission, with a successful login of each between;
    the number of failures."""
    failures = 0
    m = server.imap_connect()
    with pytest.raises(imaplib.IMAP4.error):
        m.login(f"alice@{DOMAIN}", "wrong")
    failures += 1
    m.logout()
    server.imap(f"alice@{DOMAIN}").logout()
    p = server.pop3_connect()
    p.user(f"alice@{DOMAIN}")
    with pytest.raises(poplib.error_proto):
        p.pass_("wrong")
    failures += 1
    p.quit()
    server.pop3(f"alice@{DOMAIN}").quit()
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.starttls(context=server.tls_context())
        s.ehlo()
        s.user, s.password = f"ghost@{DOMAIN}", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.auth("PLAIN", s.auth_plain)
        failures += 1
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as s:
        s.starttls(context=server.tls_context())
        s.login(f"alice@{DOMAIN}", PASSWORD)
    return failures


def test_every_failed_login_is_one_line_and_the_fail2ban_filter_matches_exactly_those(server):
    if shutil.which("fail2ban-regex") is None:
        pytest.fail("fail2ban-regex is missing (apt install fail2ban; scripts/test installs it)")
    server.add_user("alice")
    failures = fail_logins(server)
    log = server.log_path
    failed = [l for l in log.read_text().splitlines() if "authentication failed" in l]
    assert len(failed) == failures, failed
    protocols = sorted(fields(l)["protocol"] for l in failed)
    assert protocols == ["imap", "pop3", "submission"], failed
    assert all(fields(l)["client_addr"] == "127.0.0.1" for l in failed), failed
    out = subprocess.run(["fail2ban-regex", "--print-all-matched", str(log), str(FILTER)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    m = re.search(r"Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", out.stdout)
    assert m, out.stdout
    assert int(m.group(3)) == failures, out.stdout
    assert "127.0.0.1" in out.stdout
    section = out.stdout.split("Matched line(s):", 1)[1].split("`-", 1)[0]
    matched = [l for l in section.splitlines() if l.startswith("|  ")]
    assert len(matched) == failures, out.stdout
    assert all("authentication failed" in l for l in matched), out.stdout


@pytest.mark.parametrize("target", ["journald", "syslog"])
def test_the_log_goes_to_the_journal_or_syslog_with_its_fields(make_server, target):
    """`log.target = journald|syslog`: each line one datagram on the local socket (here one the
    test binds), with facility mail; the journal also gets each field (`QUEUE_ID=…`)."""
    import socket as so
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="mr-log-", dir="/tmp"))
    path = d / "socket"
    sock = so.socket(so.AF_UNIX, so.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        server = make_server({"log.target": target, "log.socket": str(path)})
        server.add_user("alice")
        with server.raw_smtp() as s:
            qid = queue_id_of(s.transaction("sender@example.org", [f"alice@{DOMAIN}"],
                                            make_message("to the journal")))
        seen = []
        while not any(f"received queue_id={qid}" in g for g in seen):
            seen.append(sock.recv(65536).decode())
        got = next(g for g in seen if f"received queue_id={qid}" in g)
        if target == "syslog":
            assert got.startswith("<22>mailroom["), got  # mail.info
            assert "INFO mailroom::message: received" in got
        else:
            entry = dict(l.split("=", 1) for l in got.splitlines())
            assert entry["QUEUE_ID"] == qid and entry["SENDER"] == "<sender@example.org>", entry
            assert entry["PRIORITY"] == "6" and entry["SYSLOG_FACILITY"] == "2", entry
            assert entry["SYSLOG_IDENTIFIER"] == "mailroom", entry
            assert f"received queue_id={qid}" in entry["MESSAGE"], entry
        assert "received" not in server.log(), "the lines went to standard error as well"
    finally:
        sock.close()
        shutil.rmtree(d, ignore_errors=True)


def test_json_lines_carry_the_same_fields(make_server):
    import json
    server = make_server({"log.format": "json"})
    server.add_user("alice")
    with server.raw_smtp() as s:
        qid = queue_id_of(s.transaction("sender@example.org", [f"alice@{DOMAIN}"],
                                        make_message("as json")))

    def lines():
        out = []
        for l in server.log(whole=True).splitlines():
            if l.startswith("{"):
                out.append(json.loads(l))
        return [o for o in out if o.get("queue_id") == qid] or None

    got = poll(lambda: (ls := lines()) and len(ls) >= 2 and ls, 10, "the json lines")
    received = next(o for o in got if o["message"] == "received")
    assert received["sender"] == "<sender@example.org>" and received["level"] == "INFO", received
    delivery = next(o for o in got if o["message"] == "delivery")
    assert delivery["status"] == "sent" and delivery["recipient"] == f"<alice@{DOMAIN}>", delivery
