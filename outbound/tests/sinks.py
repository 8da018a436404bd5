"""Real servers for delivery tests: an SMTP sink that answers per recipient, and a tiny DNS server.

Recipients' local parts choose the answer: ``ok…`` 250, ``later…`` 450 (then 250 once the address
has been deferred ``later_times`` times), ``gone…`` 550 5.1.1, ``full…`` 552 5.2.2, ``blocked…``
550 5.7.1, ``down…`` 421 and disconnect.
"""

import socket
import threading
from collections import Counter
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rrset
from aiosmtpd.controller import Controller

from conftest import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class SinkHandler:
    later_times: int = 1
    messages: list[Received] = field(default_factory=list)
    deferrals: Counter = field(default_factory=Counter)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@")[0].lower()
        if local.startswith("gone"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("full"):
            return f"552 5.2.2 <{address}>: Mailbox full"
        if local.startswith("blocked"):
            return "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org"
        if local.startswith("later") and self.deferrals[address] < self.later_times:
            self.deferrals[address] += 1
            return f"450 4.2.0 <{address}>: Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
        )
        return f"250 2.0.0 Ok: queued as SINK{len(self.messages)}"


class SmtpSink:
    def __init__(self, later_times: int = 1):
        self.handler = SinkHandler(later_times)
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages


class DnsServer:
    """Answers A and MX queries from a table over real UDP on 127.0.0.1; NXDOMAIN otherwise."""

    def __init__(self, records: dict[tuple[str, str], list[str]]):
        self.records = {
            (name.rstrip(".").lower(), rtype): v for (name, rtype), v in records.items()
        }
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

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
            values = self.records.get((name, rtype))
            if values:
                response.answer.append(dns.rrset.from_text(question.name, 60, "IN", rtype, *values))
            elif not any(key[0] == name for key in self.records):
                response.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(response.to_wire(), peer)
