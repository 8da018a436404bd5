"""Domain names and addresses in the one form they are compared, signed and routed in.

``ascii_domain`` writes a domain as DNS carries it: letter case folded, the root's trailing dot
dropped, international labels turned into A-labels by IDNA 2008 (RFC 5891) with the UTS #46
mapping, non-transitional (``faß.de`` is ``xn--fa-hia.de``, a different domain from ``fass.de``).
Plain-ASCII labels pass as they are, lower-cased and checked for length only, as DNS takes them
(``_dmarc``, a host with an underscore). Verified domains are stored in this form, DKIM's ``d=`` is
written in it, delivery groups recipients by it and looks it up; ``domain_of`` and
``normalise_address`` apply it to an address (the local part kept as written), and
``address_key`` is how whole addresses are compared (suppressions, sender signatures).
"""

from functools import lru_cache

import idna

MAX_LABEL_LENGTH = 63
MAX_DOMAIN_LENGTH = 253  # octets, without the root's dot: 255 in the wire format


class InvalidDomain(ValueError):
    """Not a domain name DNS can carry: an empty label, a label over 63 octets, a name over 253,
    or an international label IDNA 2008 refuses."""


@lru_cache(maxsize=4096)
def ascii_domain(domain: str) -> str:
    """``domain`` lower-cased, without its trailing dot, IDN labels as A-labels (IDNA 2008,
    UTS #46 non-transitional): ``FAß.de.`` → ``xn--fa-hia.de``. InvalidDomain when it cannot be."""
    name = domain.strip()
    if name.isascii():
        name = name.lower()
    else:
        try:
            name = idna.uts46_remap(name, std3_rules=False, transitional=False)
        except UnicodeError as exc:  # idna.IDNAError is one
            raise InvalidDomain(f"{domain!r} is not a valid domain name: {exc}") from None
    labels = name.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # the root
    encoded = []
    for label in labels:
        if not label:
            raise InvalidDomain(f"{domain!r} is not a valid domain name: it has an empty label")
        if not label.isascii():
            try:
                label = idna.alabel(label).decode("ascii")
            except UnicodeError as exc:
                raise InvalidDomain(f"{domain!r} is not a valid domain name: {exc}") from None
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidDomain(
                f"{domain!r} is not a valid domain name: a label is longer than "
                f"{MAX_LABEL_LENGTH} characters"
            )
        encoded.append(label)
    result = ".".join(encoded)
    if len(result) > MAX_DOMAIN_LENGTH:
        raise InvalidDomain(
            f"{domain!r} is not a valid domain name: longer than {MAX_DOMAIN_LENGTH} characters"
        )
    return result


def domain_of(address: str) -> str:
    """The domain of ``address`` as ``ascii_domain`` writes it; '' when the address has no local
    part, no domain or a domain that is not a valid name (it then matches no domain)."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return ""
    try:
        return ascii_domain(domain)
    except InvalidDomain:
        return ""


def normalise_address(address: str) -> str:
    """``address`` with its domain as ``ascii_domain`` writes it and its local part as written
    (``Jörg@Bücher.example`` → ``Jörg@xn--bcher-kva.example``). InvalidDomain when it has no
    local part or no valid domain."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local:
        raise InvalidDomain(f"{address!r} is not an address: it needs a local part and a domain")
    return f"{local}@{ascii_domain(domain)}"


def address_key(address: str) -> str:
    """What whole addresses are compared by (suppressions, sender signatures): letter case is
    ignored in the local part too, the domain is normalised; an address without a valid domain
    is only lower-cased."""
    try:
        return normalise_address(address).lower()
    except InvalidDomain:
        return address.strip().lower()
