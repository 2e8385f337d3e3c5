"""Grows the IMAP fuzz corpora from what the black-box tests send (issue 21: the corpora held 13
and 3 inputs). With MAILROOM_RECORD_CORPUS=DIR (the repository's fuzz/corpus), every octet a
Python client of these tests sends to a mailroom IMAP port in clear is kept; at the end each
command becomes an `imap_command` input and each APPENDed message an `imap_mime` input, named
by their hash (so running it again adds only what is new). scripts/grow-corpus runs it.

Only the tests' own clients are seen (imaplib, IMAPClient, the raw client); mbsync and mutt
run in other processes, and IMAPS is encrypted at the socket."""

from __future__ import annotations

import atexit
import hashlib
import re
import socket
from pathlib import Path

# A command's octets at most (the fuzz targets' limits are smaller: longer ones test those).
MAX_INPUT = 64 * 1024
# The `imap_command` knob (its first octet): even, so APPEND literals stay in the command,
# and large, so that real command lines fit its line limit.
KNOB = bytes([254])
LITERAL = re.compile(rb"~?\{(\d+)(\+?)\}\r\n$")

ports: set[int] = set()
_streams: dict[int, bytearray] = {}


def _record(sock: socket.socket, data) -> None:
    try:
        port = sock.getpeername()[1]
    except (OSError, IndexError, TypeError):
        return
    if port in ports:
        _streams.setdefault(id(sock), bytearray()).extend(bytes(data))


def install(root: str) -> None:
    send, sendall = socket.socket.send, socket.socket.sendall

    def rec_send(self, data, *a):
        n = send(self, data, *a)
        _record(self, memoryview(data)[:n])
        return n

    def rec_sendall(self, data, *a):
        _record(self, data)
        return sendall(self, data, *a)

    socket.socket.send = rec_send
    socket.socket.sendall = rec_sendall
    atexit.register(_write, Path(root))


def commands(stream: bytes) -> tuple[list[bytes], list[bytes]]:
    """The commands in a client's octets (each with its literals), and the literals of
    APPENDs (messages)."""
    out, messages, pos = [], [], 0
    while pos < len(stream):
        start = pos
        cmd_literals = []
        while True:
            end = stream.find(b"\r\n", pos)
            if end < 0:
                return out, messages
            line_end = end + 2
            m = LITERAL.search(stream[pos:line_end])
            if not m:
                pos = line_end
                break
            n = int(m.group(1))
            cmd_literals.append(stream[line_end:line_end + n])
            pos = line_end + n
        cmd = stream[start:pos]
        out.append(cmd)
        if re.match(rb"^\S+ (UID )?APPEND ", cmd, re.I):
            messages.extend(cmd_literals)
    return out, messages


def _write(root: Path) -> None:
    new = {"imap_command": 0, "imap_mime": 0}
    for stream in _streams.values():
        cmds, messages = commands(bytes(stream))
        for target, items, prefix in (("imap_command", cmds, KNOB), ("imap_mime", messages, b"")):
            d = root / target
            d.mkdir(parents=True, exist_ok=True)
            for item in items:
                # DONE (after IDLE) and the continuation lines of AUTHENTICATE are not commands.
                if len(item) > MAX_INPUT or not item.strip() or item.strip() == b"DONE":
                    continue
                data = prefix + item
                path = d / f"bb-{hashlib.sha256(data).hexdigest()[:16]}"
                if not path.exists():
                    path.write_bytes(data)
                    new[target] += 1
    print(f"\nrecord_corpus: {new['imap_command']} new imap_command and {new['imap_mime']} new "
          f"imap_mime inputs in {root}")
