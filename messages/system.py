"""The service's own sender: the System server (SYSTEM_SERVER_NAME, Live, made on first use)
and its From address (SYSTEM_FROM, by default ``postmaster@<BOUNCE_DOMAIN>``).

Its messages (sender signature confirmations) take the path of every message. The From rule
lets the System server, and only it, send from SYSTEM_FROM: the operator's own address, which is
neither a domain nor a sender signature of the account, so it never shows in the account's
lists and no other server may use it.
"""

from django.conf import settings
from django.db import IntegrityError, transaction

from core.addresses import address_key
from servers.models import DeliveryType, Server
from streams.models import MessageStream
from streams.services import create_server

SYSTEM_STREAM = "outbound"


def system_stream() -> MessageStream:
    """The stream the service's own messages go through, made on first use (when two processes
    make it at once, the server's unique name lets one win and the other use it)."""
    server = Server.objects.filter(name=settings.SYSTEM_SERVER_NAME).first()
    if server is None:
        try:
            with transaction.atomic():
                server = create_server(settings.SYSTEM_SERVER_NAME, delivery_type=DeliveryType.LIVE)
        except IntegrityError:
            server = Server.objects.get(name=settings.SYSTEM_SERVER_NAME)
    return MessageStream.objects.get(server=server, stream_id=SYSTEM_STREAM)


def is_system_sender(server: Server, address: str) -> bool:
    """Whether this is the System server sending as SYSTEM_FROM."""
    if server.name != settings.SYSTEM_SERVER_NAME:
        return False
    return address_key(address) == address_key(settings.SYSTEM_FROM)
