"""An organization of real `mailroom` servers on loopback ports for the black-box tests: each
with its own data directory, joined with `org create` / `org join` exactly as an operator does,
every timer shortened by configuration.

The standard layout is two routing groups of two servers:

    G1: s1 (master), s2          G2: s3 (master), s4
    connector g1g2 (cost 1) between G1 and G2, bridgeheads s2 and s3

with one user per server (alice@s1, bob@s2, carol@s3, dave@s4), all in org.test.
"""

from __future__ import annotations

import json
from typing import Callable, Optional

from helpers import Mailroom, poll

ORG_DOMAIN = "org.test"

# Timers in seconds, not minutes: a peer is DOWN after ~1 s of silence, probed every second.
ORG_SETTINGS = {
    "org.probe_interval": "1s",
    "org.glitch_retry": "300ms",
    "org.glitch_retries": 2,
    "org.damping": "1s",
    "org.connect_timeout": "2s",
    "org.command_timeout": "5s",
    "org.shadow_timeout": "2s",
    "queue.retry_schedule": ["1s"],
    "queue.retry_jitter": 0,
    "queue.glitch_retry": "500ms",
}

USERS = {"s1": "alice", "s2": "bob", "s3": "carol", "s4": "dave"}


def host(name: str) -> str:
    return f"{name}.{ORG_DOMAIN}"


class Org:
    """The servers of one organization, by short name (s1, s2, ...)."""

    def __init__(self, servers: dict[str, Mailroom]):
        self.servers = servers
        self.token = ""

    def __getitem__(self, name: str) -> Mailroom:
        return self.servers[name]

    def show(self, name: str) -> dict:
        return json.loads(self[name].cli("org", "show", "--json").stdout)

    def routing(self, name: str) -> dict:
        return json.loads(self[name].cli("routing", "show", "--json").stdout)

    def explain(self, name: str, address: str, size: int = 1000) -> dict:
        return json.loads(self[name].cli("routing", "explain", address, "--size", str(size), "--json").stdout)

    def running(self) -> list[str]:
        return [n for n, m in self.servers.items() if m.proc is not None and m.proc.poll() is None]

    def wait_agree(self, names: Optional[list[str]] = None, timeout: float = 15.0) -> str:
        """Waits until the given (default: running) servers hold the same state; its digest."""
        names = names or self.running()

        def same():
            digests = {n: self.show(n)["digest"] for n in names}
            return next(iter(digests.values())) if len(set(digests.values())) == 1 else None
        return poll(same, timeout, f"the servers {names} to agree on the organization state", interval=0.2)

    def wait_state(self, observers: list[str], what: Callable[[dict], bool], timeout: float, desc: str) -> None:
        """Waits until `what(routing show)` holds on every observer."""
        for n in observers:
            poll(lambda: what(self.routing(n)), timeout, f"{desc} on {n}", interval=0.2)

    def stop(self):
        for m in self.servers.values():
            m.stop()


def server_state(routing: dict, server: str) -> str:
    return next(s["state"] for s in routing["servers"] if s["name"] == host(server))


def connector_state(routing: dict, connector: str) -> str:
    return next(c["state"] for c in routing["connectors"] if c["name"] == connector)


def build(make_server, groups: dict[str, list[str]], settings: Optional[dict] = None,
          per_server: Optional[dict[str, dict]] = None) -> Org:
    """Starts one server per name, makes the organization on the first, joins the others in
    their groups and adds one user per server. Groups exchange state only over connectors, so
    the caller adds them and then waits for agreement (Org.wait_agree)."""
    servers: dict[str, Mailroom] = {}
    order = [(g, s) for g, members in groups.items() for s in members]
    for _, name in order:
        cfg = dict(ORG_SETTINGS)
        cfg.update(settings or {})
        cfg.update((per_server or {}).get(name, {}))
        servers[name] = make_server(settings=cfg, domain=ORG_DOMAIN, hostname=host(name))
    first_group, first = order[0]
    token = servers[first].cli("org", "create", "--name", "Acme", "--group", first_group).stdout.strip()
    assert token.startswith("mrorg1."), token
    for group, name in order[1:]:
        servers[name].cli("org", "join", "--token-stdin", "--group", group, input=token + "\n")
    org = Org(servers)
    org.token = token
    for name, m in servers.items():
        if name in USERS:
            m.add_user(f"{USERS[name]}@{ORG_DOMAIN}")
    return org


def standard(make_server, settings: Optional[dict] = None, per_server: Optional[dict] = None) -> Org:
    org = build(make_server, {"G1": ["s1", "s2"], "G2": ["s3", "s4"]}, settings, per_server)
    org["s1"].cli("org", "connector", "add", "g1g2", "--between", "G1", "G2", "--cost", "1",
                  "--bridgehead", host("s2"), "--bridgehead", host("s3"))
    org.wait_agree()
    return org


def address(server: str) -> str:
    return f"{USERS[server]}@{ORG_DOMAIN}"
