"""Running under systemd (issue 22): `Type=notify` (READY=1 once every service listens,
RELOADING=1 … READY=1 around SIGHUP, STOPPING=1), and the watchdog said from the supervisor's
loop. The notification socket is one the test binds, given as systemd gives it
(`NOTIFY_SOCKET`, `WATCHDOG_USEC`)."""

from __future__ import annotations

import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest


@pytest.fixture
def notify_socket(monkeypatch):
    d = Path(tempfile.mkdtemp(prefix="mr-notify-", dir="/tmp"))
    path = d / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    yield s
    s.close()
    shutil.rmtree(d, ignore_errors=True)


def until(sock, want: str) -> list[str]:
    got = []
    while not any(want in g for g in got):
        got.append(sock.recv(4096).decode())
    return got


def test_the_server_tells_systemd_ready_reloading_stopping_and_feeds_the_watchdog(make_server,
                                                                                 notify_socket):
    server = make_server(start=False)
    server.spawn()
    first = until(notify_socket, "READY=1")
    # READY comes only when the listeners are bound: the SMTP port answers at once.
    with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=2) as c:
        assert c.recv(100).startswith(b"220 ")
    assert not any("STOPPING" in g for g in first)
    t0 = time.monotonic()
    until(notify_socket, "WATCHDOG=1")
    until(notify_socket, "WATCHDOG=1")
    assert time.monotonic() - t0 < 2.0
    server.proc.send_signal(signal.SIGHUP)
    got = until(notify_socket, "READY=1")
    reloading = [g for g in got if g.startswith("RELOADING=1")]
    assert reloading and "MONOTONIC_USEC=" in reloading[0], got
    assert got.index(reloading[0]) < max(i for i, g in enumerate(got) if "READY=1" in g)
    server.proc.send_signal(signal.SIGTERM)
    until(notify_socket, "STOPPING=1")
    assert server.proc.wait(15) == 0
