import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from streams.models import IpCredential


def run(*args):
    out = StringIO()
    call_command("createipcredential", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_createipcredential(server):
    data = json.loads(
        run("--server", str(server.id), "--stream", "outbound", "--cidr", "192.0.2.7/24", "--json")
    )
    credential = IpCredential.objects.get(pk=data["ID"])
    assert credential.cidr == "192.0.2.0/24"  # normalised
    assert credential.stream.stream_id == "outbound"
    assert data == {
        "ID": credential.id,
        "CIDR": "192.0.2.0/24",
        "MessageStream": "outbound",
        "ServerID": server.id,
    }


@pytest.mark.django_db
def test_createipcredential_errors(server):
    with pytest.raises(CommandError, match="not an IP network"):
        run("--server", str(server.id), "--stream", "outbound", "--cidr", "nope")
    with pytest.raises(CommandError, match="does not exist"):
        run("--server", str(server.id), "--stream", "nope", "--cidr", "127.0.0.1/32")
    with pytest.raises(CommandError, match="No server"):
        run("--server", "999", "--stream", "outbound", "--cidr", "127.0.0.1/32")
    assert IpCredential.objects.count() == 0
