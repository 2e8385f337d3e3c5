#!/usr/bin/env python3
"""How long `mailroom repair` takes on a big store: N mailbox messages (1,000,000 by default),
filled through IMAP MULTIAPPEND (one command and one commit per batch), then `repair --dry-run`
and `repair` timed on the stopped server's data directory. Repair proves it touched no mail by
reading the store twice; this measures what that proof costs.

    bench/repair.py --mailroom target/release/mailroom                  # 1,000,000 messages
    bench/repair.py --mailroom target/release/mailroom --messages 100000 --keep DIR

The data directory is made under a temporary directory (or kept in --keep DIR, and reused by a
later run with the same --keep: filling a million messages takes minutes).
"""

import argparse
import imaplib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "blackbox"))
from helpers import Deadline, free_ports  # noqa: E402

DOMAIN = "example.test"
PASSWORD = "bench-pw"
BATCH = 2000


def message(i: int, size: int) -> bytes:
    head = (f"From: sender{i % 97}@example.org\r\nTo: user@{DOMAIN}\r\n"
            f"Subject: message {i}\r\nMessage-ID: <{i}@bench.example.org>\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def run(binary: str, data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--data", str(data), *args], capture_output=True, text=True,
                          check=check, input=PASSWORD + "\n" if "--password-stdin" in args else None)


def fill(binary: str, data: Path, count: int, users: int, size: int) -> None:
    smtp, imap, pop3, sub, subs, pop3s, imaps = free_ports(7)
    run(binary, data, "init", "--domain", DOMAIN, "--smtp", f"127.0.0.1:{smtp}",
        "--imap", f"127.0.0.1:{imap}", "--pop3", f"127.0.0.1:{pop3}",
        "--submission", f"127.0.0.1:{sub}", "--submissions", f"127.0.0.1:{subs}",
        "--pop3s", f"127.0.0.1:{pop3s}", "--imaps", f"127.0.0.1:{imaps}")
    names = [f"user{u}@{DOMAIN}" for u in range(users)]
    for n in names:
        run(binary, data, "user", "add", n, "--password-stdin")
    proc = subprocess.Popen([binary, "--data", str(data), "serve"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = Deadline(30)
        while True:
            try:
                m = imaplib.IMAP4("127.0.0.1", imap)
                break
            except OSError:
                if deadline.expired():
                    raise
                time.sleep(0.1)
        m.logout()
        per_user = count // users
        t0 = time.monotonic()
        for n in names:
            m = imaplib.IMAP4("127.0.0.1", imap)
            m.login(n, PASSWORD)
            done = 0
            while done < per_user:
                k = min(BATCH, per_user - done)
                # One MULTIAPPEND (RFC 3502) of k messages with LITERAL+.
                parts = []
                for i in range(done, done + k):
                    body = message(i, size)
                    parts.append(b" {%d+}\r\n" % len(body) + body)
                tag = m._new_tag()
                m.send(tag + b" APPEND INBOX" + b"".join(parts) + b"\r\n")
                while True:
                    line = m.readline()
                    if line.startswith(tag):
                        assert b" OK " in line, line
                        break
                done += k
            m.logout()
            print(f"  {n}: {per_user} messages ({time.monotonic() - t0:.0f} s so far)", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)


def timed(binary: str, data: Path, *args: str) -> tuple[float, dict]:
    t0 = time.monotonic()
    p = run(binary, data, *args)
    return time.monotonic() - t0, json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mailroom", required=True)
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--size", type=int, default=2048, help="octets per message")
    ap.add_argument("--keep", help="keep (and reuse) the data directory here")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    binary = str(Path(a.mailroom).resolve())
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="mailroom-repair-bench-"))
    data = root / "data"
    try:
        if not (data / "mailroom.db").exists():
            print(f"filling {a.messages} messages of {a.size} octets for {a.users} users ...", flush=True)
            fill(binary, data, a.messages, a.users, a.size)
        store = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        for name, args in (("repair --dry-run", ("repair", "--dry-run", "--json")),
                           ("repair", ("repair", "--json"))):
            best = None
            for _ in range(a.rounds):
                secs, out = timed(binary, data, *args)
                best = secs if best is None else min(best, secs)
            n = out["before"]["mailbox_messages"]
            print(f"{name}: {best:.2f} s (best of {a.rounds}) for {n} mailbox messages, "
                  f"a data directory of {store / 2**20:.0f} MiB")
    finally:
        if not a.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
