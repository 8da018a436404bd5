"""bounces.replies: the bounce Type of an SMTP reply (pure Python, no database)."""

import pytest

from bounces.replies import classify_smtp_reply

pytestmark = pytest.mark.no_db

SMTP_REPLIES = [
    (550, "5.1.1", "<x@y>: Recipient address rejected: User unknown", "HardBounce"),
    (550, "5.1.10", "RESOLVER.ADR.RecipientNotFound", "HardBounce"),
    (553, "5.1.3", "Bad recipient address syntax", "BadEmailAddress"),
    (552, "5.2.2", "Mailbox full", "SoftBounce"),
    (550, "5.2.1", "The email account that you tried to reach is disabled", "SoftBounce"),
    (550, "5.4.4", "Unable to route", "DnsError"),
    (451, "4.4.3", "Temporary DNS failure", "DnsError"),
    (554, "5.7.1", "Client host blocked using zen.spamhaus.org", "Blocked"),
    (550, "5.7.1", "Message rejected as spam", "Blocked"),
    (554, "5.7.0", "Reject - VIRUS: Eicar-Signature", "VirusNotification"),
    (451, "4.7.1", "Greylisted, try again later", "Transient"),
    (452, "4.2.2", "Mailbox full", "Transient"),
    (421, "", "Service not available, closing transmission channel", "Transient"),
    (550, "", "Requested action not taken: mailbox unavailable", "HardBounce"),
    (550, "", "No such user here", "HardBounce"),
    (554, "", "delivery error: dd This user doesn't have a yahoo.com account", "HardBounce"),
    (552, "", "Requested mail action aborted: exceeded storage allocation (quota)", "SoftBounce"),
    (554, "", "Your message was blocked; 198.51.100.1 is listed on a blacklist", "Blocked"),
    (550, "5.0.0", "Host or domain name not found", "DnsError"),
    (550, "5.0.0", "Something went wrong", "HardBounce"),
    (554, "", "Transaction failed", "HardBounce"),
    (0, "", "550 5.1.1 user unknown", "HardBounce"),
    (0, "", "no such user", "HardBounce"),
    (0, "", "mailbox is full", "SoftBounce"),
    (0, "", "", "Unknown"),
    (250, "2.0.0", "OK", "Unknown"),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "expected"), SMTP_REPLIES)
def test_classify_smtp_reply(code, enhanced, text, expected):
    assert classify_smtp_reply(code, enhanced, text) == expected
