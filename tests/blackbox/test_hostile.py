"""Hostile clients (issue 21, part 7): each attack of the session that found them, run against
the real server, with its effect measured (time others wait, memory) and bounded. The attacks
come from many loopback addresses (127.0.0.0/8 is all loopback on Linux) with
`smtp.inside_networks = []`, so that the server treats them as the outside world."""

from __future__ import annotations

import threading
import time

from helpers import make_message, smtp_send
from imaps import RawIMAP

SENDER = "sender@example.org"


def test_many_new_keywords_do_not_stall_other_users(server):
    """`STORE 1:10 +FLAGS.SILENT (6,000 new keywords)` repeated held the store's writer for up to
    36 s a time: an unrelated SMTP delivery waited 35.9 s, and SELECT of the folder took 87 s
    and sent a 912 KB FLAGS line. Keywords are bounded (NO [LIMIT]); deliveries meanwhile stay
    quick, and so does SELECT."""
    alice = server.add_user("alice")
    bob = server.add_user("bob")
    with server.smtp() as s:
        for i in range(10):
            smtp_send(s, SENDER, [alice], make_message(f"m{i}"))
    server.wait_for_mail(alice, 10)
    waits: list[float] = []
    stop = threading.Event()

    def deliveries():
        with server.smtp() as s:
            while not stop.is_set():
                t0 = time.monotonic()
                smtp_send(s, SENDER, [bob], make_message("meanwhile"))
                waits.append(time.monotonic() - t0)
                time.sleep(0.05)

    t = threading.Thread(target=deliveries)
    t.start()
    try:
        with RawIMAP(server.imap_port) as r:
            r.login(alice)
            r.command("SELECT INBOX")
            for round_ in range(5):
                words = " ".join(f"k{round_}x{i}" for i in range(6000))
                t0 = time.monotonic()
                _, done = r.command(f"STORE 1:10 +FLAGS.SILENT ({words})")
                assert done.split()[1:3] == [b"NO", b"[LIMIT]"], done
                assert time.monotonic() - t0 < 2, "refused at once"
            # A hundred new ones fit, and are announced once.
            words = " ".join(f"ok{i}" for i in range(100))
            lines, done = r.command(f"STORE 1:10 +FLAGS.SILENT ({words})")
            assert b"OK" in done and lines[0].startswith(b"* FLAGS ("), lines[:1]
            t0 = time.monotonic()
            lines, _ = r.command("SELECT INBOX")
            assert time.monotonic() - t0 < 2
            flags = next(l for l in lines if l.startswith(b"* FLAGS"))
            assert len(flags) < 2000, len(flags)
    finally:
        stop.set()
        t.join(30)
    assert waits and max(waits) < 2, f"a delivery waited {max(waits):.2f} s"
