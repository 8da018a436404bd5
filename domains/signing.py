"""What delivery asks of sender identity: who signs a message (DKIM) and its return path.

The From is the From rule's reading of the bytes delivered (``domains.from_rule``), the one
processing checked. ``d=`` is the From domain when that domain is DKIM-verified and has an active
key (RSA, plus Ed25519 when it has one); otherwise the service's own domain
(``DKIM_SERVICE_DOMAIN``), whose key is made on first use, so that a message from a confirmed
single-address sender signature is signed too (as Postal does). The service's key signs only a
From that passes the rule when the message goes out (``domains.identity.from_refusal``: a
confirmed signature, a verified domain without an active key) or the System server's own From:
a message whose From the rule refuses or cannot read (one processed by an older, laxer rule)
goes unsigned, so that nothing a reader sees as from the operator's domain is signed for it
unless that From passed. A pending key never signs; a revoked one stops signing within
``DKIM_KEY_CACHE_SECONDS`` in every worker (at once in the process that changed it).

The return path is a VERP address under the From domain's custom Return-Path domain once that
has been verified (a CNAME to the bounce host: SPF and DMARC then align), else under
``BOUNCE_DOMAIN``; the bounce MX accepts VERP addresses under both (``is_bounce_domain``).

A delivery worker looks a From domain up once per ``DKIM_KEY_CACHE_SECONDS`` (two small
queries), not once per message; private keys are decrypted and parsed once per process.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save

from core import dkim
from core import dkim_keys as keys
from core.addresses import InvalidDomain, ascii_domain, domain_of
from domains.from_rule import Sender
from domains.identity import from_refusal
from domains.models import DkimKey, Domain, SenderSignature

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendingIdentity:
    """How the messages of one From domain go out."""

    signers: tuple[dkim.Signer, ...]  # RSA first, then Ed25519
    return_path_domain: str
    own: bool = False  # the signers are the From domain's own keys (not the service's)


_cache: dict[str, tuple[float, SendingIdentity]] = {}
_allowed: dict[str, tuple[float, bool]] = {}
_lock = threading.Lock()


def forget() -> None:
    """Drop what this process remembers (keys, domains or signatures changed)."""
    with _lock:
        _cache.clear()
        _allowed.clear()


def _forget_on_change(sender, **kwargs) -> None:
    forget()


for _model in (Domain, DkimKey, SenderSignature):
    post_save.connect(_forget_on_change, sender=_model, dispatch_uid=f"dkim-forget-{_model}")
    post_delete.connect(_forget_on_change, sender=_model, dispatch_uid=f"dkim-forget-d-{_model}")


def service_domain() -> str:
    return ascii_domain(settings.DKIM_SERVICE_DOMAIN)


def identity_for(from_address: str) -> SendingIdentity:
    """The signers and return path domain of messages from ``from_address`` (cached)."""
    domain = domain_of(from_address or "")
    ttl = settings.DKIM_KEY_CACHE_SECONDS
    now = time.monotonic()
    with _lock:
        cached = _cache.get(domain)
    if cached is not None and cached[0] > now:
        return cached[1]
    identity = _look_up(domain)
    if ttl > 0:
        with _lock:
            _cache[domain] = (now + ttl, identity)
    return identity


def signers_for(from_address: str) -> tuple[dkim.Signer, ...]:
    return identity_for(from_address).signers


def return_path_domain_for(from_address: str) -> str:
    return identity_for(from_address).return_path_domain


def signers_of(sender: Sender | None, *, system: bool = False) -> tuple[dkim.Signer, ...]:
    """Who signs a message from ``sender`` (the From rule's reading of the bytes sent; None
    when the rule cannot read it): its domain's own keys, else the service's key when the From
    passes the rule now or is the System server's own (``system``), else nobody."""
    if sender is None:
        return ()
    identity = identity_for(sender.address)
    if identity.own or system or _passes(sender):
        return identity.signers
    log.warning("From %s does not pass the From rule: the message goes unsigned", sender.address)
    return ()


def _passes(sender: Sender) -> bool:
    """Whether the From rule lets ``sender`` send (cached as the keys are)."""
    key = sender.address.lower()
    now = time.monotonic()
    with _lock:
        cached = _allowed.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    allowed = from_refusal(sender) is None
    if settings.DKIM_KEY_CACHE_SECONDS > 0:
        with _lock:
            _allowed[key] = (now + settings.DKIM_KEY_CACHE_SECONDS, allowed)
    return allowed


def signature_for(sender: Sender | None, content: bytes, *, system: bool = False) -> bytes:
    """The DKIM-Signature header lines to put in front of ``content`` (the bytes sent), whose
    From ``sender`` is (``signers_of``); b'' when nobody signs."""
    signers = signers_of(sender, system=system)
    return dkim.sign(content, list(signers)) if signers else b""


def _look_up(domain: str) -> SendingIdentity:
    service = service_domain()
    own = Domain.objects.filter(name=domain).first() if domain and domain != service else None
    signing = Q(domain__name=service)
    if own is not None and own.dkim_verified:
        signing |= Q(domain=own)
    active = list(
        DkimKey.objects.filter(signing, state=DkimKey.State.ACTIVE)
        .select_related("domain")
        .order_by("-pk")
    )
    signers = _signers([k for k in active if own is not None and k.domain_id == own.pk])
    own_keys = bool(signers)
    if not signers:
        service_keys = [k for k in active if k.domain.name == service]
        signers = _signers(service_keys or ensure_service_key(service))
    return_path = settings.BOUNCE_DOMAIN
    if own is not None and own.return_path_verified and own.return_path_domain:
        return_path = own.return_path_domain
    return SendingIdentity(tuple(signers), return_path, own_keys)


def _signers(candidates: list[DkimKey]) -> list[dkim.Signer]:
    """The newest active key of each algorithm, RSA first; a key that cannot be loaded (a
    changed SECRETS_KEY) is left out and logged."""
    chosen = []
    for algorithm in (keys.RSA, keys.ED25519):
        for key in candidates:
            if key.algorithm != algorithm:
                continue
            try:
                chosen.append(dkim.Signer(key.domain.name, key.selector, key.private_key()))
                break
            except Exception:
                log.exception("DKIM key %s cannot be loaded; it does not sign", key)
    return chosen


def ensure_service_key(name: str | None = None) -> list[DkimKey]:
    """The service domain's active RSA key, made (active at once: the operator publishes its
    record, shown with the other domains') when there is none."""
    name = name or service_domain()
    with transaction.atomic():
        try:
            with transaction.atomic():
                domain, _ = Domain.objects.get_or_create(name=name)
        except IntegrityError:  # made meanwhile by another worker
            domain = Domain.objects.get(name=name)
        Domain.objects.select_for_update().filter(pk=domain.pk).first()
        found = list(
            domain.keys.filter(state=DkimKey.State.ACTIVE, algorithm=keys.RSA).order_by("-pk")
        )
        if not found:
            log.info("making the service's DKIM key for %s", name)
            found = [DkimKey.generate(domain, keys.RSA, state=DkimKey.State.ACTIVE)]
    return found


def is_bounce_domain(domain: str) -> bool:
    """Whether the bounce MX takes VERP addresses under ``domain``: BOUNCE_DOMAIN, or a
    verified custom Return-Path domain."""
    try:
        domain = ascii_domain(domain or "")
    except InvalidDomain:
        return False
    if domain == ascii_domain(settings.BOUNCE_DOMAIN):
        return True
    return Domain.objects.filter(return_path_domain=domain, return_path_verified=True).exists()
