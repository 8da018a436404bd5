"""The From rule over SMTP, against the hostile corpus (domains/tests/from_corpus.py): through the
real gateway and a real worker each message becomes an SMTP API error whose dump holds the
ErrorCode (300 or 400, with Postmark's sentence) or, for the honest forms, an outbound message;
a server in strict mode gives the same answer in the session (550 ... (ErrorCode N))."""

import re

import pytest

from bounces.models import Bounce
from conftest import wait_for
from domains.tests.from_corpus import CASES, message, refused_sender, verify_corpus_domains
from messages.models import OutboundMessage, Submission
from servers.models import Server

pytestmark = pytest.mark.django_db(transaction=True)

ENVELOPE_SENDER = "app@example.com"  # verified: it must never stand in for the From
FIRST_ERROR = re.compile(r"ErrorCode: (?P<code>\d+)\r\nMessage: (?P<message>[^\r]*)\r\n")


def session(gateway, creds):
    client = gateway.smtp()
    client.login(creds.server_token, creds.server_token)
    return client


def test_the_hostile_corpus_over_smtp_becomes_smtp_api_errors(gateway, creds, worker):
    verify_corpus_domains()
    client = session(gateway, creds)
    sent = {}
    for number, case in enumerate(CASES):
        client.mail(ENVELOPE_SENDER)
        client.rcpt("ann@example.net")
        code, reply = client.data(message(case, f"case-{number}@example.com"))
        assert code == 250, (case.name, reply)
        sent[case.name] = reply.decode().rsplit("queued as ", 1)[1].strip()
    client.quit()
    wait_for(
        lambda: not Submission.objects.filter(status="accepted").exists(),
        timeout=120,
        what="processing of the corpus",
    )
    outcomes, expected = {}, {}
    for case in CASES:
        message_id = sent[case.name]
        expected[case.name] = (case.code, case.named)
        bounce = Bounce.objects.filter(message_id=message_id).first()
        if bounce is None:
            sent_from = OutboundMessage.objects.filter(message_id=message_id).first()
            outcomes[case.name] = (0, "") if sent_from else ("nothing", "")
            continue
        first = FIRST_ERROR.search(bounce.dump_text)
        code, sentence = int(first["code"]), first["message"]
        if code == 400 and sentence == refused_sender(bounce.from_address):
            outcomes[case.name] = (code, bounce.from_address)
        elif code == 300 and sentence.startswith("Invalid 'From' address: '"):
            assert bounce.details.startswith("Invalid 'From' address: "), case.name
            outcomes[case.name] = (code, "")
        else:
            outcomes[case.name] = (code, sentence)
    assert outcomes == expected


def test_the_hostile_corpus_in_strict_mode_is_refused_in_the_session(gateway, creds):
    verify_corpus_domains()
    Server.objects.filter(pk=creds.server.pk).update(strict_smtp=True)
    client = session(gateway, creds)
    outcomes, expected = {}, {}
    for number, case in enumerate(CASES):
        expected[case.name] = (250, "") if case.code == 0 else (550, f"(ErrorCode {case.code})")
        client.mail(ENVELOPE_SENDER)
        client.rcpt("ann@example.net")
        code, reply = client.data(message(case, f"strict-{number}@example.com"))
        text = reply.decode("utf-8", "replace")
        outcomes[case.name] = (code, text[text.rfind(" (ErrorCode") + 1 :] if code == 550 else "")
        if case.code == 400 and not text.startswith(f"5.7.1 {refused_sender(case.named)}"):
            outcomes[case.name] = (code, text)
        if case.code == 300 and not text.startswith("5.7.1 Invalid 'From' address: '"):
            outcomes[case.name] = (code, text)
    client.quit()
    assert outcomes == expected
