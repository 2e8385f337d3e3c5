"""Helpers of the fault-injection suite: run `doctor` and `repair` with --json and read them."""

from __future__ import annotations

import json
import time

from helpers import Mailroom, poll

SEVERITY = {"info": 0, "warning": 1, "error": 2}


def doctor(m: Mailroom, *args: str) -> tuple[int, dict]:
    """`doctor --json ARGS`: its exit status and its report."""
    p = m.cli("doctor", "--json", *args, check=False)
    report = json.loads(p.stdout)
    assert report["healthy"] == (p.returncode == 0), (p.returncode, report)
    for f in report["findings"]:
        assert set(f) == {"code", "severity", "server", "summary", "evidence", "why", "fix"}, f
        assert f["summary"] and f["why"] and isinstance(f["evidence"], list), f
    return p.returncode, report


def findings(report: dict, code: str) -> list[dict]:
    return [f for f in report["findings"] if f["code"] == code]


def finding(report: dict, code: str) -> dict:
    found = findings(report, code)
    assert found, f"no {code} in {json.dumps(report, indent=1)}"
    return found[0]


def above_info(report: dict) -> list[dict]:
    return [f for f in report["findings"] if SEVERITY[f["severity"]] > 0]


def wait_healthy(m: Mailroom, *args: str, timeout: float = 15.0) -> dict:
    """Polls doctor until it finds nothing above info; the last report."""
    last: dict = {}

    def ok():
        nonlocal last
        rc, last = doctor(m, *args)
        return rc == 0 and not above_info(last)
    try:
        poll(ok, timeout, "doctor to find nothing above info", interval=0.3)
    except AssertionError:
        raise AssertionError(json.dumps(last, indent=1))
    return last


def wait_finding(m: Mailroom, code: str, *args: str, timeout: float = 15.0) -> dict:
    """Polls doctor until it reports `code`; that finding."""
    last: dict = {}

    def seen():
        nonlocal last
        _, last = doctor(m, *args)
        return findings(last, code)
    try:
        poll(seen, timeout, f"doctor to report {code}", interval=0.3)
    except AssertionError:
        raise AssertionError(f"no {code}: {json.dumps(last, indent=1)}")
    return findings(last, code)[0]


def repair(m: Mailroom) -> dict:
    """`repair --json`; checks that it left the mail as it was."""
    out = json.loads(m.cli("repair", "--json").stdout)
    if not (out["server_added"] or out["server_removed"]):
        assert out["before"] == out["after"], out
    return out


def checksums(m: Mailroom) -> dict:
    """The mail's checksums, read by a dry repair (which changes nothing)."""
    return json.loads(m.cli("repair", "--dry-run", "--json").stdout)["before"]


def status(m: Mailroom) -> dict:
    return json.loads(m.cli("status", "--json").stdout)


def service(m: Mailroom, name: str) -> dict:
    return next(s for s in status(m)["services"] if s["name"] == name)


def held(seconds: float) -> None:
    time.sleep(seconds)
