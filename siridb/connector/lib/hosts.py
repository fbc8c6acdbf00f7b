"""Per-server state of the pool and the host choice (a pure function, testable).

Choice: weighted random among available non-backup servers; else among all
available ones (backups included); else, when allowed (first attempt of a
query), any server with an open connection, even one marked inactive.
"""
from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

if TYPE_CHECKING:
    from .protocol import SiriDBProtocol
    from .stats import Counters

__all__ = ['HostState', 'parse_hostlist', 'choose_host', 'weighted_choice']


class HostState:
    """One server of the pool: address, weight, backup flag and liveness."""

    __slots__ = ('host', 'port', 'weight', 'backup', 'protocol', 'up',
                 'inactive_until', 'auth_failed', 'last_error', 'connecting',
                 'counters')

    def __init__(self, host: str, port: int, weight: int = 1,
                 backup: bool = False) -> None:
        self.host = host
        self.port = port
        self.weight = weight
        self.backup = backup
        self.protocol: Optional[SiriDBProtocol] = None
        #: connected and authenticated
        self.up = False
        #: loop time before which the server is skipped (after a failure)
        self.inactive_until = 0.0
        self.auth_failed = False
        self.last_error: Optional[BaseException] = None
        #: done when a connect in progress ends (None: no connect running)
        self.connecting: Optional[asyncio.Future[None]] = None
        #: this server's stats counters (set by the client on first use)
        self.counters: Optional[Counters] = None

    def available(self, now: float) -> bool:
        return self.up and now >= self.inactive_until

    def __repr__(self) -> str:
        return (f'<HostState {self.host}:{self.port} weight={self.weight} '
                f'backup={self.backup} up={self.up}>')


def parse_hostlist(hostlist: Any) -> List[HostState]:
    """``[(host, port), (host, port, {'weight': 1..9, 'backup': bool}), ...]``.

    A host that is an absolute path (``'/run/siridb.sock'``) is a unix socket;
    its port is not used (any int 0-65535).
    """
    if isinstance(hostlist, (str, bytes)) or not hasattr(hostlist, '__iter__'):
        raise TypeError('hostlist must be a list of (host, port[, options]) items')
    out: List[HostState] = []
    for item in hostlist:
        if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
            raise TypeError(
                f'hostlist item must be (host, port) or (host, port, options), '
                f'got {item!r}')
        host, port = item[0], item[1]
        opts = item[2] if len(item) == 3 else {}
        if not isinstance(host, str) or not host:
            raise TypeError(f'host must be a non-empty str, got {host!r}')
        lowest = 0 if host.startswith('/') else 1  # a unix socket needs no port
        if isinstance(port, bool) or not isinstance(port, int) or not lowest <= port < 65536:
            raise ValueError(f'port must be an int {lowest}-65535, got {port!r}')
        if not isinstance(opts, dict):
            raise TypeError(f'host options must be a dict, got {opts!r}')
        unknown = set(opts) - {'weight', 'backup'}
        if unknown:
            raise ValueError(f'unknown host option(s): {", ".join(sorted(unknown))}')
        weight = opts.get('weight', 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 9:
            raise ValueError(f'weight must be an int 1-9, got {weight!r}')
        out.append(HostState(host, port, weight, bool(opts.get('backup', False))))
    if not out:
        raise ValueError('hostlist is empty')
    return out


def weighted_choice(hosts: Sequence[HostState], rng: random.Random) -> HostState:
    """One of ``hosts`` with probability weight / total weight."""
    if len(hosts) == 1:
        return hosts[0]
    total = 0
    for h in hosts:
        total += h.weight
    r = rng.random() * total
    for h in hosts:
        r -= h.weight
        if r < 0:
            return h
    return hosts[-1]


def choose_host(hosts: Sequence[HostState], rng: random.Random, now: float,
                allow_any_open: bool = False) -> Optional[HostState]:
    """The server for the next request, or None when none is usable."""
    if len(hosts) == 1:  # the common single-server pool: no lists, no rng
        h = hosts[0]
        if h.up and now >= h.inactive_until:
            return h
    usable = [h for h in hosts if h.up and now >= h.inactive_until and not h.backup]
    if not usable:
        usable = [h for h in hosts if h.up and now >= h.inactive_until]
    if usable:
        return weighted_choice(usable, rng)
    if allow_any_open:
        opened = [h for h in hosts if h.up]
        if opened:
            return rng.choice(opened)
    return None
