"""Per-process connection caps (authentication failures are throttled across processes, in
``smtpgw.throttle``)."""

from collections import Counter


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
