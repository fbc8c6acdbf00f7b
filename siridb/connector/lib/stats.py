"""Per-server counters of a pool client, for monitoring (``client.stats()``).

The pool reports each request, failed request and (re)connect here; the
snapshot adds what the host state knows (up, requests in flight, last error).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

if TYPE_CHECKING:
    from .hosts import HostState

__all__ = ['Counters', 'ServerStats', 'StatsRecorder']


class Counters:
    """Mutable counters of one server."""

    __slots__ = ('requests', 'errors', 'connects', 'last_error')

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.connects = 0
        self.last_error: Optional[str] = None

    def failed(self, exc: BaseException) -> None:
        """Count a failed request."""
        self.errors += 1
        self.last_error = f'{type(exc).__name__}: {exc}'


@dataclass(frozen=True)
class ServerStats:
    """A snapshot for one server of the pool."""

    host: str
    port: int
    up: bool
    backup: bool
    weight: int
    requests: int        #: requests sent to this server
    errors: int          #: requests that failed (any error reply, loss, timeout)
    reconnects: int      #: connections opened after the first one
    in_flight: int       #: requests waiting for a reply now
    last_error: Optional[str]

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


class StatsRecorder:
    """Counters keyed by (host, port)."""

    def __init__(self) -> None:
        self._by_server: Dict[Tuple[str, int], Counters] = {}

    def get(self, host: str, port: int) -> Counters:
        c = self._by_server.get((host, port))
        if c is None:
            c = self._by_server[(host, port)] = Counters()
        return c

    def connected(self, host: str, port: int) -> None:
        self.get(host, port).connects += 1

    def snapshot(self, h: HostState) -> ServerStats:
        """Stats of one server of the pool, with what its state knows."""
        c = self.get(h.host, h.port)
        protocol = h.protocol
        in_flight = protocol.pending if protocol is not None else 0
        last = c.last_error
        if last is None and h.last_error is not None:
            last = f'{type(h.last_error).__name__}: {h.last_error}'
        return ServerStats(h.host, h.port, h.up, h.backup, h.weight,
                           c.requests, c.errors, max(0, c.connects - 1), in_flight, last)
