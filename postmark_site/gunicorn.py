"""gunicorn's configuration for the web app (admin, HTTP API, tracking, health and metrics).

Every value can be overridden from the environment (WEB_BIND, WEB_WORKERS, WEB_THREADS,
WEB_TIMEOUT) or on gunicorn's command line. Static files are served by whitenoise, inside the app.
"""

import os
from pathlib import Path

import environ

# The same .env the settings read (gunicorn reads this file before the app is loaded).
environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = "gthread"
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 30
# The app's own logging configuration (LOG_FORMAT) writes every line; gunicorn's access log
# would be a second format beside it.
accesslog = None
errorlog = "-"
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

# With LOG_FORMAT=json, gunicorn's own lines (start, workers booting, errors) are JSON objects too.
if os.environ.get("LOG_FORMAT", "text").lower() == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
                "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "environ": {"level": "WARNING"},  # "no .env file" at every start
        },
    }
