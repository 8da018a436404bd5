"""Listener specifications: ``KIND[+tls]=HOST:PORT`` (SMTP_LISTEN, ``runsmtp --listen``)."""

from dataclasses import dataclass

KINDS = ("transactional", "broadcast", "bounce")


@dataclass
class Listener:
    endpoint: str  # one of KINDS
    host: str
    port: int
    implicit_tls: bool = False

    def __str__(self):
        return f"{self.endpoint}{'+tls' if self.implicit_tls else ''}={self.host}:{self.port}"

    @classmethod
    def parse(cls, spec: str) -> "Listener":
        """``KIND[+tls]=HOST:PORT``, e.g. ``transactional=0.0.0.0:587``, ``broadcast+tls=:465``."""
        try:
            kind, address = spec.strip().split("=", 1)
            host, port = address.rsplit(":", 1)
            kind, _, tls = kind.partition("+")
            if kind not in KINDS or tls not in ("", "tls"):
                raise ValueError
            return cls(kind, host.strip("[]") or "0.0.0.0", int(port), tls == "tls")  # noqa: S104
        except ValueError:
            raise ValueError(
                f"bad listener {spec!r}: use KIND[+tls]=HOST:PORT with KIND transactional, "
                "broadcast or bounce, e.g. transactional=127.0.0.1:2525"
            ) from None
