"""Which message a log line is about: MessageID, server and stream on every line written while a
message is being handled, in the gateway, the workers and the web app.

The edges and the tasks wrap their work on one message in ``about_message(...)``; a filter on the
log handler copies the current values onto every record, where the JSON formatter
(``LOG_FORMAT=json``) writes them as fields. A context variable follows the work across ``await``
and stays apart between threads, so concurrent sessions and worker threads never mix them up.
"""

import contextlib
import contextvars
import logging

_current: contextvars.ContextVar[dict | None] = contextvars.ContextVar("message", default=None)


@contextlib.contextmanager
def about_message(message_id=None, server=None, stream=None):
    """Log lines written inside are about this message (values left out are inherited)."""
    fields = dict(_current.get() or {})
    for key, value in (("MessageID", message_id), ("server", server), ("stream", stream)):
        if value is not None and value != "":
            fields[key] = str(value)
    token = _current.set(fields)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> dict:
    return dict(_current.get() or {})


class MessageContextFilter(logging.Filter):
    """Adds MessageID, server and stream to records written about a message."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_current.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def use_json(logger: logging.Logger) -> None:
    """Give ``logger``'s handlers the JSON formatter and the message filter of the settings'
    LOGGING (for handlers made by others, e.g. the ones a Celery worker installs)."""
    from django.conf import settings
    from pythonjsonlogger.json import JsonFormatter

    options = {k: v for k, v in settings.LOGGING["formatters"]["json"].items() if k != "()"}
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter(**options))
        if not any(isinstance(f, MessageContextFilter) for f in handler.filters):
            handler.addFilter(MessageContextFilter())
