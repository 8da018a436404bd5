"""A Celery worker for tests whose processing of one kind of message kills its own process with
SIGKILL, as the kernel's OOM killer kills a worker that a message made too large.

``python -m messages.tests.dying_worker WHERE [celery worker options]``: a message carrying the
header ``X-Test-Kill-Worker:`` kills the process that processes it, ``WHERE`` is
``transaction`` (while its outbound message is made, inside the processing transaction) or
``parsing`` (whenever its header is parsed: before any transaction, and again when its failure is
recorded). The product has no such hook: this module replaces the functions in the worker's own
memory before the worker starts, and only tests start it.
"""

import os
import signal
import sys

MARKER = b"\r\nX-Test-Kill-Worker:"


def die_on_marker(raw) -> None:
    if MARKER in b"\r\n" + bytes(raw):
        os.kill(os.getpid(), signal.SIGKILL)


def install(where: str) -> None:
    from messages import processing, tries

    if where == "transaction":
        original = processing.outbound_message

        def outbound_message(submission, stream, parsed, raw, *args, **kwargs):
            die_on_marker(raw)
            return original(submission, stream, parsed, raw, *args, **kwargs)

        processing.outbound_message = outbound_message
    elif where == "parsing":
        for module in (processing, tries):
            original_parse = module.parse_headers

            def parse_headers(raw, *args, _original=original_parse, **kwargs):
                die_on_marker(raw)
                return _original(raw, *args, **kwargs)

            module.parse_headers = parse_headers
    else:
        raise SystemExit(f"unknown place to die: {where}")


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "postmark_site.settings")
    import django

    django.setup()
    install(sys.argv[1])
    from postmark_site.celery import app

    # A pool's process that died is declared lost after this many seconds (10 by default).
    app.conf.worker_lost_wait = 1.0
    app.worker_main(["worker", *sys.argv[2:]])


if __name__ == "__main__":
    main()
