"""Running the gateway: listeners, worker processes sharing the ports, and graceful shutdown."""

import asyncio
import logging
import multiprocessing
import os
import signal
import sys

from django.conf import settings
from django.db import connections

from core.hostnames import local_name_warnings
from smtpgw import metrics, proxy, tls
from smtpgw.server import Gateway
from streams.listeners import Listener

log = logging.getLogger("smtpgw")


def serve(
    listeners: list[Listener], processes: int = 1, http: tuple[str, int] | None = None
) -> int:
    """Run the gateway until SIGTERM or SIGINT; returns the exit status. With ``http``, health
    and metrics are served there (from this process, for all the gateway processes)."""
    tls.certificate_paths()  # make the self-signed pair once, before any child needs it
    for name in local_name_warnings():
        log.warning("%s", name.sentence)
    connections.close_all()  # children must not share the parent's database connections
    try:  # bound before anything starts: a taken address stops the gateway at once
        http_server = metrics.bind_http(http) if http else None
    except OSError as exc:
        log.error("cannot serve health and metrics on %s:%d: %s", *http, exc)
        return 1
    if processes <= 1:
        if http_server is not None:
            metrics.start_http(http_server)
        try:
            _run(_serve_process(listeners))
        finally:
            if http_server is not None:
                http_server.shutdown()
        return 0
    return _supervise(listeners, processes, http_server)


def _supervise(listeners: list[Listener], processes: int, http_server=None) -> int:
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_child_main, args=(listeners, http_server), name=f"smtp-{i}")
        for i in range(processes)
    ]
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True
        for child in children:
            if child.is_alive():
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for child in children:
        child.start()
    if http_server is not None:  # served from here, after the fork: no child has the thread
        metrics.start_http(http_server)
    status = 0
    while any(child.is_alive() for child in children):
        for child in children:
            child.join(0.2)
            if not child.is_alive() and child.exitcode not in (0, None) and not stopping:
                log.error("gateway process %s exited with %s; stopping", child.name, child.exitcode)
                status = 1
                stop(signal.SIGTERM, None)
    if http_server is not None:
        http_server.shutdown()
    return status


def _child_main(listeners: list[Listener], http_server=None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM
    if http_server is not None:
        http_server.socket.close()  # the parent's: a child keeps no copy of the port open
    _run(_serve_process(listeners))


def _run(main) -> None:
    """Run the event loop: uvloop when installed and enabled (its transports cost about half of
    asyncio's per connection), else asyncio's own."""
    if settings.SMTP_UVLOOP:
        try:
            import uvloop

            uvloop.run(main)
            return
        except ImportError:
            log.warning("SMTP_UVLOOP is on but uvloop is not installed: using asyncio's loop")
    asyncio.run(main)


async def _serve_process(listeners: list[Listener]) -> None:
    # The group-commit thread needs the GIL briefly several times per batch; with the default
    # 5 ms switch interval each hand-over from the busy event loop adds milliseconds to every
    # 250 reply. A shorter interval keeps end-of-DATA latency at the database's own pace.
    sys.setswitchinterval(settings.SMTP_GIL_SWITCH_INTERVAL)
    loop = asyncio.get_running_loop()
    gateway = Gateway()
    context = tls.server_context()
    servers = []
    trusted = proxy.trusted_networks(settings.SMTP_PROXY_TRUSTED)
    for listener in listeners:
        if listener.proxy:
            factory = gateway.protocol_factory(listener, context)
            proxied = proxy.ProxyServer(
                listener, factory, context, trusted, settings.SMTP_PROXY_TIMEOUT
            )
            servers.append(await proxied.start())
            continue
        servers.append(
            await loop.create_server(
                gateway.protocol_factory(listener, context),
                host=listener.host,
                port=listener.port,
                ssl=context if listener.implicit_tls else None,
                reuse_port=True,
                backlog=1024,
            )
        )
    described = " ".join(str(listener) for listener in listeners)
    log.info("SMTP gateway ready (pid %d): %s", os.getpid(), described)
    sys.stdout.flush()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    log.info("SMTP gateway stopping (pid %d): finishing open transactions", os.getpid())
    for server in servers:
        server.close()
    await gateway.drain(settings.SMTP_SHUTDOWN_GRACE)
    gateway.close()
    log.info("SMTP gateway stopped (pid %d)", os.getpid())
