"""Real servers for delivery tests: an SMTP sink that answers per recipient, and a tiny DNS server.

Recipients' local parts choose the answer at RCPT: ``ok…`` 250, ``later…`` 450 (then 250 once the
address has been deferred ``later_times`` times), ``gone…`` 550 5.1.1, ``full…`` 552 5.2.2,
``blocked…`` 550 5.7.1, ``moved…`` 550 (no enhanced code, ambiguous text), ``down…`` 421. At
the end of DATA, a transaction with a ``spam…`` recipient gets 554 5.7.1, one with a ``huge…``
recipient 552 5.3.4 and one with a ``slowly…`` recipient 451 4.3.0; the same content is refused
so again in later transactions, whoever it is for (as a content filter would).

Whole-session answers are set on the sink: ``mail_reply`` answers MAIL FROM, ``data_reply``
answers the DATA command itself (before 354); ``smtputf8`` says whether EHLO offers SMTPUTF8
(RFC 6531), ``pipelining`` whether it offers PIPELINING (RFC 2920), ``eightbitmime`` whether it
offers 8BITMIME (RFC 6152); ``rcpt_delay`` slows every RCPT down (to make concurrent deliveries
overlap). Faults, each for the first so many times: ``rcpt_452_times`` answers an address's RCPT
with ``too_many_reply`` (452 4.5.3, too many recipients), ``stall_at_rcpt`` keeps a RCPT
waiting ``stall_seconds``, ``stall_after_data`` takes the message (it counts as received) and
then keeps the reply to it waiting ``stall_seconds``. ``host`` is the address it listens on
(``::1`` for IPv6); ``sessions`` lists each connection's MAIL, RCPT and RSET commands. A test may
bring a handler of its own (a ``SinkHandler`` that stalls, say).
"""

import asyncio
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rrset
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from conftest import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    smtp_utf8: bool = False
    peer: tuple = ()  # the client's (address, port): one value per connection
    mail_options: list[str] = field(default_factory=list)


@dataclass
class SinkHandler:
    later_times: int = 1
    mail_reply: str | None = None
    data_reply: str | None = None
    rcpt_delay: float = 0.0
    pipelining: bool = True
    eightbitmime: bool = True
    rcpt_452_times: int = 0
    too_many_reply: str = "452 4.5.3 Too many recipients"
    stall_at_rcpt: int = 0
    stall_after_data: int = 0
    stall_seconds: float = 3.0
    messages: list[Received] = field(default_factory=list)
    deferrals: Counter = field(default_factory=Counter)
    refused_content: dict = field(default_factory=dict)
    too_many: Counter = field(default_factory=Counter)
    sessions: list[list[str]] = field(default_factory=list)  # each connection's commands

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.sessions.append([])
        session.commands = self.sessions[-1]
        if self.pipelining:  # aiosmtpd reads pipelined commands; it just does not say so
            responses.insert(-1, "250-PIPELINING")
        if not self.eightbitmime:
            responses.remove("250-8BITMIME")
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        getattr(session, "commands", []).append("MAIL")
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RSET(self, server, session, envelope):
        getattr(session, "commands", []).append("RSET")
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        getattr(session, "commands", []).append("RCPT")
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        if self.stall_at_rcpt:
            self.stall_at_rcpt -= 1
            await asyncio.sleep(self.stall_seconds)
        if self.too_many[address] < self.rcpt_452_times:
            self.too_many[address] += 1
            return self.too_many_reply
        local = address.split("@")[0].lower()
        if local.startswith("gone"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("full"):
            return f"552 5.2.2 <{address}>: Mailbox full"
        if local.startswith("blocked"):
            return "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org"
        if local.startswith("moved"):
            return "550 Requested action not taken: mailbox unavailable"
        if local.startswith("down"):
            return "421 4.3.2 Service shutting down"
        if local.startswith("later") and self.deferrals[address] < self.later_times:
            self.deferrals[address] += 1
            return f"450 4.2.0 <{address}>: Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        locals_ = [address.split("@")[0].lower() for address in envelope.rcpt_tos]
        for prefix, reply in (
            ("spam", "554 5.7.1 Message rejected: content looks like spam"),
            ("huge", "552 5.3.4 Message too big for system"),
            ("slowly", "451 4.3.0 Temporary local problem, try again later"),
        ):
            if any(local.startswith(prefix) for local in locals_):
                self.refused_content[envelope.content] = reply
        if envelope.content in self.refused_content:
            return self.refused_content[envelope.content]
        self.messages.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.content,
                bool(getattr(envelope, "smtp_utf8", False)),
                tuple(session.peer or ()),
                list(envelope.mail_options),
            )
        )
        if self.stall_after_data:
            self.stall_after_data -= 1
            await asyncio.sleep(self.stall_seconds)
        return f"250 2.0.0 Ok: queued as SINK{len(self.messages)}"


class _SinkSMTP(SMTP):
    """aiosmtpd's server, able to refuse the DATA command itself (before 354)."""

    async def smtp_DATA(self, arg):
        reply = self.event_handler.data_reply
        if reply and self.envelope is not None and self.envelope.rcpt_tos:
            await self.push(reply)
            return
        await super().smtp_DATA(arg)


class _SinkController(Controller):
    def factory(self):
        return _SinkSMTP(self.handler, **self.SMTP_kwargs)


class SmtpSink:
    def __init__(
        self, later_times: int = 1, smtputf8: bool = True, host: str = "127.0.0.1",
        handler: SinkHandler | None = None, **answers,
    ):  # fmt: skip
        self.handler = handler or SinkHandler(later_times, **answers)
        self.port = free_port()
        self.controller = _SinkController(
            self.handler, hostname=host, port=self.port, enable_SMTPUTF8=smtputf8
        )

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def delivered_to(self) -> Counter:
        """How many copies each recipient received."""
        return Counter(r for m in self.messages for r in m.rcpt_tos)


class DnsServer:
    """Answers A, AAAA, MX, TXT and CNAME queries from a table over real UDP on 127.0.0.1;
    NXDOMAIN for names not in it, SERVFAIL (a temporary failure) for the names in ``servfail``. A
    null MX (RFC 7505) is the record ``"0 ."``. A TXT value given unquoted is published as one
    record, split into strings of 255 characters as DNS requires (a quoted value is taken as
    written). ``set`` and ``remove`` change the table while the server runs. Answers carry a TTL
    of ``ttl`` seconds; ``queries`` counts the questions asked, by (name, type)."""

    def __init__(self, records: dict[tuple[str, str], list[str]], servfail=(), ttl: int = 60):
        self.ttl = ttl
        self.queries: Counter = Counter()
        self.records = {}
        for (name, rtype), values in records.items():
            self.set(name, rtype, values)
        self.servfail = {name.rstrip(".").lower() for name in servfail}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def set(self, name: str, rtype: str, values: list[str]) -> None:
        if rtype == "TXT":
            values = [v if v.startswith('"') else _txt_strings(v) for v in values]
        self.records[(name.rstrip(".").lower(), rtype)] = values

    def remove(self, name: str, rtype: str) -> None:
        self.records.pop((name.rstrip(".").lower(), rtype), None)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.sock.close()

    def _serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            response = dns.message.make_response(query)
            question = query.question[0]
            name = question.name.to_text().rstrip(".").lower()
            rtype = dns.rdatatype.to_text(question.rdtype)
            self.queries[(name, rtype)] += 1
            values = self.records.get((name, rtype))
            if name in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
            elif values:
                response.answer.append(
                    dns.rrset.from_text(question.name, self.ttl, "IN", rtype, *values)
                )
            elif not any(key[0] == name for key in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)


def _txt_strings(value: str) -> str:
    """One TXT record's text form: the value in quoted strings of at most 255 characters."""
    chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
