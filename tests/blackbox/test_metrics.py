"""Prometheus metrics (issue 22, docs/metrics.md): `/metrics` on `metrics.listen` behind a
bearer token, in the exposition format that `promtool check metrics` accepts; counters that
move by exactly the messages sent; the shipped alert rules pass `promtool check rules` and
their tests `promtool test rules`."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import DOMAIN, free_ports, make_message, poll, queue_id_of

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "packaging" / "prometheus"
TOKEN = "s3cret-scrape-token"


def promtool() -> str:
    p = shutil.which("promtool")
    if p is None:
        pytest.fail("promtool is missing (apt install prometheus; scripts/test installs it)")
    return p


def scrape(port: int, token: str | None = TOKEN) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def value(text: str, name: str, **labels) -> float:
    """A sample's value (0 when the series is not there yet)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return 0.0


@pytest.fixture
def metered(make_server):
    port = free_ports(1)[0]
    server = make_server({"metrics.listen": [f"127.0.0.1:{port}"], "metrics.token": TOKEN})
    server.metrics_port = port
    return server


def test_metrics_need_the_token_and_pass_promtool(metered):
    port = metered.metrics_port
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(port, token=None)
    assert e.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(port, token="wrong")
    assert e.value.code == 401
    text = scrape(port)
    check = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    for name in ("mailroom_messages_received_total", "mailroom_recipients_total",
                 "mailroom_smtp_data_to_reply_seconds", "mailroom_receipt_to_delivery_seconds",
                 "mailroom_outbound_transaction_seconds", "mailroom_sessions_total",
                 "mailroom_auth_failures_total", "mailroom_reports_total",
                 "mailroom_service_state", "mailroom_tls_certificate_expiry_timestamp_seconds"):
        assert f"# TYPE {name} " in text, name
    assert value(text, "mailroom_service_state", service="smtp-receive", state="running") == 1
    assert value(text, "mailroom_tls_certificate_expiry_timestamp_seconds") > 1.7e9


def test_counters_move_by_exactly_the_messages_sent(metered):
    n = 5
    metered.add_user("alice")
    before = scrape(metered.metrics_port)
    with metered.raw_smtp() as s:
        for i in range(n):
            queue_id_of(s.transaction("sender@example.org", [f"alice@{DOMAIN}"],
                                      make_message(f"counted {i}")))
        r = s.cmd("MAIL FROM:<sender@example.org>")
        assert r.code == 250
        assert s.cmd(f"RCPT TO:<nobody@{DOMAIN}>").code == 550
        s.cmd("RSET")
    m = metered.imap(f"alice@{DOMAIN}")
    m.select("INBOX")
    m.fetch("1:*", "(FLAGS)")
    m.logout()

    sent = {"status": "sent", "class": "2"}

    def moved():
        after = scrape(metered.metrics_port)
        done = value(after, "mailroom_recipients_total", **sent) - \
            value(before, "mailroom_recipients_total", **sent)
        return after if done >= n else None

    after = poll(moved, 10, "the deliveries counted")
    delta = lambda name, **l: value(after, name, **l) - value(before, name, **l)
    assert delta("mailroom_messages_received_total", listener="smtp", result="accepted") == n
    assert delta("mailroom_recipients_total", status="sent", **{"class": "2"}) == n
    assert delta("mailroom_smtp_data_to_reply_seconds_count") == n
    assert delta("mailroom_receipt_to_delivery_seconds_count") == n
    assert delta("mailroom_sessions_total", protocol="smtp") == 1
    assert delta("mailroom_sessions_total", protocol="imap") == 1
    assert delta("mailroom_imap_command_duration_seconds_count", command="FETCH") == 1
    assert value(after, "mailroom_queue_recipients", queue="local") == 0


def test_the_alert_rules_pass_promtool_and_their_tests():
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES / "mailroom-rules.yml")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0 and "SUCCESS: 7 rules found" in check.stdout, check.stdout
    test = subprocess.run([tool, "test", "rules", "mailroom-rules.test.yml"], cwd=RULES,
                          capture_output=True, text=True, timeout=60)
    assert test.returncode == 0 and "SUCCESS" in test.stdout, test.stdout + test.stderr


def test_doctor_says_when_metrics_do_not_answer(make_server):
    """A metrics port taken by something else at start: the server runs without it, and doctor
    says so (metrics-unreachable) instead of staying quiet."""
    import socket as so
    blocker = so.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        server = make_server({"metrics.listen": [f"127.0.0.1:{port}"]}, start=False)
        server.start()
        blocker.close()  # (nothing answers there now)
        doctor = server.cli("doctor", "--json", check=False)
        assert "metrics-unreachable" in doctor.stdout, doctor.stdout
        assert "metrics: cannot listen" in server.log()
    finally:
        blocker.close()
