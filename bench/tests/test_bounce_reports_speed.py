"""Performance goals of bounce report parsing, as wall-clock thresholds: a 5 MB report within 1 s,
five hostile inputs (quadratic traps for naive parsers) within 1.5 s in all. Figures of this
machine's speed, so they run with the benchmark harness's checks (``make bench``), not in
``make test``."""

import time

from bounces.reports import Report, parse_report
from bounces.tests.test_reports import ID, load


def test_huge_message_is_quick():
    raw = load("postfix_user_unknown.eml").replace(
        b"Hello John, your invoice is attached.", b"x" * 5_000_000
    )
    started = time.perf_counter()
    report = parse_report(raw)
    assert time.perf_counter() - started < 1
    assert (report.type, report.recipient, report.message_id) == (
        "HardBounce",
        "john.doe@example.org",
        ID,
    )


def test_hostile_inputs_are_quick():
    hostile = [
        b"Content-Type: text/html\n\n" + b"<script" * 150_000,
        b"From: " + b"a<b@c>, " * 200_000 + b"\n\nx",
        b"From: MAILER-DAEMON@x\nSubject: Undelivered\n\n" + b"<a" * 500_000,
        b"From: MAILER-DAEMON@x\n\n" + b"SMTP error from remote mail server after " * 40_000,
        b"From: MAILER-DAEMON@x\n\n" + b"550-5.1.1 " * 200_000,
    ]
    started = time.perf_counter()
    for raw in hostile:
        assert isinstance(parse_report(raw), Report)
    assert time.perf_counter() - started < 1.5
