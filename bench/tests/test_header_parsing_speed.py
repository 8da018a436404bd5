"""Performance goals of header handling (issue 22), as ratios measured in the same run:

- 10 MB of folded header costs the reading path (processing's parse and rewrite, delivery's DKIM
  canonicalisation; the bounce MX's report parser) at most 20 times what 10 MB of plain body
  costs it. The quadratic reading took 111 s for 10 MB;
- twenty honest senders' p99 (MAIL to 250, and 250 to processed) is unchanged beside senders of
  huge folded headers (one over the caps, refused at DATA; others just below them, processed).

Figures of this machine's speed, so they run with the benchmark harness's checks (``make bench``),
not in ``make test``; the bounded functional versions are in core/tests/test_mime.py and
messages/tests/test_isolation.py."""

import contextlib
import smtplib
import statistics
import threading
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from bounces.reports import Report, parse_report
from conftest import MESSAGE, queued_id
from core import dkim
from delivery.content import crlf
from messages.headers import parse_headers
from messages.models import Submission
from messages.processing import delivered_content

MB = 1024 * 1024
HEAD = b"From: app@example.com\r\nTo: ann@example.net\r\nSubject: hi\r\n"
PLAIN = HEAD + b"\r\n" + (b"b" * 70 + b"\r\n") * (10 * MB // 72)
SIGNER = dkim.Signer("example.com", "s1", ed25519.Ed25519PrivateKey.generate())


def reading_path(raw: bytes) -> None:
    parsed = parse_headers(raw)
    content, _ = delivered_content(raw, parsed.message_id_header, parsed.keep_id, uuid.uuid4())
    dkim.sign(crlf(content), [SIGNER])


def best_of(function, raw: bytes, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function(raw)
        times.append(time.perf_counter() - started)
    return min(times)


FOLDS = {
    "72-byte lines": b" " + b"a" * 70 + b"\r\n",
    "empty lines": b" \r\n",
    "encoded words": b" =?utf-8?q?ab?=\r\n",
    "unterminated words": b" =?x?q?y\r\n",
}


@pytest.mark.parametrize("fold", FOLDS.values(), ids=FOLDS.keys())
def test_ten_megabytes_of_folded_header_cost_at_most_twenty_times_a_plain_body(fold):
    # A signed field (References), so that DKIM canonicalises it too.
    folded = HEAD + b"References: <a@b>\r\n" + fold * (10 * MB // len(fold)) + b"\r\nHello\r\n"
    plain = best_of(reading_path, PLAIN)
    header = best_of(reading_path, folded)
    print(f"reading path: folded header {header:.3f} s, plain body {plain:.3f} s")
    assert header <= 20 * plain, f"folded header {header:.3f} s, plain body {plain:.3f} s"


def test_a_bounce_report_with_ten_megabytes_of_folded_header():
    fold = FOLDS["72-byte lines"]
    folded = HEAD + b"X-Folded: a\r\n" + fold * (10 * MB // len(fold)) + b"\r\n550 5.1.1\r\n"
    plain = best_of(parse_report, PLAIN)
    header = best_of(parse_report, folded)
    assert isinstance(parse_report(folded), Report)
    assert header <= 20 * plain + 0.05, f"folded header {header:.3f} s, plain body {plain:.3f} s"


# --- p99 of honest senders beside huge folded headers ------------------------------------------

HONEST = 20
ROUNDS = 5
FOLD = FOLDS["72-byte lines"]
HOSTILE = [
    b"X-Folded: a\r\n" + FOLD * 30_000,  # 2 MB: over the field cap, refused at DATA
    b"".join(b"X-Folded-%d: a\r\n" % i + FOLD * 1390 for i in range(10)),  # just below the caps
]


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) > 1 else values[0]


def honest_round(gateway, creds, hostile: bool) -> tuple[list[float], list[float]]:
    """Twenty honest senders (and, if ``hostile``, the senders of HOSTILE, over and over) at
    once: each honest sender's seconds from MAIL to 250, and from 250 to processed."""
    replies: dict[str, tuple[float, float]] = {}
    stop = threading.Event()

    def honest_session(key):
        client = gateway.smtp()
        client.login(creds.access_key, creds.secret)
        started = time.monotonic()
        client.mail("app@example.com")
        client.rcpt(f"{key}@example.net")
        code, reply = client.data(MESSAGE)
        assert code == 250, reply
        replies[queued_id(reply)] = (time.monotonic() - started, time.monotonic())
        client.quit()

    def hostile_session(header):
        while not stop.is_set():
            client = gateway.smtp()
            client.login(creds.access_key, creds.secret)
            client.mail("app@example.com")
            client.rcpt("victim@example.net")
            with contextlib.suppress(smtplib.SMTPDataError):  # the one over the caps: 552
                client.data(header + MESSAGE)
            client.quit()

    hostiles = [threading.Thread(target=hostile_session, args=(h,)) for h in HOSTILE] * hostile
    for thread in hostiles:
        thread.start()
    time.sleep(0.5 if hostile else 0)
    threads = [threading.Thread(target=honest_session, args=(f"h{i}",)) for i in range(HONEST)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    processed: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(processed) < len(replies) and time.monotonic() < deadline:
        for message_id in Submission.objects.filter(
            message_id__in=[uuid.UUID(m) for m in replies], status="processed"
        ).values_list("message_id", flat=True):
            processed.setdefault(str(message_id), time.monotonic())
        time.sleep(0.05)
    stop.set()
    for thread in hostiles:
        thread.join(120)
    assert len(replies) == HONEST and len(processed) == HONEST
    return (
        [seconds for seconds, _ in replies.values()],
        [processed[m] - at for m, (_, at) in replies.items()],
    )


@pytest.mark.django_db(transaction=True)
def test_honest_p99_is_unchanged_beside_huge_folded_headers(gateway, creds, worker):
    alone = ([], [])
    beside = ([], [])
    for _ in range(ROUNDS):
        for hostile, figures in ((False, alone), (True, beside)):
            smtp, processing = honest_round(gateway, creds, hostile)
            figures[0].extend(smtp)
            figures[1].extend(processing)
    for what, quiet, noisy in (("SMTP", alone[0], beside[0]), ("processing", alone[1], beside[1])):
        print(f"{what} p99: {p99(quiet):.3f} s alone, {p99(noisy):.3f} s beside the folded headers")
        assert p99(noisy) <= 2 * p99(quiet) + 0.25, (
            f"{what} p99 {p99(noisy):.3f} s beside the folded headers, {p99(quiet):.3f} s alone"
        )
