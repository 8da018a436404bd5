"""SMTP clients that speak through a PROXY protocol header, as a load balancer would, and a
gateway process with ``+proxy`` listeners."""

import ipaddress
import smtplib
import socket
import struct
import sys
from dataclasses import dataclass

from conftest import BOUNCE_DOMAIN, Process, free_port, insecure, subprocess_env
from smtpgw.proxy import V2_SIGNATURE


def v1_header(source: str, source_port: int = 40000, destination: str = "", port: int = 25):
    family = "TCP6" if ":" in source else "TCP4"
    destination = destination or ("::1" if family == "TCP6" else "127.0.0.1")
    return f"PROXY {family} {source} {destination} {source_port} {port}\r\n".encode()


def v2_header(source: str, source_port: int = 40000, tlvs: bytes = b"") -> bytes:
    ip = ipaddress.ip_address(source)
    if ip.version == 4:
        family, destination = 0x11, ipaddress.ip_address("127.0.0.1")
        body = struct.pack("!4s4sHH", ip.packed, destination.packed, source_port, 25)
    else:
        family, destination = 0x21, ipaddress.ip_address("::1")
        body = struct.pack("!16s16sHH", ip.packed, destination.packed, source_port, 25)
    body += tlvs
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


class ProxiedSMTP(smtplib.SMTP):
    """smtplib.SMTP that sends ``header`` as soon as the connection is open."""

    def __init__(self, header: bytes, port: int):
        self.proxy_header = header
        super().__init__("127.0.0.1", port, timeout=20)

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        sock.sendall(self.proxy_header)
        return sock


class ProxiedSMTPSSL(smtplib.SMTP_SSL):
    """The header in clear, then the TLS handshake (what a balancer does on a TLS port)."""

    def __init__(self, header: bytes, port: int):
        self.proxy_header = header
        super().__init__("127.0.0.1", port, timeout=20, context=insecure())

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout)
        sock.sendall(self.proxy_header)
        return self.context.wrap_socket(sock, server_hostname=host)


@dataclass
class ProxyGateway:
    process: Process
    port: int  # transactional+proxy
    tls_port: int  # transactional+proxy+tls
    plain_port: int  # transactional, no PROXY

    def smtp(self, header: bytes) -> smtplib.SMTP:
        client = ProxiedSMTP(header, self.port)
        client.ehlo("client.example")
        return client

    def smtp_tls(self, header: bytes) -> smtplib.SMTP_SSL:
        client = ProxiedSMTPSSL(header, self.tls_port)
        client.ehlo("client.example")
        return client

    def raw(self, data: bytes, port: int | None = None, timeout: float = 10) -> bytes:
        """Send ``data`` on a fresh connection and return all the gateway says before closing."""
        with socket.create_connection(("127.0.0.1", port or self.port), timeout=timeout) as sock:
            sock.sendall(data)
            received = b""
            try:
                while chunk := sock.recv(4096):
                    received += chunk
            except ConnectionResetError:  # closed with our bytes unread: a reset, not a FIN
                pass
            return received


def start_proxy_gateway(log_path, trusted: str = "127.0.0.0/8", **env) -> ProxyGateway:
    port, tls_port, plain_port = free_port(), free_port(), free_port()
    args = [
        sys.executable,
        "manage.py",
        "runsmtp",
        "--listen",
        f"transactional+proxy=127.0.0.1:{port}",
        "--listen",
        f"transactional+proxy+tls=127.0.0.1:{tls_port}",
        "--listen",
        f"transactional=127.0.0.1:{plain_port}",
    ]
    settings = {
        "SMTP_AUTH_CACHE_SECONDS": 0,
        "SMTP_SHUTDOWN_GRACE": 5,
        "BOUNCE_DOMAIN": BOUNCE_DOMAIN,
        "SMTP_PROXY_TRUSTED": trusted,
        **env,
    }
    process = Process(args, subprocess_env(**settings), log_path)
    process.wait_for("SMTP gateway ready")
    return ProxyGateway(process, port, tls_port, plain_port)
