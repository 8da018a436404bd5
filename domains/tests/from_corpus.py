"""A corpus of hostile (and a few honest) From headers, shared by the From rule's tests over its
function, SMTP and the HTTP send API.

The world they run in: ``example.com`` is a verified domain (the root conftest's), and so is
``bücher.test`` (``xn--bcher-kva.test``, made by ``verify_corpus_domains``); ``bank.test`` is
nobody's. Each case is the From field(s) exactly as an SMTP client writes them and, where JSON
can say the same, the HTTP API's ``From`` value; the expected answer is an ErrorCode (0: sent)
and, for 400, the address Postmark's sentence names.
"""

from dataclasses import dataclass

ABSENT = object()  # no From key in the JSON message
VERIFIED_IDN = "xn--bcher-kva.test"  # bücher.test


@dataclass(frozen=True)
class Case:
    name: str
    field: bytes  # the From field(s), each with its CRLF; b"" for none
    code: int  # 0 (sent), 300 (Invalid 'From' address) or 400 (not a sender signature)
    named: str = ""  # the address the 400 sentence names
    json: object = None  # the HTTP API's From value; None: the same text as the SMTP field
    json_code: int | None = None  # when HTTP answers otherwise (None: ``code``)
    json_named: str | None = None  # when HTTP names another address (None: ``named``)

    @property
    def http_from(self):
        if self.json is not None:
            return self.json
        name, _, value = self.field.decode("utf-8").partition(":")
        assert name.lower() == "from" and value.count("\r\n") == 1, self.name
        return value.strip()

    @property
    def http_code(self) -> int:
        return self.code if self.json_code is None else self.json_code

    @property
    def http_named(self) -> str:
        return self.named if self.json_named is None else self.json_named


NOT_IN_JSON = "not expressible as one JSON string"

CASES = [
    # --- the nine bypasses of the issue ---
    Case("encoded-word address as the display name",
         b"From: =?us-ascii?q?me=40example=2Ecom?= <ceo@bank.test>\r\n", 400, "ceo@bank.test"),
    Case("an address as the display name", b"From: me@example.com <ceo@bank.test>\r\n", 300),
    Case("two mailboxes", b"From: me@example.com, ceo@bank.test\r\n", 300),
    Case("two From fields", b"From: me@example.com\r\nFrom: ceo@bank.test\r\n", 300,
         json=NOT_IN_JSON, json_code=-1),
    Case("a group", b"From: Staff: me@example.com;\r\n", 300),
    Case("an empty group", b"From: undisclosed-recipients:;\r\n", 300),
    Case("a folded address", b"From: me@example.com\r\n <ceo@bank.test>\r\n", 300,
         json="me@example.com\r\n <ceo@bank.test>"),
    Case("no From field", b"", 300, json=ABSENT),
    Case("an address-less From", b"From: Shop\r\n", 300),
    # --- more ---
    Case("an encoded-word display name (allowed)",
         b"From: =?utf-8?q?Caf=C3=A9_Ren=C3=A9?= <me@example.com>\r\n", 0),
    Case("an unencoded UTF-8 display name (allowed)",
         "From: Café <me@example.com>\r\n".encode(), 0),
    Case("a bare address (allowed)", b"From: me@example.com\r\n", 0),
    Case("a comment holding an address, after it (allowed)",
         b"From: me@example.com (ceo@bank.test)\r\n", 0),
    Case("a comment holding an allowed address, before an unverified one",
         b"From: (me@example.com) <ceo@bank.test>\r\n", 400, "ceo@bank.test"),
    Case("a comment inside the address", b"From: me(ceo@bank.test)@example.com\r\n", 300),
    Case("a quoted local part holding @", b'From: "ceo@bank.test"@example.com\r\n', 300),
    Case("NUL", b"From: me@example.com\x00\r\n", 300, json="me@example.com\x00"),
    Case("CR/LF injection", b"From: me@example.com\rFrom: ceo@bank.test\r\n", 300,
         json="me@example.com\r\nFrom: ceo@bank.test"),
    Case("CR/LF encoded in the display name",
         b"From: =?utf-8?q?Shop=0D=0AFrom:_ceo@bank.test?= <me@example.com>\r\n", 300),
    Case("a very long address", b"From: " + b"a" * 200 + b"@example.com\r\n", 300),
    Case("a very long From, folded", b"From: Shop\r\n" + b" Shop\r\n" * 300
         + b" <me@example.com>\r\n", 300, json="Shop " * 300 + "<me@example.com>"),
    Case("a non-ASCII domain, verified (allowed)", "From: Bücher <info@bücher.test>\r\n".encode(),
         0),
    Case("a non-ASCII domain, not verified", "From: info@bänk.test\r\n".encode(), 400,
         "info@bänk.test", json_named="info@xn--bnk-qla.test"),
    Case("an IDN homograph of a verified domain", "From: billing@exаmple.com\r\n".encode(), 400,
         "billing@exаmple.com", json_named="billing@xn--exmple-4nf.com"),
    Case("an angle-less display name", b"From: Shop me@example.com\r\n", 300),
    Case("trailing garbage", b"From: Shop <me@example.com> garbage\r\n", 300),
    Case("a doubled angle bracket", b"From: <me@example.com>>\r\n", 300),
    Case("only white space", b"From:   \t \r\n", 300),
    Case("empty", b"From:\r\n", 300, json=""),
    Case("a From over folded lines that decodes to another address",
         b"From: =?us-ascii?q?me=40exa?=\r\n =?us-ascii?q?mple=2Ecom?= <ceo@bank.test>\r\n", 400,
         "ceo@bank.test", json="=?us-ascii?q?me=40exa?= =?us-ascii?q?mple=2Ecom?= <ceo@bank.test>"),
    Case("a fold inside the address", b"From: Shop <ceo@\r\n bank.test>\r\n", 300,
         json="Shop <ceo@\r\n bank.test>"),
    Case("an encoded-word as the whole address", b"From: =?us-ascii?q?me=40example=2Ecom?=\r\n",
         300),
    Case("an encoded-word as the domain", b"From: me@=?us-ascii?q?example.com?=\r\n", 300),
    Case("a domain literal", b"From: me@[127.0.0.1]\r\n", 300),
    Case("a source route", b"From: <@bank.test:me@example.com>\r\n", 300),
    Case("two From fields in other letter cases",
         b"FROM: me@example.com\r\nfrom: ceo@bank.test\r\n", 300, json=NOT_IN_JSON, json_code=-1),
    Case("an unverified sender", b"From: Bank <ceo@bank.test>\r\n", 400, "ceo@bank.test"),
]  # fmt: skip

HTTP_CASES = [case for case in CASES if case.http_code >= 0]


def message(case: Case, message_id: str = "hostile@example.com") -> bytes:
    return (
        case.field + b"To: ann@example.net\r\nSubject: Hostile From\r\n"
        b"Message-ID: <" + message_id.encode() + b">\r\n\r\nHello.\r\n"
    )


def verify_corpus_domains() -> None:
    from domains.models import Domain

    Domain.objects.get_or_create(name=VERIFIED_IDN, defaults={"dkim_verified": True})


def refused_sender(address: str) -> str:
    return (
        f"The 'From' address you supplied ({address}) is not a Sender Signature on your account. "
        "Please add and confirm this address in order to be able to use it in the 'From' field "
        "of your messages."
    )
