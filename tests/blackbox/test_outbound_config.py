"""The configuration of the queue timers, outbound SMTP and DNS: a bad value refuses the start and
the message names the file, the key and the reason."""

from __future__ import annotations

import re

import pytest

@pytest.mark.parametrize("settings, key, reason", [
    ({"queue.retry_schedule": []}, "queue.retry_schedule", "at least one"),
    ({"queue.retry_schedule": ["10m", "0s"]}, "queue.retry_schedule", "greater than zero"),
    ({"queue.retry_schedule": ["soon"]}, "queue.retry_schedule", "soon"),
    ({"queue.retry_jitter": 0.9}, "queue.retry_jitter", "between 0 and 0.5"),
    ({"queue.expiry": "0s"}, "queue.expiry", "greater than zero"),
    ({"queue.delay_notification": "3d"}, "queue.delay_notification", "shorter than queue.expiry"),
    ({"queue.poll_interval": "0s"}, "queue.poll_interval", "greater than zero"),
    ({"queue.glitch_retry": "0s"}, "queue.glitch_retry", "greater than zero"),
    ({"outbound.smart_host": "bad host:x"}, "outbound.smart_host", "host:port"),
    ({"outbound.smart_hosts": {"example.org": "nowhere:port"}}, "outbound.smart_hosts", "host:port"),
    ({"outbound.max_connections": 0}, "outbound.max_connections", "at least 1"),
    ({"outbound.max_connections_per_domain": 0}, "outbound.max_connections_per_domain", "at least 1"),
    ({"outbound.max_messages_per_connection": 0}, "outbound.max_messages_per_connection", "at least 1"),
    ({"outbound.bogus": 1}, "outbound.bogus", "unknown field"),
    ({"dns.nameservers": ["nowhere"]}, "dns.nameservers", "invalid socket address"),
], ids=["schedule-empty", "schedule-zero", "schedule-word", "jitter", "expiry", "delay-after-expiry",
        "poll-zero", "glitch-zero", "smart-host", "smart-hosts", "connections", "per-domain", "per-connection", "unknown",
        "nameserver"])
def test_bad_outbound_config_refuses_to_start_and_says_where(make_server, settings, key, reason):
    server = make_server(settings, start=False)
    p = server.refused_start()
    assert p.returncode != 0
    m = re.search(rf"mailroom\.toml: {re.escape(key)}(\[\d+\])?: (.*)", p.stderr)
    assert m, p.stderr
    assert reason in m.group(2), p.stderr
