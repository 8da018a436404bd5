"""The SMTP configuration snippets (``streams.snippets``: the server page's SMTP panel, the
start-up banner) run as they are shown against a running gateway with the zero-configuration
self-signed certificate: swaks, Django's SMTP backend, Nodemailer, PHPMailer and the mail gem
with Rails' settings hash. Each must be accepted; each client checks the certificate."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import IN_CI, ROOT, wait_for
from messages.models import Submission
from streams import snippets
from streams.listeners import certificate_file

pytestmark = [pytest.mark.once_postgres, pytest.mark.django_db(transaction=True)]

PHPMAILER_AUTOLOAD = "/usr/share/php/libphp-phpmailer/autoload.php"  # Debian's libphp-phpmailer
NODE_MODULES = ROOT / "clients" / "node" / "node_modules"


def need(program: str, also=None) -> None:
    missing = shutil.which(program) is None or (also is not None and not also.exists())
    if missing:
        message = f"{program} (or its library) is not installed (.ci/run installs it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(params=["starttls", "implicit"])
def target(request, gateway, creds):
    implicit = request.param == "implicit"
    path, self_signed = certificate_file()
    assert self_signed and path.exists()  # what `make run` starts with
    return snippets.Target(
        "127.0.0.1",
        gateway.tls_port if implicit else gateway.port,
        implicit_tls=implicit,
        username=creds.server_token,
        password=creds.server_token,
        ca_file=str(path.resolve()),
    )


def accepted(creds, count: int = 1) -> None:
    wait_for(lambda: Submission.objects.filter(server=creds.server).count() == count,
             timeout=20, what="the message accepted")  # fmt: skip
    submission = Submission.objects.get(server=creds.server)
    assert submission.rcpt_to == [snippets.TO]
    assert submission.tls_version  # over TLS, whichever port


def run(args, tmp_path, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **kwargs.pop("env", {})}
    return subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=env, check=False, **kwargs)  # fmt: skip


def test_swaks(target, creds, tmp_path):
    need("swaks")
    done = run(["bash", "-c", snippets.swaks(target)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    accepted(creds)


DJANGO_SEND = """
import django
from django.conf import settings

snippet = {}
exec(open("settings_snippet.py").read(), snippet)
settings.configure(**{k: v for k, v in snippet.items() if k.isupper()})
django.setup()
from django.core.mail import send_mail

send_mail(SUBJECT, BODY, FROM, [TO])
"""


def django_script(target, tmp_path):
    (tmp_path / "settings_snippet.py").write_text(snippets.django(target))
    values = (snippets.SUBJECT, snippets.BODY, snippets.FROM, [snippets.TO])
    send = DJANGO_SEND.replace("SUBJECT, BODY, FROM, [TO]", repr(values)[1:-1])
    (tmp_path / "send.py").write_text(send)
    return [sys.executable, "send.py"]


def test_django(target, creds, tmp_path):
    text = snippets.django(target)
    assert f"SSL_CERT_FILE={target.ca_file}" in text
    args = django_script(target, tmp_path)
    # As the snippet says: the application runs with SSL_CERT_FILE naming the certificate.
    done = run(args, tmp_path, env={"SSL_CERT_FILE": target.ca_file, "PYTHONPATH": ""})
    assert done.returncode == 0, done.stderr
    accepted(creds)


def test_django_without_the_certificate_line_fails_as_the_snippet_warns(target, creds, tmp_path):
    args = django_script(target, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env=env, check=False)  # fmt: skip
    assert done.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in done.stderr
    assert not Submission.objects.filter(server=creds.server).exists()


def test_nodemailer(target, creds, tmp_path):
    need("node", NODE_MODULES / "nodemailer")
    (tmp_path / "send.js").write_text(snippets.nodemailer(target))
    done = run(["node", "send.js"], tmp_path, env={"NODE_PATH": str(NODE_MODULES)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("250"), done.stdout
    accepted(creds)


RUBY_SEND = """
require "mail"

settings = SETTINGS
mail = Mail.new do
  from FROM
  to TO
  subject SUBJECT
  body BODY
end
mail.delivery_method :smtp, settings
mail.deliver!
"""


def test_rails_settings_with_the_mail_gem(target, creds, tmp_path):
    need("ruby")
    text = snippets.rails(target)
    hash_text = snippets.rails_settings(target)
    assert text.endswith(f"config.action_mailer.smtp_settings = {hash_text}")
    script = RUBY_SEND.replace("SETTINGS", hash_text)
    for name in ("FROM", "TO", "SUBJECT", "BODY"):
        script = script.replace(f" {name}\n", f' "{getattr(snippets, name)}"\n')
    (tmp_path / "send.rb").write_text(script)
    done = run(["ruby", "send.rb"], tmp_path)
    if "cannot load such file -- mail" in done.stderr:
        need("ruby-mail-gem-missing")
    assert done.returncode == 0, done.stderr
    accepted(creds)


def test_phpmailer(target, creds, tmp_path):
    from pathlib import Path

    need("php", Path(PHPMAILER_AUTOLOAD))
    text = snippets.phpmailer(target)
    composer = 'require "vendor/autoload.php"; // composer require phpmailer/phpmailer'
    assert composer in text
    (tmp_path / "send.php").write_text(text.replace(composer, f'require "{PHPMAILER_AUTOLOAD}";'))
    done = run(["php", "send.php"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    accepted(creds)


def test_a_certificate_from_a_ca_drops_the_trust_lines(settings, tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    settings.SMTP_TLS_CERT, settings.SMTP_TLS_KEY = str(cert), str(key)
    from streams.listeners import Endpoint

    target = snippets.Target.of(Endpoint("transactional", "smtp.example.com", [587], [465]))
    assert (target.ca_file, target.port, target.implicit_tls) == ("", 587, False)
    for snippet in snippets.snippets(target):
        assert snippets.SELF_SIGNED_NOTE not in snippet.text
        assert "SSL_CERT_FILE" not in snippet.text and "smtp.example.com" in snippet.text
    implicit = snippets.Target.of(Endpoint("transactional", "smtp.example.com", [], [465]))
    assert implicit.implicit_tls and "--tls-on-connect" in snippets.swaks(implicit)
    assert textwrap.dedent(snippets.django(implicit)).count("EMAIL_USE_SSL = True") == 1


def test_the_server_page_shows_the_same_snippets(admin_client, creds, settings):
    from django.urls import reverse
    from django.utils.html import escape

    from streams.listeners import smtp_endpoints

    settings.SMTP_LISTEN = ["transactional=127.0.0.1:2525", "broadcast=127.0.0.1:2526"]
    page = admin_client.get(reverse("admin:servers_server_change", args=[creds.server.pk]))
    text = page.content.decode()
    token = creds.server.api_tokens[0]  # the page fills in the server's own token
    target = snippets.Target.of(smtp_endpoints()[0], token, token)
    assert target.ca_file and target.host == "127.0.0.1" and target.port == 2525
    for snippet in snippets.snippets(target):
        assert f'id="smtp-snippet-{snippet.key}">{escape(snippet.text)}</pre>' in text
    assert "certificate is self-signed" in text
