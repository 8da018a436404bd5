"""The SMTP protocol edge, per process: the :class:`Gateway` every session shares (the thread pool
for database work, the group committer and the dispatcher that queues processing, the AUTH
throttle, connection limits), the protocol factory the listeners start sessions with, and the
graceful drain at shutdown.

The protocol itself: one connection is ``smtpgw.session`` (commands, AUTH mechanisms, the DATA
phase), the mail transaction's hooks and the durable accept are ``smtpgw.transaction``, the fixed
replies ``smtpgw.replies``; only protocol lives there. Who may send is decided in
``smtpgw.credentials``, SASL arithmetic in ``smtpgw.sasl``, what the service can store in
``smtpgw.storable``, the message data is read by ``smtpgw.data_reader``, and the records are
written by ``messages.submissions`` through the group committer. Anything that touches the
database runs in a thread pool, never on the event loop.
"""

import asyncio
import contextlib
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection

from core.db import is_database_unavailable
from messages.submissions import note_token_use, save_submissions
from messages.tasks import enqueue_processing
from smtpgw.committer import Dispatcher, GroupCommitter
from smtpgw.limits import ConnectionLimits
from smtpgw.replies import SHUTTING_DOWN
from smtpgw.session import GatewaySMTP
from smtpgw.throttle import SharedThrottle
from smtpgw.transaction import TransactionHandler
from streams.listeners import Listener


class Gateway:
    """Per-process state shared by every session: the thread pool, the group committer, limits."""

    def __init__(self):
        self.hostname = settings.SMTP_HOSTNAME or socket.getfqdn()
        self.max_size = settings.SMTP_MAX_MESSAGE_SIZE
        self.max_recipients = settings.SMTP_MAX_RECIPIENTS
        self.max_header = settings.SMTP_MAX_HEADER_BYTES
        self.max_field = settings.SMTP_MAX_FIELD_BYTES
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="smtp-db")
        self.dispatcher = Dispatcher(
            enqueue_processing, settings.SMTP_DISPATCH_INTERVAL, settings.SMTP_COMMIT_BATCH
        )
        self.committer = GroupCommitter(
            save_submissions, settings.SMTP_COMMIT_BATCH, after_commit=self.after_commit
        )
        self.throttle = SharedThrottle(
            self.run_blocking,
            settings.SMTP_AUTH_FAILURE_LIMIT,
            settings.SMTP_AUTH_FAILURE_WINDOW,
            settings.SMTP_AUTH_FAILURE_LIMIT_PER_USERNAME,
            refresh=settings.SMTP_AUTH_THROTTLE_REFRESH,
        )
        self.limits = ConnectionLimits(
            settings.SMTP_MAX_CONNECTIONS, settings.SMTP_MAX_CONNECTIONS_PER_ADDRESS
        )
        self.sessions: set[GatewaySMTP] = set()
        self.shutting_down = False

    def size_limit(self, listener: Listener) -> int:
        """SIZE and the DATA limit: INBOUND_MAX_MESSAGE_SIZE (Postmark: 35 MB) on the inbound
        MX, SMTP_MAX_MESSAGE_SIZE elsewhere."""
        if listener.endpoint == "inbound":
            return settings.INBOUND_MAX_MESSAGE_SIZE
        return self.max_size

    def after_commit(self, rows: list[dict]) -> None:
        """In the writer thread, once the clients have their 250: queue processing, note use."""
        self.dispatcher.add([str(row["message_id"]) for row in rows])
        note_token_use(rows)

    async def run_blocking(self, func, *args):
        return await asyncio.get_running_loop().run_in_executor(
            self.executor, _reconnecting_after_errors, func, args
        )

    def protocol_factory(self, listener: Listener, tls_context):
        handler = TransactionHandler(self, listener)  # stateless: one per listener

        def factory():
            return GatewaySMTP(self, listener, handler, tls_context)

        return factory

    async def drain(self, grace: float) -> None:
        """Close idle sessions now; give those inside a transaction ``grace`` seconds to finish."""
        self.shutting_down = True
        deadline = time.monotonic() + grace
        while self.sessions and time.monotonic() < deadline:
            for session in list(self.sessions):
                if not session.in_transaction():
                    session.close_with(SHUTTING_DOWN)
            await asyncio.sleep(0.05)
        for session in list(self.sessions):
            session.close_with(SHUTTING_DOWN)

    def close(self) -> None:
        self.committer.close()
        self.dispatcher.close()
        self.executor.shutdown(wait=True)


def _reconnecting_after_errors(func, args):
    """Run ``func`` in a pool thread; when the database failed under it, drop the thread's
    connection so that the next call dials again instead of reusing a dead one."""
    try:
        return func(*args)
    except Exception as error:
        if is_database_unavailable(error):
            with contextlib.suppress(Exception):
                connection.close()
        raise
