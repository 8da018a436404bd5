"""Moving every stored secret to the newest key of ``SECRETS_KEY`` (see ``core.crypto``).

Secrets are found by the project's naming rule, through Django's model registry (so this low app
imports none of the apps that hold secrets): a ``<name>_encrypted`` text field holds a Fernet
ciphertext, and a model with ``token_digest`` and ``token_encrypted`` keeps its look-up digest of
that token. Each row is rewritten in a transaction of its own, under a row lock; since look-ups and
decryption accept every configured key, credentials keep working throughout.
"""

from django.apps import apps
from django.db import transaction

from core import crypto

ENCRYPTED_SUFFIX = "_encrypted"


def secret_fields(model) -> list[str]:
    return [
        f.attname
        for f in model._meta.concrete_fields
        if f.attname.endswith(ENCRYPTED_SUFFIX) and f.get_internal_type() == "TextField"
    ]


def rotate_secrets(batch: int = 500) -> dict[str, int]:
    """Re-encrypt (and re-digest) every stored secret under the newest key; returns the rows
    rewritten per model. Safe to run again, and while the service runs."""
    rewritten = {}
    for model in apps.get_models():
        fields = secret_fields(model)
        if not fields:
            continue
        count, last = 0, 0
        while True:
            ids = list(
                model._default_manager.filter(pk__gt=last)
                .order_by("pk")
                .values_list("pk", flat=True)[:batch]
            )
            if not ids:
                break
            for pk in ids:
                count += _rotate_row(model, pk, fields)
            last = ids[-1]
        rewritten[model._meta.label] = count
    return rewritten


@transaction.atomic
def _rotate_row(model, pk, fields: list[str]) -> int:
    row = model._default_manager.select_for_update().filter(pk=pk).values(*fields).first()
    if row is None:
        return 0
    changes = {name: crypto.encrypt(crypto.decrypt(value)) for name, value in row.items() if value}
    if "token_digest" in {f.attname for f in model._meta.concrete_fields} and row.get(
        "token_encrypted"
    ):
        changes["token_digest"] = crypto.digest(crypto.decrypt(row["token_encrypted"]))
    if changes:
        model._default_manager.filter(pk=pk).update(**changes)
    return 1
