#!/usr/bin/env python3
"""IMAP side by side: mailroom and a private Dovecot (Debian's, on loopback) in one run, on one
mailbox of N messages: SELECT, `FETCH 1:* (FLAGS UID)`, `SEARCH HEADER Subject …`, mbsync's
first sync of the whole INBOX into an empty Maildir (isync's own client, as a user's first
sync: a login, the flags of every message, then every message), and APPEND of M messages one command at a time. Each case runs on both servers, best of
--rounds; the ratio printed is Dovecot's time over mailroom's (above 1: mailroom is faster).

    bench/imap.py --mailroom target/release/mailroom                 # 100,000 and 10,000
    bench/imap.py --mailroom target/debug/mailroom --quick           # CI: 2,000 and 300

Both mailboxes are filled the same way, with MULTIAPPEND in batches (one command, one commit
on each side), so the cases measure reading and appending, not the filling.
"""

import argparse
import imaplib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "blackbox"))
from dovecot import DOVECOT, Dovecot  # noqa: E402
from helpers import free_ports, Deadline  # noqa: E402

USER = "bench@example.test"
PASSWORD = "benchpass"


def message(i: int) -> bytes:
    return (f"From: sender{i % 97}@example.org\r\nTo: {USER}\r\nSubject: report {i} week {i % 52}\r\n"
            f"Date: Tue, 01 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m{i}@example.org>\r\n\r\n"
            + ("The quarterly figures are attached below. " * 20 + "\r\n") * 3).encode()


class Mailroom:
    def __init__(self, binary: str):
        self.binary = os.path.abspath(binary)
        self.root = Path(tempfile.mkdtemp(prefix="bench-imap-"))
        self.data = self.root / "data"
        ports = free_ports(7)
        self.imap_port = ports[5]
        names = ["--smtp", "--pop3", "--submission", "--submissions", "--pop3s", "--imap", "--imaps"]
        args = [a for n, p in zip(names, ports) for a in (n, f"127.0.0.1:{p}")]
        self.cli("init", "--domain", "example.test", *args)
        self.cli("user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n")
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen([self.binary, "--data", str(self.data), "serve"], stdout=log, stderr=log)
        deadline = Deadline(60)
        while not deadline.expired():
            try:
                imaplib.IMAP4("127.0.0.1", self.imap_port).logout()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mailroom did not start")

    def password_hash(self) -> str:
        """The bench user's Argon2id hash (a PHC string) as the store keeps it."""
        import sqlite3
        with sqlite3.connect(f"file:{self.data / 'mailroom.db'}?mode=ro", uri=True) as db:
            (stored,) = db.execute("SELECT password FROM users WHERE address = ?", (USER,)).fetchone()
        # (The column holds the Argon2id hash, then the SCRAM keys.)
        h = stored.split()[0]
        assert h.startswith("$argon2id$"), stored
        return h

    def cli(self, *args, stdin=None):
        subprocess.run([self.binary, "--data", str(self.data), *args], input=stdin, text=True,
                       check=True, capture_output=True)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


def connect(port: int) -> imaplib.IMAP4:
    m = imaplib.IMAP4("127.0.0.1", port)
    m.login(USER, PASSWORD)
    return m


def fill(port: int, n: int, batch: int = 500) -> None:
    """N messages into INBOX with MULTIAPPEND (RFC 3502), `batch` to a command."""
    m = connect(port)
    i = 0
    while i < n:
        k = min(batch, n - i)
        parts = []
        for j in range(i, i + k):
            body = message(j)
            parts.append(b" {%d+}\r\n" % len(body) + body)
        tag = m._new_tag()
        m.send(tag + b" APPEND INBOX" + b"".join(parts) + b"\r\n")
        typ, data = m._command_complete("APPEND", tag)
        assert typ == "OK", data
        i += k
    m.logout()


MBSYNC = shutil.which("mbsync")


def mbsync_first_sync(port: int, n: int) -> None:
    """mbsync pulls the INBOX into a new, empty Maildir: what a user's first sync does."""
    # The Maildir goes to memory where there is some: creating 2,000 files on this machine's
    # disk costs mbsync a second of system time, the same against either server, and varies
    # from run to run by more than either server's share.
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    work = Path(tempfile.mkdtemp(prefix="bench-mbsync-", dir=shm))
    (work / "mail").mkdir()
    try:
        # (FSync off, for the same reason.)
        (work / "rc").write_text(f"""
FSync no

IMAPAccount a
Host 127.0.0.1
Port {port}
User {USER}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore far
Account a

MaildirStore near
Path {work}/mail/
Inbox {work}/mail/INBOX

Channel c
Far :far:
Near :near:
Patterns INBOX
Create Near
Sync Pull
SyncState *
""")
        r = subprocess.run([MBSYNC, "-q", "-c", str(work / "rc"), "c"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        got = len(list((work / "mail" / "INBOX" / "new").iterdir())) + \
            len(list((work / "mail" / "INBOX" / "cur").iterdir()))
        assert got >= n, (got, r.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cases(port: int, n: int, appends: int, rounds: int) -> dict:
    out = {}
    m = connect(port)

    def select():
        typ, data = m.select("INBOX")
        assert typ == "OK" and int(data[0]) >= n, data

    # FETCH and SEARCH are read raw, up to the tagged reply: imaplib's parsing of 100,000
    # responses in Python would take longer than either server and hide the difference.
    raw = socket.create_connection(("127.0.0.1", port))
    rf = raw.makefile("rb")
    rf.readline()
    raw.sendall(f'l LOGIN "{USER}" "{PASSWORD}"\r\ns SELECT INBOX\r\n'.encode())
    while not rf.readline().startswith(b"s OK"):
        pass

    def until(tag: bytes) -> list:
        lines = []
        while True:
            line = rf.readline()
            if line.startswith(tag + b" "):
                assert line.startswith(tag + b" OK"), line
                return lines
            lines.append(line)

    def fetch():
        raw.sendall(b"f FETCH 1:* (FLAGS UID)\r\n")
        lines = until(b"f")
        assert len(lines) >= n, len(lines)

    def search():
        raw.sendall(f'q SEARCH HEADER Subject "report {n // 2} "\r\n'.encode())
        lines = until(b"q")
        assert len(lines) == 1 and len(lines[0].split()) == 3, lines

    for name, fn in [("SELECT", select), ("FETCH 1:* (FLAGS UID)", fetch), ("SEARCH HEADER Subject", search)]:
        out[name] = min(timed(fn) for _ in range(rounds))
    if MBSYNC:
        out[f"mbsync first sync of {n}"] = min(timed(lambda: mbsync_first_sync(port, n)) for _ in range(rounds))
    raw.close()
    m.close()
    m.create("Appended")
    msgs = [message(n + i) for i in range(appends)]

    def append():
        for body in msgs:
            typ, data = m.append("Appended", None, None, body)
            assert typ == "OK", data

    out[f"APPEND x{appends}"] = timed(append)
    m.logout()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mailroom", required=True)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--appends", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2,000 messages, 300 appends (the CI run)")
    a = ap.parse_args()
    if a.quick:
        a.messages, a.appends, a.rounds = 2000, 300, 2
    if DOVECOT is None:
        sys.exit("bench/imap.py: dovecot is not installed (apt-get install dovecot-core dovecot-imapd)")
    results = {}
    # Like for like: Dovecot offers COMPRESS=DEFLATE as mailroom does (mbsync uses it with
    # both), and checks the same Argon2id hash as mailroom for each login (mailroom's own,
    # read from its store), not a password in clear.
    mr = Mailroom(a.mailroom)
    try:
        dv = Dovecot(compress=True)
        dv.add_user(USER, PASSWORD, argon2id=mr.password_hash())
        dv.start()
        try:
            t = timed(lambda: fill(dv.imap_port, a.messages))
            print(f"imap: dovecot filled with {a.messages} messages in {t:.1f} s", flush=True)
            results["dovecot"] = cases(dv.imap_port, a.messages, a.appends, a.rounds)
        finally:
            dv.stop()
        t = timed(lambda: fill(mr.imap_port, a.messages))
        print(f"imap: mailroom filled with {a.messages} messages in {t:.1f} s", flush=True)
        results["mailroom"] = cases(mr.imap_port, a.messages, a.appends, a.rounds)
    finally:
        mr.stop()
    print(f"\nIMAP, {a.messages} messages in the INBOX (best of {a.rounds}; ratio = dovecot / mailroom, "
          f"above 1: mailroom faster)")
    print(f"{'case':28} {'dovecot s':>10} {'mailroom s':>11} {'ratio':>7}")
    for case, d in results["dovecot"].items():
        r = results["mailroom"][case]
        print(f"{case:28} {d:10.3f} {r:11.3f} {d / r:7.2f}{'' if d >= r else '  (slower than dovecot)'}")


if __name__ == "__main__":
    main()
