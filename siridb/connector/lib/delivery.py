"""Verified delivery of a write session, sans-IO: what to ask the server and
what to send again after a package's outcome became unknown.

A ``Window`` keeps the packages the server confirmed most recently (bounded
by points and bytes), each with the server connection that confirmed it.
``Check`` compares, per series over a time range, the points the session
expects stored (the window and the packages of unknown outcome: counted per
``(timestamp, value)``, so duplicates written on purpose count as such) with
what ``select * ... between`` returns, and gives the missing points; the
session sends only those again.
"""
from __future__ import annotations

import math
from collections import Counter, deque
from typing import (
    Any,
    Deque,
    Dict,
    Hashable,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    cast,
)

from .builder import quote
from .validate import Pair, Value
from .writebuffer import POINT_ESTIMATE, Package

__all__ = ['AT_LEAST_ONCE', 'VERIFIED', 'DELIVERY_MODES', 'Confirmed', 'Window', 'Check',
           'select_ranges']

#: every package stored at least once: resent whole when its outcome is unknown
AT_LEAST_ONCE = 'at_least_once'
#: resent packages carry only the points the server does not hold
VERIFIED = 'verified'
DELIVERY_MODES = (AT_LEAST_ONCE, VERIFIED)

#: series per verification query (one ``select`` names them all)
SERIES_PER_QUERY = 100

_NAN = ('nan',)  # NaN is not equal to itself: counted under this key
#: ``Window.seen`` of a server not connected since the session started
_NEVER = object()
PointKey = Tuple[int, Hashable]
Ranges = Dict[str, Tuple[int, int]]


def point_key(ts: int, value: Any) -> PointKey:
    if type(value) is float and math.isnan(value):
        return ts, _NAN
    return ts, value


class Confirmed:
    """A package the server confirmed, and the pool's server (``where``,
    a ``HostState``, or None) that answered."""

    __slots__ = ('pkg', 'where', 'size')

    def __init__(self, pkg: Package, where: Any = None) -> None:
        self.pkg = pkg
        self.where = where
        self.size = len(pkg.body) if pkg.body is not None else POINT_ESTIMATE * pkg.n


class Window:
    """The most recently confirmed packages, at most ``max_points`` points
    and ``max_bytes`` bytes (oldest dropped first), and the connections of
    the pool's servers when it was last checked: a server that lost its
    connection since may have lost what it acknowledged last, and with it
    points confirmed by any server (they forward to the pool that owns a
    series), so the whole window is checked then."""

    __slots__ = ('max_points', 'max_bytes', 'items', 'points', 'bytes', 'hosts', 'seen')

    def __init__(self, max_points: int, max_bytes: int, hosts: Sequence[Any] = ()) -> None:
        self.max_points = max_points
        self.max_bytes = max_bytes
        self.items: Deque[Confirmed] = deque()
        self.points = 0
        self.bytes = 0
        #: the pool's servers (``HostState``: ``protocol`` is the open connection)
        self.hosts = list(hosts)
        self.seen: List[Any] = [_NEVER if h.protocol is None else h.protocol
                                for h in self.hosts]

    def add(self, item: Confirmed) -> None:
        if item.where is not None:
            for i, h in enumerate(self.hosts):
                if h is item.where and self.seen[i] is _NEVER:
                    # its connection now (None when already lost: suspect later)
                    self.seen[i] = h.protocol
        self.items.append(item)
        self.points += item.pkg.n
        self.bytes += item.size
        items = self.items
        while self.points > self.max_points or self.bytes > self.max_bytes:
            old = items.popleft()
            self.points -= old.pkg.n
            self.bytes -= old.size

    def suspect(self) -> bool:
        """True when a server's connection changed (lost, or replaced after
        a reconnect) since the last check (with nothing kept to check, the
        connections are only remembered). A server's first connection in
        this session is not a change: it acknowledged nothing before it
        (``add`` remembers the connection of a first confirmation)."""
        if not self.items:
            self.checked()
            return False
        seen = self.seen
        for i, h in enumerate(self.hosts):
            conn = h.protocol
            if seen[i] is _NEVER:
                if conn is not None:
                    seen[i] = conn
            elif conn is not seen[i]:
                return True
        return False

    def checked(self) -> None:
        """The window was checked: remember the connections as they are now
        (a server down now is suspect again once it is back; one never
        connected yet stays so)."""
        self.seen = [_NEVER if conn is _NEVER and h.protocol is None else h.protocol
                     for h, conn in zip(self.hosts, self.seen)]

    def replace(self, items: Iterable[Confirmed]) -> None:
        self.items = deque()
        self.points = self.bytes = 0
        for item in items:
            if item.pkg.n:
                self.add(item)


def _ranges_of(groups: Iterable[Dict[str, List[Pair]]]) -> Ranges:
    out: Ranges = {}
    for data in groups:
        for series, pairs in data.items():
            if not pairs:
                continue
            lo = min(ts for ts, _ in pairs)
            hi = max(ts for ts, _ in pairs)
            old = out.get(series)
            out[series] = (lo, hi) if old is None else (min(lo, old[0]), max(hi, old[1]))
    return out


def select_ranges(ranges: Ranges, per_query: int = SERIES_PER_QUERY) -> Iterator[str]:
    """``select * from "a", "b", ... between lo and hi + 1`` queries that
    cover ``ranges`` (``between`` excludes its end), ``per_query`` series each."""
    names = sorted(ranges)
    for i in range(0, len(names), per_query):
        chunk = names[i:i + per_query]
        lo = min(ranges[n][0] for n in chunk)
        hi = max(ranges[n][1] for n in chunk)
        yield (f'select * from {", ".join(quote(n) for n in chunk)} '
               f'between {lo} and {hi + 1}')


def _counted(pairs: Iterable[Tuple[int, Any]]) -> Counter[PointKey]:
    """Copies per (ts, value); NaN values (never equal to themselves) are
    counted under one key per timestamp."""
    c: Counter[PointKey] = Counter(pairs)
    nans = [k for k in c if type(k[1]) is float and k[1] != k[1]]
    for k in nans:
        c[k[0], _NAN] += c.pop(k)
    return c


def _in_range(pairs: Iterable[Any], lo: int, hi: int) -> Iterator[Tuple[int, Any]]:
    return ((ts, v) for ts, v in pairs if lo <= ts <= hi)


class Check:
    """One verification: the packages of unknown outcome (``unknown``) and
    the confirmed ones they are compared with (``window``); ``whole``: the
    whole window is checked too (a server lost its connection)."""

    def __init__(self, unknown: List[Package], window: Window, whole: bool) -> None:
        self.unknown = [(pkg, pkg.groups()) for pkg in unknown]
        self.window = window
        self.kept = [(item, item.pkg.groups()) for item in window.items]
        self.ranges = _ranges_of([g for _, g in self.unknown]
                                 + ([g for _, g in self.kept] if whole else []))
        self.points = sum(len(pairs) for _, g in self.unknown for pairs in g.values()) \
            + (window.points if whole else 0)

    def queries(self) -> List[str]:
        return list(select_ranges(self.ranges))

    def expected(self) -> Dict[str, Counter[PointKey]]:
        """Per series: copies of each (ts, value) the session expects stored
        within the series' range (window and unknown packages together)."""
        ranges = self.ranges
        by_series: Dict[str, List[Tuple[int, Any]]] = {}
        for groups in [g for _, g in self.unknown] + [g for _, g in self.kept]:
            for series, pairs in groups.items():
                rng = ranges.get(series)
                if rng is not None:
                    by_series.setdefault(series, []).extend(_in_range(pairs, *rng))
        return {series: _counted(pairs) for series, pairs in by_series.items()}

    def missing(self, views: List[List[Dict[str, Any]]]) -> Dict[str, List[Pair]]:
        """The points expected and not stored (as many copies as lack),
        from the replies of ``queries()`` as each server answered them (a
        view per server): a point counts as often as the server that holds
        it most often holds it (a replica may not have received yet what its
        pool partner acknowledged)."""
        stored: Dict[str, Counter[PointKey]] = {}
        for replies in views:
            mine: Dict[str, Counter[PointKey]] = {}
            for reply in replies:
                for series, points in reply.items():
                    rng = self.ranges.get(series)
                    if rng is None:
                        continue
                    c = _counted(_in_range(points, *rng))
                    if series in mine:
                        mine[series].update(c)
                    else:
                        mine[series] = c
            for series, c in mine.items():
                stored[series] = stored[series] | c if series in stored else c
        out: Dict[str, List[Pair]] = {}
        for series, want in self.expected().items():
            have = stored.get(series)
            lack = want - have if have else want
            if lack:
                out[series] = sorted(
                    ((ts, math.nan if v is _NAN else cast(Value, v))
                     for (ts, v), k in lack.items() for _ in range(k)),
                    key=lambda p: p[0])
        return out

    def settle(self, missing: Dict[str, List[Pair]]) -> Tuple[int, int]:
        """The window after the check: the unknown packages' stored points
        become confirmed, missing points leave the window (they are sent
        again and re-enter it when confirmed).
        Returns (missing points of unknown packages, of window packages)."""
        left = {s: _counted(pairs) for s, pairs in missing.items()}
        from_unknown = from_window = 0
        # missing copies are taken from the unknown packages first (the
        # likelier losers), then from the window; the window keeps its order
        done: Dict[int, Confirmed] = {}
        order = ([(i, None, pkg, g) for i, (pkg, g) in enumerate(self.unknown)]
                 + [(-1 - i, it, it.pkg, g) for i, (it, g) in enumerate(self.kept)])
        for idx, item, pkg, groups in order:
            kept: Dict[str, List[Pair]] = {}
            dropped = 0
            for series, pairs in groups.items():
                lack = left.get(series)
                if not lack:
                    kept[series] = pairs
                    continue
                out = []
                for ts, value in pairs:
                    key = point_key(ts, value)
                    if lack.get(key, 0) > 0:
                        lack[key] -= 1
                        dropped += 1
                    else:
                        out.append((ts, value))
                if out:
                    kept[series] = out
            if item is None:
                from_unknown += dropped
            else:
                from_window += dropped
            n = sum(len(p) for p in kept.values())
            new_pkg = pkg if not dropped else Package(kept, None, n, pkg.seq)
            done[idx] = (Confirmed(new_pkg, None if item is None else item.where)
                         if item is None or dropped else item)
        items = [done[-1 - i] for i in range(len(self.kept))]
        items.extend(done[i] for i in range(len(self.unknown)))
        self.window.replace(items)
        return from_unknown, from_window


def as_package(data: Dict[str, List[Pair]], seq: int,
               pack: Optional[Any] = None) -> Package:
    """A package of the points to send again (packed when ``pack`` is given)."""
    n = sum(len(p) for p in data.values())
    if pack is not None:
        try:
            return Package(None, pack(data), n, seq)
        except (OverflowError, TypeError, ValueError):
            pass
    return Package(data, None, n, seq)
