"""mutt, under tmux, reads, moves and deletes mail over IMAPS as a person would: the keys a
person presses, the screen a person sees."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from helpers import PASSWORD, Deadline, make_message, smtp_send

MUTT, TMUX = shutil.which("mutt"), shutil.which("tmux")
pytestmark = pytest.mark.skipif(not (MUTT and TMUX), reason="mutt and tmux are needed (scripts/test installs mutt)")


class Screen:
    def __init__(self, name: str, command: list[str]):
        self.name = name
        subprocess.run([TMUX, "new-session", "-d", "-s", name, "-x", "160", "-y", "40", *command], check=True)

    def text(self) -> str:
        return subprocess.run([TMUX, "capture-pane", "-p", "-t", self.name], capture_output=True,
                              text=True).stdout

    def wait(self, needle: str, timeout: float = 15) -> str:
        deadline = Deadline(timeout)
        while True:
            t = self.text()
            if needle in t:
                return t
            if deadline.expired():
                raise AssertionError(f"{needle!r} not on the screen:\n{t}")
            time.sleep(0.1)

    def keys(self, *keys: str) -> None:
        subprocess.run([TMUX, "send-keys", "-t", self.name, *keys], check=True)

    def close(self) -> None:
        subprocess.run([TMUX, "kill-session", "-t", self.name], capture_output=True)


def test_mutt_reads_moves_and_deletes_over_imaps(server, tmp_path):
    alice = server.add_user("alice")
    with server.smtp() as s:
        for subj in ["Quarterly figures", "Lunch plans", "Spam offer"]:
            smtp_send(s, "bob@example.org", [alice], make_message(subj, f"This is about {subj.lower()}.\r\n"))
    server.wait_for_mail(alice, 3)
    m = server.imap(alice)
    assert m.create("Archive")[0] == "OK"
    m.logout()
    rc = tmp_path / "muttrc"
    rc.write_text(f"""
set folder="imaps://127.0.0.1:{server.imaps_port}/"
set spoolfile="+INBOX"
set imap_user="{alice}"
set imap_pass="{PASSWORD}"
set certificate_file="{tmp_path}/certificates"
set ssl_verify_host=no
set header_cache=""
set message_cachedir=""
set delete=yes
set confirmappend=no
set confirmcreate=no
set mark_old=no
set move=no
set wait_key=no
set sort=date-sent
set timeout=1
set imap_deflate=yes
""")
    # mutt trusts the certificates in this file (and asks about the others).
    (tmp_path / "certificates").write_bytes(server.certificate.read_bytes())
    screen = Screen(f"mutt{server.imap_port}", [MUTT, "-n", "-F", str(rc)])
    try:
        screen.wait("Spam offer")
        # Read the first message.
        screen.keys("Enter")
        screen.wait("This is about quarterly figures.")
        screen.keys("q")
        screen.wait("Lunch plans")
        # Save (move) the second to Archive: with delete=yes the copy's original goes at sync.
        screen.keys("j", "s")
        screen.wait("Save to mailbox")
        screen.keys("C-u", "=Archive", "Enter")
        time.sleep(0.5)
        # Delete the third, and sync.
        screen.keys("j", "d", "$")
        deadline = Deadline(15)
        while True:
            m = server.imap(alice)
            inbox = m.select("INBOX")[1][0]
            archive = m.status("Archive", "(MESSAGES)")[1][0]
            subjects = []
            if int(inbox):
                subjects = [d[1] for d in m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1] if isinstance(d, tuple)]
            m.logout()
            if inbox == b"1" and b"MESSAGES 1" in archive:
                break
            if deadline.expired():
                raise AssertionError(f"INBOX {inbox} {subjects}, Archive {archive}:\n{screen.text()}")
            time.sleep(0.2)
        assert subjects == [b"Subject: Quarterly figures\r\n\r\n"]
        m = server.imap(alice)
        m.select("Archive")
        typ, data = m.fetch("1", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert data[0][1] == b"Subject: Lunch plans\r\n\r\n"
        m.select("INBOX")
        assert b"\\Seen" in m.fetch("1", "(FLAGS)")[1][0], "read in mutt, so \\Seen"
        m.logout()
        screen.keys("q")
    finally:
        screen.close()
