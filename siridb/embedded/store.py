"""In-memory data model of the embedded server: databases, series, users.

Knows nothing of sockets or of the query language. Numeric series keep their
points in typed arrays (8 bytes per timestamp and per value), string series a
list of str; points are kept in time order, duplicate timestamps in insertion
order (a stable sort): a few out-of-order points go in place at once, more are
sorted lazily on the next read.
"""
from __future__ import annotations

import re
import time
import uuid
from array import array
from bisect import bisect_left, bisect_right
from itertools import count
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

from ..wire.units import MAX_TIMESTAMP, PRECISION_UNITS
from .linear_regex import RegexLike

__all__ = [
    'TYPE_INTEGER', 'TYPE_FLOAT', 'TYPE_STRING', 'TYPE_NAMES', 'Series',
    'User', 'Group', 'Database', 'PRECISIONS', 'ACCESS', 'ACCESS_PROFILES',
    'VERSION', 'Store', 'DB_NAME_RE', 'DEFAULT_SERVICE_ACCOUNT',
    'valid_db_name', 'check_db_name', 'DB_NAME_RULE',
]

#: the SiriDB version the embedded server reports
VERSION = '2.0.55'

TYPE_INTEGER = 0
TYPE_FLOAT = 1
TYPE_STRING = 2
TYPE_NAMES = ('integer', 'float', 'string')

#: precision name -> units per second (the wire's table, by its old name)
PRECISIONS: Dict[str, int] = PRECISION_UNITS

#: single access rights (bit flags)
ACCESS: Dict[str, int] = {
    'show': 1, 'count': 2, 'list': 4, 'select': 8, 'insert': 16,
    'create': 32, 'alter': 64, 'drop': 128, 'grant': 256, 'revoke': 512,
}
_READ = ACCESS['show'] | ACCESS['count'] | ACCESS['list'] | ACCESS['select']
_WRITE = _READ | ACCESS['insert'] | ACCESS['create']
_MODIFY = _WRITE | ACCESS['alter'] | ACCESS['drop']
_FULL = _MODIFY | ACCESS['grant'] | ACCESS['revoke']
#: access profiles, largest first (the order used to render access)
ACCESS_PROFILES: Dict[str, int] = {
    'full': _FULL, 'modify': _MODIFY, 'write': _WRITE, 'read': _READ}

Values = Union['array[int]', 'array[float]', List[str]]

#: creation numbers of series: a database's series dict is in creation order,
#: so sorting names by ``Series.seq`` gives that order without a full scan
_SERIES_SEQ = count()

#: out-of-order requests of up to this many points are put in place
_INSERT_IN_PLACE = 16
#: a read merges the late points into the sorted ones (instead of sorting
#: all) while they are at most 1/_MERGE_RATIO of the series
_MERGE_RATIO = 8


class Series:
    """One series: a fixed type (set by its first value) and its points."""

    __slots__ = ('name', 'tp', 'ts', 'values', '_sorted', '_sorted_len', 'pool',
                 'seq', 'chunks', 'shard_log')

    def __init__(self, name: str, tp: int, pool: int = 0) -> None:
        self.name = name
        self.tp = tp
        self.ts: array[int] = array('q')
        self.values: Values
        if tp == TYPE_INTEGER:
            self.values = array('q')
        elif tp == TYPE_FLOAT:
            self.values = array('d')
        else:
            self.values = []
        self._sorted = True
        #: while not sorted: how many leading points are (the rest came later)
        self._sorted_len = 0
        self.pool = pool
        self.seq = next(_SERIES_SEQ)
        #: string series: the points of each insert, sorted by time, in the order
        #: they came (SiriDB 2.0.55 stores them as chunks and reads some of them in
        #: its own way, see query.strings); None for number series
        self.chunks: Optional[List[Tuple[Sequence[int], List[str]]]] = \
            [] if tp == TYPE_STRING else None
        #: number series: what a real server would hold in its buffer and have
        #: written to shards (a ``shards.NumberLog``, kept by ``shards``)
        self.shard_log: Any = None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES[self.tp]

    def __len__(self) -> int:
        return len(self.ts)

    def extend(self, ts: Sequence[int], values: Sequence[Any]) -> None:
        """Append points whose values already have this series' type."""
        if not ts:
            return
        if self.chunks is not None:
            order = sorted(range(len(ts)), key=ts.__getitem__)
            self.chunks.append((array('q', map(ts.__getitem__, order)),
                                list(map(values.__getitem__, order))))
        if self._sorted:
            if self.ts and ts[0] < self.ts[-1]:
                if len(ts) <= _INSERT_IN_PLACE:
                    self._insert_sorted(ts, values)
                    return
                self._sorted = False
                self._sorted_len = len(self.ts)
            else:
                # sorted() is linear on ordered input and runs in C
                lst = ts if isinstance(ts, list) else list(ts)
                if lst != sorted(lst):
                    self._sorted = False
                    self._sorted_len = len(self.ts)
        self.ts.extend(ts)
        self.values.extend(values)

    def mark_unsorted(self) -> None:
        """Sort all points again on the next read (points set directly)."""
        self._sorted = False
        self._sorted_len = 0

    def _insert_sorted(self, ts: Sequence[int], values: Sequence[Any]) -> None:
        """Put a few points in place (binary search, then a C memmove), so a
        sorted series stays sorted and the next read needs no full sort.
        Each goes after the points of the same time: the order a stable sort
        would give."""
        own_ts = self.ts
        own_values = self.values
        for t, v in zip(ts, values):
            i = bisect_right(own_ts, t)
            own_ts.insert(i, t)
            own_values.insert(i, v)

    def _sort(self) -> None:
        n = len(self.ts)
        if (n - self._sorted_len) * _MERGE_RATIO <= n:
            self._merge_tail()
            return
        ts = self.ts
        # a stable sort keeps duplicate timestamps in insertion order
        order = sorted(range(len(ts)), key=ts.__getitem__)
        vals = self.values
        getter = ts.__getitem__
        self.ts = array('q', map(getter, order))
        if isinstance(vals, array):
            self.values = array(vals.typecode, map(vals.__getitem__, order))
        else:
            self.values = list(map(vals.__getitem__, order))
        self._sorted = True

    def _merge_tail(self) -> None:
        """Sort the points that came after the sorted prefix and merge them
        in: a binary search per late point and C slice copies of the prefix,
        instead of a full sort. Late points go after prefix points of the same
        time, and keep their own order among equal times (a stable sort)."""
        ts = self.ts
        vals = self.values
        p = self._sorted_len
        late = sorted(range(p, len(ts)), key=ts.__getitem__)
        new_ts: array[int] = array('q')
        new_vals: Any = array(vals.typecode) if isinstance(vals, array) else []
        prev = 0
        for i in late:
            t = ts[i]
            pos = bisect_right(ts, t, prev, p)
            if pos > prev:
                new_ts += ts[prev:pos]
                new_vals += vals[prev:pos]
                prev = pos
            new_ts.append(t)
            new_vals.append(vals[i])
        new_ts += ts[prev:p]
        new_vals += vals[prev:p]
        self.ts = new_ts
        self.values = new_vals
        self._sorted = True

    def points(self) -> Tuple[Sequence[int], Sequence[Any]]:
        """(timestamps, values), sorted by time."""
        if not self._sorted:
            self._sort()
        return self.ts, self.values

    def remove_between(self, start: int, end: int) -> int:
        """Remove the points with ``start <= ts < end`` (a dropped shard's
        window); returns how many went."""
        self.points()  # sorted now
        i, j = bisect_left(self.ts, start), bisect_left(self.ts, end)
        if i == j:
            return 0
        del self.ts[i:j]
        del self.values[i:j]
        self._sorted_len = len(self.ts)
        if self.chunks is not None:
            kept: List[Tuple[Sequence[int], List[str]]] = []
            for cts, cvals in self.chunks:
                a, b = bisect_left(cts, start), bisect_left(cts, end)
                if a < b:
                    cts = array('q', cts[:a]) + array('q', cts[b:])
                    cvals = cvals[:a] + cvals[b:]
                if len(cts):
                    kept.append((cts, cvals))
            self.chunks = kept
        return j - i

    @property
    def start(self) -> Optional[int]:
        if not self.ts:
            return None
        return self.points()[0][0]

    @property
    def end(self) -> Optional[int]:
        if not self.ts:
            return None
        return self.points()[0][-1]


class User:
    """A database user with an access bit mask."""

    __slots__ = ('name', 'password', 'access')

    def __init__(self, name: str, password: str, access: int = 0) -> None:
        self.name = name
        self.password = password
        self.access = access

    def has(self, right: str) -> bool:
        return bool(self.access & ACCESS[right])

    def __repr__(self) -> str:  # never show the password
        return f'User({self.name!r}, access={self.access})'


class Group:
    """A named regular expression selecting series."""

    __slots__ = ('name', 'expression', 'regex')

    def __init__(self, name: str, expression: str, regex: RegexLike) -> None:
        self.name = name
        self.expression = expression  # as written, e.g. '/aggr.*/'
        self.regex = regex


class Database:
    """One database: settings, series, users, groups and tags."""

    def __init__(self, name: str, precision: str = 'ms', *,
                 buffer_size: int = 1024, duration_num: str = '1w',
                 duration_log: str = '1d') -> None:
        if precision not in PRECISIONS:
            raise ValueError(f'invalid time precision: {precision!r}')
        self.name = name
        self.precision = precision
        self.factor = PRECISIONS[precision]
        self.uuid = str(uuid.uuid4())
        self.buffer_size = buffer_size
        self.duration_num = duration_num
        self.duration_log = duration_log
        self.list_limit = 10000
        self.select_points_limit = 1000_000
        self.drop_threshold = 1.0
        self.timezone = 'NAIVE'
        #: `alter database set expiration_num|expiration_log` (None: never expire);
        #: kept and shown only: the embedded server does not expire shards
        self.expiration_num: Optional[int] = None
        self.expiration_log: Optional[int] = None
        self.created = time.time()
        self.series: Dict[str, Series] = {}
        self.users: Dict[str, User] = {'iris': User('iris', 'siri', _FULL)}
        self.groups: Dict[str, Group] = {}
        self.tags: Dict[str, Set[str]] = {}

    @property
    def max_ts(self) -> int:
        """Largest valid timestamp (inclusive) for this precision."""
        return MAX_TIMESTAMP[self.precision]

    def now(self) -> int:
        """The current time in this database's precision."""
        return time.time_ns() // (PRECISION_UNITS['ns'] // self.factor)

    def duration_seconds(self, duration: str) -> int:
        """'1w' -> seconds (1-99 then h, d or w)."""
        unit = {'h': 3600, 'd': 86400, 'w': 604800}[duration[-1]]
        return int(duration[:-1]) * unit

    def get_or_create(self, name: str, tp: int) -> Series:
        s = self.series.get(name)
        if s is None:
            s = self.series[name] = Series(name, tp)
        return s

    def drop_series(self, names: Sequence[str]) -> int:
        n = 0
        for name in names:
            if self.series.pop(name, None) is not None:
                n += 1
                for members in self.tags.values():
                    members.discard(name)
        return n


#: database names the server accepts (the service API's rule, used for every
#: way of naming a new database: it also keeps names safe as file names)
DB_NAME_RE = re.compile(r'^[a-zA-Z][a-zA-Z0-9\-_]{0,18}[a-zA-Z0-9]$')
#: the rule in words, for error texts
DB_NAME_RULE = ('2-20 characters: letters, digits, - or _, starting with a '
                'letter and ending with a letter or digit')


def valid_db_name(name: object) -> bool:
    """Whether ``name`` may name a new database (``DB_NAME_RE``)."""
    return type(name) is str and DB_NAME_RE.fullmatch(name) is not None


def check_db_name(name: object) -> str:
    """``name`` if it is a valid database name, else ValueError saying why."""
    if not valid_db_name(name):
        raise ValueError(f'invalid database name: {name!r} (expecting '
                         f'{DB_NAME_RULE})')
    assert isinstance(name, str)
    return name

#: the service account every fresh server has
DEFAULT_SERVICE_ACCOUNT = ('sa', 'siri')


class Store:
    """Everything one server (or one simulated cluster) holds: databases by
    name and service accounts (name -> password)."""

    def __init__(self) -> None:
        self.databases: Dict[str, Database] = {}
        name, password = DEFAULT_SERVICE_ACCOUNT
        self.accounts: Dict[str, str] = {name: password}

    def __repr__(self) -> str:  # never show passwords
        return (f'Store(databases={sorted(self.databases)!r}, '
                f'accounts={sorted(self.accounts)!r})')
