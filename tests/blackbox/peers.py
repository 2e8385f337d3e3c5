"""The other side of outbound mail: a third-party SMTP server (aiosmtpd) on loopback that records
what it receives, and `mailroom-testdns`, a real DNS server serving zone files, so that mail is
routed by MX as on the Internet. Both are started by the fixtures in conftest.py and always
stopped at teardown.

The peer is aiosmtpd's own SMTP implementation with two additions that aiosmtpd lacks: it can
advertise DSN (RFC 3461) and then accepts NOTIFY, ORCPT, RET and ENVID, recording them exactly as
sent (aiosmtpd itself refuses every RCPT parameter and upper-cases what it keeps), and its replies
to MAIL, RCPT and DATA can be scripted per test. With `dsn=False` it is a plain aiosmtpd that
does not advertise DSN and refuses its parameters with 555. Other options take away PIPELINING,
8BITMIME, SMTPUTF8 or EHLO itself, or set a SIZE limit.
"""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from helpers import HOSTNAME, REPO, Deadline, free_ports, header_fields, poll, received_re

TESTDNS = os.environ.get("MAILROOM_TESTDNS") or str(REPO / "target" / "debug" / "mailroom-testdns")

PEER_HOSTNAME = "peer.example.org"
DSN_MAIL_PARAMS = ("RET", "ENVID")
DSN_RCPT_PARAMS = ("NOTIFY", "ORCPT")


@dataclass
class Received:
    """One message as the peer took it."""
    mail_from: str
    mail_params: list[str]          # RET and ENVID as sent (case kept), then the others upper-cased
    rcpt_tos: list[str]
    rcpt_params: list[list[str]]    # the parameters of each accepted RCPT (NOTIFY, ORCPT), as sent
    content: bytes                  # the message text, dot-unstuffed, CRLF line ends
    helo: str                       # the name given in EHLO/HELO
    connection: int                 # which connection (1, 2, ...) carried it
    time: float = 0.0               # time.monotonic() when the peer answered 250
    tls: str = ""                   # the TLS version it came over (after STARTTLS), or ""

    def mail_param(self, name: str) -> Optional[str]:
        return _param(self.mail_params, name)

    def rcpt_param(self, i: int, name: str) -> Optional[str]:
        return _param(self.rcpt_params[i], name)


def _param(params: list[str], name: str) -> Optional[str]:
    for p in params:
        key, eq, value = p.partition("=")
        if key.upper() == name.upper():
            return value if eq else ""
    return None


def _split_params(arg: str, names: tuple[str, ...]) -> tuple[str, list[str]]:
    """Takes the `NAME=value` parameters named out of a MAIL/RCPT argument."""
    kept, taken = [], []
    for tok in arg.split(" "):
        (taken if "=" in tok and tok.partition("=")[0].upper() in names else kept).append(tok)
    return " ".join(kept), taken


class _PeerSMTP(SMTP):
    """aiosmtpd's SMTP, with DSN parameters and per-connection numbering."""

    def __init__(self, handler, peer: "Peer", **kw):
        super().__init__(handler, **kw)
        self.peer = peer
        self.connection = 0
        self.pending_dsn: list[str] = []

    def connection_made(self, transport):
        super().connection_made(transport)
        with self.peer.lock:
            self.peer._transports.append(transport)

    def _greeted(self):
        if not self.connection:
            with self.peer.lock:
                self.peer.connections += 1
                self.connection = self.peer.connections

    async def smtp_EHLO(self, hostname):
        if not self.peer.ehlo:
            await self.push("502 5.5.1 EHLO not implemented")
            return
        self._greeted()
        await super().smtp_EHLO(hostname)

    async def smtp_HELO(self, hostname):
        self._greeted()
        await super().smtp_HELO(hostname)

    async def smtp_MAIL(self, arg):
        self.peer.commands.append(f"MAIL {arg}")
        if arg and not self.peer.eightbitmime and "BODY=8BITMIME" in arg.upper():
            await self.push("555 5.5.4 BODY=8BITMIME was not advertised")
            return
        self.pending_dsn = []
        if arg and self.peer.dsn:
            arg, self.pending_dsn = _split_params(arg, DSN_MAIL_PARAMS)
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg):
        self.peer.commands.append(f"RCPT {arg}")
        self.pending_dsn = []
        if arg and self.peer.dsn:
            arg, self.pending_dsn = _split_params(arg, DSN_RCPT_PARAMS)
        await super().smtp_RCPT(arg)


class _Handler:
    def __init__(self, peer: "Peer"):
        self.peer = peer

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        extra = []
        if self.peer.pipelining:
            extra.append("250-PIPELINING")
        if self.peer.dsn:
            extra.append("250-DSN")
        out = [r for r in responses[:-1] if self.peer.eightbitmime or r != "250-8BITMIME"]
        return out + extra + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        reply = self.peer.on_mail(address) if self.peer.on_mail else None
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        envelope.dsn_mail = server.pending_dsn
        envelope.rcpt_dsn = []
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.peer.on_rcpt(address) if self.peer.on_rcpt else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        envelope.rcpt_dsn.append(server.pending_dsn)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.peer.hold_data is not None:
            with self.peer.lock:
                self.peer.data_held += 1
            await asyncio.get_running_loop().run_in_executor(None, self.peer.hold_data.wait, 20)
        reply = self.peer.on_data(envelope) if self.peer.on_data else None
        if reply:
            return reply
        with self.peer.lock:
            self.peer.received.append(Received(
                mail_from=envelope.mail_from,
                mail_params=list(envelope.dsn_mail) + [o for o in envelope.mail_options],
                rcpt_tos=list(envelope.rcpt_tos),
                rcpt_params=[list(p) for p in envelope.rcpt_dsn],
                content=bytes(envelope.original_content),
                helo=session.host_name or "",
                connection=server.connection,
                time=time.monotonic(),
                tls=server.transport.get_extra_info("ssl_object").version()
                if server.transport.get_extra_info("ssl_object") else "",
            ))
            n = len(self.peer.received)
        return f"250 2.0.0 OK queued as PEER{n}"


class _Controller(Controller):
    def __init__(self, peer: "Peer", **kw):
        super().__init__(_Handler(peer), **kw)
        self.peer = peer

    def factory(self):
        return _PeerSMTP(self.handler, self.peer, **self.SMTP_kwargs)


class Peer:
    """A third-party SMTP server on `host` (127.0.0.1; by default on a free port).

    on_mail(address), on_rcpt(address) and on_data(envelope) may return a reply line ("550 5.1.1
    ...") to refuse; None accepts. With hold_data (a threading.Event), the reply to each message's
    text waits until the event is set (`data_held` counts the messages that waited).

    `received` lists the accepted messages in order, `connections` counts the sessions that
    greeted, `commands` keeps every MAIL and RCPT line (for a failing test's output)."""

    def __init__(self, port: Optional[int] = None, *, host: str = "127.0.0.1", dsn: bool = True,
                 pipelining: bool = True, eightbitmime: bool = True, smtputf8: bool = True,
                 ehlo: bool = True, size: Optional[int] = None,
                 on_mail: Optional[Callable[[str], Optional[str]]] = None,
                 on_rcpt: Optional[Callable[[str], Optional[str]]] = None,
                 on_data: Optional[Callable[[object], Optional[str]]] = None,
                 hold_data: Optional[threading.Event] = None, tls_context=None):
        """`tls_context` (an ssl.SSLContext with a certificate) makes the peer offer STARTTLS."""
        self.host = host
        self.tls_context = tls_context
        self.port = port or free_ports(1)[0]
        self.dsn, self.pipelining, self.eightbitmime, self.smtputf8 = dsn, pipelining, eightbitmime, smtputf8
        self.ehlo = ehlo
        self.size = size
        self.on_mail, self.on_rcpt, self.on_data = on_mail, on_rcpt, on_data
        self.hold_data = hold_data
        self.data_held = 0
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.commands: list[str] = []
        self.connections = 0
        self._transports: list = []
        self.controller: Optional[_Controller] = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> "Peer":
        assert self.controller is None, "already running"
        self.controller = _Controller(
            self, hostname=self.host, port=self.port, server_hostname=PEER_HOSTNAME,
            data_size_limit=self.size, enable_SMTPUTF8=self.smtputf8, decode_data=False,
            ready_timeout=10, **({"tls_context": self.tls_context} if self.tls_context else {}))
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stops listening and drops every open connection."""
        c, self.controller = self.controller, None
        if c is None:
            return
        if self.hold_data is not None:
            self.hold_data.set()
        def drop():
            for t in self._transports:
                t.abort()
        c.loop.call_soon_threadsafe(drop)
        c.stop()
        self._transports = []

    def stays_at(self, count: int, seconds: float) -> None:
        """Checks for `seconds` that no message beyond `count` arrives."""
        deadline = Deadline(seconds)
        while not deadline.expired():
            with self.lock:
                assert len(self.received) == count, f"the peer received {len(self.received)}, expected {count}"
            time.sleep(0.05)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Waits until exactly `count` messages arrived (fails at once on more); returns them."""
        def ready():
            with self.lock:
                n = len(self.received)
            assert n <= count, f"the peer received {n} messages, expected {count}"
            return n == count
        poll(ready, timeout, f"{count} message(s) at the peer", interval=0.05)
        with self.lock:
            return list(self.received)


# ----------------------------------------------------------------------------------------------
# DNS


def zone(origin: str, *records: str) -> str:
    """A master file for `origin` with an SOA and the given records (relative names allowed)."""
    return "\n".join([
        f"$ORIGIN {origin}.",
        "$TTL 60",
        f"@ IN SOA ns.{origin}. admin.{origin}. 1 60 60 60 60",
        *records,
    ]) + "\n"


class DnsServer:
    """`mailroom-testdns` serving the given zones ({origin: master file text}) on loopback."""

    def __init__(self, root: Path, zones: dict[str, str]):
        self.root = Path(root)
        self.zones = zones
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.log_path = self.root / "testdns.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "DnsServer":
        self.root.mkdir(parents=True, exist_ok=True)
        args = []
        for origin, text in self.zones.items():
            path = self.root / f"{origin}.zone"
            path.write_text(text)
            args += ["--zone", f"{origin}={path}"]
        last = ""
        for _ in range(3):  # the port may have been taken (UDP or TCP) since it was picked
            self.port = free_ports(1)[0]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([TESTDNS, "--listen", self.address, *args],
                                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=log)
            line = self._first_line(timeout)
            if line.startswith("ready "):
                return self
            last = line
            self.stop()
        raise RuntimeError(f"mailroom-testdns did not start ({last!r}):\n{self.log()}")

    def _first_line(self, timeout: float) -> str:
        deadline = Deadline(timeout)
        buf = b""
        while b"\n" not in buf:
            if deadline.expired():
                return "timed out: " + buf.decode(errors="replace")
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    return "exited: " + buf.decode(errors="replace")
                buf += chunk
        return buf.split(b"\n", 1)[0].decode(errors="replace")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""


# ----------------------------------------------------------------------------------------------
# Servers that relay


RELAY = {"smtp.trusted_networks": ["127.0.0.0/8"]}
# Quick retries, no jitter, a short poll: what a test can wait for.
FAST_QUEUE = {
    "queue.retry_jitter": 0,
    "queue.retry_schedule": ["1s"],
    "queue.glitch_retry": "1s",
    "queue.poll_interval": "200ms",
}


def relay_settings(smart_host: Optional[str] = None, **more) -> dict:
    """Settings of a server that relays for loopback clients, retries quickly and, if given,
    sends all remote mail to `smart_host`. `more` uses dotted keys with "__" for "."."""
    s = dict(RELAY)
    s.update(FAST_QUEUE)
    if smart_host:
        s["outbound.smart_host"] = smart_host
    s.update({k.replace("__", "."): v for k, v in more.items()})
    return s


def check_relayed(got: Received, original: bytes, queue_id: str, hostname: str = HOSTNAME,
                  protocol: str = "ESMTP") -> str:
    """The copy a peer received is the original, byte for byte, under one added field: mailroom's
    Received (naming the queue ID). Relaying adds no Return-Path or Delivered-To. Returns the
    Received field's value."""
    assert got.content.endswith(original), (
        f"the relayed copy does not end with the original text\n--- got\n{got.content!r}\n"
        f"--- sent\n{original!r}")
    added = got.content[: len(got.content) - len(original)]
    fields = header_fields(added + b"\r\n")
    assert [n for n, _ in fields] == ["Received"], f"added header fields: {added!r}"
    received = fields[0][1]
    assert received_re(hostname, queue_id, protocol).match(received), received
    return received
