"""Mail moved out of mailroom into another server, as an administrator leaving would do it: isync's
mbsync copies every folder of a mailbox from mailroom to a private Dovecot over IMAP, nested and
non-ASCII names included, and every message arrives byte for byte with its flags.

Issue 21 began with a migration out that lost a folder in silence (a non-ASCII name crashed the
session; the tool skipped the folder and reported success): this is that migration, checked."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from dovecot import DOVECOT, Dovecot
from helpers import PASSWORD

MBSYNC = shutil.which("mbsync")
TUID = re.compile(rb"\r\nX-TUID: [A-Za-z0-9+/]{12}\r\n\r\n")
pytestmark = pytest.mark.skipif(not (MBSYNC and DOVECOT), reason="mbsync and dovecot are needed "
                                "(scripts/test installs isync and dovecot)")

# Folder names as IMAP writes them (modified UTF-7), with what they mean.
FOLDERS = {
    "Entw&APw-rfe": "Entwürfe",
    "&BBAEQARFBDgEMg-": "Архив",
    "&BBAEQARFBDgEMg-/2026": "Архив/2026",
    "Projekte/Q1/Berichte": "Projekte/Q1/Berichte",
    "Tom &- Jerry": "Tom & Jerry",
    "&ZeVnLIqe-": "日本語",
}


def messages(folder: str) -> list[tuple[bytes, tuple]]:
    """Messages that test the copy: 8-bit text, a binary attachment, a line of 1,000 octets,
    a message without a final line break, a bare LF in the body, keywords and flags."""
    tag = folder.encode()
    return [
        (b"From: Anna <anna@example.org>\r\nTo: alice@example.test\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
         b"Date: Tue, 01 Dec 2026 10:00:00 +0100\r\nMessage-ID: <a-" + tag + b"@example.org>\r\n"
         b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
         + "Grüße aus Köln, Привет, 日本語.\r\n".encode() + b"in " + tag + b"\r\n", ("\\Seen",)),
        (b"From: b@example.org\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nsee\r\n"
         b"--zz\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         b"AAECAwQFBgcICQoLDA0ODw==\r\n--zz--\r\n", ("\\Flagged", "$Work")),
        (b"From: c@example.org\r\nSubject: long line\r\n\r\n" + b"y" * 1000 + b"\r\n", ("\\Answered",)),
        (b"From: d@example.org\r\nSubject: no final break\r\n\r\nlast line", ()),
    ]


def rc(work, mailroom_port: int, dovecot_port: int, user: str, patterns: str) -> str:
    return f"""
FSync no

IMAPAccount from
Host 127.0.0.1
Port {mailroom_port}
User {user}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore mailroom
Account from

IMAPAccount to
Host 127.0.0.1
Port {dovecot_port}
User {user}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore dovecot
Account to

Channel out
Far :mailroom:
Near :dovecot:
Patterns {patterns}
Create Near
Sync Pull
SyncState {work}/state/
"""


def folder_contents(port: int, user: str) -> dict:
    """Every folder's messages, as (octets, flags without \\Recent), in UID order."""
    from imapclient import IMAPClient
    c = IMAPClient("127.0.0.1", port=port, ssl=False, timeout=10)
    c.login(user, PASSWORD)
    out = {}
    for flags, _, name in c.list_folders():
        if b"\\Noselect" in flags:
            continue
        c.select_folder(name, readonly=True)
        data = c.fetch("1:*", ["BODY.PEEK[]", "FLAGS"])
        out[name] = [(d[b"BODY[]"], tuple(sorted(f.decode() for f in d[b"FLAGS"] if f != b"\\Recent")))
                     for _, d in sorted(data.items())]
    c.logout()
    return out


def test_mbsync_moves_every_folder_out_byte_for_byte(server, tmp_path):
    alice = server.add_user("alice")
    from imapclient import IMAPClient
    c = IMAPClient("127.0.0.1", port=server.imap_port, ssl=False, timeout=10)
    c.login(alice, PASSWORD)
    c.folder_encode = False  # names are given as IMAP writes them
    for raw in FOLDERS:
        c.create_folder(raw)
    for raw in ["INBOX", "Sent", *FOLDERS]:
        for msg, flags in messages(raw):
            c.append(raw, msg, flags)
    c.logout()
    # What imapsync does first, folder by folder: LIST and LSUB of each name, then STATUS. (LIST
    # of a non-ASCII name ended mailroom's session before issue 21, and imapsync then left the
    # folder behind and reported success.)
    m = server.imap(alice)
    for raw in FOLDERS:
        typ, data = m.list('""', f'"{raw}"')
        assert typ == "OK" and len(data) == 1, (raw, data)
        assert data[0].endswith((f' "/" "{raw}"'.encode(), f' "/" {raw}'.encode())), (raw, data)
        assert m.lsub('""', f'"{raw}"')[0] == "OK"
        typ, data = m.status(f'"{raw}"', "(MESSAGES)")
        assert typ == "OK" and b"MESSAGES 4" in data[0], (raw, data)
    m.logout()
    ours = folder_contents(server.imap_port, alice)
    # Every folder that holds mail, parents made implicitly included where they were made.
    assert {"Entwürfe", "Архив", "Архив/2026", "Projekte/Q1/Berichte", "Tom & Jerry", "日本語",
            "INBOX", "Sent"} <= set(ours), sorted(ours)

    dv = Dovecot()
    dv.add_user(alice)
    dv.start()
    try:
        work = tmp_path / "mbsync"
        (work / "state").mkdir(parents=True)
        (work / "rc").write_text(rc(work, server.imap_port, dv.imap_port, alice, "*"))
        r = subprocess.run([MBSYNC, "-c", str(work / "rc"), "out"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        theirs = folder_contents(dv.imap_port, alice)
    finally:
        dv.stop()
    for name, mail in ours.items():
        assert name in theirs, f"{name!r} did not arrive: {sorted(theirs)}\n{r.stdout}{r.stderr}"
        # mbsync marks each message it copies between IMAP servers with an X-TUID field at the
        # end of the header (its own, to find the copy again): that line is the only change.
        arrived = [TUID.sub(b"\r\n\r\n", m, count=1) for m, _ in theirs[name]]
        assert arrived == [m for m, _ in mail], f"{name!r}: the messages differ"
        # (isync 1.4 copies the system flags, not keywords.)
        system = lambda fs: tuple(f for f in fs if f.startswith("\\"))
        assert [system(f) for _, f in theirs[name]] == [system(f) for _, f in mail], f"{name!r}: the flags differ"
    # (Not vacuous: each of the new folders held its four messages.)
    assert all(len(ours[n]) == 4 for n in FOLDERS.values()), {n: len(ours[n]) for n in FOLDERS.values()}
