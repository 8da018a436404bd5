"""The web app's health and metrics endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

They sit in the root URLconf ahead of the HTTP API's catch-all route, so neither the API's path
normalising nor its token authentication applies; they answer GET and HEAD without a session.
Restrict ``/metrics`` to the monitoring network at the reverse proxy (deploy/nginx.conf).
"""

from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from core import health
from core.metrics import WORKER_PREFIXES, exposition
from domains.metrics import DnsGauges
from messages.metrics import QueueGauges, all_queue_states


@never_cache
@require_safe
def healthz(request):
    return HttpResponse(health.encode(health.liveness()), content_type="application/json")


@never_cache
@require_safe
def readyz(request):
    ready, body = health.readiness()
    return HttpResponse(
        health.encode(body), status=200 if ready else 503, content_type="application/json"
    )


@never_cache
@require_safe
def metrics(request):
    """The workers' metrics from this host's metrics directory, the queue gauges and the
    gauges of domains whose DNS records fail."""
    body, content_type = exposition(WORKER_PREFIXES, [QueueGauges(all_queue_states), DnsGauges()])
    return HttpResponse(body, content_type=content_type)
