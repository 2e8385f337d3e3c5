"""Fixtures of the black-box suite: `mailroom` servers on free ports and temporary data
directories, third-party SMTP peers and test DNS servers, always stopped at teardown. The helpers
themselves live in helpers.py and peers.py."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import BIN, DOMAIN, HOSTNAME, Mailroom  # noqa: E402
import record_corpus  # noqa: E402

if os.environ.get("MAILROOM_RECORD_CORPUS"):
    record_corpus.install(os.environ["MAILROOM_RECORD_CORPUS"])
try:
    from peers import TESTDNS, DnsServer, Peer  # noqa: E402
    MISSING = None
except ImportError as e:  # a virtualenv made before aiosmtpd was required
    MISSING = e


def pytest_sessionstart(session):
    if MISSING is not None:
        raise pytest.UsageError(
            f"{MISSING}: install tests/blackbox/requirements.txt into the virtualenv "
            f"({sys.executable} -m pip install -r tests/blackbox/requirements.txt)")
    if not os.access(BIN, os.X_OK):
        raise pytest.UsageError(
            f"mailroom binary not found at {BIN}: build it (cargo build --workspace --bins) "
            "or set MAILROOM_BIN")
    if not os.access(TESTDNS, os.X_OK):
        raise pytest.UsageError(
            f"mailroom-testdns binary not found at {TESTDNS}: build it (cargo build --workspace "
            "--bins) or set MAILROOM_TESTDNS")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture
def make_server(tmp_path, request):
    """A factory: make_server(settings={"smtp.max_recipients": 5}, start=True) returns a Mailroom
    whose mailroom.toml was written by `mailroom init` (free ports) and then edited. Every server
    made is stopped at teardown; a failed test shows the servers' logs."""
    servers: list[Mailroom] = []

    def make(settings: dict | None = None, start: bool = True, domain: str = DOMAIN,
             hostname: str = HOSTNAME) -> Mailroom:
        root = tmp_path / f"server{len(servers)}"
        root.mkdir()
        m = Mailroom(root, domain=domain, hostname=hostname).init(settings)
        servers.append(m)
        if start:
            m.start()
        return m

    yield make
    for m in servers:
        m.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for i, m in enumerate(servers):
            sys.stderr.write(f"\n----- server{i} log ({m.log_path}) -----\n{m.log()}\n")


@pytest.fixture
def server(make_server) -> Mailroom:
    """A running server with the default configuration (and a short POP3 failure delay)."""
    return make_server()


@pytest.fixture
def make_peer():
    """A factory: make_peer(start=True, **options) returns a third-party SMTP server on loopback
    (peers.Peer: aiosmtpd recording what it receives). Every peer is stopped at teardown."""
    peers: list[Peer] = []

    def make(start: bool = True, **options) -> Peer:
        p = Peer(**options)
        peers.append(p)
        if start:
            p.start()
        return p

    yield make
    for p in peers:
        p.stop()


@pytest.fixture
def make_dns(tmp_path, request):
    """A factory: make_dns({"example.org": zone_text, ...}) returns a started mailroom-testdns
    serving those zones. Stopped at teardown; a failed test shows its log."""
    servers: list[DnsServer] = []

    def make(zones: dict[str, str]) -> DnsServer:
        d = DnsServer(tmp_path / f"dns{len(servers)}", zones)
        servers.append(d)
        return d.start()

    yield make
    for d in servers:
        d.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for i, d in enumerate(servers):
            sys.stderr.write(f"\n----- dns{i} log -----\n{d.log()}\n")
