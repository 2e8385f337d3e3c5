"""The queue states an operator sees and sets beyond Ready/Retry/Frozen: Active (a delivery in
progress), Disabled (`queue disable`, Exchange's "disable outbound mail", for one queue or all)
and Scheduled (`queue schedule`), against a real SMTP peer (aiosmtpd)."""

from __future__ import annotations

import threading

from helpers import holds, make_message, poll, smtp_send
from peers import relay_settings


def send(server, rcpt: str, subject: str) -> str:
    with server.smtp() as s:
        return smtp_send(s, "alice@example.test", [rcpt], make_message(subject, to=rcpt))


def state(server, queue: str) -> str:
    q = server.queues().get(queue)
    return q["state"] if q else "absent"


def test_disable_holds_outbound_mail_until_enabled(make_server, make_peer):
    peer = make_peer()
    server = make_server(relay_settings(peer.address))
    link = f"link:{peer.address}"
    v = server.queue("disable", peer.address)
    assert v["queue"] == link and v["disabled_since"], v
    assert state(server, link) == "Disabled", "shown even while empty"
    qid = send(server, "bob@far.test", "held")
    poll(lambda: state(server, link) == "Disabled" and server.queues()[link]["recipients"] == 1,
         5, "the message waiting in the disabled queue")
    peer.stays_at(0, 1.5)
    [m] = server.queue_messages(qid)
    assert m["recipients"][0]["held"] == "disabled", m
    # Local delivery is not outbound: it cannot be disabled.
    p = server.cli("queue", "disable", "local", check=False)
    assert p.returncode != 0 and "not an outbound queue" in p.stderr, p.stderr
    v = server.queue("enable", peer.address)
    assert v["disabled_since"] is None
    [got] = peer.wait_for(1, timeout=10)
    assert got.rcpt_tos == ["bob@far.test"]


def test_disable_all_outbound_mail(make_server, make_peer):
    peer = make_peer()
    server = make_server(relay_settings(peer.address))
    alice = server.add_user("alice")
    server.queue("disable", "--all")
    listing = server.cli("queue", "list").stdout
    assert "Outbound mail is DISABLED" in listing, listing
    send(server, "bob@far.test", "stays")
    send(server, alice, "local mail still flows")
    server.wait_for_mail(alice, 1)
    link = f"link:{peer.address}"
    poll(lambda: state(server, link) == "Disabled", 5, "the link queue shown Disabled")
    assert server.queues()["unreachable"]["state"] == "Disabled"
    peer.stays_at(0, 1.5)
    server.queue("enable", "--all")
    peer.wait_for(1, timeout=10)


def test_schedule_holds_a_queue_until_its_time_and_retry_forces_it(make_server, make_peer):
    peer = make_peer()
    server = make_server(relay_settings(peer.address))
    link = f"link:{peer.address}"
    v = server.queue("schedule", peer.address, "--in", "1h")
    assert v["scheduled_until"], v
    send(server, "bob@far.test", "later")
    poll(lambda: state(server, link) == "Scheduled", 5, "the queue shown Scheduled")
    assert server.queues()[link]["scheduled_until"] == v["scheduled_until"]
    peer.stays_at(0, 1.5)
    # A retry of the queue clears its schedule, as Exchange's "force connection".
    server.queue("retry", link)
    peer.wait_for(1, timeout=10)
    # A schedule that has passed holds nothing.
    server.queue("schedule", peer.address, "--at", "2000-01-01T00:00:00Z")
    send(server, "carol@far.test", "now")
    peer.wait_for(2, timeout=10)


def test_active_while_a_delivery_is_in_progress(make_server, make_peer):
    release = threading.Event()
    peer = make_peer(hold_data=release)
    server = make_server(relay_settings(peer.address))
    link = f"link:{peer.address}"
    qid = send(server, "bob@far.test", "slow peer")
    poll(lambda: state(server, link) == "Active", 10, "the queue shown Active during the transfer")
    assert server.queues()[link]["active"] == 1
    [m] = server.queue_messages(qid)
    assert m["recipients"][0]["state"] == "active", m
    release.set()
    peer.wait_for(1, timeout=10)
    poll(lambda: state(server, link) in ("Empty", "absent"), 10, "the queue empty once delivered")
