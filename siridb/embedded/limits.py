"""Resource limits of the embedded server's connections (one policy object).

``Limits`` bounds what one client can make the server hold or do: unsent
replies (per connection and in total), bodies and buffers of connections that
have not authenticated, how long those may stay idle, how many connections
are open, how long one connection runs before the others get their turn, and
how fast a peer may guess passwords. ``EmbeddedServer(limits=...)`` takes one;
the command line options of ``python -m siridb.embedded`` / ``siridb serve``
set the fields.
"""
from __future__ import annotations

import ipaddress
import resource
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

__all__ = ['Limits', 'LogRateLimit', 'AuthThrottle', 'default_max_connections',
           'EXPOSED_AUTH_FAIL_DELAY', 'is_loopback', 'limits_for']

KiB = 1024
MiB = 1024 * KiB

#: open files kept free for the data directory's logs and the listener
_SPARE_FILES = 64

#: ``auth_fail_delay`` of a server reachable beyond loopback (command line)
EXPOSED_AUTH_FAIL_DELAY = 1.0


def default_max_connections() -> int:
    """Open connections allowed: the process's open-file limit less a few
    files for the data directory (at least 16, at most 10,000)."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - no rlimit
        soft = 1024
    if soft == resource.RLIM_INFINITY:
        soft = 10_000 + _SPARE_FILES
    return max(16, min(10_000, soft - _SPARE_FILES))


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` is reachable from this machine only."""
    if host in ('localhost', ''):
        return host == 'localhost'
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Limits:
    """Every resource limit of one server (see the module docstring)."""

    #: stop reading a connection's requests while more than this many bytes
    #: of its replies wait to be sent (the client does not read them) ...
    reply_high_water: int = 1 * MiB
    #: ... and read again once they drop to this many
    reply_low_water: int = 256 * KiB
    #: unsent replies of all connections together: above it, only a
    #: connection with nothing unsent takes its next request
    reply_budget: int = 256 * MiB
    #: the largest body accepted before the connection has authenticated
    #: (AUTH, PING and SERVICE carry a few names and passwords); a bigger
    #: header closes the connection before its body is read
    pre_auth_max_body: int = 8 * KiB
    #: bytes buffered by all unauthenticated connections together; the
    #: connection that goes over it is closed
    pre_auth_buffer_budget: int = 4 * MiB
    #: an unauthenticated connection is closed after this many seconds
    #: without a complete request (0: never)
    pre_auth_idle_timeout: float = 60.0
    #: open connections; further ones are closed at once (0: no limit)
    max_connections: int = field(default_factory=default_max_connections)
    #: one connection handles requests for about this long (seconds) before
    #: the event loop serves other clients; big inserts are applied in
    #: slices of this length too
    time_slice: float = 0.01
    #: seconds a peer (IP address) waits for the answer to each AUTH or
    #: SERVICE request after a failed login, one after the other (0: off)
    auth_fail_delay: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.reply_low_water <= self.reply_high_water:
            raise ValueError('reply_low_water must be 0..reply_high_water')
        for name in ('reply_budget', 'pre_auth_max_body',
                     'pre_auth_buffer_budget', 'max_connections'):
            if getattr(self, name) < 0:
                raise ValueError(f'{name} must not be negative')
        for name in ('pre_auth_idle_timeout', 'time_slice', 'auth_fail_delay'):
            if not getattr(self, name) >= 0:
                raise ValueError(f'{name} must not be negative')


def limits_for(host: str, unix_path: Optional[str] = None,
               **fields: Any) -> Limits:
    """The limits of a server started from the command line: ``fields`` that
    are not None replace the defaults, and unless given, the delay after
    failed logins is ``EXPOSED_AUTH_FAIL_DELAY`` when the server listens
    beyond loopback (the real server has none, so ``EmbeddedServer`` keeps
    it off by default)."""
    given = {k: v for k, v in fields.items() if v is not None}
    if 'auth_fail_delay' not in given and unix_path is None and \
            not is_loopback(host):
        given['auth_fail_delay'] = EXPOSED_AUTH_FAIL_DELAY
    return Limits(**given)


class LogRateLimit:
    """At most one log line per ``interval`` seconds for each kind of event;
    ``allow(kind, now)`` says whether to log and how many were left out."""

    __slots__ = ('interval', '_next', '_skipped')

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._next: Dict[str, float] = {}
        self._skipped: Dict[str, int] = {}

    def allow(self, kind: str, now: float) -> Optional[int]:
        """None: leave this one out; else the number left out before it."""
        if now < self._next.get(kind, 0.0):
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return None
        self._next[kind] = now + self.interval
        return self._skipped.pop(kind, 0)


class AuthThrottle:
    """Per-peer delay of the answers to logins after a failed one.

    Each failed login of a peer (IP address) costs it ``delay`` seconds: its
    answers to AUTH and SERVICE requests leave one after the other, each
    failure ``delay`` after the previous answer, so that guessing over many
    connections is as slow as over one. The answer is delayed, the event loop
    is not."""

    #: peers remembered at most (older entries whose delay is over are
    #: forgotten first)
    MAX_PEERS = 10_000

    __slots__ = ('delay', '_free_at')

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._free_at: Dict[str, float] = {}

    def answer_at(self, peer: str, failed: bool, now: float) -> float:
        """When the answer to a login of ``peer`` may leave (loop time)."""
        if self.delay <= 0:
            return now
        free_at = self._free_at.get(peer, 0.0)
        at = max(now, free_at)
        if failed:
            at += self.delay
            if len(self._free_at) >= self.MAX_PEERS and peer not in self._free_at:
                self._forget(now)
            self._free_at[peer] = at
        return at

    def _forget(self, now: float) -> None:
        peers = self._free_at
        for peer in [p for p, t in peers.items() if t <= now]:
            del peers[peer]
        while len(peers) >= self.MAX_PEERS:  # all still waiting: oldest first
            del peers[next(iter(peers))]
