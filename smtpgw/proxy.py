"""The PROXY protocol (HAProxy's, v1 text and v2 binary) on listeners marked ``+proxy``.

Behind a TCP load balancer every connection comes from the balancer's address; the balancer
states the real client in a header it sends before anything else. The gateway believes that
header only from the networks in ``SMTP_PROXY_TRUSTED``: a connection from anywhere else, a
malformed header, or none within ``SMTP_PROXY_TIMEOUT`` seconds is closed before the greeting.

The header is read straight from the socket, before asyncio builds a transport on it: peeked,
then exactly its bytes consumed. Whatever follows stays in the kernel's buffer for the session
(on ``+proxy+tls`` listeners, the client's TLS handshake). aiosmtpd's own PROXY support reads the
header inside the SMTP session, i.e. after an implicit-TLS handshake, and before it any per-address
admission (connection caps, throttling) has already run on the balancer's address.
"""

import asyncio
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass

log = logging.getLogger("smtpgw")

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # the specification's bound, CRLF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_LENGTH = 16
MAX_HEADER_LENGTH = 4096  # v2 allows 64 KiB of TLVs; balancers send far less
PARTIAL_HEADER_WAIT = 0.005  # seconds between looks at a header that arrives in pieces


class ProxyHeaderError(ValueError):
    """The connection does not start with a PROXY header the gateway accepts."""


@dataclass(frozen=True)
class ProxiedPeer:
    """The client the balancer speaks for; ``address`` is None when the header says to use the
    connection's own endpoints (v1 UNKNOWN, v2 LOCAL or an unspecified family)."""

    address: str | None
    port: int = 0


def trusted_networks(specs: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``SMTP_PROXY_TRUSTED`` as networks; a bad entry raises ValueError naming it."""
    networks = []
    for spec in specs:
        try:
            networks.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"bad SMTP_PROXY_TRUSTED entry {spec!r}: use addresses or CIDRs, "
                "e.g. 10.0.0.0/8,192.0.2.7"
            ) from None
    return networks


def is_trusted(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def header_length(data: bytes) -> int | None:
    """The length of the PROXY header ``data`` starts with, or None while more bytes are needed;
    raises ProxyHeaderError when ``data`` cannot start one."""
    if data.startswith(V2_SIGNATURE) or V2_SIGNATURE.startswith(data):
        if len(data) < V2_FIXED_LENGTH:
            return None
        length = V2_FIXED_LENGTH + struct.unpack("!H", data[14:16])[0]
        if length > MAX_HEADER_LENGTH:
            raise ProxyHeaderError(f"PROXY v2 header of {length} bytes is too long")
        return length if len(data) >= length else None
    if data.startswith(V1_PREFIX) or V1_PREFIX.startswith(data):
        end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
        if end >= 0:
            return end + 2
        if len(data) >= V1_MAX_LENGTH or b"\n" in data or b"\r" in data[:-1]:
            raise ProxyHeaderError("PROXY v1 header is not a line of at most 107 bytes")
        return None
    raise ProxyHeaderError("the connection does not start with a PROXY header")


def parse_header(header: bytes) -> ProxiedPeer:
    """The client a complete header (as delimited by :func:`header_length`) speaks for."""
    if header.startswith(V2_SIGNATURE):
        return _parse_v2(header)
    return _parse_v1(header)


def _parse_v1(header: bytes) -> ProxiedPeer:
    try:
        parts = header[:-2].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise ProxyHeaderError("PROXY v1 header is not ASCII") from None
    if parts[:2] == ["PROXY", "UNKNOWN"]:
        return ProxiedPeer(None)
    if len(parts) != 6 or parts[0] != "PROXY" or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError("PROXY v1 header is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT'")
    _, family, source, destination, source_port, destination_port = parts
    version = 4 if family == "TCP4" else 6
    try:
        addresses = [ipaddress.ip_address(source), ipaddress.ip_address(destination)]
    except ValueError:
        raise ProxyHeaderError("PROXY v1 header holds a malformed address") from None
    if any(address.version != version for address in addresses):
        raise ProxyHeaderError(f"PROXY v1 addresses do not match {family}")
    if "%" in source or "%" in destination:  # ip_address() takes IPv6 scope ids: not here
        raise ProxyHeaderError("PROXY v1 header holds a malformed address")
    for port in (source_port, destination_port):
        if not (port.isascii() and port.isdigit()) or port != str(int(port)) or int(port) > 65535:
            raise ProxyHeaderError("PROXY v1 header holds a malformed port")
    return ProxiedPeer(str(addresses[0]), int(source_port))


def _parse_v2(header: bytes) -> ProxiedPeer:
    version_command, family_transport = header[12], header[13]
    if version_command >> 4 != 2:
        raise ProxyHeaderError("PROXY v2 header has an unknown version")
    command = version_command & 0x0F
    family, transport = family_transport >> 4, family_transport & 0x0F
    body = header[V2_FIXED_LENGTH:]
    if command == 0:  # LOCAL: the balancer's own connection, e.g. a health check
        return ProxiedPeer(None)
    if command != 1:
        raise ProxyHeaderError("PROXY v2 header has an unknown command")
    if family == 0:  # UNSPEC
        return ProxiedPeer(None)
    if transport != 1:
        raise ProxyHeaderError("PROXY v2 header is not for a TCP connection")
    if family == 1 and len(body) >= 12:
        address, port = ipaddress.IPv4Address(body[0:4]), struct.unpack("!H", body[8:10])[0]
    elif family == 2 and len(body) >= 36:
        address, port = ipaddress.IPv6Address(body[0:16]), struct.unpack("!H", body[32:34])[0]
    else:
        raise ProxyHeaderError("PROXY v2 header has an unsupported family or a short address")
    return ProxiedPeer(str(address), port)


async def read_header(sock: socket.socket) -> bytes:
    """Take exactly the PROXY header off a non-blocking socket, leaving what follows."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            peeked = sock.recv(MAX_HEADER_LENGTH, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            peeked = None
        if peeked == b"":
            raise ProxyHeaderError("the connection closed before a complete PROXY header")
        if peeked is None:
            await _readable(loop, sock)
            continue
        length = header_length(peeked)
        if length is not None:
            header = b""
            while len(header) < length:
                chunk = await loop.sock_recv(sock, length - len(header))
                if not chunk:
                    raise ProxyHeaderError("the connection closed inside the PROXY header")
                header += chunk
            return header
        # Part of a header: the socket stays readable, so wait a moment rather than spin.
        await asyncio.sleep(PARTIAL_HEADER_WAIT)


async def _readable(loop, sock: socket.socket) -> None:
    ready = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


class ProxyServer:
    """Accepts connections on a ``+proxy`` listener and hands each, after its header, to a
    session made by ``factory`` with ``proxied_peer`` set to the real client."""

    def __init__(self, listener, factory, ssl_context, networks, timeout: float):
        self.listener = listener
        self.factory = factory
        self.ssl_context = ssl_context if listener.implicit_tls else None
        self.networks = networks
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._accepting: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()

    async def start(self, backlog: int = 1024) -> "ProxyServer":
        host = self.listener.host or None
        family, kind, proto, _, address = socket.getaddrinfo(
            host, self.listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
        self.sock = sock
        self._accepting = asyncio.get_running_loop().create_task(self._accept())
        return self

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self.sock)
            except OSError as exc:
                log.warning("PROXY listener %s: accept failed: %s", self.listener, exc)
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = loop.create_task(self._serve(conn, peer))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _serve(self, conn: socket.socket, peer) -> None:
        balancer = str(peer[0])
        if not is_trusted(balancer, self.networks):
            log.warning(
                "PROXY listener %s: connection from %s, not a trusted balancer "
                "(SMTP_PROXY_TRUSTED): closed",
                self.listener,
                balancer,
            )
            conn.close()
            return
        try:
            async with asyncio.timeout(self.timeout):
                header = await read_header(conn)
            proxied = parse_header(header)
        except (ProxyHeaderError, TimeoutError, OSError) as exc:
            reason = str(exc) or "no complete PROXY header in time"
            log.warning("PROXY listener %s: from %s: %s: closed", self.listener, balancer, reason)
            conn.close()
            return
        session = self.factory()
        session.proxied_peer = (
            (proxied.address, proxied.port) if proxied.address else (balancer, peer[1])
        )
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                lambda: session, conn, ssl=self.ssl_context
            )
        except Exception as exc:  # e.g. a failed TLS handshake: nothing to answer
            log.info("PROXY listener %s: client %s: %s", self.listener, proxied.address, exc)
            conn.close()

    def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
        for task in list(self._pending):
            task.cancel()
        if self.sock is not None:
            self.sock.close()
