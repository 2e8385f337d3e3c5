"""A raw IMAP client for the tests that must see exact protocol lines (imaplib hides some),
and helpers shared by the IMAP tests."""

from __future__ import annotations

import re
import socket
import ssl
from typing import Optional

from helpers import IO_TIMEOUT, PASSWORD

LITERAL = re.compile(rb"\{(\d+)\}\r\n$")


class RawIMAP:
    """Sends command lines and reads responses, literals included, as bytes."""

    def __init__(self, port: int, timeout: float = IO_TIMEOUT, tls: Optional[ssl.SSLContext] = None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def line(self) -> bytes:
        """One response line; a literal in it is read and kept inline."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            i = self.buf.index(b"\r\n") + 2
            part, self.buf = self.buf[:i], self.buf[i:]
            out += part
            m = LITERAL.search(part)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def command(self, text: str | bytes, tag: Optional[str] = None) -> tuple[list[bytes], bytes]:
        """Sends one command; returns the untagged lines and the tagged one."""
        if tag is None:
            self.n += 1
            tag = f"t{self.n}"
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> tuple[list[bytes], bytes]:
        lines = []
        while True:
            l = self.line()
            if l.startswith(tag.encode() + b" "):
                return lines, l
            lines.append(l)

    def login(self, user: str, password: str = PASSWORD) -> None:
        _, done = self.command(f'LOGIN "{user}" "{password}"')
        assert b" OK " in done, done

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def untagged(lines: list[bytes], word: bytes) -> list[bytes]:
    """The untagged lines whose response word (after `* ` or `* n `) is `word`."""
    out = []
    for l in lines:
        parts = l.split(b" ", 3)
        if len(parts) > 1 and parts[1] == word:
            out.append(l)
        elif len(parts) > 2 and parts[2] == word:
            out.append(l)
    return out
