"""A private Dovecot on loopback (its own base_dir, state_dir and mail under a temporary
directory), the IMAP server mailroom's IMAP is compared with."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from helpers import PASSWORD, Deadline, free_ports

DOVECOT = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")


class Dovecot:
    def __init__(self, compress: bool = False):
        # Not under pytest's directory: Dovecot's unprivileged processes (auth, and the mail
        # process as nobody when the tests run as root) must be able to reach the files.
        self.root = Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
        os.chmod(self.root, 0o755)
        self.imap_port, = free_ports(1)
        self.proc = None
        self.users: list[str] = []
        # COMPRESS=DEFLATE (RFC 4978) through Dovecot's imap_zlib plugin, as mailroom offers it.
        self.compress = compress

    def add_user(self, address: str, password: str = PASSWORD, argon2id: str | None = None) -> str:
        """A user with a password in clear, or with the Argon2id hash given (a PHC string, as
        mailroom stores it): a benchmark then pays the same price for a login on both sides."""
        secret = f"{{ARGON2ID}}{argon2id}" if argon2id else f"{{PLAIN}}{password}"
        self.users.append(f"{address}:{secret}::::::")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "passwd").write_text("\n".join(self.users) + "\n")
        return address

    def start(self) -> "Dovecot":
        r = self.root
        for d in ("run", "state", "home"):
            (r / d).mkdir(parents=True, exist_ok=True)
        if not (r / "passwd").exists():
            (r / "passwd").write_text("")
        # Dovecot will not keep mail as root: as root, the mail belongs to nobody.
        uid, gid = os.getuid(), os.getgid()
        if uid == 0:
            uid, gid = 65534, 65534
            os.chown(r / "home", uid, gid)
        specials = "".join(
            f"  mailbox {n} {{\n    special_use = \\{n}\n    auto = subscribe\n  }}\n"
            for n in ("Sent", "Drafts", "Trash", "Junk"))
        zlib = ("mail_plugins = zlib\nprotocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n"
                if self.compress else "")
        (r / "dovecot.conf").write_text(f"""
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
instance_name = dovecot-{self.imap_port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:~/Maildir
{zlib}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {r}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox INBOX {{
    auto = subscribe
  }}
{specials}}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
""")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(r / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = Deadline(15)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), timeout=2) as s:
                    s.settimeout(5)
                    if s.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None or deadline.expired():
                log = (r / "dovecot.log").read_text() if (r / "dovecot.log").exists() else ""
                raise RuntimeError(f"dovecot did not start:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.root, ignore_errors=True)
