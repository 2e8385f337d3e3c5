"""Helpers for the black-box tests: a running `mailroom` server on a temporary data directory,
a raw SMTP client (for pipelining, BDAT and malformed input that smtplib cannot produce), POP3 and
tracking helpers, and message checks.

Everything waits by polling with a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import json
import os
import imaplib
import poplib
import re
import signal
import smtplib
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import record_corpus

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("MAILROOM_BIN") or str(REPO / "target" / "debug" / "mailroom")

DOMAIN = "example.test"
HOSTNAME = "mx.example.test"
PASSWORD = "s3cret-pw"
# Settings every test server gets unless a test says otherwise: a small POP3 failure delay, so
# that tests that log in with a bad password do not crawl (the delay itself is tested with the
# shipped default in test_pop3.py).
# Failed logins are answered after a pause that doubles with each failure; tests keep it short.
BASE_SETTINGS = {"pop3.auth_failure_delay": "50ms", "pop3.max_auth_failure_delay": "400ms",
                 "imap.auth_failure_delay": "50ms", "imap.max_auth_failure_delay": "400ms",
                 "submission.auth_failure_delay": "50ms",
                 "submission.max_auth_failure_delay": "400ms"}

START_TIMEOUT = 20.0
DELIVERY_TIMEOUT = 10.0
IO_TIMEOUT = 10.0
CLI_TIMEOUT = 30.0


class Deadline:
    """Polls until a condition holds or the time is up."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def expired(self) -> bool:
        return time.monotonic() >= self.end


def poll(fn: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Calls `fn` until it returns a true value; returns that value, or fails after `timeout`."""
    deadline = Deadline(timeout)
    last = None
    while True:
        last = fn()
        if last:
            return last
        if deadline.expired():
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def holds(fn: Callable[[], object], seconds: float, what: str, interval: float = 0.1) -> None:
    """Checks that `fn` stays true for `seconds` (something that must not happen does not)."""
    deadline = Deadline(seconds)
    while True:
        assert fn(), f"no longer true: {what}"
        if deadline.expired():
            return
        time.sleep(interval)


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports that were free a moment ago (bound to port 0 together)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_is_free(port: int) -> bool:
    """True if nothing listens on the port (connections in TIME_WAIT do not count: the server
    binds with SO_REUSEADDR, as this does)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {v!r}")


def edit_toml(text: str, settings: dict) -> str:
    """Sets `section.key = value` in the commented TOML that `mailroom init` writes: replaces the
    key's line in its section, or adds it at the start of the section (which must exist)."""
    lines = text.splitlines()
    for dotted, value in settings.items():
        section, key = dotted.split(".", 1)
        new = f"{key} = {toml_value(value)}"
        current, header_at, done = None, None, False
        for i, line in enumerate(lines):
            m = re.match(r"^\s*\[([^\]]+)\]\s*$", line)
            if m:
                current = m.group(1).strip()
                if current == section:
                    header_at = i
                continue
            if current == section and re.match(rf"^\s*{re.escape(key)}\s*=", line):
                lines[i] = new
                done = True
                break
        if not done:
            if header_at is None:
                lines += ["", f"[{section}]", new]
            else:
                lines.insert(header_at + 1, new)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# SMTP


@dataclass
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str:
        """The enhanced status code (RFC 3463) of the first line, or ''."""
        m = re.match(r"^(\d\.\d{1,3}\.\d{1,3})\b", self.lines[0]) if self.lines else None
        return m.group(1) if m else ""

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


QUEUED_RE = re.compile(r"queued as (\S+)")


class RawSMTP:
    """A minimal SMTP client over a socket: sends exactly the bytes given and reads replies."""

    def __init__(self, port: int, timeout: float = IO_TIMEOUT, source: str = "",
                 context=None, hostname: str = HOSTNAME):
        """Connects from `source` (an address of 127/8) if given, under TLS at once if a
        `context` is given (implicit TLS)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if context is not None:
            self.sock = context.wrap_socket(self.sock, server_hostname=hostname)
        self.buf = b""
        self.greeting = self.reply()
        self.extensions: set[str] = set()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"server closed the connection (unread: {self.buf!r})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> Reply:
        lines = []
        while True:
            line = self._line().decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                break
        return Reply(int(lines[0][:3]), [line[4:] for line in lines])

    def replies(self, n: int) -> list[Reply]:
        return [self.reply() for _ in range(n)]

    def cmd(self, line: str) -> Reply:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self, context, hostname: str) -> Reply:
        """STARTTLS, then the TLS handshake (verifying the server as `hostname`)."""
        r = self.cmd("STARTTLS")
        assert r.code == 220, r
        assert not self.buf, f"unread input before TLS: {self.buf!r}"
        self.sock = context.wrap_socket(self.sock, server_hostname=hostname)
        return r

    def ehlo(self, name: str = "client.example.org") -> Reply:
        r = self.cmd(f"EHLO {name}")
        assert r.code == 250, r
        self.extensions = {line.split()[0].upper() for line in r.lines[1:] if line.strip()}
        return r

    def data(self, message: bytes) -> Reply:
        """DATA with a dot-stuffed message (which must end in CRLF); returns the final reply."""
        r = self.cmd("DATA")
        assert r.code == 354, r
        self.send(dot_stuff(message) + b".\r\n")
        return self.reply()

    def transaction(self, sender: str, rcpts: Iterable[str], message: bytes,
                    mail_params: str = "", rcpt_params: str = "") -> Reply:
        r = self.cmd(f"MAIL FROM:<{sender}>{' ' + mail_params if mail_params else ''}")
        assert r.code == 250, r
        for rcpt in rcpts:
            r = self.cmd(f"RCPT TO:<{rcpt}>{' ' + rcpt_params if rcpt_params else ''}")
            assert r.code == 250, r
        return self.data(message)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def queue_id_of(reply) -> str:
    """The queue ID from a `250 ... queued as QID` reply (Reply, or smtplib's (code, bytes))."""
    text = reply.text if isinstance(reply, Reply) else reply[1].decode()
    m = QUEUED_RE.search(text)
    assert m, f"no queue ID in {reply}"
    return m.group(1)


def dot_stuff(message: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency: a period at the start of a line is doubled."""
    return re.sub(rb"(?m)^\.", b"..", message)


def smtp_send(s: smtplib.SMTP, sender: str, rcpts: list[str], message: bytes,
              mail_options=(), rcpt_options=()) -> str:
    """A transaction with smtplib's mail/rcpt/data; returns the queue ID from the final reply."""
    s.ehlo_or_helo_if_needed()
    code, resp = s.mail(sender, list(mail_options))
    assert code == 250, (code, resp)
    for r in rcpts:
        code, resp = s.rcpt(r, list(rcpt_options))
        assert code == 250, (r, code, resp)
    code, resp = s.data(message)
    assert code == 250, (code, resp)
    return queue_id_of((code, resp))


# ----------------------------------------------------------------------------------------------
# Messages


def make_message(subject: str, body: str | bytes = "Hello.\r\n", sender: str = "sender@example.org",
                 to: str = f"someone@{DOMAIN}", message_id: Optional[str] = None,
                 extra_headers: Iterable[str] = ()) -> bytes:
    """A message with CRLF line ends (the body may contain lines that start with '.')."""
    headers = [f"From: {sender}", f"To: {to}", f"Subject: {subject}",
               "Date: Thu, 27 Nov 2025 10:00:00 +0000"]
    if message_id:
        headers.append(f"Message-ID: <{message_id}>")
    headers += list(extra_headers)
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


DOT_BODY = (
    "First line.\r\n"
    ".\r\n"
    "..\r\n"
    ".leading dot\r\n"
    "..two leading dots\r\n"
    "a line. with. dots.\r\n"
    " .space then dot\r\n"
    "\r\n"
    ".\r\n"
    "Last line.\r\n"
)


def header_fields(raw: bytes) -> list[tuple[str, str]]:
    """The header fields of a message, in order, unfolded: [(name, value)]."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    fields: list[list[str]] = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and fields:
            fields[-1][1] += " " + line.strip()
        elif ":" in line:
            name, value = line.split(":", 1)
            fields.append([name, value.strip()])
    return [(n, v) for n, v in fields]


def received_re(hostname: str, queue_id: str, protocol: str = "ESMTP") -> re.Pattern:
    return re.compile(
        rf"^from \S+ \(\[127\.0\.0\.1\]\) by {re.escape(hostname)} \(mailroom\) with {protocol} "
        rf"id {re.escape(queue_id)}\b.*; \w{{3}}, \d{{2}} \w{{3}} \d{{4}} \d\d:\d\d:\d\d [+-]\d{{4}}$"
    )


def check_copy(raw: bytes, *, sender: str, rcpt: str, original: bytes, queue_id: Optional[str] = None,
               hostname: str = HOSTNAME, protocol: str = "ESMTP") -> dict[str, str]:
    """Checks one delivered copy: Return-Path, Delivered-To, Received (with the queue ID), a
    Message-ID (added only if the original had none), then the original text byte for byte.
    Returns the fields that were added, by name."""
    assert raw.endswith(original), (
        f"the delivered copy does not end with the original text\n--- got\n{raw!r}\n--- sent\n{original!r}")
    added = raw[: len(raw) - len(original)]
    fields = header_fields(added + b"\r\n")
    names = [n for n, _ in fields]
    original_has_mid = any(n.lower() == "message-id" for n, _ in header_fields(original))
    expected = ["Return-Path", "Delivered-To", "Received"] + ([] if original_has_mid else ["Message-ID"])
    assert names == expected, f"added header fields {names}, expected {expected}:\n{added!r}"
    f = dict(fields)
    assert f["Return-Path"] == f"<{sender}>"
    assert f["Delivered-To"] == rcpt
    if queue_id is None:
        m = re.search(r" id (\S+)", f["Received"])
        assert m, f["Received"]
        queue_id = m.group(1).rstrip(";")
    assert received_re(hostname, queue_id, protocol).match(f["Received"]), f["Received"]
    if not original_has_mid:
        assert f["Message-ID"] == f"<{queue_id}@{hostname}>", f["Message-ID"]
    f["queue_id"] = queue_id
    return f


def nospace(s: Optional[str]) -> Optional[str]:
    """A header value without its white space (`dns; host` and `dns;host` compare equal)."""
    return None if s is None else re.sub(r"\s+", "", str(s))


def subject_of(raw: bytes) -> str:
    return dict((n.lower(), v) for n, v in header_fields(raw))["subject"]


def message_id_of(raw: bytes) -> Optional[str]:
    for n, v in header_fields(raw):
        if n.lower() == "message-id":
            return v.strip().strip("<>")
    return None


# ----------------------------------------------------------------------------------------------
# The server


class Mailroom:
    """One `mailroom` data directory and, while started, its server process."""

    def __init__(self, root: Path, domain: str = DOMAIN, hostname: str = HOSTNAME):
        self.root = Path(root)
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        self.domain = domain
        self.hostname = hostname
        (self.smtp_port, self.pop3_port, self.submission_port, self.submissions_port,
         self.pop3s_port, self.imap_port, self.imaps_port) = free_ports(7)
        record_corpus.ports.add(self.imap_port)
        self.proc: Optional[subprocess.Popen] = None
        self.passwords: dict[str, str] = {}
        self._log = None
        self.starts = 0

    # -- configuration and process ---------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.data / "mailroom.toml"

    def init(self, settings: Optional[dict] = None) -> "Mailroom":
        self.cli("init", "--domain", self.domain, "--hostname", self.hostname,
                 "--smtp", f"127.0.0.1:{self.smtp_port}", "--pop3", f"127.0.0.1:{self.pop3_port}",
                 "--submission", f"127.0.0.1:{self.submission_port}",
                 "--submissions", f"127.0.0.1:{self.submissions_port}",
                 "--pop3s", f"127.0.0.1:{self.pop3s_port}",
                 "--imap", f"127.0.0.1:{self.imap_port}", "--imaps", f"127.0.0.1:{self.imaps_port}")
        s = dict(BASE_SETTINGS)
        s.update(settings or {})
        self.configure(s)
        return self

    def configure(self, settings: dict) -> None:
        self.config_path.write_text(edit_toml(self.config_path.read_text(), settings))

    def spawn(self) -> subprocess.Popen:
        """Starts `serve` without waiting for it."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self._log = open(self.log_path, "ab")
        self._log.write(f"=== start {self.starts} ===\n".encode())
        self._log.flush()
        self.starts += 1
        self.proc = subprocess.Popen([BIN, "--data", str(self.data), "serve"],
                                     stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        return self.proc

    def start(self, timeout: float = START_TIMEOUT) -> "Mailroom":
        self.spawn()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = Deadline(timeout)
        pending = {"smtp": self.smtp_port, "pop3": self.pop3_port}
        while pending:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mailroom exited with {self.proc.returncode}:\n{self.log()}")
            for name, port in list(pending.items()):
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                        s.settimeout(5)
                        greeting = s.recv(512)
                    if name == "smtp":
                        assert greeting.startswith(f"220 {self.hostname} ".encode()), greeting
                    else:
                        assert greeting.startswith(b"+OK"), greeting
                    del pending[name]
                except OSError:
                    pass
            if pending:
                if deadline.expired():
                    raise RuntimeError(f"mailroom not listening on {pending} after {timeout}s:\n{self.log()}")
                time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        rc = self.proc.returncode
        self._close_log()
        return rc

    def kill9(self) -> None:
        """SIGKILL: a crash."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._close_log()

    def refused_start(self) -> subprocess.CompletedProcess:
        """`serve` that is expected to refuse to start (killed after a timeout if it starts)."""
        return subprocess.run([BIN, "--data", str(self.data), "serve"], capture_output=True, text=True,
                              timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)

    def restart(self) -> "Mailroom":
        self.stop()
        return self.start()

    def _close_log(self):
        if self._log:
            self._log.close()
            self._log = None

    def log(self, whole: bool = False) -> str:
        """The server's log: its last 20,000 characters (for a failure report), or all of it."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text if whole else text[-20000:]

    def sql(self, statement: str, *params) -> int:
        """Runs one SQL statement on the store of the stopped server (to damage a record on
        purpose); returns the number of rows changed."""
        assert self.proc is None or self.proc.poll() is not None, "stop the server first"
        db = sqlite3.connect(self.data / "mailroom.db")
        try:
            n = db.execute(statement, params).rowcount
            db.commit()
            return n
        finally:
            db.close()

    # -- the command line -------------------------------------------------------------------

    def cli(self, *args: str, input: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([BIN, "--data", str(self.data), *args], input=input, capture_output=True,
                           text=True, timeout=CLI_TIMEOUT)
        if check:
            assert p.returncode == 0, f"mailroom {' '.join(args)} failed ({p.returncode}):\n{p.stderr}"
        return p

    def add_user(self, local: str, quota: Optional[int] = None, password: str = PASSWORD) -> str:
        address = local if "@" in local else f"{local}@{self.domain}"
        args = ["user", "add", address, "--password-stdin"]
        if quota is not None:
            args += ["--quota", str(quota)]
        self.cli(*args, input=password + "\n")
        self.passwords[address] = password
        return address

    def add_alias(self, alias: str, *targets: str) -> str:
        address = alias if "@" in alias else f"{alias}@{self.domain}"
        self.cli("alias", "add", address, *targets)
        return address

    def add_list(self, name: str, *members: str) -> str:
        address = name if "@" in name else f"{name}@{self.domain}"
        self.cli("list", "add", address, *members)
        return address

    def users(self) -> list[dict]:
        return json.loads(self.cli("user", "list", "--json").stdout)

    def track(self, *, message_id: Optional[str] = None, sender: Optional[str] = None,
              recipient: Optional[str] = None, since: Optional[str] = None) -> list[dict]:
        return json.loads(self.cli(*self._track_args(message_id, sender, recipient, since), "--json").stdout)

    def track_text(self, *, message_id: Optional[str] = None, sender: Optional[str] = None,
                   recipient: Optional[str] = None) -> str:
        return self.cli(*self._track_args(message_id, sender, recipient, None)).stdout

    @staticmethod
    def _track_args(message_id, sender, recipient, since) -> list[str]:
        args = ["track"]
        if message_id is not None:
            args += ["--message-id", message_id]
        if sender is not None:
            args += ["--sender", sender]
        if recipient is not None:
            args += ["--recipient", recipient]
        if since is not None:
            args += ["--since", since]
        return args

    def queue(self, *args: str, input: Optional[str] = None):
        """`mailroom queue ARGS --json`, parsed."""
        return json.loads(self.cli("queue", *args, "--json", input=input).stdout)

    def queue_messages(self, *args: str) -> list[dict]:
        """`queue show ARGS --json`: the queued messages that match."""
        return self.queue("show", *args)

    def queues(self) -> dict[str, dict]:
        """`queue list --json`, by queue key (`local`, `link:example.org`, ...)."""
        return {q["queue"]: q for q in self.queue("list")}

    def wait_track(self, event_id: int, count: int = 1, timeout: float = DELIVERY_TIMEOUT, **query) -> list[dict]:
        """Polls `track` until at least `count` events `event_id` match the query; returns all events."""
        def ready():
            events = self.track(**query)
            return events if sum(e["event_id"] == event_id for e in events) >= count else None
        return poll(ready, timeout, f"{count} tracking event(s) {event_id} for {query}", interval=0.1)

    # -- clients ----------------------------------------------------------------------------

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="client.example.org",
                            timeout=IO_TIMEOUT)

    def raw_smtp(self, ehlo: bool = True) -> RawSMTP:
        c = RawSMTP(self.smtp_port)
        if ehlo:
            c.ehlo()
        return c

    @property
    def certificate(self) -> Path:
        """The self-signed certificate `mailroom init` made."""
        return self.data / "tls" / "cert.pem"

    def tls_context(self):
        """A client TLS context that trusts this server's certificate (and nothing else)."""
        import ssl
        return ssl.create_default_context(cafile=str(self.certificate))

    def imap_connect(self) -> imaplib.IMAP4:
        return imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=IO_TIMEOUT)

    def imap(self, address: str, password: Optional[str] = None) -> imaplib.IMAP4:
        """An imaplib session logged in as `address`."""
        m = self.imap_connect()
        m.login(address, password or self.passwords.get(address, PASSWORD))
        return m

    def pop3_connect(self) -> poplib.POP3:
        return poplib.POP3("127.0.0.1", self.pop3_port, timeout=IO_TIMEOUT)

    def pop3(self, address: str, password: Optional[str] = None) -> poplib.POP3:
        """A POP3 session logged in with USER/PASS. Retries briefly while the maildrop is still
        locked by a session that a test just ended (the server notices a closed socket a moment
        later)."""
        password = password if password is not None else self.passwords[address]
        deadline = Deadline(5)
        while True:
            p = self.pop3_connect()
            try:
                p.user(address)
                p.pass_(password)
                return p
            except poplib.error_proto as e:
                p.close()
                if b"[IN-USE]" not in e.args[0] or deadline.expired():
                    raise
                time.sleep(0.05)

    def stat(self, address: str) -> int:
        p = self.pop3(address)
        try:
            return p.stat()[0]
        finally:
            p.quit()

    def messages(self, address: str) -> list[bytes]:
        """Every message of the maildrop, byte-exact (checked against the size POP3 announces)."""
        p = self.pop3(address)
        try:
            return [retr(p, i) for i in range(1, p.stat()[0] + 1)]
        finally:
            p.quit()

    def wait_for_count(self, address: str, count: int, timeout: float = DELIVERY_TIMEOUT) -> None:
        """Polls STAT until the maildrop holds exactly `count` messages; fails at once if it holds
        more, or after `timeout` saying how many it holds."""
        def ready():
            n = self.stat(address)
            assert n <= count, f"{address} has {n} messages, expected {count}"
            return n == count or f"{n} of {count}"
        deadline = Deadline(timeout)
        while (last := ready()) is not True:
            if deadline.expired():
                raise AssertionError(f"{address}: {last} message(s) after {timeout}s")
            time.sleep(0.05)

    def wait_for_mail(self, address: str, count: int, timeout: float = DELIVERY_TIMEOUT) -> list[bytes]:
        """wait_for_count, then every message of the maildrop."""
        self.wait_for_count(address, count, timeout)
        return self.messages(address)


def retr(p: poplib.POP3, n: int) -> bytes:
    """RETR n, reassembled byte for byte (poplib unstuffs the dots and strips the CRLFs); the size
    in the +OK line must equal the message's size."""
    resp, lines, octets = p.retr(n)
    raw = b"".join(line + b"\r\n" for line in lines)
    m = re.match(rb"\+OK (\d+) octets", resp)
    assert m, resp
    assert int(m.group(1)) == len(raw) == octets, (resp, len(raw), octets)
    return raw


def auth_plain(p: poplib.POP3, user: str, password: str) -> bytes:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return p._shortcmd("AUTH PLAIN " + token)


def event_ids(events: list[dict]) -> list[int]:
    return [e["event_id"] for e in events]


def of_queue(events: list[dict], queue_id: str) -> list[dict]:
    return [e for e in events if e["queue_id"] == queue_id]


# ----------------------------------------------------------------------------------------------
# Non-delivery reports


@dataclass
class NDR:
    message: email.message.EmailMessage
    human: str
    per_message: email.message.Message
    per_recipient: list
    original: email.message.Message
    original_type: str


def parse_ndr(raw: bytes) -> NDR:
    """Parses a delivered RFC 3464 report with the standard library and checks its shape:
    multipart/report; report-type=delivery-status, with a text/plain part, a
    message/delivery-status part and the original (message/rfc822 or text/rfc822-headers)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts[:2]] == ["text/plain", "message/delivery-status"], \
        [p.get_content_type() for p in parts]
    assert len(parts) == 3 and parts[2].get_content_type() in ("message/rfc822", "text/rfc822-headers")
    blocks = parts[1].get_payload()
    assert isinstance(blocks, list) and len(blocks) >= 2, blocks
    if parts[2].get_content_type() == "message/rfc822":
        original = parts[2].get_payload()[0]
    else:
        original = email.message_from_bytes(parts[2].get_payload(decode=True), policy=email.policy.default)
    return NDR(msg, parts[0].get_content(), blocks[0], blocks[1:], original, parts[2].get_content_type())
