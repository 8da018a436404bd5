"""Authentication-failure throttling shared by every gateway process: the counters, the
throttle's decisions, and real SMTP sessions against two gateways on one database."""

import asyncio
import base64
import smtplib
import time

import pytest

from conftest import start_gateway
from smtpgw import throttle
from smtpgw.models import AuthFailureCount
from smtpgw.tests.proxied import start_proxy_gateway, v1_header, v2_header
from smtpgw.throttle import SharedThrottle

pytestmark = pytest.mark.django_db(transaction=True)

NOW = 1_800_000_000.0


def _plain(user: str, secret: str) -> str:
    return base64.b64encode(f"\0{user}\0{secret}".encode()).decode()


async def _inline(func, *args):
    """What Gateway.run_blocking does: the database work off the event loop."""
    return await asyncio.to_thread(func, *args)


class Clock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_failures_are_counted_per_subject_within_the_window():
    for _ in range(3):
        throttle.count_failure(["ip:192.0.2.1"], window=300, now=NOW)
    counts = throttle.count_failure(["ip:192.0.2.1", "ip:192.0.2.2"], window=300, now=NOW + 100)
    assert counts == {"ip:192.0.2.1": 4, "ip:192.0.2.2": 1}
    assert throttle.recent_failures(["ip:192.0.2.1"], 300, now=NOW + 305) == {"ip:192.0.2.1": 1}
    assert throttle.recent_failures(["ip:192.0.2.1"], 300, now=NOW + 400) == {"ip:192.0.2.1": 0}


def test_expired_buckets_are_purged():
    throttle.count_failure(["ip:192.0.2.1"], window=300, now=NOW)
    throttle.count_failure(["ip:192.0.2.1"], window=300, now=NOW + 200)
    assert throttle.purge_expired(300, now=NOW + 250) == 0
    assert throttle.purge_expired(300, now=NOW + 301) == 1
    assert AuthFailureCount.objects.count() == 1


def test_user_names_are_kept_as_keyed_digests():
    token = "a6c2607f-0e57-4780-a7cf-ce922fedd0ae"
    subject = throttle.username_subject(token)
    assert token not in subject and token[-8:] not in subject
    assert subject == throttle.username_subject(token)
    assert subject != throttle.username_subject(token.upper())
    assert throttle.username_subject("\udcff\x00odd").startswith("user:")


def test_ipv6_clients_are_counted_per_64():
    assert throttle.address_subject("2001:db8:1:2::7") == throttle.address_subject(
        "2001:db8:1:2:ffff::1"
    )
    assert throttle.address_subject("2001:db8:1:3::7") != throttle.address_subject(
        "2001:db8:1:2::7"
    )
    assert throttle.address_subject("::ffff:192.0.2.1") == "ip:192.0.2.1"


def test_two_throttles_share_the_counts_and_success_resets_nothing():
    """Two gateway processes are two SharedThrottle objects over one table."""
    clock = Clock()
    first = SharedThrottle(_inline, limit=3, window=300, username_limit=0, clock=clock)
    second = SharedThrottle(_inline, limit=3, window=300, username_limit=0, clock=clock)

    async def scenario():
        await first.record_failure("192.0.2.1", "key")
        await first.record_failure("192.0.2.1", "key")
        assert await second.refusal("192.0.2.1", "key") == ""
        await second.record_failure("192.0.2.1", "key")
        assert await first.refusal("192.0.2.1", "key") == throttle.ADDRESS_THROTTLED
        assert first.blocked("192.0.2.1")  # now cached: refused when the connection is made
        assert await second.refusal("192.0.2.9", "key") == ""

    asyncio.run(scenario())


def test_a_user_name_is_throttled_whatever_the_address():
    thr = SharedThrottle(_inline, limit=100, window=300, username_limit=2)

    async def scenario():
        await thr.record_failure("192.0.2.1", "sprayed")
        await thr.record_failure("198.51.100.1", "sprayed")
        assert await thr.refusal("203.0.113.1", "sprayed") == throttle.USERNAME_THROTTLED
        assert await thr.refusal("203.0.113.1", "other") == ""
        assert not thr.blocked("203.0.113.1")

    asyncio.run(scenario())
    # The refused attempt counted against its address, not again against the user name.
    subject = throttle.address_subject("203.0.113.1")
    assert throttle.recent_failures([subject], 300)[subject] == 1


def test_zero_limits_disable_the_throttle():
    thr = SharedThrottle(_inline, limit=0, window=300, username_limit=0)

    async def scenario():
        for _ in range(3):
            await thr.record_failure("192.0.2.1", "key")
        assert await thr.refusal("192.0.2.1", "key") == ""

    asyncio.run(scenario())
    assert not AuthFailureCount.objects.exists()


def test_unreadable_counters_refuse_temporarily():
    async def broken(func, *args):
        raise RuntimeError("database gone")

    thr = SharedThrottle(broken, limit=3, window=300, username_limit=3)
    assert asyncio.run(thr.refusal("192.0.2.1", "key")) == throttle.UNAVAILABLE
    asyncio.run(thr.record_failure("192.0.2.1", "key"))  # logged, not raised


# --- Through the protocol -----------------------------------------------------------------------


@pytest.fixture
def gateways(tmp_path):
    started = []

    def start(starter=start_gateway, **env):
        running = starter(tmp_path / f"runsmtp-{len(started)}.log", **env)
        started.append(running)
        return running

    yield start
    for running in started:
        running.process.stop()


# SMTP_AUTH_THROTTLE_REFRESH=0: each AUTH reads the shared counters, so the count is exact across
# processes; by default a process reads the others' blocks once a second (see the test below).
EXACT = {"SMTP_AUTH_THROTTLE_REFRESH": 0}


def test_two_gateways_share_the_throttle_and_a_success_does_not_reset_it(gateways, creds):
    env = {"SMTP_AUTH_FAILURE_LIMIT": 3, "SMTP_AUTH_FAILURE_LIMIT_PER_USERNAME": 0, **EXACT}
    first, second = gateways(**env), gateways(**env)
    client = first.smtp()
    for _ in range(2):
        assert client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, "wrong"))[0] == 535
    client.quit()
    client = first.smtp()
    assert client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, creds.secret))[0] == 235
    client.quit()
    client = second.smtp()
    assert client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, "wrong"))[0] == 535
    code, reply = client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, creds.secret))
    assert (code, reply[:5]) == (421, b"4.7.0")
    # The first gateway counted only two of the three, and still refuses the right secret.
    client = first.smtp()
    code, reply = client.docmd("AUTH", "PLAIN " + _plain(creds.server_token, creds.server_token))
    assert (code, reply[:5]) == (421, b"4.7.0")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.noop()


def test_runsmtp_processes_share_the_throttle(gateways, creds):
    gateway = gateways(SMTP_AUTH_FAILURE_LIMIT=4, SMTP_PROCESSES=2, **EXACT)
    refused = 0
    for _ in range(12):  # new connections, spread by the kernel over both processes
        try:
            client = gateway.smtp()
        except smtplib.SMTPConnectError as exc:
            assert exc.smtp_code == 421
            refused += 1
            continue
        code, _ = client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, "wrong"))
        assert code in (535, 421)
        refused += code == 421
        client.close()
    assert refused == 8  # the fifth attempt and every later one, whichever process took it


def test_a_process_learns_the_others_blocks_within_the_refresh(gateways, creds):
    """The default: a process reads which subjects the others blocked once per refresh interval
    (one query per interval, not one per login)."""
    env = {"SMTP_AUTH_FAILURE_LIMIT": 3, "SMTP_AUTH_FAILURE_LIMIT_PER_USERNAME": 0,
           "SMTP_AUTH_THROTTLE_REFRESH": 0.5}  # fmt: skip
    first, second = gateways(**env), gateways(**env)
    client = second.smtp()  # the second process has read its (empty) snapshot
    assert client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, creds.secret))[0] == 235
    client.quit()
    for _ in range(3):
        client = first.smtp()
        assert client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, "wrong"))[0] == 535
        client.close()
    time.sleep(0.7)
    client = second.smtp()
    code, reply = client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, creds.secret))
    assert (code, reply[:5]) == (421, b"4.7.0")


def test_a_user_name_sprayed_from_many_addresses_is_throttled(gateways, creds):
    gateway = gateways(
        start_proxy_gateway,
        SMTP_AUTH_FAILURE_LIMIT=100,
        SMTP_AUTH_FAILURE_LIMIT_PER_USERNAME=3,
    )
    for i in range(3):
        client = gateway.smtp(v1_header(f"198.51.100.{i + 1}"))
        assert client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, "wrong"))[0] == 535
        client.quit()
    client = gateway.smtp(v2_header("203.0.113.50"))
    code, reply = client.docmd("AUTH", "PLAIN " + _plain(creds.access_key, creds.secret))
    assert code == 454
    assert b"user name" in reply
    # Another user name from the same address is not affected.
    code, _ = client.docmd("AUTH", "PLAIN " + _plain(creds.broadcast_key, creds.broadcast_secret))
    assert code == 235


def test_recording_a_failure_purges_expired_buckets():
    AuthFailureCount.objects.create(subject="ip:192.0.2.1", bucket_start=1_000, count=5)
    thr = SharedThrottle(_inline, limit=3, window=300, username_limit=3)
    asyncio.run(thr.record_failure("192.0.2.2", "key"))
    assert not AuthFailureCount.objects.filter(bucket_start=1_000).exists()
    assert AuthFailureCount.objects.count() == 2  # the new failure: its address and user name
