"""The signed link that confirms a sender signature: made when the confirmation message is sent,
checked by the confirmation page (``domains.views``).

The token is signed with the site's SECRET_KEY (``django.core.signing``, salted for this use)
and carries the signature's ID and address, so it confirms that address only, and it expires
after SENDER_CONFIRMATION_MAX_AGE (7 days by default). Nothing is stored: a new confirmation
message makes a new link, and the old ones stay valid until they expire.
"""

from django.conf import settings
from django.core import signing

from domains.models import SenderSignature

SALT = "domains.sender-confirmation"


class TokenError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def confirmation_token(signature: SenderSignature) -> str:
    return signing.TimestampSigner(salt=SALT).sign_object(
        {"id": signature.pk, "email": signature.email}
    )


def signature_for_token(token: str) -> SenderSignature:
    """The signature a confirmation link is for, or TokenError saying why not."""
    signer = signing.TimestampSigner(salt=SALT)
    try:
        data = signer.unsign_object(token, max_age=settings.SENDER_CONFIRMATION_MAX_AGE)
    except signing.SignatureExpired:
        raise TokenError(
            "This confirmation link has expired. Ask for a new confirmation message "
            "(Resend confirmation) and use the link it brings."
        ) from None
    except (signing.BadSignature, ValueError, TypeError):
        raise TokenError(
            "This confirmation link is not valid: it may have been cut or changed. Copy the "
            "whole link from the confirmation message, or ask for a new one."
        ) from None
    signature = (
        SenderSignature.objects.filter(pk=data.get("id"), email=data.get("email")).first()
        if isinstance(data, dict)
        else None
    )
    if signature is None:
        raise TokenError("This sender signature no longer exists.")
    return signature
