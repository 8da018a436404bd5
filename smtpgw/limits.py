"""Per-process protections: authentication-failure throttling and connection caps.

They are kept in memory, per gateway process: with N processes sharing a port, a client gets at
most N times the configured budget, which still caps password guessing at a trickle.
"""

import time
from collections import Counter, deque


class FailureThrottle:
    """At most ``limit`` authentication failures per client address within ``window`` seconds."""

    def __init__(self, limit: int, window: float, clock=time.monotonic):
        self.limit = limit
        self.window = window
        self._clock = clock
        self._failures: dict[str, deque] = {}

    def _recent(self, address: str) -> deque:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        cutoff = self._clock() - self.window
        while failures and failures[0] < cutoff:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def blocked(self, address: str) -> bool:
        return self.limit > 0 and len(self._recent(address)) >= self.limit

    def record_failure(self, address: str) -> None:
        if len(self._failures) > 100_000:  # bound memory under an address-spraying attack
            self._failures.clear()
        self._failures.setdefault(address, deque()).append(self._clock())

    def record_success(self, address: str) -> None:
        self._failures.pop(address, None)


class ConnectionLimits:
    """Caps on open connections, in total and per client address."""

    def __init__(self, max_total: int, max_per_address: int):
        self.max_total = max_total
        self.max_per_address = max_per_address
        self.total = 0
        self.per_address: Counter = Counter()

    def admit(self, address: str) -> str:
        """Register a new connection; returns '' when admitted, or why it is refused."""
        if self.max_total and self.total >= self.max_total:
            return "421 4.7.0 Too many connections to this server, try again later"
        if self.max_per_address and self.per_address[address] >= self.max_per_address:
            return "421 4.7.0 Too many connections from your address, try again later"
        self.total += 1
        self.per_address[address] += 1
        return ""

    def release(self, address: str) -> None:
        self.total -= 1
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]
