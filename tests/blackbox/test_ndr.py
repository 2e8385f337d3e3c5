"""Quotas and non-delivery reports (RFC 3464), read back over POP3 and parsed with `email`."""

from __future__ import annotations

import email.utils
import re

import pytest

from helpers import HOSTNAME, check_copy, event_ids, header_fields, make_message, of_queue, parse_ndr, smtp_send

QUOTA = 2000


@pytest.fixture
def mailboxes(server):
    """alice (a local sender) and small (quota 2000 octets, already holding about 1100)."""
    alice = server.add_user("alice")
    small = server.add_user("small", quota=QUOTA)
    prefill = make_message("prefill", ("p" * 70 + "\r\n") * 10)
    with server.smtp() as s:
        smtp_send(s, "someone@example.org", [small], prefill)
    [copy] = server.wait_for_mail(small, 1)
    assert QUOTA / 2 < len(copy) < QUOTA * 0.6, len(copy)
    return server, alice, small


def too_big_for_what_is_left(subject: str, to: str, **kw) -> bytes:
    """About 1200 octets: fits the quota on its own but not what remains of it."""
    return make_message(subject, ("b" * 78 + "\r\n") * 13, sender="alice@example.test", to=to, **kw)


def nospace(s: str) -> str:
    return re.sub(r"\s+", "", s)


def test_over_quota_sends_an_ndr_to_the_local_sender(mailboxes):
    server, alice, small = mailboxes
    message = too_big_for_what_is_left("Quarterly figures", small)
    assert len(message) < QUOTA
    with server.smtp() as s:
        qid = smtp_send(s, alice, [small], message)

    [raw] = server.wait_for_mail(alice, 1)
    assert server.stat(small) == 1, "the over-quota message must not be in the full mailbox"
    fields = header_fields(raw)
    assert fields[0] == ("Return-Path", "<>"), "a report comes from the null sender"
    assert fields[1] == ("Delivered-To", alice)

    ndr = parse_ndr(raw)
    assert ndr.message["To"].addresses[0].addr_spec == alice
    assert "Quarterly figures" in ndr.message["Subject"]
    # The human part: who, why, the code and who says so.
    assert small in ndr.human
    assert "mailbox is full" in ndr.human.lower()
    assert "5.2.2" in ndr.human
    assert HOSTNAME in ndr.human
    # The machine part.
    assert nospace(ndr.per_message["Reporting-MTA"]) == f"dns;{HOSTNAME}"
    assert email.utils.parsedate_to_datetime(ndr.per_message["Arrival-Date"]) is not None
    [rcpt] = ndr.per_recipient
    assert nospace(rcpt["Final-Recipient"]) == f"rfc822;{small}"
    assert rcpt["Action"].strip() == "failed"
    assert rcpt["Status"].strip() == "5.2.2"
    assert "5.2.2" in rcpt["Diagnostic-Code"] and nospace(rcpt["Diagnostic-Code"]).startswith("smtp;")
    assert rcpt["Original-Recipient"] is None, "no ORCPT was given"
    # The original, returned whole (it is small).
    assert ndr.original_type == "message/rfc822"
    assert ndr.original["Subject"] == "Quarterly figures"
    assert ndr.original["Received"] is not None and qid in ndr.original["Received"]
    assert ("b" * 78) in ndr.original.get_content()

    # Tracking ties the report to the original: 2001 (5.2.2), then 1030 naming the report.
    events = server.track(message_id=qid)
    mine = of_queue(events, qid)
    assert event_ids(mine) == [1019, 1033, 1036, 2001, 1030]
    assert mine[3]["status"] == "5.2.2" and mine[3]["recipient"] == small
    m = re.search(r"NDR queued as (\S+)", mine[4]["detail"])
    assert m, mine[4]
    assert ndr.message["Message-ID"].strip("<>") == f"{m.group(1)}@{HOSTNAME}"


@pytest.mark.parametrize("notify", ["NEVER", "SUCCESS", "DELAY,SUCCESS"])
def test_notify_without_failure_means_no_ndr(mailboxes, notify):
    server, alice, small = mailboxes
    with server.smtp() as s:
        qid = smtp_send(s, alice, [small], too_big_for_what_is_left("no report please", small),
                        rcpt_options=[f"NOTIFY={notify}"])
    events = of_queue(server.wait_track(2002, message_id=qid), qid)
    assert 1030 not in event_ids(events)
    [e] = [e for e in events if e["event_id"] == 2002]
    assert (e["recipient"], e["status"]) == (small, "5.2.2")
    # 2002 is written when the decision is made: no report can follow it.
    assert server.stat(alice) == 0
    assert server.stat(small) == 1


def test_orcpt_ret_hdrs_and_envid_appear_in_the_report(mailboxes):
    server, alice, small = mailboxes
    message = too_big_for_what_is_left("with dsn parameters", small)
    with server.smtp() as s:
        smtp_send(s, alice, [small], message, mail_options=["RET=HDRS", "ENVID=env-42"],
                  rcpt_options=["ORCPT=rfc822;orig@example.org"])
    [raw] = server.wait_for_mail(alice, 1)
    ndr = parse_ndr(raw)
    [rcpt] = ndr.per_recipient
    assert nospace(rcpt["Original-Recipient"]) == "rfc822;orig@example.org"
    assert nospace(rcpt["Final-Recipient"]) == f"rfc822;{small}"
    assert ndr.per_message["Original-Envelope-Id"].strip() == "env-42"
    assert ndr.original_type == "text/rfc822-headers"
    assert ndr.original["Subject"] == "with dsn parameters"
    assert "b" * 78 not in raw.decode(), "RET=HDRS: the body is not returned"


def test_one_report_names_every_failed_recipient(mailboxes):
    """Two full mailboxes (one reached through an alias) and one that takes the message: a single
    report names both failures, and says which address the sender wrote to."""
    server, alice, small = mailboxes
    tiny = server.add_user("tiny", quota=100)
    bob = server.add_user("bob")
    alias = server.add_alias("tinyalias", tiny)
    message = too_big_for_what_is_left("partly failed", small)
    with server.smtp() as s:
        qid = smtp_send(s, alice, [small, alias, bob], message)
    [copy] = server.wait_for_mail(bob, 1)
    check_copy(copy, sender=alice, rcpt=bob, original=message, queue_id=qid)
    [raw] = server.wait_for_mail(alice, 1)
    ndr = parse_ndr(raw)
    assert sorted(nospace(r["Final-Recipient"]) for r in ndr.per_recipient) == \
        sorted([f"rfc822;{small}", f"rfc822;{tiny}"])
    assert all(r["Status"].strip() == "5.2.2" for r in ndr.per_recipient)
    assert small in ndr.human and tiny in ndr.human and bob not in ndr.human
    assert alias in ndr.human, "the report says which address the sender wrote to"
    events = of_queue(server.track(message_id=qid), qid)
    assert event_ids(events).count(2001) == 2 and event_ids(events).count(1030) == 2
    assert event_ids(events).count(1028) == 1


def test_failure_of_a_null_sender_message_is_absorbed(mailboxes):
    server, alice, small = mailboxes
    message = too_big_for_what_is_left("a bounce that cannot bounce", small)
    with server.smtp() as s:
        qid = smtp_send(s, "", [small], message)
    events = of_queue(server.wait_track(1018, message_id=qid), qid)
    assert event_ids(events) == [1019, 1033, 1036, 2001, 1018]
    assert events[3]["status"] == "5.2.2"
    # No report anywhere: no mailbox gained a message, no other null-sender message exists.
    counts = {u["address"]: u["messages"] for u in server.users()}
    assert counts == {alice: 0, small: 1, f"postmaster@{server.domain}": 0}
    null_sender_queues = {e["queue_id"] for e in server.track(sender="")}
    assert null_sender_queues == {qid}


def test_quota_is_what_is_left_and_frees_up(mailboxes):
    """The same message bounces while the mailbox is nearly full, and is delivered once the user
    deletes mail over POP3 or the administrator raises the quota."""
    server, alice, small = mailboxes
    message = too_big_for_what_is_left("fits later", small)
    with server.smtp() as s:
        smtp_send(s, alice, [small], message)
        server.wait_for_mail(alice, 1)  # the report
        p = server.pop3(small)
        p.dele(1)
        p.quit()
        qid = smtp_send(s, alice, [small], message)
        [copy] = server.wait_for_mail(small, 1)
        check_copy(copy, sender=alice, rcpt=small, original=message, queue_id=qid)
        # Nearly full again; a larger quota, set while the server runs, lets the next one in.
        server.cli("user", "quota", small, str(QUOTA * 2))
        qid = smtp_send(s, alice, [small], message)
    server.wait_for_mail(small, 2)
    assert server.stat(alice) == 1, "no second report"
    [entry] = [u for u in server.users() if u["address"] == small]
    assert entry["messages"] == 2 and QUOTA < entry["used"] <= QUOTA * 2


def test_backscatter_a_full_mailbox_is_refused_at_rcpt_not_reported(mailboxes):
    """Mail to a mailbox that is already full is refused at RCPT with 452 4.2.2 (or for the SIZE
    the client declares): the sending server keeps it, and no report goes to a sender that may
    be forged. The report path stays for a message that only overflows the mailbox."""
    import smtplib

    server, alice, small = mailboxes
    server.cli("user", "quota", small, "1000")  # less than it already holds
    with server.smtp() as s:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            s.sendmail("forged@victim.example", [small], make_message("hi", "x\r\n"))
        code, text = e.value.recipients[small]
        assert (code, text[:5]) == (452, b"4.2.2"), (code, text)
    server.cli("user", "quota", small, str(QUOTA))
    with server.smtp() as s:
        s.ehlo()
        code, _ = s.mail("forged@victim.example", ["SIZE=1500"])   # (more than is left)
        assert code == 250
        code, text = s.rcpt(small)
        assert (code, text[:5]) == (452, b"4.2.2"), (code, text)
        s.rset()
        # More than the whole quota never fits: refused for good (issue 21), not retried for days.
        code, _ = s.mail("forged@victim.example", ["SIZE=5000"])
        assert code == 250
        code, text = s.rcpt(small)
        assert (code, text[:5]) == (552, b"5.2.3"), (code, text)
        s.rset()
    assert server.stat(small) == 1
    assert not server.track(sender=""), "no report was made"


def test_the_report_of_a_large_spooled_message_quotes_its_headers(make_server):
    """A large message (spooled to a file) that fails for one list member: the report names the
    member, quotes the original's header section (its Subject, not only our trace fields), and
    does not carry the 2 MB text."""
    server = make_server({"smtp.spool_threshold": 65536})
    alice = server.add_user("alice")
    bob = server.add_user("bob")
    team = server.add_list("team", bob, "ghost@example.test")
    body = "".join(f"line {i:06d} of a large message\r\n" for i in range(70000))
    message = make_message("Large figures", body, sender=alice, to=team)
    assert len(message) > 2_000_000
    with server.smtp() as s:
        smtp_send(s, alice, [team], message)
    [copy] = server.wait_for_mail(bob, 1)
    assert copy.endswith(message)
    [raw] = server.wait_for_mail(alice, 1)
    assert len(raw) < 100_000, "headers only, not the text"
    ndr = parse_ndr(raw)
    assert "ghost@example.test" in ndr.human
    assert "Large figures" in ndr.message["Subject"]
    assert ndr.original_type == "text/rfc822-headers", ndr.original_type
    assert ndr.original["Subject"] == "Large figures", ndr.original
