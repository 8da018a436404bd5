"""The Domains API (compat §8) with an account token: fields in Postmark's names, the records to
publish before and after verification and rotation, every error with Postmark's code; and the
whole API through Postmark's own clients (postmark.js's AccountClient, postmarker) over HTTP.

Verification outcomes are set in the database (or by a stand-in for the DNS check), never read
from the public DNS."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.test import Client
from django.utils import timezone
from postmarker.core import PostmarkClient
from postmarker.exceptions import ClientError

from core import dkim_keys as keys
from domains import verification
from domains.models import DkimKey, Domain
from domains.services import create_domain, revoked_key_grace
from servers.models import AccountToken

JSON = "application/json; charset=utf-8"
# The sender domains conftest.py creates for every test (verified).
PRESET = 3


@pytest.fixture
def account_token(db):
    return AccountToken.issue("ops").token


@pytest.fixture
def api(account_token):
    return Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=account_token)


def ok(response) -> dict:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == JSON
    return json.loads(response.content)


def error(response, status: int, code: int) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    body = json.loads(response.content)
    assert set(body) == {"ErrorCode", "Message"} and body["ErrorCode"] == code, body
    assert body["Message"]
    return body["Message"]


def post(api, path, body=None):
    return api.post(path, json.dumps(body) if body is not None else "", "application/json")


def put(api, path, body=None):
    return api.put(path, json.dumps(body) if body is not None else "", "application/json")


def activate(domain: Domain) -> DkimKey:
    """What verification does once it has seen the pending key's record."""
    key = domain.key(DkimKey.State.PENDING)
    DkimKey.objects.filter(pk=key.pk).update(state="active", activated_at=timezone.now())
    Domain.objects.filter(pk=domain.pk).update(dkim_verified=True)
    return key


DETAIL_FIELDS = [
    "Name", "SPFVerified", "SPFHost", "SPFTextValue", "DKIMVerified", "WeakDKIM", "DKIMHost",
    "DKIMTextValue", "DKIMPendingHost", "DKIMPendingTextValue", "DKIMRevokedHost",
    "DKIMRevokedTextValue", "SafeToRemoveRevokedKeyFromDNS", "DKIMUpdateStatus",
    "ReturnPathDomain", "ReturnPathDomainVerified", "ReturnPathDomainCNAMEValue", "ID",
    "DKIMEd25519Host", "DKIMEd25519TextValue", "DKIMEd25519PendingHost",
    "DKIMEd25519PendingTextValue",
]  # fmt: skip


# --- create and read ----------------------------------------------------------------------------


def test_a_new_domain_shows_its_key_as_pending_until_verified(api):
    body = ok(post(api, "/domains", {"Name": "Shop.Test", "ReturnPathDomain": None}))
    assert list(body) == DETAIL_FIELDS
    domain = Domain.objects.get(name="shop.test")
    pending = domain.key("pending")
    assert body["ID"] == domain.pk and body["Name"] == "shop.test"
    # Postmark's documented shape: nothing signs yet, the key to publish is the pending one.
    assert body["DKIMHost"] == "" and body["DKIMTextValue"] == ""
    assert body["DKIMPendingHost"] == pending.host
    assert body["DKIMPendingHost"].endswith("pm._domainkey.shop.test")
    assert body["DKIMPendingTextValue"] == pending.text_value
    assert body["DKIMPendingTextValue"].startswith("k=rsa;p=MIIBIjAN")
    assert body["DKIMUpdateStatus"] == "Pending"
    assert body["DKIMVerified"] is False and body["WeakDKIM"] is False
    assert body["DKIMRevokedHost"] == "" and body["SafeToRemoveRevokedKeyFromDNS"] is False
    assert body["ReturnPathDomain"] == "pm-bounces.shop.test"
    assert body["ReturnPathDomainVerified"] is False
    assert body["ReturnPathDomainCNAMEValue"] == settings.BOUNCE_DOMAIN
    assert body["SPFHost"] == "shop.test"
    assert body["SPFTextValue"] == f"v=spf1 a mx include:{settings.SPF_INCLUDE_DOMAIN} ~all"
    assert body["DKIMEd25519Host"] == "" and body["DKIMEd25519PendingHost"] == ""
    assert ok(api.get(f"/domains/{domain.pk}")) == body


def test_a_verified_domain_shows_the_signing_key(api):
    domain = create_domain("shop.test", "mail.shop.test")
    key = activate(domain)
    body = ok(api.get(f"/domains/{domain.pk}"))
    assert body["DKIMHost"] == key.host and body["DKIMTextValue"] == key.text_value
    assert body["DKIMPendingHost"] == "" and body["DKIMPendingTextValue"] == ""
    assert body["DKIMUpdateStatus"] == "Verified" and body["DKIMVerified"] is True
    assert body["ReturnPathDomain"] == "mail.shop.test"


def test_the_ed25519_key_has_fields_of_its_own(api):
    domain = create_domain("shop.test", ed25519=True)
    ed = domain.key("pending", keys.ED25519)
    body = ok(api.get(f"/domains/{domain.pk}"))
    assert body["DKIMEd25519PendingHost"] == ed.host
    assert body["DKIMEd25519PendingTextValue"] == ed.text_value
    assert body["DKIMPendingHost"] == domain.key("pending").host  # RSA stays in Postmark's
    DkimKey.objects.filter(domain=domain).update(state="active")
    body = ok(api.get(f"/domains/{domain.pk}"))
    assert body["DKIMEd25519Host"] == ed.host and body["DKIMEd25519PendingHost"] == ""


def test_a_weak_rsa_key_is_reported(api):
    domain = create_domain("old.test")
    # A 512-bit public key (as Postal and old setups made): only its size matters here.
    small = rsa.RSAPublicNumbers(65537, 2**511 + 111).public_key()
    der = small.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    DkimKey.objects.filter(domain=domain).update(public_key=base64.b64encode(der).decode())
    assert ok(api.get(f"/domains/{domain.pk}"))["WeakDKIM"] is True
    listed = ok(api.get("/domains?count=500&offset=0"))["Domains"]
    assert [d["WeakDKIM"] for d in listed if d["Name"] == "old.test"] == [True]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, 514), ({"Name": None}, 514), ({"Name": ""}, 514), ({"Name": "  "}, 514),
        ({"ReturnPathDomain": "pm.shop.test"}, 514),
        ({"Name": "a" * 251 + ".test"}, 515),
        ({"Name": "no-dot"}, 516), ({"Name": "bad_label.test"}, 516), ({"Name": 5}, 516),
        ({"Name": ["shop.test"]}, 516), ({"Name": "shop.test\x00"}, 516),
        ({"Name": "\ud800.test"}, 402), ({"Name": "1.2.3.4"}, 516),
        ({"Name": "shop.test", "ReturnPathDomain": "bounces.elsewhere.test"}, 511),
        ({"Name": "shop.test", "ReturnPathDomain": "not a host"}, 511),
        ({"Name": "shop.test", "ReturnPathDomain": 7}, 511),
        ({"Name": "shop.test", "ReturnPathDomain": "x" * 300}, 511),
    ],
)  # fmt: skip
def test_bad_domains_are_refused_with_postmarks_codes(api, body, code):
    error(post(api, "/domains", body), 422, code)
    assert not Domain.objects.exclude(name__in=["example.com", "example.org", "example.net"])


def test_a_body_that_is_not_an_object_is_refused(api):
    error(api.post("/domains", "[1]", "application/json"), 422, 403)
    error(api.post("/domains", "{junk", "application/json"), 422, 402)


def test_a_domain_exists_once_in_any_spelling(api):
    ok(post(api, "/domains", {"Name": "shop.test"}))
    assert "already exists" in error(post(api, "/domains", {"Name": "SHOP.test."}), 422, 512)
    assert Domain.objects.filter(name="shop.test").count() == 1


# --- list -----------------------------------------------------------------------------------------


def test_the_list_pages_with_count_and_offset(api):
    for i in range(5):
        create_domain(f"shop{i}.test")
    body = ok(api.get("/domains?count=2&offset=2"))
    assert body["TotalCount"] == 5 + PRESET
    assert [d["Name"] for d in body["Domains"]] == ["example.org", "shop0.test"]  # by name
    assert list(body["Domains"][0]) == [
        "ID", "Name", "SPFVerified", "DKIMVerified", "WeakDKIM", "ReturnPathDomainVerified",
    ]  # fmt: skip
    every = ok(api.get("/Domains/?Count=500&OFFSET=0"))["Domains"]
    assert len(every) == 5 + PRESET
    assert ok(api.get("/domains?count=10&offset=100")) == {"TotalCount": 8, "Domains": []}


@pytest.mark.parametrize(
    "query",
    ["", "count=10", "offset=0", "count=0&offset=0", "count=501&offset=0", "count=x&offset=0",
     "count=10&offset=-1", "count=10&offset=99999", "count=10&offset=1.5", "count=%00&offset=0"],
)  # fmt: skip
def test_bad_pages_are_query_errors(api, query):
    error(api.get(f"/domains?{query}"), 422, 500)


# --- edit and delete ------------------------------------------------------------------------------


def test_edit_changes_the_return_path_which_must_then_be_verified_again(api):
    domain = create_domain("shop.test")
    Domain.objects.filter(pk=domain.pk).update(return_path_verified=True)
    body = ok(put(api, f"/domains/{domain.pk}", {"ReturnPathDomain": "Bounce.Shop.Test"}))
    assert body["ReturnPathDomain"] == "bounce.shop.test"
    assert body["ReturnPathDomainVerified"] is False
    body = ok(put(api, f"/domains/{domain.pk}", {"ReturnPathDomain": ""}))
    assert body["ReturnPathDomain"] == "pm-bounces.shop.test"


def test_an_unchanged_return_path_stays_verified(api):
    domain = create_domain("shop.test")
    Domain.objects.filter(pk=domain.pk).update(return_path_verified=True)
    body = ok(put(api, f"/domains/{domain.pk}", {"returnpathdomain": "pm-bounces.shop.test"}))
    assert body["ReturnPathDomainVerified"] is True


@pytest.mark.parametrize(
    "body",
    [None, {}, {"ReturnPathDomain": None}, {"Name": "other.test"},
     {"ReturnPathDomain": "elsewhere.test"}, {"ReturnPathDomain": False}],
)  # fmt: skip
def test_bad_edits_are_invalid_fields(api, body):
    domain = create_domain("shop.test")
    error(put(api, f"/domains/{domain.pk}", body), 422, 511)
    domain.refresh_from_db()
    assert domain.return_path_domain == "pm-bounces.shop.test"


def test_delete_removes_the_domain_and_its_keys(api):
    domain = create_domain("shop.test")
    assert ok(api.delete(f"/domains/{domain.pk}")) == {
        "ErrorCode": 0,
        "Message": "Domain shop.test removed.",
    }
    assert not Domain.objects.filter(name="shop.test").exists()
    assert not DkimKey.objects.filter(domain_id=domain.pk).exists()
    error(api.delete(f"/domains/{domain.pk}"), 404, 510)


@pytest.mark.parametrize(
    "domain_id", ["999999", "abc", "-1", "1.0", "9" * 30, "%00", "%F0%9F%98%80"]
)
@pytest.mark.parametrize(
    ("method", "suffix"),
    [("get", ""), ("put", ""), ("delete", ""), ("put", "/verifyDKIM"),
     ("put", "/verifyReturnPath"), ("post", "/verifySPF"), ("post", "/rotateDKIM")],
)  # fmt: skip
def test_unknown_domains_are_404_with_code_510(api, domain_id, method, suffix):
    error(getattr(api, method)(f"/domains/{domain_id}{suffix}"), 404, 510)


# --- verification and rotation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "check", "field"),
    [
        ("put", "verifyDKIM", "verify_dkim", "DKIMVerified"),
        ("put", "verifyReturnPath", "verify_return_path", "ReturnPathDomainVerified"),
        ("post", "verifySPF", "verify_spf", "SPFVerified"),
    ],
)
def test_each_verification_runs_its_check_and_answers_the_new_state(
    api, monkeypatch, method, path, check, field
):
    domain = create_domain("shop.test")
    checked = []

    def dns_says_yes(target):  # what the DNS check does when it finds the record
        checked.append(target.pk)
        flag = {"DKIMVerified": "dkim_verified", "SPFVerified": "spf_verified",
                "ReturnPathDomainVerified": "return_path_verified"}[field]  # fmt: skip
        Domain.objects.filter(pk=target.pk).update(**{flag: True})
        if field == "DKIMVerified" and target.key("pending"):
            activate(target)
        return True

    monkeypatch.setattr(verification, check, dns_says_yes)
    body = ok(getattr(api, method)(f"/domains/{domain.pk}/{path}"))
    assert checked == [domain.pk]
    assert body[field] is True and body["ID"] == domain.pk and list(body) == DETAIL_FIELDS
    if field == "DKIMVerified":
        assert body["DKIMUpdateStatus"] == "Verified" and body["DKIMPendingHost"] == ""
        assert body["DKIMHost"] == domain.key("active").host
    # Any spelling of the path, with or without a body.
    again = getattr(api, method)(f"/Domains/{domain.pk}/{path.lower()}/", "junk", "text/plain")
    assert ok(again)[field] is True


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "verifyDKIM"), ("get", "verifyReturnPath"), ("put", "verifySPF"),
     ("put", "rotateDKIM")],
)  # fmt: skip
def test_verification_methods_are_postmarks(api, method, path):
    domain = create_domain("shop.test")
    error(getattr(api, method)(f"/domains/{domain.pk}/{path}"), 405, 405)


def test_rotation_publishes_a_pending_key_beside_the_signing_one(api):
    domain = create_domain("shop.test")
    # The first key is still pending: a rotation would only replace what is not yet published.
    error(post(api, f"/domains/{domain.pk}/rotateDKIM"), 422, 505)
    old = activate(domain)
    body = ok(post(api, f"/domains/{domain.pk}/rotatedkim"))
    new = Domain.objects.get(pk=domain.pk).key("pending")
    assert new is not None and new.pk != old.pk
    assert body["DKIMHost"] == old.host and body["DKIMTextValue"] == old.text_value
    assert body["DKIMPendingHost"] == new.host and body["DKIMPendingTextValue"] == new.text_value
    assert body["DKIMUpdateStatus"] == "Pending" and body["DKIMVerified"] is True
    assert "already scheduled" in error(post(api, f"/domains/{domain.pk}/rotateDKIM"), 422, 505)


def test_after_a_rotation_the_revoked_record_may_be_removed(api):
    domain = create_domain("shop.test")
    old = activate(domain)
    new = DkimKey.generate(domain)
    DkimKey.objects.filter(pk=old.pk).update(state="revoked", revoked_at=timezone.now())
    DkimKey.objects.filter(pk=new.pk).update(state="active", activated_at=timezone.now())
    body = ok(api.get(f"/domains/{domain.pk}"))
    assert body["DKIMHost"] == new.host and body["DKIMRevokedHost"] == old.host
    assert body["DKIMRevokedTextValue"] == old.text_value
    assert body["DKIMUpdateStatus"] == "Verified"
    # Messages it signed may still be on their way (retries, late verifiers): keep it a while.
    assert body["SafeToRemoveRevokedKeyFromDNS"] is False
    long_ago = timezone.now() - revoked_key_grace() - timezone.timedelta(seconds=1)
    DkimKey.objects.filter(pk=old.pk).update(revoked_at=long_ago)
    assert ok(api.get(f"/domains/{domain.pk}"))["SafeToRemoveRevokedKeyFromDNS"] is True


# --- tokens ---------------------------------------------------------------------------------------


def test_an_account_token_is_required(server, account_token):
    domain = create_domain("shop.test")
    server_token = server.tokens.first().token
    for client, words in [
        (Client(), "No Account or Server API tokens"),
        (Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN="nope"), "valid Account token"),
        (Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN="x" * 5000), "valid Account token"),
        (Client(HTTP_X_POSTMARK_SERVER_TOKEN=server_token), "Account API token"),
        (Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=server_token), "Account API token"),
    ]:
        for response in (
            client.get("/domains?count=10&offset=0"),
            client.post("/domains", {"Name": "new.test"}, "application/json"),
            client.delete(f"/domains/{domain.pk}"),
            client.post(f"/domains/{domain.pk}/rotateDKIM"),
        ):
            assert words in error(response, 401, 10)
            assert response["WWW-Authenticate"] == "X-Postmark-Account-Token"
    assert Domain.objects.filter(name="shop.test").exists()
    assert not Domain.objects.filter(name="new.test").exists()
    # And the other way round: an account token does not read a server's data.
    refused = Client(HTTP_X_POSTMARK_ACCOUNT_TOKEN=account_token).get("/bounces?count=1&offset=0")
    assert "Server" in error(refused, 401, 10)
    assert refused["WWW-Authenticate"] == "X-Postmark-Server-Token"


def test_the_schema_lists_the_account_endpoints(client):
    schema = json.loads(client.get("/openapi.json").content)
    assert {
        "/domains", "/domains/{domain_id}", "/domains/{domain_id}/verifydkim",
        "/domains/{domain_id}/verifyreturnpath", "/domains/{domain_id}/verifyspf",
        "/domains/{domain_id}/rotatedkim", "/senders", "/senders/{sender_id}",
        "/senders/{sender_id}/resend", "/senders/{sender_id}/verifyspf",
        "/senders/{sender_id}/requestnewdkim",
    } <= set(schema["paths"])  # fmt: skip
    assert schema["paths"]["/domains"]["get"]["security"] == [{"AccountToken": []}]
    assert "AccountToken" in schema["components"]["securitySchemes"]


# --- Postmark's clients over HTTP -----------------------------------------------------------------


def test_postmark_js_account_client_manages_domains(live_server, postmark_js, account_token):
    def call(method, *args):
        outcome = postmark_js(live_server.url, "Account", account_token, method, *args)
        return outcome

    created = call("createDomain", {"Name": "js.test", "ReturnPathDomain": "pm.js.test"})
    assert created["ok"], created
    domain = created["result"]
    assert domain["Name"] == "js.test" and domain["ReturnPathDomain"] == "pm.js.test"
    assert domain["DKIMPendingHost"].endswith("._domainkey.js.test")
    domain_id = domain["ID"]

    listed = call("getDomains", {"count": 500, "offset": 0})["result"]
    assert listed["TotalCount"] == 1 + PRESET
    assert "js.test" in [d["Name"] for d in listed["Domains"]]
    assert call("getDomains")["result"]["TotalCount"] == 1 + PRESET  # the client's defaults

    assert call("getDomain", domain_id)["result"] == domain
    edited = call("editDomain", domain_id, {"ReturnPathDomain": "bounces.js.test"})["result"]
    assert edited["ReturnPathDomain"] == "bounces.js.test"

    for method in ("verifyDomainDKIM", "verifyDomainReturnPath", "verifyDomainSPF"):
        outcome = call(method, domain_id)
        assert outcome["ok"] and outcome["result"]["ID"] == domain_id, (method, outcome)

    refused = call("rotateDomainDKIM", domain_id)  # the first key is still pending
    assert refused["ok"] is False and refused["code"] == 505 and refused["statusCode"] == 422
    activate(Domain.objects.get(pk=domain_id))
    rotated = call("rotateDomainDKIM", domain_id)["result"]
    assert rotated["DKIMHost"] and rotated["DKIMPendingHost"] != rotated["DKIMHost"]
    assert rotated["DKIMUpdateStatus"] == "Pending"

    duplicate = call("createDomain", {"Name": "JS.test"})
    assert duplicate["ok"] is False and duplicate["code"] == 512
    assert call("deleteDomain", domain_id)["result"]["Message"] == "Domain js.test removed."
    missing = call("getDomain", domain_id)
    assert missing["ok"] is False and missing["code"] == 510 and missing["statusCode"] == 404

    bad_token = postmark_js(live_server.url, "Account", "nope", "getDomains", {"count": 1})
    assert bad_token["ok"] is False and bad_token["statusCode"] == 401 and bad_token["code"] == 10


def test_postmarker_manages_domains(live_server, account_token):
    client = PostmarkClient(
        server_token="unused", account_token=account_token, root_api_url=live_server.url
    )
    domain = client.domains.create("PY.test")
    assert domain.Name == "py.test" and domain.ReturnPathDomain == "pm-bounces.py.test"
    assert domain.DKIMPendingTextValue.startswith("k=rsa;p=")
    assert "py.test" in [d.Name for d in client.domains.all()]
    assert len(client.domains.all(count=2)) == 2
    fetched = client.domains.get(domain.ID)
    assert fetched.DKIMPendingHost == domain.DKIMPendingHost

    domain.edit(ReturnPathDomain="mail.py.test")
    assert domain.ReturnPathDomain == "mail.py.test"
    assert domain.get().ReturnPathDomain == "mail.py.test"
    for check in (domain.verifydkim, domain.verifyreturnpath, domain.verifyspf):
        assert check()["Name"] == "py.test"

    with pytest.raises(ClientError) as refused:
        domain.rotatedkim()
    assert refused.value.error_code == 505
    activate(Domain.objects.get(pk=domain.ID))
    assert domain.rotatedkim()["DKIMUpdateStatus"] == "Pending"

    with pytest.raises(ClientError) as duplicate:
        client.domains.create("py.test")
    assert duplicate.value.error_code == 512
    assert domain.delete() == "Domain py.test removed."
    with pytest.raises(ClientError) as missing:
        client.domains.get(domain.ID)
    assert missing.value.error_code == 510


def test_a_duplicate_created_concurrently_is_still_512(api, monkeypatch):
    """Two requests for one name both pass the existence check; the database's unique index
    refuses the second, which answers as the check would have."""
    from domains import services

    create_domain("race.test")  # the winner's, committed after the loser's check
    monkeypatch.setattr(services, "_domain_exists", lambda name: False)
    error(post(api, "/domains", {"Name": "race.test"}), 422, 512)


# --- the service's own domains ----------------------------------------------------------------

SERVICE = "mail.operator.example"


@pytest.fixture
def service_key(settings):
    """The service's signing domain with its (published) active key, as the first message
    makes it."""
    from domains.signing import ensure_service_key, forget

    settings.DKIM_SERVICE_DOMAIN = SERVICE
    settings.BOUNCE_DOMAIN = "bounces.operator.example"
    forget()
    yield ensure_service_key()[0]
    forget()


def _service_attempts(domain_id, signature_id):
    return [
        ("delete", lambda api: api.delete(f"/domains/{domain_id}")),
        ("rotateDKIM", lambda api: post(api, f"/domains/{domain_id}/rotateDKIM")),
        ("edit", lambda api: put(api, f"/domains/{domain_id}", {"ReturnPathDomain": ""})),
        ("requestNewDkim", lambda api: post(api, f"/senders/{signature_id}/requestNewDkim")),
    ]


@pytest.mark.parametrize("attempt", ["delete", "rotateDKIM", "edit", "requestNewDkim"])
def test_the_account_token_cannot_change_the_services_own_domain(api, service_key, attempt):
    """Deleting the service's signing domain made the next message mint a key whose record is
    not published (every unverified sender then failed DKIM); the account token may not."""
    from domains.services import create_sender
    from domains.signing import forget, signers_for

    domain = service_key.domain
    signature = create_sender(f"someone@{SERVICE}", name="S")
    calls = dict(_service_attempts(domain.pk, signature.pk))
    message = error(calls[attempt](api), 422, 513)
    assert SERVICE in message and "operators" in message
    assert list(domain.keys.values_list("pk", "state")) == [(service_key.pk, "active")]
    forget()
    (signer,) = signers_for("app@unverified.example")  # the next message: the same, published key
    assert (signer.domain, signer.selector) == (SERVICE, service_key.selector)
    # Reading and verifying it stay allowed.
    assert ok(api.get(f"/domains/{domain.pk}"))["Name"] == SERVICE
    ok(put(api, f"/domains/{domain.pk}/verifyDKIM"))


@pytest.mark.parametrize("name", [SERVICE, "bounces.operator.example", "MAIL.Operator.Example."])
def test_the_account_token_cannot_create_the_services_own_domain(api, service_key, name):
    service_key.domain.delete()  # not made yet: the first message makes it
    error(post(api, "/domains", {"Name": name}), 422, 513)
    assert not Domain.objects.filter(name__in=[SERVICE, "bounces.operator.example"]).exists()


def test_other_domains_are_still_the_account_tokens(api, service_key):
    domain = create_domain("shop.test")
    activate(domain)
    assert ok(post(api, f"/domains/{domain.pk}/rotateDKIM"))["DKIMUpdateStatus"] == "Pending"
    assert ok(api.delete(f"/domains/{domain.pk}"))["Message"] == "Domain shop.test removed."
