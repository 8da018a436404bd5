"""DKIM signing cost: CPU per message of delivery's ``message_bytes`` with and without signing.

    python -m bench.dkim [--messages 2000] [--quick] [--json PATH]

In a throwaway SQLite DATA_DIR (no service needed), one process:

1. makes three verified domains, as verification leaves them: one signing with RSA 2048, one with
   Ed25519 only, one with both (RSA, then Ed25519);
2. builds the standard mix of messages as processing stores them: the processing benchmark's
   2 KB text receipts, and one in four an 8 KB HTML message with open and link tracking (so
   the signature is computed per recipient, after the rewrite);
3. times ``time.process_time`` over N calls of ``delivery.content.unsigned_bytes`` (the
   baseline: tracking and CRLF, what was sent before signing) and of ``message_bytes`` for each
   key set (the same plus key look-up from the per-process cache, canonicalisation, body hash
   and the signature in OpenSSL), after a warm-up; best of three rounds;
4. for reference, dkimpy's pure-Python signer on a few of the same messages.

Goal: signing adds at most 1 ms of CPU per message (RSA 2048, Ed25519, and both).
"""

from __future__ import annotations

import contextlib
import json
import sys

from bench.common import (
    benchmark_parser,
    django_env,
    django_script,
    goal_lines,
    manage,
    run_benchmark,
    scratch_dir,
    step,
)

GOAL_MS = 1.0

MEASURE = r"""
import json, random, sys, time, uuid, django
django.setup()
from cryptography.hazmat.primitives import serialization
from django.utils import timezone
from domains import signing
from core import dkim_keys as keys
from domains.models import DkimKey, Domain
from domains.services import create_domain
from delivery.content import message_bytes, unsigned_bytes
from messages.models import OutboundMessage
from streams.services import create_server, get_stream

cfg = json.loads(sys.argv[1])
rng = random.Random(7)
server = create_server("dkim-bench")
stream = get_stream(server, "outbound")

def verified(name, rsa=True, ed25519=False):
    domain = create_domain(name, ed25519=ed25519)
    for key in domain.keys.all():
        keep = rsa if key.algorithm == keys.RSA else ed25519
        key.state = DkimKey.State.ACTIVE if keep else DkimKey.State.REVOKED
        key.save()
    domain.dkim_verified = True
    domain.save()
    return name

DOMAINS = {"rsa": verified("rsa.bench.example"),
           "ed25519": verified("ed.bench.example", rsa=False, ed25519=True),
           "rsa+ed25519": verified("both.bench.example", ed25519=True)}

words = ("order shipped invoice account password reset welcome receipt team update your the "
         "and for with thanks").split()

def text_body():
    lines, size = [], 0
    while size < 1500:
        line = " ".join(rng.choice(words) for _ in range(12))
        lines.append(line); size += len(line) + 2
    return "\r\n".join(lines) + "\r\n"

def html_body():
    rows = []
    for n in range(60):
        text = " ".join(rng.choice(words) for _ in range(8))
        rows.append(f'<tr><td>{text}</td><td><a href="https://shop.example/item/{n}">view</a>'
                    f"</td></tr>")
    return ("<html><body><h1>Your receipt</h1><table>" + "\r\n".join(rows)
            + "</table></body></html>\r\n")

def messages(domain):
    out = []
    for seq in range(cfg["messages"]):
        tracked = seq % 4 == 3
        body = html_body() if tracked else text_body()
        kind = "text/html" if tracked else "text/plain"
        message_id = uuid.uuid4()
        content = ("\r\n".join([
            f"From: Example App <app@{domain}>", f"To: <user{seq}@example.net>",
            f"Subject: Your receipt #{seq}", "Date: Mon, 02 Jun 2025 10:00:00 +0000",
            f"Message-ID: <{message_id}@mail.example>", "MIME-Version: 1.0",
            f"Content-Type: {kind}; charset=utf-8", "Content-Transfer-Encoding: 8bit",
        ]) + "\r\n\r\n" + body).encode()
        out.append((OutboundMessage(
            message_id=message_id, server=server, stream=stream,
            from_address=f"Example App <app@{domain}>", subject=f"Your receipt #{seq}",
            content=content, track_opens=tracked, track_links="HtmlOnly" if tracked else "None",
            received_at=timezone.now(),
        ), f"user{seq}@example.net"))
    return out

def cpu_per_message(function, batch):
    for message, rcpt in batch[:50]:  # warm-up: caches filled, keys loaded
        function(message, rcpt)
    best = None
    for _ in range(3):
        started = time.process_time()
        for message, rcpt in batch:
            function(message, rcpt)
        spent = (time.process_time() - started) / len(batch)
        best = spent if best is None else min(best, spent)
    return best * 1e6

results = {}
sizes = {}
for label, domain in DOMAINS.items():
    batch = messages(domain)
    sizes[label] = round(sum(len(unsigned_bytes(m, r)) for m, r in batch) / len(batch))
    signing.forget()
    results[label] = {"unsigned_us": round(cpu_per_message(unsigned_bytes, batch), 1),
                      "signed_us": round(cpu_per_message(message_bytes, batch), 1)}
    sample = message_bytes(*batch[0])
    results[label]["signatures"] = sample.count(b"DKIM-Signature:", 0, 2000)

reference = None
try:
    import dkim as dkimpy
    batch = messages(DOMAINS["rsa"])[: cfg["reference"]]
    key = DkimKey.objects.get(domain__name=DOMAINS["rsa"], state="active")
    pem = key.private_key().private_bytes(serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    contents = [unsigned_bytes(m, r) for m, r in batch]
    started = time.process_time()
    for content in contents:
        dkimpy.sign(content, key.selector.encode(), DOMAINS["rsa"].encode(), pem,
                    canonicalize=(b"relaxed", b"relaxed"))
    reference = round((time.process_time() - started) / len(contents) * 1e6, 1)
except ImportError:
    pass
print(json.dumps({"results": results, "mean_size": sizes, "dkimpy_rsa_us": reference}))
"""


def run(cfg, stack: contextlib.ExitStack) -> dict:
    work = scratch_dir(stack, "bench-dkim-")
    env = {k: v for k, v in django_env(None, work / "data").items() if k != "DATABASE_URL"}
    step("migrating a throwaway SQLite database")
    manage(env, "migrate", "--no-input")
    messages = 200 if cfg.quick else cfg.messages
    step(f"timing message_bytes over {messages} messages per key set")
    config = json.dumps({"messages": messages, "reference": 10 if cfg.quick else 50})
    measured = django_script(env, MEASURE, config, timeout=1800)
    goals = []
    for label, figures in measured["results"].items():
        cost_us = max(figures["signed_us"] - figures["unsigned_us"], 0.0)
        figures["signing_us"] = round(cost_us, 1)
        goals.append(
            {
                "goal": f"DKIM signing ({label}) <= {GOAL_MS:g} ms CPU per message",
                "passed": cost_us / 1000 <= GOAL_MS,
                "measured": f"{cost_us / 1000:.3f} ms",
                "note": f"{figures['unsigned_us'] / 1000:.3f} ms unsigned, "
                f"{figures['signed_us'] / 1000:.3f} ms signed",
            }
        )
    return {
        "config": {"messages": messages},
        "mean_size": measured["mean_size"],
        "results": measured["results"],
        "dkimpy_rsa_us": measured["dkimpy_rsa_us"],
        "goals": goals,
    }


def report(result: dict) -> str:
    lines = [
        f"DKIM signing, CPU per message of message_bytes ({result['config']['messages']} "
        "messages per key set, best of 3)",
        f"  {'keys':<12} {'unsigned':>10} {'signed':>10} {'signing':>10}  signatures",
    ]
    for label, f in result["results"].items():
        lines.append(
            f"  {label:<12} {f['unsigned_us']:>8.1f}us {f['signed_us']:>8.1f}us "
            f"{f['signing_us']:>8.1f}us  {f['signatures']}"
        )
    sizes = ", ".join(f"{k} {v:,} B" for k, v in result["mean_size"].items())
    lines.append(f"  mean message size: {sizes}")
    if result["dkimpy_rsa_us"] is not None:
        lines.append(
            f"  for reference, dkimpy's pure-Python rsa-sha256: {result['dkimpy_rsa_us']:.0f}us "
            "per message"
        )
    return "\n".join(lines + goal_lines(result["goals"]))


def main(argv=None) -> int:
    parser = benchmark_parser("bench.dkim", __doc__)
    parser.add_argument("--messages", type=int, default=2000, help="messages per key set")
    cfg = parser.parse_args(argv)
    run_benchmark(cfg, run, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
