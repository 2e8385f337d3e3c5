"""`sendmail` for local programs (issue 22): Postfix's options, the maildrop that works whether or
not the server runs, `root` and bare names completed with the origin, a non-root user who
cannot forge another local user's sender, sysexits exit codes, `-bs`, and the `sendmail`/`mailq`
links."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import BIN, CLI_TIMEOUT, DOMAIN, PASSWORD, Mailroom, poll

NOBODY = 65534


def sendmail(server: Mailroom, *args: str, input: bytes = b"", user: int | None = None,
             program: list[str] | None = None, env: dict | None = None,
             umask: int | None = None) -> subprocess.CompletedProcess:
    """Runs `mailroom --data DATA sendmail ARGS` (or `program`), as `user` when given."""
    cmd = program or [BIN, "--data", str(server.data), "sendmail"]
    cmd = cmd + list(args)
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, input=input, capture_output=True, timeout=CLI_TIMEOUT,
                          env={**os.environ, **(env or {})},
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


@pytest.fixture
def open_root():
    """A directory that every local user can traverse (pytest's own are 0700), for servers
    whose maildrop a non-root user must reach."""
    d = Path(tempfile.mkdtemp(prefix="mailroom-sendmail-", dir="/tmp"))
    d.chmod(0o711)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def open_server(open_root, request):
    m = Mailroom(open_root).init()
    yield m
    m.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"----- server log -----\n{m.log()}")


def one(server: Mailroom, address: str, timeout: float = 15.0) -> email.message.Message:
    raw = poll(lambda: server.messages(address), timeout, f"a message for {address}")
    assert len(raw) == 1, raw
    return email.message_from_bytes(raw[0])


CRON_MAIL = (b"To: root\nCc: Alice <alice@" + DOMAIN.encode() + b">\nBcc: bob\n"
             b"Subject: Cron <root@host> run-parts /etc/cron.daily\n\n"
             b"/etc/cron.daily/logrotate:\nerror: skipping\n.\nthe line above is a lone dot\n")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run sendmail as another user")
def test_sendmail_queues_while_the_server_is_stopped_and_delivers_once_it_starts(open_server):
    """A non-root user's cron mail with `-t -i`, left while the server is stopped: root (the
    postmaster, through the alias `init` made), Cc and Bcc get it once the server starts; the
    Bcc field is gone, the lone dot stays, and From/Date/Message-ID are added."""
    s = open_server
    for u in ("alice", "bob"):
        s.add_user(u)
    postmaster = f"postmaster@{DOMAIN}"
    s.cli("user", "passwd", postmaster, "--password-stdin", input=PASSWORD + "\n")
    s.passwords[postmaster] = PASSWORD
    s.start()
    s.stop()
    # (umask 077, as many users and root's cron have: the server must still read the file.)
    p = sendmail(s, "-t", "-i", input=CRON_MAIL, user=NOBODY, umask=0o077)
    assert p.returncode == 0, p.stderr
    drops = [n for n in os.listdir(s.data / "maildrop")]
    assert len(drops) == 1, drops
    st = (s.data / "maildrop" / drops[0]).stat()
    assert st.st_uid == NOBODY and st.st_mode & 0o777 == 0o644, oct(st.st_mode)
    s.start()
    for address in (f"postmaster@{DOMAIN}", f"alice@{DOMAIN}", f"bob@{DOMAIN}"):
        m = one(s, address)
        assert m["Subject"] == "Cron <root@host> run-parts /etc/cron.daily"
        assert m["Bcc"] is None
        assert m["From"] == f"nobody@{DOMAIN}"
        assert m["Return-Path"] in (f"<nobody@{DOMAIN}>", None)
        assert m["Date"] and m["Message-ID"]
        assert "\n.\nthe line above is a lone dot" in m.get_payload().replace("\r\n", "\n")
    poll(lambda: not os.listdir(s.data / "maildrop"), 5, "the drop file removed")


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run sendmail as another user")
def test_a_local_user_cannot_send_as_another_local_user(open_server):
    s = open_server
    s.add_user("alice")
    s.start()
    forged = b"Subject: forged\n\nhi\n"
    p = sendmail(s, "-f", f"postmaster@{DOMAIN}", "alice", input=forged, user=NOBODY)
    assert p.returncode == 0, p.stderr  # (only the server can tell who wrote the file)
    quarantine = s.data / "maildrop-quarantine"
    poll(lambda: quarantine.is_dir() and os.listdir(quarantine), 10, "the forged drop quarantined")
    assert "another local user's address" in s.log()
    own = sendmail(s, "-f", f"nobody@{DOMAIN}", "alice", input=b"Subject: own\n\nhi\n", user=NOBODY)
    assert own.returncode == 0, own.stderr
    m = one(s, f"alice@{DOMAIN}")
    assert m["Subject"] == "own"
    doctor = s.cli("doctor", "--json", check=False)
    assert "maildrop-quarantined" in doctor.stdout


def test_sendmail_to_bare_names_and_addresses_on_a_running_server(server):
    """Root runs `sendmail alice` (bare) with -F: delivered, with the origin added and a From
    naming the full name; `-f` of root is taken as given."""
    server.add_user("alice")
    p = sendmail(server, "-F", "Backup Job", "-f", f"backup@{DOMAIN}", "alice",
                 input=b"Subject: nightly\n\nok\n")
    assert p.returncode == 0, p.stderr
    m = one(server, f"alice@{DOMAIN}")
    assert m["From"] == f'"Backup Job" <backup@{DOMAIN}>'
    assert m["Subject"] == "nightly"
    assert "with local" in m["Received"]


@pytest.mark.parametrize("args, stdin, code", [
    ([], b"Subject: x\n\nno recipients\n", 64),
    (["-N", "sometimes", "alice"], b"Subject: x\n\n", 64),
    (["-R", "most", "alice"], b"Subject: x\n\n", 64),
    (["-V", "x" * 101, "alice"], b"Subject: x\n\n", 64),
    (["-t"], b"Subject: x\n\nno To either\n", 64),
    (["-k", "alice"], b"", 64),
    (["-bd"], b"", 64),
    (["not an@address@x"], b"Subject: x\n\n", 67),
], ids=["none", "bad-notify", "bad-ret", "long-envid", "t-without-to", "unknown-option", "daemon",
        "bad-address"])
def test_sendmail_exit_codes_are_sysexits(server, args, stdin, code):
    p = sendmail(server, *args, input=stdin)
    assert p.returncode == code, (p.returncode, p.stderr)
    assert p.stderr.startswith(b"sendmail: "), p.stderr
    assert not os.listdir(server.data / "maildrop")


def test_sendmail_without_a_maildrop_says_mail_is_not_set_up(tmp_path):
    p = subprocess.run([BIN, "--data", str(tmp_path / "none"), "sendmail", "root"],
                       input=b"hi\n", capture_output=True, timeout=CLI_TIMEOUT)
    assert p.returncode == 69, p
    assert b"no maildrop" in p.stderr


def test_sendmail_bs_speaks_smtp_on_standard_input(server):
    server.add_user("alice")
    session = (b"EHLO localhost\r\nMAIL FROM:<>\r\nRCPT TO:<alice>\r\nDATA\r\n"
               b"Subject: over -bs\r\n\r\n..dot-stuffed\r\n.\r\nQUIT\r\n")
    p = sendmail(server, "-bs", input=session)
    assert p.returncode == 0, p.stderr
    codes = [line[:3] for line in p.stdout.decode().split("\r\n") if line[3:4] == " "]
    assert codes == ["220", "250", "250", "250", "354", "250", "221"], p.stdout
    m = one(server, f"alice@{DOMAIN}")
    assert m["Subject"] == "over -bs"
    assert m.get_payload().startswith(".dot-stuffed")


def test_the_binary_called_sendmail_or_mailq_acts_as_them(server, tmp_path):
    server.add_user("alice")
    links = tmp_path / "bin"
    links.mkdir()
    for name in ("sendmail", "mailq", "newaliases"):
        (links / name).symlink_to(BIN)
    env = {"MAILROOM_DATA": str(server.data)}
    p = sendmail(server, "-oi", "alice", input=b"Subject: via link\n\nhi\n",
                 program=[str(links / "sendmail")], env=env)
    assert p.returncode == 0, p.stderr
    assert one(server, f"alice@{DOMAIN}")["Subject"] == "via link"
    q = sendmail(server, program=[str(links / "mailq")], env=env)
    assert q.returncode == 0, q.stderr
    n = sendmail(server, program=[str(links / "newaliases")], env=env)
    assert n.returncode == 0, n.stderr


def test_init_routes_root_to_the_postmaster_and_doctor_says_when_it_does_not(server):
    assert server.cli("alias", "list", "--json").stdout.count(f"root@{DOMAIN}") == 1
    server.cli("alias", "del", f"root@{DOMAIN}")
    doctor = server.cli("doctor", "--json", check=False)
    assert "root-unrouted" in doctor.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run as another user")
def test_what_cannot_be_read_in_the_maildrop_is_quarantined_or_said_once(open_server):
    """A user leaves a file nobody may read and a directory in the maildrop: the file is
    quarantined (private), the directory is reported once, not at every look."""
    s = open_server
    s.start()
    drop = s.data / "maildrop"
    subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "sh", "-c",
                    f"umask 777; : > {drop}/unreadable; umask 077; mkdir {drop}/adir"], check=True)
    quarantine = s.data / "maildrop-quarantine"
    poll(lambda: quarantine.is_dir() and any(n.endswith("-unreadable") for n in os.listdir(quarantine)),
         10, "the unreadable file quarantined")
    assert quarantine.stat().st_mode & 0o777 == 0o700
    time.sleep(2.5)  # (several looks at queue.poll_interval)
    assert s.log().count("adir") == 1, s.log()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root to run sendmail as another user")
def test_a_local_program_meets_a_lists_posting_policy_as_a_client_would(open_server):
    """A members-only list refuses a local user who is not a member (quarantined and logged, as
    SMTP refuses with 550 5.7.1), and takes a member's mail."""
    s = open_server
    s.add_user("alice")
    s.add_list("crew", f"alice@{DOMAIN}", f"nobody@{DOMAIN}")
    s.cli("list", "policy", f"crew@{DOMAIN}", "--post", "members")
    s.add_list("staff", f"alice@{DOMAIN}")
    s.cli("list", "policy", f"staff@{DOMAIN}", "--post", "members")
    s.start()
    p = sendmail(s, "staff", input=b"Subject: not a member\n\nhi\n", user=NOBODY)
    assert p.returncode == 0, p.stderr
    quarantine = s.data / "maildrop-quarantine"
    poll(lambda: quarantine.is_dir() and os.listdir(quarantine), 10, "the refused drop quarantined")
    assert "only the list's members may post to it" in s.log()
    p = sendmail(s, "crew", input=b"Subject: a member\n\nhi\n", user=NOBODY)
    assert p.returncode == 0, p.stderr
    m = one(s, f"alice@{DOMAIN}")
    assert m["Subject"] == "a member"
