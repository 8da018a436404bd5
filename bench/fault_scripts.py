"""The Django scripts of the fault matrix (``python -c SCRIPT JSON``, through
:func:`bench.common.django_script`): set a row up, verify and re-check its sending domain against
the loopback DNS server, and classify every acknowledged message at the end."""

# A Live server with an SMTP token, and the load's sending domain: verified outright (no periodic
# re-check: it has no records anywhere), or, with cfg["dns"], created as a customer's would be
# (a pending DKIM key) with the records to publish returned, for VERIFY to see them.
SETUP = """
import json, sys, django
django.setup()
from django.conf import settings
from domains.models import Domain
from domains.services import create_domain
from streams.services import create_server, create_smtp_token, get_stream
cfg = json.loads(sys.argv[1])
server = create_server(cfg["name"], delivery_type="Live")
token, secret = create_smtp_token(get_stream(server, "outbound"))
records = []
if cfg.get("dns"):
    domain = create_domain(cfg["domain"])
    records += [[key.host, "TXT", key.text_value] for key in domain.keys.all()]
    records.append([domain.return_path_domain, "CNAME", settings.BOUNCE_DOMAIN + "."])
    records.append([domain.name, "TXT", f"v=spf1 a mx include:{settings.SPF_INCLUDE_DOMAIN} ~all"])
else:
    Domain.objects.get_or_create(
        name=cfg["domain"], defaults={"dkim_verified": True, "periodic_checks": False})
print(json.dumps({"server": server.id, "user": token.access_key, "password": secret,
                  "records": records}))
"""

# The first verification of the row's domain (its records now published).
VERIFY = """
import json, sys, django
django.setup()
from domains.models import Domain
from domains.verification import verify_domain
domain = Domain.objects.get(name=json.loads(sys.argv[1])["domain"])
checks = verify_domain(domain)
print(json.dumps({"dkim_verified": domain.dkim_verified,
                  "checks": [[c.record, c.status, c.detail] for c in checks]}))
"""

# One run of the periodic re-check (the beat's ``domains.recheck``), with the domain due.
RECHECK = """
import json, sys, django
django.setup()
from domains.models import Domain
from domains.tasks import recheck_domains
checked = recheck_domains()
domain = Domain.objects.get(name=json.loads(sys.argv[1])["domain"])
print(json.dumps({"checked": checked, "dkim_verified": domain.dkim_verified,
                  "dns_problem": domain.dns_problem}))
"""

# Every acknowledged MessageID (argv[1], a file of "<id> <time>" lines) that is not a delivered
# recipient: "no record", "submission <status>" (not processed: no message yet) or
# "recipient <status>"; with the bounces (other than Transient, a delay notice) of those.
CLASSIFY = """
import json, sys, django
django.setup()
from collections import Counter
from bounces.models import Bounce
from messages.models import OutboundMessage, Recipient, Submission
ids = sorted({line.split()[0].lower() for line in open(sys.argv[1]) if line.strip()})
states, bounces = {}, {}
for start in range(0, len(ids), 500):
    chunk = ids[start : start + 500]
    found = {str(m): s for m, s in Submission.objects.filter(message_id__in=chunk)
             .values_list("message_id", "status")}
    outbound = {}
    for message_id, status in Recipient.objects.filter(message__message_id__in=chunk).values_list(
            "message__message_id", "status"):
        outbound.setdefault(str(message_id), []).append(status)
    for message_id in chunk:
        if message_id in outbound:
            worst = [s for s in outbound[message_id] if s != "delivered"]
            if worst:
                states[message_id] = "recipient " + worst[0]
        elif message_id in found:
            states[message_id] = "submission " + found[message_id]
        else:
            states[message_id] = "no record"
    for message_id, kind in Bounce.objects.filter(message_id__in=chunk).exclude(
            type="Transient").values_list("message_id", "type"):
        bounces.setdefault(str(message_id), []).append(kind)
print(json.dumps({"acknowledged": len(ids), "states": states, "bounces": bounces}))
"""
