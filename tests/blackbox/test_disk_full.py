"""A full disk: the data directory on a small tmpfs that the test mounts and then fills. Intake
answers `452 4.3.1` (for small messages, stored in the database, and large ones, spooled to a
file), nothing acknowledged is lost, the store passes SQLite's integrity check, and delivery
resumes once space returns. Needs root (to mount); CI runs as root."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections import Counter

import pytest

from helpers import RawSMTP, Mailroom, make_message, poll

SIZE_MB = 24


@pytest.fixture
def small_disk(tmp_path):
    """A Mailroom whose data directory is a tmpfs of SIZE_MB MiB; unmounted at the end."""
    if os.geteuid() != 0:
        pytest.fail("the disk-full test mounts a tmpfs and needs root (CI runs as root)")
    m = Mailroom(tmp_path)
    m.data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(m.data)],
                   check=True)
    try:
        # Every 452 counts toward smtp.max_errors; the test sends many on one session.
        m.init({"smtp.spool_threshold": 65536, "smtp.max_errors": 100000})
        yield m
    finally:
        m.stop()
        subprocess.run(["umount", "-l", str(m.data)], check=False)


def fill(path, leave: int) -> None:
    """Writes a file that leaves `leave` octets free on the file system of `path`."""
    st = os.statvfs(path.parent)
    free = st.f_bavail * st.f_frsize
    with open(path, "wb") as f:
        chunk = b"\0" * (1 << 20)
        todo = max(free - leave, 0)
        while todo > 0:
            n = f.write(chunk[: min(len(chunk), todo)])
            todo -= n
        f.flush()
        os.fsync(f.fileno())


def test_disk_full_refuses_with_452_loses_nothing_and_resumes(small_disk):
    server = small_disk.start()
    alice = server.add_user("alice")
    acked, refused = [], []
    filler = server.data / "filler"
    fill(filler, leave=2 << 20)
    c = RawSMTP(server.smtp_port)
    c.ehlo()
    big = "x" * 76 + "\r\n"
    for i in range(4000):
        # Alternately small (in the database) and large (spooled to a file).
        body = big * (3000 if i % 2 else 100)
        name = f"full-{i}"
        r = c.cmd("MAIL FROM:<a@example.org>")
        assert r.code == 250, r
        assert c.cmd(f"RCPT TO:<{alice}>").code == 250
        r = c.data(make_message(name, body))
        if r.code == 250:
            acked.append(name)
        else:
            assert (r.code, r.text[:5]) == (452, "4.3.1"), r
            refused.append(name)
        kinds = Counter(int(n.rsplit("-", 1)[1]) % 2 for n in refused)
        if kinds[0] >= 3 and kinds[1] >= 3:
            break
    print(f"\ndisk full: {len(acked)} accepted, then {len(refused)} refused with 452 4.3.1")
    assert refused, "the disk never filled up"
    kinds = {int(n.rsplit("-", 1)[1]) % 2 for n in refused}
    assert kinds == {0, 1}, "both a small message (database) and a large one (spool) were refused"
    assert acked, "nothing was accepted before the disk filled up"
    assert server.proc.poll() is None, "the server is still running"
    # Space returns: intake and delivery resume.
    filler.unlink()
    r = c.transaction("a@example.org", [alice], make_message("after", "space is back\r\n"))
    assert r.code == 250, r
    c.close()
    acked.append("after")

    def subjects():
        p = server.pop3(alice)
        try:
            return [line.decode() for i in range(1, p.stat()[0] + 1)
                    for line in p.top(i, 0)[1] if line.startswith(b"Subject: ")]
        finally:
            p.quit()

    got = poll(lambda: (s := subjects()) and len(s) >= len(acked) and s, 20, "every acknowledged message")
    assert sorted(got) == sorted(f"Subject: {a}" for a in acked), "exactly the acknowledged ones"
    assert server.stop() == 0
    db = sqlite3.connect(server.data / "mailroom.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    # No spool file is left of a refused message (every file left belongs to a stored one).
    with sqlite3.connect(server.data / "mailroom.db") as db:
        named = {r[0] for r in db.execute("SELECT file FROM contents WHERE file IS NOT NULL")}
    assert set(os.listdir(server.data / "spool")) <= named
