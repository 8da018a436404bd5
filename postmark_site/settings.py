"""Settings, all from the environment (django-environ); see .env.example for every variable.

With nothing set you get the embedded default: a SQLite file and a filesystem message queue under
DATA_DIR, so ``make run`` needs no other service. Set DATABASE_URL and CELERY_BROKER_URL to run the
same code on PostgreSQL with RabbitMQ or Redis.
"""

import copy
import os
import secrets
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DATA_DIR = Path(env.str("DATA_DIR", default=str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _key_from_file(name: str) -> str:
    """A random key generated once into DATA_DIR (mode 0600) for the zero-configuration default."""
    path = DATA_DIR / name
    if not path.exists():
        try:
            with open(path, "x", opener=lambda p, f: __import__("os").open(p, f, 0o600)) as fh:
                fh.write(secrets.token_urlsafe(48))
        except FileExistsError:
            pass
    return path.read_text().strip()


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="") or _key_from_file("django-secret.key")
# Protects SMTP token secrets and server API tokens at rest (encryption and look-up digests).
# Keep it outside the database and its backups: a database dump alone reveals no secret.
SECRETS_KEY = env.str("SECRETS_KEY", default="") or _key_from_file("secrets.key")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Behind a reverse proxy that terminates TLS (deploy/nginx.conf): believe its X-Forwarded-Proto.
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "postmark_site.apps.PostmarkAdminConfig",  # django.contrib.admin with the project's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    # The project's apps, in their dependency order: each imports only the ones above it.
    "servers",
    "streams",
    "bounces",
    "domains",
    "mailtemplates",
    "messages",
    "tracking",
    "delivery",
    "webhooks",
    "inbound",
    "privacy",
    "stats",
    "api",
    "smtpgw",
]

MIDDLEWARE = [
    # One line per request (method, path, status, time), in LOG_FORMAT like every other line.
    "postmark_site.access_log.AccessLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "postmark_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "postmark_site.wsgi.application"

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web, the gateway and the worker read while one writes; synchronous=FULL makes
    # every commit durable before the gateway answers 250; IMMEDIATE avoids upgrade deadlocks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": env.float("SQLITE_TIMEOUT", default=30.0),
        }
    )
    # A file, not memory, so that a worker or gateway process started by a test sees the same data.
    DATABASES["default"].setdefault("TEST", {"NAME": str(DATA_DIR / "test-db.sqlite3")})
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# The zone the admin shows times in (and writes after each time, e.g. "2026-12-07 14:03:12 UTC");
# every time is stored in UTC whatever it says.
TIME_ZONE = env.str("TIME_ZONE", default="") or "UTC"
FORMAT_MODULE_PATH = ["postmark_site.formats"]
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- HTTP API (Django REST framework, drf-spectacular) ------------------------------------------
# Postmark's conventions (compat §2): JSON only with charset, any body read as JSON, server-token
# authentication only (no session, no CSRF, no browsable API), errors as {"ErrorCode", "Message"}.
# Reverse proxies in front of the web role whose X-Forwarded-For is believed for the client's
# address, as the API's per-address rate limits read it (deploy/nginx.conf: 1); 0 = the
# connection's own address, which a client cannot forge.
API_NUM_PROXIES = env.int("API_NUM_PROXIES", default=0)
REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["api.errors.PostmarkJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.bounds.LenientJSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "api.errors.LenientNegotiation",
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.ServerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "URL_FORMAT_OVERRIDE": None,
    # Request rate limits (api.throttling; the rates are API_TOKEN_RATE and API_TEST_TOKEN_RATE).
    "DEFAULT_THROTTLE_CLASSES": [
        "api.throttling.TokenRateThrottle",
        "api.throttling.PublicTestTokenThrottle",
    ],
    "NUM_PROXIES": API_NUM_PROXIES,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Postmark-compatible API",
    "DESCRIPTION": "The Postmark HTTP API as this service implements it (served at /openapi.json).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Background processing (Celery) -------------------------------------------------------------
EMBEDDED_BROKER = not env.str("CELERY_BROKER_URL", default="")
# fsqueue: kombu's filesystem transport, with complete messages only (core.fsqueue).
CELERY_BROKER_URL = "fsqueue://localhost/" if EMBEDDED_BROKER else env.str("CELERY_BROKER_URL")
if EMBEDDED_BROKER:
    _queue_dir = DATA_DIR / "queue"
    (_queue_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_queue_dir / "processed"),
        "control_folder": str(_queue_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# Separate queues, so slow deliveries never hold up processing or webhooks. A worker started
# without -Q consumes all of them; a large installation runs dedicated workers per queue.
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = {name: {} for name in ("celery", "processing", "delivery", "webhooks")}
CELERY_TASK_ROUTES = {
    "outbound.tasks.process_submissions": {"queue": "processing"},
    "outbound.tasks.deliver": {"queue": "delivery"},
    "webhooks.*": {"queue": "webhooks"},
    "inbound.*": {"queue": "webhooks"},
    # A bulk request's items are composed, judged and stored as processed messages: processing.
    "api.bulk.*": {"queue": "processing"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One task reserved per worker slot: with late acknowledgement a reserved task waits,
# unacknowledged, behind the running one, and a delivery can take minutes (brokers cancel or
# redeliver tasks held too long: RabbitMQ's consumer timeout, Redis's visibility timeout). A worker
# dedicated to short tasks (webhooks) may raise it with --prefetch-multiplier.
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 3
# AMQP heartbeats every CELERY_BROKER_HEARTBEAT seconds: after a broker restart, a worker whose
# consumer went quiet on its new connection (seen with the threads pool when tasks were in flight
# at the loss) is cut by the broker within about two intervals and reconnects, instead of after the
# 60-second default's few minutes.
CELERY_BROKER_HEARTBEAT = env.int("CELERY_BROKER_HEARTBEAT", default=10)
# Work still waiting this long is queued again by the periodic sweep.
SWEEP_AFTER_SECONDS = env.float("SWEEP_AFTER_SECONDS", default=60.0)
# A sweep queues again at most this many rows of each kind of work (processing, delivery,
# webhooks) a run, and none while the broker queue of that kind already holds
# SWEEP_BUSY_QUEUE_LENGTH tasks: the workers are behind, and the rows' tasks are most likely still
# in that queue (core.queues). A backlog is never queued again whole by every sweep.
SWEEP_MAX_REQUEUE = env.int("SWEEP_MAX_REQUEUE", default=10_000)
SWEEP_BUSY_QUEUE_LENGTH = env.int("SWEEP_BUSY_QUEUE_LENGTH", default=50)
# Tries of processing a submission before it becomes failed (with an SMTPApiError per recipient,
# so the sender sees it): each counted when it is taken, so a try that kills its worker (the OOM
# killer, a crash) counts as surely as one that raises.
PROCESSING_ATTEMPTS = env.int("PROCESSING_ATTEMPTS", default=3)
# Raw bytes of the submissions a worker thread processes as one set at most: a batch the gateway
# hands over (up to SMTP_COMMIT_BATCH messages of up to SMTP_MAX_MESSAGE_SIZE) is processed in
# sub-batches of this size, so that a worker never holds 256 × 10 MB at once.
PROCESSING_BATCH_BYTES = env.int("PROCESSING_BATCH_BYTES", default=16 * 1024 * 1024)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "sweep": {
        "task": "outbound.tasks.sweep",
        "schedule": env.float("SWEEP_INTERVAL_SECONDS", default=60.0),
    },
    "retention": {
        "task": "outbound.retention.enforce_retention",
        "schedule": env.float("PURGE_INTERVAL_SECONDS", default=3600.0),
    },
    "purge-archived-streams": {
        "task": "streams.tasks.purge_archived_streams",
        "schedule": env.float("PURGE_INTERVAL_SECONDS", default=3600.0),
    },
    "webhooks.sweep": {
        "task": "webhooks.sweep",
        "schedule": env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=60.0),
    },
    # Posts the inbound messages whose retry is due, or whose task was lost (inbound.posting).
    "inbound.sweep": {
        "task": "inbound.sweep",
        "schedule": env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=60.0),
    },
    "inbound.retention": {
        "task": "inbound.retention",
        "schedule": env.float("PURGE_INTERVAL_SECONDS", default=3600.0),
    },
    "sample-queues": {
        "task": "outbound.tasks.sample_queues",
        "schedule": env.float("SYSTEM_SAMPLE_INTERVAL_SECONDS", default=300.0),
    },
    # Recounts the stats API's roll-ups of the most recent days (stats.rollup).
    "stats.refresh": {
        "task": "stats.refresh",
        "schedule": env.float("STATS_REFRESH_SECONDS", default=60.0),
    },
    # Finds the domains whose DNS records are due for a check (see DOMAIN_RECHECK_SECONDS).
    "domains.recheck": {
        "task": "domains.tasks.recheck_domains",
        "schedule": env.float("DOMAIN_RECHECK_TICK_SECONDS", default=300.0),
    },
    # Queues again the bulk requests whose task was lost or stopped (see BULK_LEASE_SECONDS).
    "api.bulk.sweep": {
        "task": "api.bulk.sweep",
        "schedule": env.float("BULK_SWEEP_SECONDS", default=60.0),
    },
    # Queues again the data removals whose task was lost (see DATA_REMOVAL_RETRY_AFTER).
    "privacy.resume_removals": {
        "task": "privacy.resume_removals",
        "schedule": env.float("DATA_REMOVAL_SWEEP_SECONDS", default=600.0),
    },
}

# --- Product rules --------------------------------------------------------------------------------
# Archived message streams are purged this many days after archiving (Postmark: 45).
STREAM_PURGE_DAYS = env.int("STREAM_PURGE_DAYS", default=45)
MAX_STREAMS_PER_SERVER = env.int("MAX_STREAMS_PER_SERVER", default=10)
# Retention (Postmark: bounces 45 days, their dumps 30 days).
BOUNCE_RETENTION_DAYS = env.int("BOUNCE_RETENTION_DAYS", default=45)
DUMP_RETENTION_DAYS = env.int("DUMP_RETENTION_DAYS", default=30)
MESSAGE_RETENTION_DAYS = env.int("MESSAGE_RETENTION_DAYS", default=45)
# DELETE /servers/{id} with an account token deletes a server and all its data: off unless set
# (Postmark enables it on request only; ErrorCode 604 otherwise). The admin can always delete.
ALLOW_SERVER_DELETION_BY_API = env.bool("ALLOW_SERVER_DELETION_BY_API", default=False)
# A data removal (POST /data-removals, or the admin) still Pending this many seconds after it was
# asked for is queued again (its task was lost, or its worker died): removals are idempotent.
DATA_REMOVAL_RETRY_AFTER = env.int("DATA_REMOVAL_RETRY_AFTER", default=3600)
# The stats API's daily roll-ups of this many most recent US Eastern days (today included) are
# recounted from the raw rows every STATS_REFRESH_SECONDS; older days stay as counted
# (``manage.py recount_stats --days N`` recounts further back).
STATS_RECOUNT_DAYS = env.int("STATS_RECOUNT_DAYS", default=2)

# --- SMTP gateway (manage.py runsmtp) ------------------------------------------------------------
SMTP_LISTEN = env.list(
    "SMTP_LISTEN",
    default=[
        "transactional=127.0.0.1:2525",
        "broadcast=127.0.0.1:2526",
        "bounce=127.0.0.1:2527",
        "inbound=127.0.0.1:2528",
    ],
)
SMTP_PROCESSES = env.int("SMTP_PROCESSES", default=1)
# HOST:PORT where runsmtp serves /healthz, /readyz and /metrics (empty: not served).
SMTP_HTTP = env.str("SMTP_HTTP", default="")
SMTP_HOSTNAME = env.str("SMTP_HOSTNAME", default="")
SMTP_MAX_MESSAGE_SIZE = env.int("SMTP_MAX_MESSAGE_SIZE", default=10 * 1024 * 1024)
SMTP_MAX_RECIPIENTS = env.int("SMTP_MAX_RECIPIENTS", default=50)
# Caps on a message's header at DATA, on every listener (552 5.3.4, permanent; 0: no cap): the
# header block (Exim's header_maxsize is 1 MB) and one field with its continuation lines
# (Postfix keeps at most header_size_limit = 102400 bytes of one). Honest mail stays far below:
# 50 recipients in To take ~3 kB, a References chain of 400 messages ~12 kB.
SMTP_MAX_HEADER_BYTES = env.int("SMTP_MAX_HEADER_BYTES", default=1024 * 1024)
SMTP_MAX_FIELD_BYTES = env.int("SMTP_MAX_FIELD_BYTES", default=102400)
# Seconds a gateway process reuses a server's sending-limit figures (servers.Server limits).
SMTP_SENDING_LIMIT_CACHE_SECONDS = env.float("SMTP_SENDING_LIMIT_CACHE_SECONDS", default=2.0)
SMTP_TLS_CERT = env.str("SMTP_TLS_CERT", default="")
SMTP_TLS_KEY = env.str("SMTP_TLS_KEY", default="")
SMTP_REQUIRE_TLS_FOR_PLAIN_AUTH = env.bool("SMTP_REQUIRE_TLS_FOR_PLAIN_AUTH", default=False)
SMTP_AUTH_FAILURE_LIMIT = env.int("SMTP_AUTH_FAILURE_LIMIT", default=10)
SMTP_AUTH_FAILURE_WINDOW = env.float("SMTP_AUTH_FAILURE_WINDOW", default=300.0)
# Failed logins per user name within the window, from any number of addresses (0: no limit).
SMTP_AUTH_FAILURE_LIMIT_PER_USERNAME = env.int("SMTP_AUTH_FAILURE_LIMIT_PER_USERNAME", default=30)
# How often (seconds) a gateway process reads which subjects the others have blocked; 0 reads
# the counters on every AUTH (exact across processes, but one query per login).
SMTP_AUTH_THROTTLE_REFRESH = env.float("SMTP_AUTH_THROTTLE_REFRESH", default=1.0)
# Listeners marked +proxy take the PROXY protocol header only from these networks (CIDRs).
SMTP_PROXY_TRUSTED = env.list("SMTP_PROXY_TRUSTED", default=[])
SMTP_PROXY_TIMEOUT = env.float("SMTP_PROXY_TIMEOUT", default=5.0)
SMTP_AUTH_CACHE_SECONDS = env.float("SMTP_AUTH_CACHE_SECONDS", default=5.0)
SMTP_IDLE_TIMEOUT = env.float("SMTP_IDLE_TIMEOUT", default=300.0)
SMTP_MAX_CONNECTIONS = env.int("SMTP_MAX_CONNECTIONS", default=5000)
SMTP_MAX_CONNECTIONS_PER_ADDRESS = env.int("SMTP_MAX_CONNECTIONS_PER_ADDRESS", default=200)
SMTP_SHUTDOWN_GRACE = env.float("SMTP_SHUTDOWN_GRACE", default=30.0)
SMTP_COMMIT_BATCH = env.int("SMTP_COMMIT_BATCH", default=256)
# Seconds between the gateway's hand-overs of accepted messages to processing (sooner once
# SMTP_COMMIT_BATCH wait): longer makes larger batches, which cost less per message to process
# (0.7 ms of CPU a message in batches of 10, 0.36 in batches of 50), for that much more latency.
SMTP_DISPATCH_INTERVAL = env.float("SMTP_DISPATCH_INTERVAL", default=0.2)
SMTP_GIL_SWITCH_INTERVAL = env.float("SMTP_GIL_SWITCH_INTERVAL", default=0.0005)
SMTP_UVLOOP = env.bool("SMTP_UVLOOP", default=True)

# --- Templates (mailtemplates) -----------------------------------------------------------------
# Active templates (Standard and Layout) a server may hold: Postmark's 100. Over it: ErrorCode 1105.
TEMPLATES_PER_SERVER = env.int("TEMPLATES_PER_SERVER", default=100)
# Rendering a template is bounded: sections nested at most this deep (a parse error beyond), a
# TemplateModel of at most this many JSON values, and at most this many characters rendered per
# part (subject, HTML, text). Over a cap the render fails with a clear error, never runs on.
TEMPLATE_MAX_NESTING = env.int("TEMPLATE_MAX_NESTING", default=32)
TEMPLATE_MAX_MODEL_VALUES = env.int("TEMPLATE_MAX_MODEL_VALUES", default=10_000)
TEMPLATE_MAX_RENDERED_SIZE = env.int("TEMPLATE_MAX_RENDERED_SIZE", default=5 * 1024 * 1024)
# ... and at most this many template nodes visited per part (nested {{#each}} multiply).
TEMPLATE_MAX_RENDER_STEPS = env.int("TEMPLATE_MAX_RENDER_STEPS", default=1_000_000)

# --- HTTP API limits (api.bounds, api.throttling) -----------------------------------------------
# Request bodies are refused (HTTP 413) from their Content-Length, or as soon as reading passes
# the limit, before they are parsed. POST /email: a 10 MB message as JSON (base64 attachments,
# escaped text); POST /email/batch: Postmark's 50 MB; every other endpoint: 1 MB.
API_MAX_EMAIL_REQUEST_SIZE = env.int(
    "API_MAX_EMAIL_REQUEST_SIZE", default=SMTP_MAX_MESSAGE_SIZE * 5 // 2
)
API_MAX_BATCH_REQUEST_SIZE = env.int("API_MAX_BATCH_REQUEST_SIZE", default=50 * 1024 * 1024)
API_MAX_REQUEST_SIZE = env.int("API_MAX_REQUEST_SIZE", default=1024 * 1024)
# POST /email/bulk: recipients' items one request may hold (Postmark: 10,000), its body within
# API_MAX_BATCH_REQUEST_SIZE (Postmark's 50 MB).
API_MAX_BULK_MESSAGES = env.int("API_MAX_BULK_MESSAGES", default=10_000)
# A bulk request whose task was lost (a broker restart) or whose worker stopped sending (killed,
# stuck) for this long is queued again by the sweep (every BULK_SWEEP_SECONDS), and resumes where
# it stopped; after BULK_ATTEMPTS tries that did not finish it ends Failed, with the reason.
BULK_LEASE_SECONDS = env.int("BULK_LEASE_SECONDS", default=300)
BULK_ATTEMPTS = env.int("BULK_ATTEMPTS", default=5)
# Requests per API token (server or account), and with Postmark's public test token
# POSTMARK_API_TEST per client address: "<n>/<s|min|h|day>", empty = no limit. Over it: HTTP 429
# (ErrorCode 429) with a Retry-After. Counted in fixed windows in API_RATE_LIMIT_CACHE_URL, a
# cache every web process shares: by default a table in the project's database (created by
# migrate); redis://host:6379/2 to count in Redis instead.
API_TOKEN_RATE = env.str("API_TOKEN_RATE", default="3000/min")
API_TEST_TOKEN_RATE = env.str("API_TEST_TOKEN_RATE", default="60/min")
API_RATE_LIMIT_CACHE = "rate_limits"
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    API_RATE_LIMIT_CACHE: env.cache_url(
        "API_RATE_LIMIT_CACHE_URL", default="dbcache://api_rate_limits"
    ),
}
if CACHES[API_RATE_LIMIT_CACHE]["BACKEND"].endswith(".DatabaseCache"):
    # Room for every token's and address's counter of the current window before culling.
    CACHES[API_RATE_LIMIT_CACHE].setdefault("OPTIONS", {}).setdefault("MAX_ENTRIES", 10_000)
    # Counted through a connection of their own to the same database (api.throttling's router):
    # each count commits at once, outside any request's transaction, and a failed count (the
    # request is then let through) cannot abort one.
    DATABASES[API_RATE_LIMIT_CACHE] = {
        **copy.deepcopy(DATABASES["default"]),
        "TEST": {"MIRROR": "default"},
    }
    DATABASE_ROUTERS = ["api.throttling.RateLimitRouter"]

# The domain of the Message-ID the service gives every message (unless X-PM-KeepID: true).
MESSAGE_ID_DOMAIN = env.str("MESSAGE_ID_DOMAIN", default="") or SMTP_HOSTNAME or "localhost"

# Host names users configure in their SMTP clients, shown on the server page (default: the
# listeners' addresses).
SMTP_PUBLIC_HOST = env.str("SMTP_PUBLIC_HOST", default="")
SMTP_PUBLIC_BROADCAST_HOST = env.str("SMTP_PUBLIC_BROADCAST_HOST", default="")
# Finished days of the dashboard's charts are counted once and cached this long (0: never).
DASHBOARD_DAY_CACHE_SECONDS = env.int("DASHBOARD_DAY_CACHE_SECONDS", default=3600)

# Where gunicorn listens (postmark_site/gunicorn.py reads the same variable); the start-up banner
# and the default TRACKING_BASE_URL are made from it.
WEB_BIND = env.str("WEB_BIND", default="127.0.0.1:8000")


def _web_url(bind: str) -> str:
    """The URL a browser on this machine opens for a gunicorn bind address (a wildcard host is
    reached on the loopback address)."""
    if bind.startswith(("unix:", "fd://")):
        return "http://127.0.0.1:8000"
    host, _, port = bind.rpartition(":")
    host = host or "127.0.0.1"
    if host.strip("[]") in ("0.0.0.0", "::", "*"):  # noqa: S104 - a wildcard shown as loopback
        host = "127.0.0.1"
    return f"http://{host}:{port or 8000}"


WEB_URL = _web_url(WEB_BIND)
# Public base URL of this service's web endpoints, for tracking pixels and links.
TRACKING_BASE_URL = env.str("TRACKING_BASE_URL", default=WEB_URL)

# --- Delivery -----------------------------------------------------------------------------------
# A smarthost, e.g. smtp://user:pass@smtp.example.com:587?starttls=require or ?tls=implicit ...
OUTBOUND_SMTP_RELAY = env.str("OUTBOUND_SMTP_RELAY", default="")
# ... or delivery to each domain's MX hosts.
OUTBOUND_DIRECT_MX = env.bool("OUTBOUND_DIRECT_MX", default=False)
OUTBOUND_MX_PORT = env.int("OUTBOUND_MX_PORT", default=25)
# Name servers for MX look-ups (host or host:port); default: the system's resolver.
OUTBOUND_DNS_SERVERS = env.list("OUTBOUND_DNS_SERVERS", default=[])
OUTBOUND_HELO = env.str("OUTBOUND_HELO", default="") or SMTP_HOSTNAME or "localhost"
OUTBOUND_TIMEOUT = env.float("OUTBOUND_TIMEOUT", default=60.0)
# Verify the certificate of a relay that requires TLS (MX hosts get opportunistic TLS).
OUTBOUND_TLS_VERIFY = env.bool("OUTBOUND_TLS_VERIFY", default=True)
# Connections kept per destination by each worker process.
OUTBOUND_CONNECTIONS_PER_DESTINATION = env.int("OUTBOUND_CONNECTIONS_PER_DESTINATION", default=4)
# The domain of the VERP return paths, pm_bounces+<MessageID>.<recipient>.<tag>@BOUNCE_DOMAIN.
BOUNCE_DOMAIN = env.str("BOUNCE_DOMAIN", default="") or MESSAGE_ID_DOMAIN
# The domain a sender's SPF record includes (compat §8's informational SPF record).
SPF_INCLUDE_DOMAIN = env.str("SPF_INCLUDE_DOMAIN", default="") or BOUNCE_DOMAIN
# Messages whose From domain is not DKIM-verified are signed with d= this domain's key (made on
# first use; publish its TXT record, listed with the domains). A worker re-reads the keys of a
# From domain after this many seconds (a rotated or revoked key stops signing by then).
DKIM_SERVICE_DOMAIN = env.str("DKIM_SERVICE_DOMAIN", default="") or BOUNCE_DOMAIN
DKIM_KEY_CACHE_SECONDS = env.float("DKIM_KEY_CACHE_SECONDS", default=30.0)
# Deferred recipients are retried after RETRY_BASE seconds, doubling up to RETRY_MAX, until
# GIVE_UP_AFTER seconds have passed since the message was received (then: SoftBounce).
DELIVERY_RETRY_BASE = env.float("DELIVERY_RETRY_BASE", default=60.0)
DELIVERY_RETRY_MAX = env.float("DELIVERY_RETRY_MAX", default=4 * 3600.0)
DELIVERY_GIVE_UP_AFTER = env.float("DELIVERY_GIVE_UP_AFTER", default=72 * 3600.0)
# A message's VERP return paths take reports (bounces, complaints, auto-replies) at the bounce MX
# for this many days after its last delivery attempt (DELIVERY_GIVE_UP_AFTER after it came in);
# later ones are refused at RCPT. A rotated-out SECRETS_KEY must stay configured (behind the new
# one) for DELIVERY_GIVE_UP_AFTER + VERP_ACCEPT_DAYS: the tags of return paths it made are
# checked under it until then (``manage.py rotatesecrets`` prints the date).
VERP_ACCEPT_DAYS = env.float("VERP_ACCEPT_DAYS", default=30.0)
# Longest countdown a delivery retry is queued with; a later retry waits in the database and the
# sweep queues it when due (brokers cancel or redeliver tasks held longer than their timeouts:
# RabbitMQ's consumer timeout is 30 minutes, Redis's visibility timeout 1 hour).
DELIVERY_MAX_COUNTDOWN = env.float("DELIVERY_MAX_COUNTDOWN", default=300.0)
# Unexpected errors (or workers that died) while delivering to a recipient before it is given up:
# it becomes failed, with a SoftBounce that says why.
DELIVERY_ERROR_LIMIT = env.int("DELIVERY_ERROR_LIMIT", default=3)
# How long a delivery worker waits for an unavailable database (a restart, a failover) to record
# what it holds: a recipient the next hop took (recorded, never sent again because of the database),
# then the recipients without a result, given back for the task's retry. Past it, they are in doubt
# once their lease runs out (sent again, at least once). Twice this stays well under the broker's
# limit on a task held unacknowledged (RabbitMQ's consumer timeout: 30 minutes).
DELIVERY_DATABASE_PATIENCE = env.float("DELIVERY_DATABASE_PATIENCE", default=300.0)

# --- Webhooks (bounces.webhooks) -----------------------------------------------------------------
# Seconds to wait for a webhook receiver (connect, send, answer).
WEBHOOK_TIMEOUT = env.float("WEBHOOK_TIMEOUT", default=10.0)
# Allow webhook URLs on private, loopback, link-local... addresses (refused by default: SSRF).
WEBHOOK_ALLOW_PRIVATE_URLS = env.bool("WEBHOOK_ALLOW_PRIVATE_URLS", default=False)
# Seconds before each retry of a failed post (Postmark: 1, 5, 10, 10, 10, 15, 30 min, 1, 2, 6 h).
WEBHOOK_RETRY_DELAYS = [
    int(v)
    for v in env.list(
        "WEBHOOK_RETRY_DELAYS", default=["60", "300", "600", "600", "600", "900", "1800", "3600",
                                         "7200", "21600"]
    )
]  # fmt: skip
# Longest Celery countdown used for a retry; a later retry is re-queued in steps (brokers such as
# RabbitMQ cancel consumers that hold unacknowledged ETA tasks too long). The sweep backs it up.
WEBHOOK_MAX_COUNTDOWN = env.float("WEBHOOK_MAX_COUNTDOWN", default=600.0)
WEBHOOK_USER_AGENT = env.str("WEBHOOK_USER_AGENT", default="Postmark-compatible-webhooks/1.0")
# How long a process trusts its list of the streams that have webhooks (a webhook created in
# another process is posted to within this time; an event missed meanwhile goes by the sweep).
WEBHOOK_STREAMS_CACHE_SECONDS = env.float("WEBHOOK_STREAMS_CACHE_SECONDS", default=5.0)

# --- Sender identity (domains) -------------------------------------------------------------------
# Seconds one DNS look-up of a verification may take (name servers: OUTBOUND_DNS_SERVERS).
DNS_VERIFY_TIMEOUT = env.float("DNS_VERIFY_TIMEOUT", default=5.0)
# Verified domains (and those with a DNS problem) are checked again this often, to notice a
# record that vanished or changed; unverified domains (records not yet published) less often.
DOMAIN_RECHECK_SECONDS = env.float("DOMAIN_RECHECK_SECONDS", default=3600.0)
DOMAIN_PENDING_RECHECK_SECONDS = env.float("DOMAIN_PENDING_RECHECK_SECONDS", default=6 * 3600.0)
# Domains checked per run of the periodic task (the rest wait for the next run).
DOMAIN_RECHECK_BATCH = env.int("DOMAIN_RECHECK_BATCH", default=200)
# A verified DKIM or Return-Path record that a check finds missing or changed (a definite answer:
# NXDOMAIN, no such record, another value) is un-verified only once this many checks in a row
# have failed over at least DNS_UNVERIFY_AFTER_HOURS (24 to 72 is sensible); until then the domain
# keeps signing and sending, and the System page, the domain's page and /metrics say what fails
# since when. A check that finds the record ends the failures; a temporary failure (timeout,
# SERVFAIL) neither counts nor ends them.
DNS_UNVERIFY_AFTER_FAILURES = env.int("DNS_UNVERIFY_AFTER_FAILURES", default=3)
DNS_UNVERIFY_AFTER_HOURS = env.float("DNS_UNVERIFY_AFTER_HOURS", default=24.0)
# The service's own messages (sender signature confirmations) come from this address, through
# the server SYSTEM_SERVER_NAME (made on first use, Live).
SYSTEM_FROM = env.str("SYSTEM_FROM", default="") or f"postmaster@{BOUNCE_DOMAIN}"
SYSTEM_SERVER_NAME = env.str("SYSTEM_SERVER_NAME", default="System")
# --- Inbound (the inbound MX, the inbound webhook) ------------------------------------------------
# The domain of each server's inbound address, <InboundHash>[+<MailboxHash>]@INBOUND_DOMAIN (the
# Server API's InboundAddress); its MX record points at the inbound listener. INBOUND_ADDRESS_DOMAIN
# is its former name, still read when INBOUND_DOMAIN is not set.
INBOUND_DOMAIN = (
    env.str("INBOUND_DOMAIN", default="")
    or env.str("INBOUND_ADDRESS_DOMAIN", default="")
    or f"inbound.{SMTP_HOSTNAME or MESSAGE_ID_DOMAIN}"
)
INBOUND_ADDRESS_DOMAIN = INBOUND_DOMAIN  # deprecated alias
# Postmark takes inbound messages of up to 35 MB (SIZE on the inbound listener; 552 above it).
INBOUND_MAX_MESSAGE_SIZE = env.int("INBOUND_MAX_MESSAGE_SIZE", default=35 * 1024 * 1024)
# The inbound webhook: how long a POST may take (Postmark waits 2 minutes), and the delays of the
# 10 retries after the first try (Postmark's schedule, in seconds); then the message is Failed.
INBOUND_WEBHOOK_TIMEOUT = env.float("INBOUND_WEBHOOK_TIMEOUT", default=120.0)
INBOUND_RETRY_DELAYS = [
    int(seconds)
    for seconds in env.list(
        "INBOUND_RETRY_DELAYS",
        default=["60", "300", "600", "600", "600", "900", "1800", "3600", "7200", "21600"],
    )
]
# Each text part (TextBody, HtmlBody, StrippedTextReply) of the stored and posted JSON is cut at
# this many characters (Postmark truncates stored content past 1 MB).
INBOUND_MAX_BODY_CHARS = env.int("INBOUND_MAX_BODY_CHARS", default=1024 * 1024)
# The languages of the quoted-history markers StrippedTextReply recognises (mail-parser-reply).
INBOUND_REPLY_LANGUAGES = env.list(
    "INBOUND_REPLY_LANGUAGES", default=["en", "de", "fr", "es", "it", "nl", "pl", "cs", "sv", "da"]
)
# How long a sender signature's confirmation link stays valid.
SENDER_CONFIRMATION_MAX_AGE = env.int("SENDER_CONFIRMATION_MAX_AGE", default=7 * 24 * 3600)
# How many confirmation messages may go out (on creation, Resend, the admin), so that nobody can
# flood an address with them (0 = no limit): to one address in any 24 hours, and from the whole
# account (every address) in any hour. Over a limit, the API answers 429 (ErrorCode 429).
SENDER_CONFIRMATIONS_PER_ADDRESS_PER_DAY = env.int(
    "SENDER_CONFIRMATIONS_PER_ADDRESS_PER_DAY", default=3
)
SENDER_CONFIRMATIONS_PER_HOUR = env.int("SENDER_CONFIRMATIONS_PER_HOUR", default=50)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# text: one readable line per record; json: one JSON object per line (python-json-logger), with
# MessageID, server and stream on every line about a message (core.logcontext).
LOG_FORMAT = env.str("LOG_FORMAT", default="text").lower()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"message_context": {"()": "core.logcontext.MessageContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "timestamp": False,
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["message_context"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # aiosmtpd logs every command at INFO and a deprecation warning per AUTH; the gateway logs
    # one line per transaction itself (logger smtpgw.transaction).
    "loggers": {"mail.log": {"level": env.str("AIOSMTPD_LOG_LEVEL", default="ERROR")}},
}

# --- Health and metrics -----------------------------------------------------------------------
# Prometheus metrics of every process on this host are kept in files under this directory
# (prometheus-client's multiprocess mode), so that several gateway processes, gunicorn workers or
# Celery workers are scraped through one port. It must be set before prometheus_client is imported.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default=str(DATA_DIR / "metrics"))
Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", PROMETHEUS_MULTIPROC_DIR)
# Seconds a readiness check waits for the database or the broker.
HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", default=3.0)
# How often (seconds) the beat samples the queue gauges for the admin's System page trend, and
# how long samples are kept.
SYSTEM_SAMPLE_INTERVAL_SECONDS = env.float("SYSTEM_SAMPLE_INTERVAL_SECONDS", default=300.0)
SYSTEM_SAMPLE_RETENTION_DAYS = env.int("SYSTEM_SAMPLE_RETENTION_DAYS", default=7)
