#!/usr/bin/env python3
"""mailroom and Postfix side by side, in one run, on one machine (see docs/benchmarks.md).

Every figure is measured in this run against a peer measured in this run, and reported as a
ratio: these machines are noisy, and absolute numbers drift between them.

- throughput: smtp-source (Postfix's load generator) sends to smtp-sink (stores nothing: the
  protocol-only limit), to a private Postfix delivering to Maildir (durable, in_flow_delay = 0),
  and to mailroom delivering to its mailbox store (durable); in alternation, several rounds.
  Accepted rate: messages / time smtp-source took. End-to-end rate: messages / time until every
  message is in a mailbox. Each run checks that exactly the messages sent arrived, once.
- latency: one session; time from the end of data to the 250, against one fsync on this disk.
- idle connections: resident memory of mailroom holding many idle SMTP connections.
- big queue: start-up time and `queue list` time with a million queued messages.
- soak: resident memory under sustained load, after a warm-up (before the idle test, on the same
  server).
- big messages: many clients each sending one large message at once (40 x 20 MB); the peak
  proportional set size (PSS) of each server, summed over all its processes, side by side.
"""

import argparse
import json
import os
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

DOMAIN = "bench.test"
RCPT = f"alice@{DOMAIN}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.recv(512)
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on port {port}")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kib(pid):
    """Proportional set size of a process: its private memory plus its share of what it shares
    (a fair sum over several processes, unlike RSS)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def descendants(pid):
    """`pid` and every process below it."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def set_key(text, section, name, value):
    """Sets `name = value` in `[section]` of a TOML text (replacing the line, or adding one)."""
    lines = text.split("\n")
    here = False
    for i, line in enumerate(lines):
        if line.startswith("["):
            here = line.strip() == f"[{section}]"
            if here:
                header = i
        elif here and line.split("=")[0].strip() == name:
            lines[i] = f"{name} = {value}"
            return "\n".join(lines)
    lines.insert(header + 1, f"{name} = {value}")
    return "\n".join(lines)


def say(*a):
    print(*a, flush=True)


class Mailroom:
    name = "mailroom"

    def __init__(self, binary, root, settings=None):
        self.binary = os.path.abspath(binary)
        self.data = os.path.join(root, "mailroom")
        self.port = free_port()
        self.pop3 = free_port()
        self.settings = settings or {}
        self.proc = None

    def cli(self, *args, stdin=None):
        return subprocess.run([self.binary, "--data", self.data, *args], input=stdin, capture_output=True,
                              text=True, check=True)

    def setup(self):
        self.cli("init", "--domain", DOMAIN, "--smtp", f"127.0.0.1:{self.port}", "--pop3", f"127.0.0.1:{self.pop3}",
                 *[a for flag in ("--submission", "--submissions", "--pop3s")
                   for a in (flag, f"127.0.0.1:{free_port()}")])
        path = os.path.join(self.data, "mailroom.toml")
        text = open(path).read()
        for key, value in self.settings.items():
            text = set_key(text, *key.split("."), value)
        open(path, "w").write(text)
        self.cli("user", "add", RCPT, "--password-stdin", stdin="pw\n")

    def start(self):
        log = open(os.path.join(self.data, "server.log"), "a")
        self.proc = subprocess.Popen([self.binary, "--data", self.data, "serve"], stdout=log, stderr=log)
        wait_port(self.port)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None

    def delivered(self):
        db = sqlite3.connect(f"file:{self.data}/mailroom.db?mode=ro", uri=True, timeout=30)
        try:
            row = db.execute("SELECT messages FROM users WHERE address = ?", (RCPT,)).fetchone()
            return row[0] if row else 0
        finally:
            db.close()

    def reset(self):
        self.cli("user", "del", RCPT, "--purge")
        self.cli("user", "add", RCPT, "--password-stdin", stdin="pw\n")

    def rss(self):
        return rss_kib(self.proc.pid)

    def pids(self):
        return [self.proc.pid]


class MeteredMailroom(Mailroom):
    """mailroom with its metrics on, scraped every second as Prometheus would: the same load,
    side by side with the plain one, shows what the metrics cost on the hot path."""
    name = "mailroom+metrics"

    def __init__(self, binary, root, settings=None):
        super().__init__(binary, os.path.join(root, "metered"), settings)
        os.makedirs(os.path.join(root, "metered"), exist_ok=True)
        self.metrics_port = free_port()
        self.settings["metrics.listen"] = f'["127.0.0.1:{self.metrics_port}"]'
        self.scrapes = 0
        self._stop = None

    def start(self):
        import threading
        import urllib.request
        super().start()
        self._stop = threading.Event()

        def scrape():
            while not self._stop.wait(1.0):
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                        r.read()
                    self.scrapes += 1
                except OSError:
                    pass

        threading.Thread(target=scrape, daemon=True).start()

    def stop(self):
        if self._stop:
            self._stop.set()
        super().stop()


class Postfix:
    name = "postfix"

    def __init__(self, root):
        self.dir = os.path.join(root, "postfix")
        self.port = free_port()
        self.maildir = os.path.join(self.dir, "vmail", "alice", "Maildir")

    def setup(self):
        conf = os.path.join(self.dir, "conf")
        for d in ("conf", "queue", "data", "vmail"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        shutil.copy("/etc/postfix/master.cf", conf)
        master = open(os.path.join(conf, "master.cf")).read().split("\n")
        for i, line in enumerate(master):
            if line.startswith("smtp ") and " inet " in line:
                master[i] = f"{self.port}      inet  n       -       n       -       -       smtpd"
        open(os.path.join(conf, "master.cf"), "w").write("\n".join(master))
        d = self.dir
        open(os.path.join(conf, "main.cf"), "w").write(f"""compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.{DOMAIN}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {d}/vmail
virtual_mailbox_maps = static:alice/Maildir/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 1
in_flow_delay = 0
default_process_limit = 100
message_size_limit = 52428800
virtual_mailbox_limit = 104857600
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
""")
        subprocess.run(["chown", "postfix", os.path.join(d, "data")], check=True)
        subprocess.run(["chown", "-R", "nobody", os.path.join(d, "vmail")], check=True)

    def start(self):
        # Postfix prints its errors only to a terminal: give it one.
        r = subprocess.run(["script", "-qc", f"postfix -c {self.dir}/conf start", "/dev/null"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"postfix did not start: {r.stdout} {r.stderr}")
        wait_port(self.port)

    def stop(self):
        subprocess.run(["script", "-qc", f"postfix -c {self.dir}/conf stop", "/dev/null"], capture_output=True)

    def pids(self):
        with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
            return descendants(int(f.read().strip()))

    def delivered(self):
        n = 0
        for sub in ("new", "cur"):
            try:
                n += sum(1 for _ in os.scandir(os.path.join(self.maildir, sub)))
            except FileNotFoundError:
                pass
        return n

    def reset(self):
        for sub in ("new", "cur"):
            p = os.path.join(self.maildir, sub)
            if os.path.isdir(p):
                for e in os.scandir(p):
                    os.unlink(e.path)


class Sink:
    name = "smtp-sink"

    def __init__(self):
        self.port = free_port()
        self.proc = None

    def setup(self):
        pass

    def start(self):
        self.proc = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{self.port}", "256"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)

    def delivered(self):
        return None

    def reset(self):
        pass


def run_case(system, sessions, messages, size, timeout):
    """Sends `messages` and measures (accepted/s, end-to-end/s); checks exactly-once delivery."""
    base = system.delivered()
    t0 = time.monotonic()
    subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size), "-d",
                    "-f", f"sender@{DOMAIN}", "-t", RCPT, f"127.0.0.1:{system.port}"], check=True,
                   stdout=subprocess.DEVNULL)
    accepted = time.monotonic() - t0
    if base is None:
        return messages / accepted, messages / accepted
    end = t0 + timeout
    while True:
        got = system.delivered() - base
        if got >= messages:
            break
        if time.monotonic() > end:
            raise RuntimeError(f"{system.name}: only {got} of {messages} messages delivered after {timeout}s")
        time.sleep(0.02)
    e2e = time.monotonic() - t0
    time.sleep(0.5)
    got = system.delivered() - base
    if got != messages:
        raise RuntimeError(f"{system.name}: {got} messages delivered for {messages} sent (duplicates?)")
    system.reset()
    return messages / accepted, messages / e2e


def big_messages(system, clients, size, timeout=900):
    """`clients` sessions each send one message of `size` octets at once; returns the peak PSS
    (KiB) of the system's processes together, sampled every 50 ms, and the seconds until every
    message was delivered (each exactly once)."""
    import threading
    base = system.delivered()
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], sum(pss_kib(p) for p in system.pids()))
            stop.wait(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.monotonic()
    try:
        subprocess.run(["smtp-source", "-s", str(clients), "-m", str(clients), "-l", str(size), "-d",
                        "-f", f"sender@{DOMAIN}", "-t", RCPT, f"127.0.0.1:{system.port}"], check=True,
                       stdout=subprocess.DEVNULL)
        end = t0 + timeout
        while system.delivered() - base < clients:
            if time.monotonic() > end:
                raise RuntimeError(f"{system.name}: big messages not delivered after {timeout}s")
            time.sleep(0.05)
        took = time.monotonic() - t0
    finally:
        stop.set()
        t.join()
    time.sleep(0.5)
    got = system.delivered() - base
    if got != clients:
        raise RuntimeError(f"{system.name}: {got} big messages delivered for {clients} sent")
    system.reset()
    return peak[0], took


def fsync_latency(directory, n=200):
    path = os.path.join(directory, "fsync.probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    samples = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            t = time.perf_counter()
            os.fsync(fd)
            samples.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return statistics.median(samples)


def data_latency(port, n):
    """Median and 95th percentile of end-of-data → 250, one session, n messages."""
    s = socket.create_connection(("127.0.0.1", port))
    # Without this, the client's own Nagle delay (40 ms with delayed ACKs) would be measured.
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    f = s.makefile("rb")

    def reply():
        while True:
            line = f.readline()
            if not line or line[3:4] != b"-":
                return line

    reply()
    s.sendall(b"EHLO bench.test\r\n")
    reply()
    body = b"Subject: latency\r\n\r\n" + (b"x" * 78 + b"\r\n") * 13
    samples = []
    for _ in range(n):
        s.sendall(f"MAIL FROM:<sender@{DOMAIN}>\r\n".encode())
        reply()
        s.sendall(f"RCPT TO:<{RCPT}>\r\n".encode())
        reply()
        s.sendall(b"DATA\r\n")
        reply()
        t = time.perf_counter()
        s.sendall(body + b".\r\n")
        line = reply()
        samples.append(time.perf_counter() - t)
        if not line.startswith(b"250"):
            raise RuntimeError(f"message refused: {line!r}")
    s.sendall(b"QUIT\r\n")
    s.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95)]


def idle_connections(mr, n):
    socks = []
    base = mr.rss()
    try:
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", mr.port))
            socks.append(s)
        for s in socks:
            s.settimeout(30)
            if not s.recv(512).startswith(b"220"):
                raise RuntimeError("an idle connection was not greeted")
        time.sleep(1)
        return base, mr.rss()
    finally:
        for s in socks:
            s.close()


def big_queue(binary, root, n):
    """Start-up and `queue list` times with n queued messages (deferred, to an unreachable domain)."""
    mr = Mailroom(binary, os.path.join(root, "bigq"), {"queue.poll_interval": '"1s"'})
    os.makedirs(mr.data, exist_ok=True)
    mr.setup()
    db = sqlite3.connect(os.path.join(mr.data, "mailroom.db"))
    now = int(time.time() * 1e6)
    later = now + 3600 * 10**6
    db.execute("BEGIN")
    db.execute("INSERT INTO contents (id, data, refs) VALUES (1, ?, ?)", (b"Subject: q\r\n\r\nqueued\r\n", n))
    db.executemany(
        "INSERT INTO queue (id, queue_id, kind, sender, smtputf8, arrival, content_id, size) VALUES (?, ?, 'normal', ?, 0, ?, 1, 22)",
        ((i, f"BQ{i:014d}", f"sender@{DOMAIN}", now) for i in range(1, n + 1)))
    db.executemany(
        "INSERT INTO queue_rcpt (msg, address, original, route, state, queue, next_attempt, attempts, status, reason, updated) "
        "VALUES (?, ?, ?, 'remote', 'deferred', 'link:far.test', ?, 1, '4.4.1', 'no answer', ?)",
        ((i, f"r{i % 1000}@far.test", f"r{i % 1000}@far.test", later, now) for i in range(1, n + 1)))
    db.execute("COMMIT")
    db.close()
    t0 = time.monotonic()
    mr.start()
    # Recovery is complete when the server has swept the queue for damaged records.
    log = os.path.join(mr.data, "server.log")
    while "queue checked" not in open(log).read():
        if time.monotonic() - t0 > 300:
            raise RuntimeError("the queue check after start-up did not finish in 300 s")
        time.sleep(0.02)
    startup = time.monotonic() - t0
    times = []
    for _ in range(3):
        t = time.monotonic()
        out = mr.cli("queue", "list", "--json").stdout
        times.append(time.monotonic() - t)
    listed = sum(q["messages"] for q in json.loads(out))
    mr.stop()
    if listed != n:
        raise RuntimeError(f"queue list shows {listed} messages, {n} were queued")
    return startup, statistics.median(times)


def soak(mr, seconds, warmup, sessions=4, size=10240):
    """Sustained load: `warmup` seconds (caches fill, the store reaches its working size), then
    `seconds` with RSS sampled every 5 s. Returns the samples of that window in KiB: memory is
    flat when the window's end is no higher than its start."""
    proc = subprocess.Popen(["smtp-source", "-s", str(sessions), "-m", "100000000", "-l", str(size), "-d",
                             "-f", f"sender@{DOMAIN}", "-t", RCPT, f"127.0.0.1:{mr.port}"], stdout=subprocess.DEVNULL)
    samples = []
    try:
        time.sleep(warmup)
        samples.append(mr.rss())
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(min(5, seconds / 10))
            samples.append(mr.rss())
        if proc.poll() is not None:
            raise RuntimeError("smtp-source stopped during the soak")
    finally:
        proc.terminate()
        proc.wait()
    return samples


def spread(values):
    return min(values), statistics.median(values), max(values)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mailroom", required=True, help="the mailroom binary (release build)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=20000, help="messages per run at 20 sessions")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--idle", type=int, default=10000, help="idle connections to hold (0: skip)")
    ap.add_argument("--queue", type=int, default=1000000, help="messages in the big-queue test (0: skip)")
    ap.add_argument("--soak", type=int, default=300, help="seconds of sustained load measured (0: skip)")
    ap.add_argument("--soak-warmup", type=int, default=60, help="seconds of load before the soak's window")
    ap.add_argument("--quick", action="store_true",
                    help="CI guard: one short round against smtp-sink; fails below --floor")
    ap.add_argument("--floor", type=float, default=0.1,
                    help="with --quick: least mailroom/smtp-sink end-to-end ratio accepted")
    ap.add_argument("--big-clients", type=int, default=40, help="clients of the big-message case (0: skip)")
    ap.add_argument("--big-size", type=int, default=20 * 1024 * 1024, help="octets of each big message")
    ap.add_argument("--big-ceiling", type=float, default=150.0,
                    help="with --quick: most MiB of PSS mailroom may reach in the big-message case")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.messages, a.idle, a.queue, a.soak = 1, 2000, 0, 0, 0
        a.big_clients, a.big_size = 20, 10 * 1024 * 1024

    root = tempfile.mkdtemp(prefix="mailroom-bench-")
    os.chmod(root, 0o755)  # Postfix runs as its own user and must reach its directories
    results = {"machine": {"cpus": os.cpu_count(), "kernel": os.uname().release}, "runs": {}}
    mr = Mailroom(a.mailroom, root, {
        "smtp.max_connections": a.idle + 1000, "smtp.max_connections_per_ip": a.idle + 1000,
        "queue.poll_interval": '"1s"'})
    metered = MeteredMailroom(a.mailroom, root, dict(mr.settings))
    systems = [Sink(), mr, metered] if a.quick else [Sink(), Postfix(root), mr, metered]
    try:
        for s in systems:
            s.setup()
            s.start()
        cases = [("20 sessions, 10 KB", a.sessions, a.messages, 10240)]
        if not a.quick:
            cases += [("1 session, 10 KB", 1, max(a.messages // 10, 200), 10240),
                      ("20 sessions, 1 KB", a.sessions, a.messages, 1024)]
        for case, sessions, messages, size in cases:
            per = {s.name: {"accepted": [], "e2e": []} for s in systems}
            for r in range(a.rounds):
                for s in systems:
                    acc, e2e = run_case(s, sessions, messages, size, timeout=600)
                    per[s.name]["accepted"].append(acc)
                    per[s.name]["e2e"].append(e2e)
                    say(f"  round {r + 1}  {case:<20} {s.name:<10} accepted {acc:8.0f}/s   end to end {e2e:8.0f}/s")
            results["runs"][case] = per
        say("")
        say("Ratios (min / median / max over rounds; each round measured side by side):")
        for case, per in results["runs"].items():
            m = per["mailroom"]["e2e"]
            for peer in [s.name for s in systems if s.name not in ("mailroom", "mailroom+metrics")]:
                ratios = [x / y for x, y in zip(m, per[peer]["e2e"])]
                lo, med, hi = spread(ratios)
                say(f"  {case:<20} mailroom/{peer:<10} end to end  {lo:5.2f} / {med:5.2f} / {hi:5.2f}")
                results.setdefault("ratios", {})[f"{case}: mailroom/{peer}"] = [lo, med, hi]
        say("What the metrics cost (mailroom scraped every second / mailroom, end to end; 1 = nothing):")
        for case, per in results["runs"].items():
            ratios = [x / y for x, y in zip(per["mailroom+metrics"]["e2e"], per["mailroom"]["e2e"])]
            lo, med, hi = spread(ratios)
            say(f"  {case:<20} mailroom+metrics/mailroom  {lo:5.2f} / {med:5.2f} / {hi:5.2f}"
                f"   ({metered.scrapes} scrapes)")
            results.setdefault("ratios", {})[f"{case}: mailroom+metrics/mailroom"] = [lo, med, hi]
        if a.big_clients:
            say("")
            mb = a.big_size / (1024 * 1024)
            big = {}
            for s in systems:
                if s.name not in ("smtp-sink", "mailroom+metrics"):
                    peak, took = big_messages(s, a.big_clients, a.big_size)
                    big[s.name] = {"peak_pss_mib": peak / 1024, "seconds": took}
                    say(f"Big messages, {a.big_clients} clients x {mb:.0f} MB at once: {s.name:<10} "
                        f"peak PSS {peak / 1024:7.1f} MiB, all delivered in {took:6.1f} s")
            if "postfix" in big:
                r = big["mailroom"]["peak_pss_mib"] / big["postfix"]["peak_pss_mib"]
                say(f"  mailroom/postfix peak memory: {r:.2f} (target: at most 2)")
                big["ratio_mailroom_postfix"] = r
            results["big_messages"] = {"clients": a.big_clients, "size": a.big_size, **big}
        if a.quick:
            lo = results["ratios"][f"20 sessions, 10 KB: mailroom/smtp-sink"][0]
            if lo < a.floor:
                say(f"FAIL: mailroom/smtp-sink end-to-end ratio {lo:.3f} is below the floor {a.floor}")
                sys.exit(1)
            say(f"ok: mailroom/smtp-sink end-to-end ratio {lo:.3f} >= floor {a.floor}")
            if a.big_clients:
                peak = results["big_messages"]["mailroom"]["peak_pss_mib"]
                if peak > a.big_ceiling:
                    say(f"FAIL: mailroom's peak PSS {peak:.1f} MiB with big messages is above {a.big_ceiling} MiB "
                        "(is message text held in memory?)")
                    sys.exit(1)
                say(f"ok: mailroom's peak PSS with big messages {peak:.1f} MiB <= {a.big_ceiling} MiB")
            return
        say("")
        fs = fsync_latency(mr.data)
        lat = {}
        for s in systems:
            if s.name != "smtp-sink":
                lat[s.name] = data_latency(s.port, 300)
        say(f"Latency, one session, end of data to 250 (median, p95); one fsync here takes {fs * 1000:.2f} ms:")
        for name, (med, p95) in lat.items():
            say(f"  {name:<10} {med * 1000:7.2f} ms  {p95 * 1000:7.2f} ms   = {med / fs:5.2f} fsyncs (median)")
        results["latency"] = {"fsync_ms": fs * 1000, **{k: [v[0] * 1000, v[1] * 1000] for k, v in lat.items()}}
        for s in systems:
            if s is not mr:
                s.stop()
        if a.soak:
            samples = soak(mr, a.soak, a.soak_warmup)
            warm, last, peak = samples[0], samples[-1], max(samples)
            say(f"Soak, {a.soak} s of load after {a.soak_warmup} s: resident memory at the start {warm / 1024:.1f} MiB, "
                f"at the end {last / 1024:.1f} MiB ({100 * (last - warm) / warm:+.1f}%), "
                f"peak {peak / 1024:.1f} MiB")
            results["soak"] = {"seconds": a.soak, "warmup": a.soak_warmup, "start_mib": warm / 1024,
                              "last_mib": last / 1024, "peak_mib": peak / 1024,
                              "samples_mib": [round(x / 1024, 2) for x in samples]}
        if a.idle:
            base, held = idle_connections(mr, a.idle)
            say(f"Idle connections: {a.idle} held, mailroom resident memory {held / 1024:.1f} MiB (idle: {base / 1024:.1f} MiB)")
            results["idle"] = {"connections": a.idle, "rss_mib": held / 1024}
        mr.stop()
        if a.queue:
            startup, listing = big_queue(a.mailroom, root, a.queue)
            say(f"Big queue: {a.queue} messages; start-up {startup:.2f} s; `queue list` {listing * 1000:.0f} ms")
            results["big_queue"] = {"messages": a.queue, "startup_s": startup, "queue_list_ms": listing * 1000}
    finally:
        for s in systems:
            try:
                s.stop()
            except Exception:
                pass
        if a.json:
            with open(a.json, "w") as f:
                json.dump(results, f, indent=2)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    main()
