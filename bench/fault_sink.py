"""The relay of the fault matrix: an SMTP server whose answers change while it runs.

    python -m bench.fault_sink --port PORT --log PATH --control PATH

It reads its mode from the ``--control`` file (written by the benchmark; read every 50 ms):

- ``ok``: a plain relay, 250 to everything (EHLO offers PIPELINING, 8BITMIME and SIZE);
- ``blackhole``: a relay that hangs: a new connection is accepted and never greeted, and a
  connection already open gets no answer to its next command (its input is read and dropped
  until the client gives up and closes it);
- ``421``: a new connection is greeted with ``421 4.3.2`` and closed, and an open one gets
  ``421`` to its next command and is closed;
- ``451``: the end of every DATA is answered ``451 4.3.0`` (the message is not taken);
- ``slow <seconds>``: a slow relay: each message is taken at the end of its DATA and the 250
  comes that many seconds later (a client that dies meanwhile leaves a message it will send
  again).

Back to ``ok``, new connections are served normally (a connection that hung stays hung, as one
across a broken path would). Every event goes to the ``--log`` file, one line each, flushed:
``<unix time> open <conn>``, ``<unix time> msg <conn> <MAIL FROM>`` (a message taken: answered
250), ``<unix time> close <conn>``, ``<unix time> mode <mode>``; :func:`read_log` reads it back.
Prints ``sink ready`` once it listens; exits on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import signal
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("ok", "blackhole", "421", "451", "slow")
HOSTNAME = "relay.faults.test"
LINE_LIMIT = 1 << 20
# The VERP return path of a relayed message: one per recipient,
# pm_bounces+<MessageID as 32 hex>.<recipient id>.<tag>@BOUNCE_DOMAIN, or the older per-message
# pm_bounces+<MessageID>.<tag>@BOUNCE_DOMAIN.
VERP = re.compile(
    r"pm_bounces\+(?:([0-9a-f]{8}-[0-9a-f-]{27})|([0-9a-f]{32})\.[0-9a-z]+)(?:\.[0-9a-z]+)?@", re.I
)


def set_mode(control: Path, mode: str, delay: float = 0.0) -> None:
    """Switch a running sink (atomically: the sink never reads half a word)."""
    if mode not in MODES:
        raise ValueError(f"unknown sink mode {mode!r}")
    temporary = control.with_suffix(".tmp")
    temporary.write_text(f"{mode} {delay:g}" if mode == "slow" else mode)
    temporary.replace(control)


class FaultSink:
    def __init__(self, log_path: Path, control: Path):
        self.log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed in main()
        self.control = control
        self.mode = "ok"
        self.delay = 0.0
        self.ids = itertools.count(1)
        self.taken = 0

    def note(self, *words: object) -> None:
        self.log.write(f"{time.time():.3f} " + " ".join(str(w) for w in words) + "\n")

    async def watch_control(self) -> None:
        while True:
            try:
                mode, _, delay = self.control.read_text().strip().partition(" ")
            except OSError:
                mode, delay = "ok", ""
            if mode in MODES and (mode, float(delay or 0)) != (self.mode, self.delay):
                self.mode, self.delay = mode, float(delay or 0)
                self.note("mode", mode)
            await asyncio.sleep(0.05)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = next(self.ids)
        self.note("open", conn)
        try:
            await self.converse(conn, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.note("close", conn)
            writer.close()

    async def converse(self, conn: int, reader, writer) -> None:
        async def reply(text: str) -> None:
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        if await self.faulted(reader, reply):
            return
        await reply(f"220 {HOSTNAME} ESMTP fault sink")
        mail_from, rcpts = None, 0
        while line := await reader.readline():
            if await self.faulted(reader, reply):
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                await reply(
                    f"250-{HOSTNAME}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 52428800"
                )
            elif verb == b"HELO":
                await reply(f"250 {HOSTNAME}")
            elif verb == b"MAIL":
                found = re.search(rb"<([^>]*)>", line)
                mail_from, rcpts = (found.group(1).decode(errors="replace") if found else ""), 0
                await reply("250 2.1.0 Ok")
            elif verb == b"RCPT":
                if mail_from is None:
                    await reply("503 5.5.1 MAIL first")
                    continue
                rcpts += 1
                await reply("250 2.1.5 Ok")
            elif verb == b"DATA":
                if not rcpts:
                    await reply("503 5.5.1 RCPT first")
                    continue
                await reply("354 End data with <CR><LF>.<CR><LF>")
                while (data := await reader.readline()) not in (b".\r\n", b".\n"):
                    if not data:
                        return
                if await self.faulted(reader, reply):
                    return
                if self.mode == "451":
                    await reply("451 4.3.0 Temporary local problem, try again later")
                else:
                    self.taken += 1
                    self.note("msg", conn, mail_from or "<>")
                    if self.mode == "slow":
                        await asyncio.sleep(self.delay)
                    await reply(f"250 2.0.0 Ok: queued as FS{self.taken}")
                mail_from, rcpts = None, 0
            elif verb == b"RSET":
                mail_from, rcpts = None, 0
                await reply("250 2.0.0 Ok")
            elif verb == b"NOOP":
                await reply("250 2.0.0 Ok")
            elif verb == b"QUIT":
                await reply("221 2.0.0 Bye")
                return
            else:
                await reply("502 5.5.2 Command not recognized")

    async def faulted(self, reader, reply) -> bool:
        """Apply a blackhole or 421 mode to this connection; True when it is over."""
        if self.mode == "blackhole":
            while await reader.read(65536):  # never answer; drop what comes until EOF
                pass
            return True
        if self.mode == "421":
            await reply(f"421 4.3.2 {HOSTNAME} Service not available, closing channel")
            return True
        return False


async def serve(args) -> None:
    sink = FaultSink(Path(args.log), Path(args.control))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(sink.watch_control())
    server = await asyncio.start_server(
        sink.session, args.host, args.port, limit=LINE_LIMIT, backlog=1000
    )
    print("sink ready", flush=True)
    await stop.wait()
    watcher.cancel()
    server.close()
    sink.log.close()


# --- reading the log back -----------------------------------------------------------------------


@dataclass
class SinkLog:
    """What a sink's log says: each message taken (MessageID from its VERP return path, time,
    connection), each connection's open and close times, and mode changes."""

    taken: list[tuple[float, str, int]] = field(default_factory=list)  # (time, MessageID, conn)
    opened: dict[int, float] = field(default_factory=dict)
    closed: dict[int, float] = field(default_factory=dict)
    modes: list[tuple[float, str]] = field(default_factory=list)
    other: int = 0  # messages whose return path is not a VERP address

    @property
    def copies(self) -> Counter:
        """Copies taken per MessageID."""
        return Counter(message_id for _, message_id, _ in self.taken)

    def open_at(self, moment: float, before: float = 0.0) -> int:
        """Connections open at ``moment`` (unix time), or at any time in the ``before`` seconds
        up to it (a connection of a process killed at ``moment`` is closed by then)."""
        return sum(
            1
            for conn, opened in self.opened.items()
            if opened <= moment and self.closed.get(conn, float("inf")) > moment - before
        )

    def count_between(self, start: float, end: float) -> int:
        return sum(1 for when, _, _ in self.taken if start <= when < end)


def read_log(path: Path) -> SinkLog:
    log = SinkLog()
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return log
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue  # a line still being written
        when, event = float(parts[0]), parts[1]
        if event == "open":
            log.opened[int(parts[2])] = when
        elif event == "close":
            log.closed[int(parts[2])] = when
        elif event == "mode":
            log.modes.append((when, parts[2]))
        elif event == "msg" and len(parts) >= 4:
            found = VERP.search(parts[3])
            if found:
                message_id = found.group(1) or str(uuid.UUID(found.group(2)))
                log.taken.append((when, message_id.lower(), int(parts[2])))
            else:
                log.other += 1
    return log


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fault_sink",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True, help="the event log (appended)")
    parser.add_argument("--control", required=True, help="the file holding the mode")
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
