"""The gateway reads plain MAIL FROM / RCPT TO paths without the email package's parser; for
every argument its answer must be the one aiosmtpd's own reading gives."""

import string

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtpgw.session import GatewaySMTP

pytestmark = pytest.mark.no_db

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
atoms = st.text(ATEXT, min_size=1, max_size=12)
labels = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=12)
local_parts = st.lists(atoms, min_size=1, max_size=3).map(".".join)
domains = st.lists(labels, min_size=1, max_size=4).map(".".join)
tails = st.sampled_from(["", " ", "  ", "\t", " SIZE=2048", " BODY=8BITMIME SMTPUTF8", "x",
                         " (comment) SIZE=1", "(c)", " NOTIFY=SUCCESS,FAILURE"])  # fmt: skip
paths = st.builds(lambda lp, d, t: f"<{lp}@{d}>{t}", local_parts, domains, tails)
junk = st.text(ATEXT + '<>@. ()"[]:,\\\t', max_size=40)


def reading(read, smtp, arg):
    try:
        return read(smtp, arg)
    except Exception as exc:  # aiosmtpd's parser fails on some junk (a lone '"'): so must ours
        return type(exc)


def session(local_part_limit: int) -> GatewaySMTP:
    smtp = GatewaySMTP.__new__(GatewaySMTP)
    smtp.local_part_limit = local_part_limit
    return smtp


@settings(max_examples=400, deadline=None)
@given(arg=st.one_of(paths, junk), limit=st.sampled_from([0, 8, 64]))
@example(arg="<a@b>", limit=0)
@example(arg="<a..b@example.com>", limit=0)
@example(arg="<-a@example.com> SIZE=1", limit=0)
@example(arg="<a@-example.com>", limit=0)
@example(arg="<a@example.com.>", limit=0)
@example(arg="<a@[127.0.0.1]>", limit=0)
@example(arg='<"a b"@example.com>', limit=0)
@example(arg="<@route:a@example.com>", limit=0)
@example(arg="<>", limit=0)
@example(arg="<averyverylonglocalpart@example.com>", limit=8)
def test_the_same_reading_as_aiosmtpd(arg, limit):
    smtp = session(limit)
    assert reading(GatewaySMTP._getaddr, smtp, arg) == reading(SMTP._getaddr, smtp, arg)


def test_plain_paths_do_not_reach_the_header_parser(monkeypatch):
    import aiosmtpd.smtp

    def no_parser(value):
        raise AssertionError("the header parser was used")

    monkeypatch.setattr(aiosmtpd.smtp, "get_angle_addr", no_parser)
    assert session(0)._getaddr("<app@example.com> SIZE=2048") == ("app@example.com", "SIZE=2048")
