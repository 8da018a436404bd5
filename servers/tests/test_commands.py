"""The operator commands: createserver, setsmtp, createaccounttoken."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from servers.models import AccountToken, Server, ServerToken


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_createserver_json_uses_postmark_field_names():
    data = json.loads(run("createserver", "Shop", "--json"))
    assert set(data) >= {
        "ID",
        "Name",
        "ApiTokens",
        "SmtpApiActivated",
        "DeliveryType",
        "MessageStreams",
    }
    assert data["Name"] == "Shop"
    assert data["SmtpApiActivated"] is True
    assert data["DeliveryType"] == "Sandbox"
    assert sorted(data["MessageStreams"]) == ["broadcast", "inbound", "outbound"]
    assert len(data["ApiTokens"]) == 1
    server = Server.objects.get(pk=data["ID"])
    assert ServerToken.find(data["ApiTokens"][0]).server == server


@pytest.mark.django_db
def test_createserver_flags():
    data = json.loads(run("createserver", "Live one", "--no-smtp", "--live", "--json"))
    assert data["SmtpApiActivated"] is False
    assert data["DeliveryType"] == "Live"


@pytest.mark.django_db
def test_createserver_refuses_a_duplicate_name():
    run("createserver", "Shop")
    with pytest.raises(CommandError, match="already exists"):
        run("createserver", "Shop")


@pytest.mark.django_db
def test_createserver_plain_output_shows_the_token():
    out = run("createserver", "Shop")
    token = Server.objects.get(name="Shop").api_tokens[0]
    assert token in out
    assert "outbound" in out


@pytest.mark.django_db
def test_setsmtp_switches_access(server):
    data = json.loads(run("setsmtp", "--server", str(server.id), "--off", "--json"))
    assert data == {"ID": server.id, "Name": server.name, "SmtpApiActivated": False}
    server.refresh_from_db()
    assert server.smtp_api_activated is False
    assert "is on" in run("setsmtp", "--server", str(server.id), "--on")
    server.refresh_from_db()
    assert server.smtp_api_activated is True


@pytest.mark.django_db
def test_setsmtp_needs_on_or_off_and_a_real_server(server):
    with pytest.raises(CommandError):
        run("setsmtp", "--server", str(server.id))
    with pytest.raises(CommandError, match="No server with ID 999"):
        run("setsmtp", "--server", "999", "--on")


@pytest.mark.django_db
def test_createaccounttoken():
    data = json.loads(run("createaccounttoken", "--name", "ops", "--json"))
    assert AccountToken.find(data["AccountToken"]).name == "ops"
