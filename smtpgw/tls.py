"""TLS for the gateway: the configured certificate, or a self-signed pair made once."""

import datetime
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from django.conf import settings

from core.hostnames import smtp_hostname
from streams.listeners import certificate_file

log = logging.getLogger(__name__)


def certificate_paths() -> tuple[Path, Path]:
    """The certificate and key named in settings, else a self-signed pair in DATA_DIR/tls,
    made once (and made again when it predates the loopback addresses in its names)."""
    cert, self_signed = certificate_file()
    if not self_signed:
        return cert, Path(settings.SMTP_TLS_KEY)
    key = cert.with_name("selfsigned.key")
    if not (cert.exists() and key.exists()) or not _names_loopback_addresses(cert):
        cert.parent.mkdir(parents=True, exist_ok=True)
        write_self_signed(cert, key, smtp_hostname())
        log.warning(
            "no SMTP_TLS_CERT/SMTP_TLS_KEY set: generated a self-signed certificate %s", cert
        )
    return cert, key


def _names_loopback_addresses(cert_path: Path) -> bool:
    """Whether the certificate names 127.0.0.1 and ::1, so that clients dialling the default
    listeners by address can check it."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, OSError, x509.ExtensionNotFound):
        return False
    found = {str(a) for a in names.get_values_for_type(x509.IPAddress)}
    return {"127.0.0.1", "::1"} <= found


def write_self_signed(cert_path: Path, key_path: Path, hostname: str) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    alt_names = [x509.DNSName(hostname), x509.DNSName("localhost")]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    os.replace(tmp_key, key_path)
    tmp_cert = cert_path.with_suffix(".tmp")
    tmp_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp_cert, cert_path)


def server_context() -> ssl.SSLContext:
    cert, key = certificate_paths()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
