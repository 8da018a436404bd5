"""Configuration snippets for sending through the gateway, made from the installation's real
values (host, port, TLS mode, certificate): the server page's SMTP panel and the start-up banner
show these texts, and the tests run them as they are shown.

With the zero-configuration certificate (self-signed, in DATA_DIR/tls) a client that checks
certificates, as every one below does, must be told to trust that file; each snippet says how on
one marked line, to be dropped once SMTP_TLS_CERT is a certificate from a public CA. swaks does
not check certificates at all unless asked (``--tls-verify``).
"""

from dataclasses import dataclass
from pathlib import Path

from streams.listeners import certificate_file

SERVER_TOKEN = "<server API token>"
FROM = "app@example.com"
TO = "user@example.net"
SUBJECT = "Hello"
BODY = "Hello from the gateway"
# The line each snippet marks as the one to drop with a CA's certificate.
SELF_SIGNED_NOTE = "the gateway's self-signed certificate: drop this line with a CA's certificate"


@dataclass(frozen=True)
class Target:
    """Where and how a client connects."""

    host: str
    port: int | str
    implicit_tls: bool = False
    username: str = SERVER_TOKEN
    password: str = SERVER_TOKEN
    ca_file: str = ""  # the certificate to trust ('' when it is from a public CA)

    @classmethod
    def of(cls, endpoint, username: str = SERVER_TOKEN, password: str = SERVER_TOKEN):
        """The target for a ``streams.listeners.Endpoint``: its first STARTTLS port, else its
        first implicit-TLS port; the self-signed certificate's path when that is in use."""
        implicit = not endpoint.starttls_ports and bool(endpoint.tls_ports)
        path, self_signed = certificate_file()
        ca_file = str(Path(path).resolve()) if self_signed else ""
        return cls(endpoint.host, endpoint.example_port, implicit, username, password, ca_file)


@dataclass(frozen=True)
class Snippet:
    key: str  # swaks, django, rails, nodemailer, phpmailer
    title: str
    text: str


def _q(value) -> str:
    """A double-quoted string literal (Python, Ruby and JavaScript read it alike) for the values
    shown here: host names, tokens, paths (none holds Ruby's ``#{``)."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _php(value) -> str:
    """A single-quoted PHP string literal (no interpolation)."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def swaks(t: Target) -> str:
    tls = "--tls-on-connect" if t.implicit_tls else "--tls"
    return (
        f"swaks --server {t.host}:{t.port} {tls} --auth PLAIN \\\n"
        f"      --auth-user '{t.username}' --auth-password '{t.password}' \\\n"
        f"      --from {FROM} --to {TO} --h-Subject '{SUBJECT}' --body '{BODY}'"
    )


def django(t: Target) -> str:
    lines = [
        "# settings.py of the sending application",
        'EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"',
        f"EMAIL_HOST = {_q(t.host)}",
        f"EMAIL_PORT = {t.port}",
        f"EMAIL_HOST_USER = {_q(t.username)}",
        f"EMAIL_HOST_PASSWORD = {_q(t.password)}",
        "EMAIL_USE_SSL = True  # implicit TLS"
        if t.implicit_tls
        else "EMAIL_USE_TLS = True  # STARTTLS",
    ]
    if t.ca_file:
        lines += [
            f"# {SELF_SIGNED_NOTE}: start the application with the environment variable",
            f"#   SSL_CERT_FILE={t.ca_file}",
            "# (Python's ssl then trusts that file; EMAIL_SSL_CERTFILE is a client certificate).",
        ]
    return "\n".join(lines)


def rails_settings(t: Target) -> str:
    """The ``smtp_settings`` hash (ActionMailer hands it to the mail gem as it is)."""
    lines = [
        f"  address: {_q(t.host)},",
        f"  port: {t.port},",
        f"  user_name: {_q(t.username)},",
        f"  password: {_q(t.password)},",
        "  authentication: :plain,",
        "  tls: true," if t.implicit_tls else "  enable_starttls_auto: true,",
        '  openssl_verify_mode: "peer",',
    ]
    if t.ca_file:
        lines.append(f"  ca_file: {_q(t.ca_file)}, # {SELF_SIGNED_NOTE}")
    return "{\n" + "\n".join(lines) + "\n}"


def rails(t: Target) -> str:
    return (
        "# config/environments/production.rb of the sending application\n"
        "config.action_mailer.delivery_method = :smtp\n"
        f"config.action_mailer.smtp_settings = {rails_settings(t)}"
    )


def nodemailer(t: Target) -> str:
    lines = [
        'const nodemailer = require("nodemailer");',
        'const fs = require("fs");',
        "",
        "const transporter = nodemailer.createTransport({",
        f"  host: {_q(t.host)},",
        f"  port: {t.port},",
        "  secure: true, // implicit TLS" if t.implicit_tls else "  secure: false,",
    ]
    if not t.implicit_tls:
        lines.append("  requireTLS: true, // STARTTLS")
    lines.append(f"  auth: {{ user: {_q(t.username)}, pass: {_q(t.password)} }},")
    if t.ca_file:
        lines.append(f"  tls: {{ ca: fs.readFileSync({_q(t.ca_file)}) }}, // {SELF_SIGNED_NOTE}")
    lines += [
        "});",
        "",
        "transporter",
        f"  .sendMail({{ from: {_q(FROM)}, to: {_q(TO)}, subject: {_q(SUBJECT)}, "
        f"text: {_q(BODY)} }})",
        "  .then((info) => console.log(info.response));",
    ]
    return "\n".join(lines)


def phpmailer(t: Target) -> str:
    secure = "ENCRYPTION_SMTPS" if t.implicit_tls else "ENCRYPTION_STARTTLS"
    lines = [
        "<?php",
        "use PHPMailer\\PHPMailer\\PHPMailer;",
        'require "vendor/autoload.php"; // composer require phpmailer/phpmailer',
        "",
        "$mail = new PHPMailer(true);",
        "$mail->isSMTP();",
        f"$mail->Host = {_php(t.host)};",
        f"$mail->Port = {t.port};",
        "$mail->SMTPAuth = true;",
        f"$mail->Username = {_php(t.username)};",
        f"$mail->Password = {_php(t.password)};",
        f"$mail->SMTPSecure = PHPMailer::{secure};",
    ]
    if t.ca_file:
        options = f"['ssl' => ['cafile' => {_php(t.ca_file)}]]"
        lines.append(f"$mail->SMTPOptions = {options}; // {SELF_SIGNED_NOTE}")
    lines += [
        f"$mail->setFrom({_php(FROM)});",
        f"$mail->addAddress({_php(TO)});",
        f"$mail->Subject = {_php(SUBJECT)};",
        f"$mail->Body = {_php(BODY)};",
        "$mail->send();",
    ]
    return "\n".join(lines)


def snippets(target: Target) -> list[Snippet]:
    return [
        Snippet("swaks", "swaks (command line)", swaks(target)),
        Snippet("django", "Django", django(target)),
        Snippet("rails", "Ruby on Rails (ActionMailer)", rails(target)),
        Snippet("nodemailer", "Node.js (Nodemailer)", nodemailer(target)),
        Snippet("phpmailer", "PHP (PHPMailer)", phpmailer(target)),
    ]
