"""Token authentication for the HTTP API.

- ``X-Postmark-Server-Token`` → the server: ``request.user`` = a ``ServerPrincipal`` and
  ``request.auth`` = the ``Server``; every query of a view is scoped to ``request.auth``.
- ``X-Postmark-Account-Token`` → the account (domains, sender signatures): ``request.user`` = an
  ``AccountPrincipal`` and ``request.auth`` = the ``AccountToken``.

Each kind of token is refused, with a hint, on the other kind's endpoints.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from api.errors import BAD_ACCOUNT_TOKEN_MESSAGE, BAD_TOKEN_MESSAGE, MISSING_TOKEN_MESSAGE
from servers.models import AccountToken, ServerToken

SERVER_TOKEN_HEADER = "X-Postmark-Server-Token"
ACCOUNT_TOKEN_HEADER = "X-Postmark-Account-Token"
# Tokens are UUIDs; anything longer, or not printable ASCII, is not looked up.
MAX_TOKEN_LENGTH = 200


def plausible_token(token: str) -> bool:
    return len(token) <= MAX_TOKEN_LENGTH and token.isascii() and token.isprintable()


class ServerPrincipal:
    """The authenticated caller: a server, not a Django user."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    pk = None

    def __init__(self, server):
        self.server = server

    def __str__(self):
        return f"server {self.server.pk}"


class ServerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        token = (request.headers.get(SERVER_TOKEN_HEADER) or "").strip()
        if not token:
            if request.headers.get(ACCOUNT_TOKEN_HEADER):
                raise exceptions.AuthenticationFailed(
                    "This endpoint needs a Server API token in the X-Postmark-Server-Token "
                    "header; an Account token cannot be used here."
                )
            raise exceptions.AuthenticationFailed(MISSING_TOKEN_MESSAGE)
        record = ServerToken.find(token) if plausible_token(token) else None
        if record is None:
            raise exceptions.AuthenticationFailed(BAD_TOKEN_MESSAGE)
        return ServerPrincipal(record.server), record.server

    def authenticate_header(self, request):
        # A value here makes DRF answer 401 (not 403) when authentication fails.
        return SERVER_TOKEN_HEADER


class ServerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.ServerTokenAuthentication"
    name = "ServerToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": SERVER_TOKEN_HEADER}


SERVER_TOKEN_ON_ACCOUNT_ENDPOINT = (
    "This endpoint needs an Account API token in the X-Postmark-Account-Token header; a Server "
    "token cannot be used here."
)


class AccountPrincipal:
    """The authenticated caller of an account endpoint: an account token, not a Django user."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    pk = None

    def __init__(self, token):
        self.token = token

    def __str__(self):
        return f"account token {self.token.pk}"


class AccountTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        token = (request.headers.get(ACCOUNT_TOKEN_HEADER) or "").strip()
        if not token:
            if request.headers.get(SERVER_TOKEN_HEADER):
                raise exceptions.AuthenticationFailed(SERVER_TOKEN_ON_ACCOUNT_ENDPOINT)
            raise exceptions.AuthenticationFailed(MISSING_TOKEN_MESSAGE)
        if not plausible_token(token):
            raise exceptions.AuthenticationFailed(BAD_ACCOUNT_TOKEN_MESSAGE)
        record = AccountToken.find(token)
        if record is None:
            # A server token pasted into the account header: say so rather than "invalid".
            if ServerToken.find(token) is not None:
                raise exceptions.AuthenticationFailed(SERVER_TOKEN_ON_ACCOUNT_ENDPOINT)
            raise exceptions.AuthenticationFailed(BAD_ACCOUNT_TOKEN_MESSAGE)
        return AccountPrincipal(record), record

    def authenticate_header(self, request):
        return ACCOUNT_TOKEN_HEADER


class AccountTokenScheme(OpenApiAuthenticationExtension):
    target_class = "api.auth.AccountTokenAuthentication"
    name = "AccountToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": ACCOUNT_TOKEN_HEADER}
