"""The pipeline benchmark's workload: the scripts ``bench.pipeline`` runs in Django subprocesses
(``python -c SCRIPT JSON``, through :func:`bench.common.django_script`) to set up servers and
credentials, fill accepted submissions or processed messages, publish them to the workers and time
the direct call; and the logging aiosmtpd sink of the kill run."""

# A server with an SMTP token; the load's sender domain (example.com) verified, with an active DKIM
# key when cfg["dkim"] is true. It has no DNS records of ours, so the periodic re-check (a worker
# started with -B runs it, first after 5 minutes) is off for it: it would unverify the domain and
# every later message would fail the sender rule.
SETUP = """
import json, sys, django
django.setup()
from streams.services import create_server, create_smtp_token, get_stream
from domains.models import DkimKey, Domain
cfg = json.loads(sys.argv[1])
domain, _ = Domain.objects.get_or_create(
    name="example.com", defaults={"dkim_verified": True, "periodic_checks": False})
if cfg.get("dkim") and not domain.keys.filter(state="active").exists():
    DkimKey.generate(domain, state="active")
server = create_server(cfg["name"], delivery_type=cfg["delivery_type"])
token, secret = create_smtp_token(get_stream(server, "outbound"))
print(json.dumps({"server": server.id, "user": token.access_key, "password": secret}))
"""

# A Live server whose outbound stream takes mail from 127.0.0.1 without AUTH (for smtp-source, which
# cannot AUTH), and a verified sending domain for smtp-source's sender, with an active DKIM key.
SETUP_FOR_SOURCE = """
import json, sys, django
django.setup()
from domains.models import DkimKey, Domain
from streams.models import IpCredential
from streams.services import create_server, get_stream
cfg = json.loads(sys.argv[1])
server = create_server(cfg["name"], delivery_type="Live")
IpCredential.objects.create(stream=get_stream(server, "outbound"), cidr="127.0.0.1/32",
                            description="benchmark")
domain, _ = Domain.objects.get_or_create(name=cfg["domain"], defaults={"dkim_verified": True})
if not domain.keys.filter(state="active").exists():
    DkimKey.generate(domain, state="active")
print(json.dumps({"server": server.id}))
"""

# Fills ``sets`` of ``count`` accepted submissions for a new Sandbox server (their sender's domain,
# example.com, verified); writes each set's MessageIDs to ``<ids_prefix><set>.txt``. Realistic
# mix: 60 % SMTP token (stream fixed at AUTH), 38 % server token naming outbound (or nothing),
# 2 % server token naming an unknown stream.
FILL = r"""
import json, random, sys, time, uuid, django
django.setup()
from django.utils import timezone
from messages.submissions import save_submissions
from streams.services import create_server, create_smtp_token, get_stream
from domains.models import Domain
cfg = json.loads(sys.argv[1])
Domain.objects.get_or_create(name="example.com", defaults={"dkim_verified": True})
rng = random.Random(7)
server = create_server(cfg["name"])
stream = get_stream(server, "outbound")
token, _ = create_smtp_token(stream)
words = ("order shipped invoice account password reset welcome receipt team update your the "
         "and for with thanks").split()
def body(seq):
    lines, size = [], 0
    while size < 1500:
        line = " ".join(rng.choice(words) for _ in range(12))
        lines.append(line); size += len(line) + 2
    return "\r\n".join(lines)
def message(seq, kind):
    to = f"user{seq}@example.net"
    headers = [
        f"From: Example App <app@example.com>", f"To: <{to}>",
        f"Subject: Your receipt #{seq}", "Date: Mon, 02 Jun 2025 10:00:00 +0000",
        f"Message-ID: <{uuid.uuid4().hex}@app.example.com>", "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit",
        f"X-PM-Tag: {rng.choice(['receipt', 'welcome', 'password-reset'])}",
        f"X-PM-Metadata-customer: c-{seq % 997}", f"X-PM-Metadata-order: o-{seq}",
        "X-PM-TrackOpens: false",
    ]
    if kind == "unknown":
        headers.append("X-PM-Message-Stream: no-such-stream")
    elif kind == "server" and seq % 2:
        headers.append("X-PM-Message-Stream: outbound")
    return to, ("\r\n".join(headers) + "\r\n\r\n" + body(seq) + "\r\n").encode()
started = time.perf_counter()
seq, sizes, kinds = 0, [], {"smtp": 0, "server": 0, "unknown": 0}
for number in range(cfg["sets"]):
    ids = []
    for start in range(0, cfg["count"], 1000):
        rows = []
        for _ in range(min(1000, cfg["count"] - start)):
            seq += 1
            draw = rng.random()
            kind = "smtp" if draw < 0.60 else ("server" if draw < 0.98 else "unknown")
            kinds[kind] += 1
            to, raw = message(seq, kind)
            sizes.append(len(raw))
            message_id = uuid.uuid4()
            ids.append(str(message_id))
            rows.append(dict(
                message_id=message_id, server_id=server.id,
                stream_id=stream.id if kind == "smtp" else None,
                endpoint="transactional",
                credential_kind="smtp_token" if kind == "smtp" else "server_token",
                credential=token.access_key if kind == "smtp" else "...abcd",
                auth_mechanism="PLAIN", client_address="127.0.0.1", client_helo="app.example.com",
                tls_version="", mail_from="app@example.com", rcpt_to=[to], size=len(raw), raw=raw,
                status="accepted", received_at=timezone.now(),
            ))
        save_submissions(rows)
    with open(f"{cfg['ids_prefix']}{number}.txt", "w") as fh:
        fh.write("\n".join(ids))
print(json.dumps({"server": server.id, "seconds": round(time.perf_counter() - started, 2),
                  "mean_size": round(sum(sizes) / len(sizes)), "kinds": kinds}))
"""

PUBLISH = """
import json, sys, time, django
django.setup()
from messages.tasks import enqueue_processing
ids = open(sys.argv[1]).read().split()
started = time.time()
for start in range(0, len(ids), 256):
    enqueue_processing(ids[start : start + 256])
print(json.dumps({"started": started, "tasks": (len(ids) + 255) // 256}))
"""

# Processed, Live messages ready for delivery (one recipient each, the standard 2 KB mix from
# example.com, whose DKIM key is active: every message is signed): writes their ids to argv[2].
DELIVERY_FILL = r"""
import json, sys, uuid, django
django.setup()
from django.utils import timezone
from domains.models import DkimKey, Domain
from messages.models import OutboundMessage, Submission
from messages.processing import process_batch
from streams.services import create_server
cfg = json.loads(sys.argv[1])
domain, _ = Domain.objects.get_or_create(name="example.com", defaults={"dkim_verified": True})
if not domain.keys.filter(state="active").exists():
    DkimKey.generate(domain, state="active")
server = create_server(cfg["name"], delivery_type="Live")
body = ("Your order has shipped. Thank you for shopping with us; the receipt follows.\r\n" * 20)
rows = []
for seq in range(cfg["count"]):
    raw = (f"From: Example App <app@example.com>\r\nTo: <user{seq}@example.net>\r\n"
           f"Subject: Your receipt #{seq}\r\nMessage-ID: <{uuid.uuid4().hex}@app.example.com>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "X-PM-Tag: receipt\r\nX-PM-TrackOpens: false\r\n\r\n" + body).encode()
    rows.append(Submission(message_id=uuid.uuid4(), server=server, endpoint="transactional",
        credential_kind="server_token", client_address="127.0.0.1", mail_from="app@example.com",
        rcpt_to=[f"user{seq}@example.net"], size=len(raw), raw=raw, received_at=timezone.now()))
Submission.objects.bulk_create(rows, batch_size=1000)
pks = list(Submission.objects.filter(server=server).order_by("pk").values_list("pk", flat=True))
for start in range(0, len(pks), 500):
    process_batch(pks[start : start + 500])
messages = OutboundMessage.objects.filter(server=server).order_by("pk")
ids = list(messages.values_list("pk", flat=True))
open(sys.argv[2], "w").write(" ".join(map(str, ids)))
print(json.dumps({"server": server.id, "messages": len(ids)}))
"""

PUBLISH_DELIVERY = """
import json, sys, time, django
django.setup()
from messages.models import OutboundMessage
from delivery.tasks import enqueue_deliveries
ids = [int(i) for i in open(sys.argv[1]).read().split()]
OutboundMessage.objects.filter(pk__in=ids).update(leased_until=None)
started = time.time()
enqueue_deliveries(ids)
print(json.dumps({"started": started}))
"""

DIRECT = """
import json, sys, time, django
django.setup()
from messages.models import Submission
from messages.processing import process_submission
ids = open(sys.argv[1]).read().split()
pks = sorted(Submission.objects.filter(message_id__in=ids).values_list("pk", flat=True))
started = time.perf_counter()
statuses = [process_submission(pk) for pk in pks]
seconds = time.perf_counter() - started
print(json.dumps({"messages": len(pks), "seconds": round(seconds, 3),
                  "messages_per_second": round(len(pks) / seconds, 1)}))
"""

# An aiosmtpd sink that accepts every recipient and appends the MAIL FROM of every message it
# accepts to a file (flushed per line), so that deliveries can be counted per MessageID.
SINK = """
import signal, sys, threading
from aiosmtpd.controller import Controller
port, path = int(sys.argv[1]), sys.argv[2]
out = open(path, "a", buffering=1)
lock = threading.Lock()
class Handler:
    async def handle_DATA(self, server, session, envelope):
        with lock:
            out.write(envelope.mail_from + "\\n")
        return "250 2.0.0 Ok: queued"
controller = Controller(Handler(), hostname="127.0.0.1", port=port)
controller.start()
print("sink ready", flush=True)
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
stop.wait()
controller.stop()
out.close()
"""
