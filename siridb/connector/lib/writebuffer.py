"""Points taken by a write session, already in the shape of INSERT packages.

Sans-IO: ``WriteBuffer`` fills one open package (``{series: [(ts, value),
...]}``, what the server's INSERT takes) and seals it into a ``Package`` when
it holds ``seal_points`` points or would pack to more than ``max_bytes`` by a
conservative estimate; the session sends sealed packages. Points are
validated before they get here and never looked at again.
"""
from __future__ import annotations

from collections import deque
from typing import Callable, Deque, Dict, Iterator, List, Optional, Set, Tuple

from .validate import Pair, Value, pair_estimate, series_estimate, unpack_points

__all__ = ['Package', 'WriteBuffer', 'POINT_ESTIMATE']

#: packed size estimate of a point with a number value (see ``pair_estimate``)
POINT_ESTIMATE = 20


class Package:
    """One INSERT request worth of points; ``seq`` orders packages as sealed.

    Packed once when sealed (``body``), while its points are fresh in memory,
    and then held as those bytes only; ``groups()`` gives the points back
    (only needed when some are rejected or handed back).
    """

    __slots__ = ('data', 'body', 'n', 'seq')

    def __init__(self, data: Optional[Dict[str, List[Pair]]], body: Optional[bytes],
                 n: int, seq: int) -> None:
        self.data = data
        self.body = body
        self.n = n
        self.seq = seq

    def __repr__(self) -> str:
        return f'<Package seq={self.seq} points={self.n}>'

    def groups(self) -> Dict[str, List[Pair]]:
        """The points by series."""
        if self.data is not None:
            return self.data
        assert self.body is not None
        return unpack_points(self.body)

    def points(self) -> Iterator[Tuple[str, int, Value]]:
        """``(series, ts, value)`` of every point."""
        for series, pairs in self.groups().items():
            for ts, value in pairs:
                yield series, ts, value


class WriteBuffer:
    """The open package being filled and the sealed packages not yet sent.

    The session's per-point path touches two plain attributes only: ``open``
    (the open package) and ``room``, how many more number-valued points it
    may append there (the room of the open package, at most the points that
    may still be taken); it decrements ``room`` per point and calls
    ``sync()`` when it reaches 0. Everything else (``open_n``, ``free``,
    ``pending``) syncs first, counting the points appended since.
    """

    __slots__ = ('seal_points', 'max_bytes', 'max_points', 'pack', 'open', '_n',
                 'extra', 'room', '_quota', '_free', 'ready', 'seq')

    def __init__(self, seal_points: int, max_bytes: int, max_points: int,
                 pack: Optional[Callable[[Dict[str, List[Pair]]], bytes]] = None) -> None:
        #: packs a package when it is sealed (None: packages keep their dicts)
        self.pack = pack
        self.seal_points = seal_points
        self.max_bytes = max_bytes
        self.max_points = max_points
        self.open: Dict[str, List[Pair]] = {}
        self._n = 0
        #: estimated bytes of the open package beyond POINT_ESTIMATE per point
        #: (series names, str values)
        self.extra = 0
        self.room = 0
        #: ``room`` as last set: ``_quota - room`` points were appended since
        self._quota = 0
        self._free = max_points
        self.ready: Deque[Package] = deque()
        self.seq = 0
        self._set_room()

    def sync(self) -> None:
        """Count the points the per-point path appended since the last sync."""
        k = self._quota - self.room
        if k:
            self._n += k
            self._free -= k
            self._quota = self.room

    @property
    def open_n(self) -> int:
        """Points in the open package."""
        self.sync()
        return self._n

    @property
    def free(self) -> int:
        """Points that may still be taken (``max_points`` less those taken
        and not yet completed)."""
        self.sync()
        return self._free

    @property
    def pending(self) -> int:
        """Points taken and not yet completed (open, sealed or being sent)."""
        return self.max_points - self.free

    @property
    def full(self) -> bool:
        """True when not even one more number-valued point fits in the open
        package (it should be sealed)."""
        self.sync()
        return self._n > 0 and self._package_room() <= 0

    def _package_room(self) -> int:
        by_bytes = (self.max_bytes - self.extra) // POINT_ESTIMATE - self._n
        return min(self.seal_points - self._n, by_bytes)

    def _set_room(self) -> None:
        self.room = self._quota = max(0, min(self._package_room(), self._free))

    def seal(self) -> Optional[Package]:
        """Seal the open package (if it holds points) into ``ready``."""
        self.sync()
        n = self._n
        if not n:
            return None
        self.seq += 1
        data: Optional[Dict[str, List[Pair]]] = self.open
        body = None
        if self.pack is not None:
            try:
                body = self.pack(self.open)
            except (OverflowError, TypeError, ValueError):  # sent as a dict: the
                pass  # client raises its InsertDataError, reported as rejected
            else:
                data = None
        pkg = Package(data, body, n, self.seq)
        self.ready.append(pkg)
        self.open = {}
        self._n = 0
        self.extra = 0
        self._set_room()
        return pkg

    def put(self, series: str, pairs: List[Pair], texts: bool) -> None:
        """Take all of ``pairs`` (validated points of ``series``; ``texts``:
        some values are str) into open packages, sealing those that fill up.
        The caller checks ``free`` first; one point is always taken into an
        empty package, however large."""
        self.sync()
        n = len(pairs)
        self._free -= n
        i = 0
        while i < n:
            current = self.open.get(series)
            if current is None:
                key = series_estimate(series)
                if self._n and (POINT_ESTIMATE * self._n + self.extra + key
                                + pair_estimate(pairs[i]) > self.max_bytes):
                    self.seal()
                current = self.open[series] = []
                self.extra += key
            room = self.seal_points - self._n
            if texts:
                j = i
                size = POINT_ESTIMATE * self._n + self.extra
                while j < n and j - i < room:
                    est = pair_estimate(pairs[j])
                    if size + est > self.max_bytes and (self._n or j > i):
                        break
                    size += est
                    j += 1
                for pair in pairs[i:j]:
                    value = pair[1]
                    if type(value) is str:
                        self.extra += 4 * len(value)
            else:
                fit = (self.max_bytes - self.extra) // POINT_ESTIMATE - self._n
                j = i + min(room, max(fit, 0 if self._n else 1), n - i)
            if j == i:  # the open package is full
                self.seal()
                continue
            if not current and i == 0 and j == n:
                self.open[series] = pairs  # the caller's list is ours now: no copy
            else:
                current.extend(pairs[i:j])
            self._n += j - i
            i = j
            if self._package_room() <= 0:  # not even a number fits: send it
                self.seal()
        self._set_room()

    def put_groups(self, groups: Dict[str, List[Pair]], texts: Set[str]) -> None:
        """``put`` for each series of ``groups`` (``texts``: the series with
        str values), with the common case inline: number values that fit in
        the open package are appended to it (lists handed over, not copied)."""
        self.sync()
        for series, pairs in groups.items():
            n = len(pairs)
            if series not in texts:
                current = self.open.get(series)
                room = self._package_room()
                if current is None:
                    key = series_estimate(series)
                    if n < room - key // POINT_ESTIMATE - 1:
                        self.open[series] = pairs
                        self.extra += key
                        self._n += n
                        self._free -= n
                        continue
                elif n < room:
                    current.extend(pairs)
                    self._n += n
                    self._free -= n
                    continue
            self._set_room()
            self.put(series, pairs, series in texts)
        if self._n and self._package_room() <= 0:
            self.seal()
        self._set_room()

    def refresh(self) -> None:
        """Count what the per-point path appended and set ``room`` anew."""
        self.sync()
        self._set_room()

    def completed(self, pkg: Package) -> None:
        """``pkg`` was written or rejected: its points no longer count."""
        self.sync()
        self._free += pkg.n
        self._set_room()

    def retake(self, n: int) -> None:
        """``n`` points come back to be sent again (after a check found them
        missing): they count as pending until completed."""
        self.sync()
        self._free -= n
        self._set_room()

    def clear(self) -> List[Tuple[str, int, Value]]:
        """Drop the open and ready packages; returns their points."""
        self.sync()
        left = [p for pkg in self.ready for p in pkg.points()]
        left.extend(Package(self.open, None, 0, 0).points())
        self._free = self.max_points
        self.ready.clear()
        self.open = {}
        self._n = 0
        self.extra = 0
        self._set_room()
        return left
