"""The shards a real SiriDB 2.0.55 would hold for a database's points, derived
from the store, for ``list shards``, ``count shards`` and ``drop shards``.

SiriDB keeps the points of a number series in a per-series buffer (room for
``buffer_size / 16`` points) and writes them to shard files when it fills; a
string series has no buffer: each insert is written at once. A shard holds
one time window (``duration_num``, ``duration_log`` or, with
``shard_auto_duration``, a duration derived from the interval of the series'
first written points) for the series of one type family that share a "mask"
(a number derived from the series name); its id (``sid``) is the window's
start plus that mask. Its ``size`` is the length of its file: a 22-byte
header, then per write a chunk index entry and the (compressed) points.

Inserts report each number series' points (``note``: the series' ``shard_log``
follows its buffer and writes; string series keep their inserts in
``Series.chunks``), and ``shards()`` replays the writes over the store's points.
The sizes match the real server's for inserts that arrive in time order (a write's points are
found again by their time span) and before the real server's hourly optimize
rewrites the files; expiration (``expiration_num``/``_log``) is not applied.
"""
from __future__ import annotations

import math
import weakref
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from struct import Struct
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ..wire.units import UINT32_MAX
from .settings import ServerSettings
from .store import TYPE_FLOAT, TYPE_STRING, Database, Series

__all__ = ['Shard', 'ShardBook', 'NumberLog', 'book_for', 'note', 'buffer_len',
           'series_mask', 'series_writes',
           'SHARD_STATUS_FLAGS']

#: bytes of a shard file's header
_FILE_HEADER = 22
#: points per chunk at most (numbers, strings)
_MAX_CHUNK_NUM = 1200
_MAX_CHUNK_LOG = 128
#: fewer points than this are stored without compression
_ZIP_THRESHOLD = 5
#: the auto duration aims at this many points of a series per shard
_POINTS_PER_SHARD = 2000
#: bytes of one point in the buffer (a timestamp and an 8-byte value)
_POINT_SIZE = 16
#: status words in the order the real server lists them (and their flag bits)
SHARD_STATUS_FLAGS: Tuple[Tuple[str, int], ...] = (
    ('indexed', 1), ('overlap', 2), ('new-values', 4), ('dropped-series', 8),
    ('dropped', 16), ('loading', 32), ('corrupt', 64), ('compressed', 128))
_OVERLAP, _NEW_VALUES, _COMPRESSED = 2, 4, 128
_U64 = (1 << 64) - 1
_DOUBLE = Struct('<d')
_Q = Struct('<Q')
_I = Struct('<I')


@dataclass
class Shard:
    """One shard as ``list shards`` reports it."""

    sid: int
    duration: int
    tp: str  # 'number' or 'log'
    size: int = _FILE_HEADER
    flags: int = 0
    #: names of the series with points in it
    series: Set[str] = field(default_factory=set)

    @property
    def start(self) -> int:
        return self.sid - self.sid % self.duration

    @property
    def end(self) -> int:
        return self.start + self.duration

    @property
    def status(self) -> str:
        return ' | '.join(word for word, bit in SHARD_STATUS_FLAGS if self.flags & bit)


#: a span of written points: (lowest ts, highest ts, number of points)
_Span = Tuple[int, int, int]


class NumberLog:
    """What happened to one number series' points (``Series.shard_log``): the
    span of the points in its buffer (``n`` of them, from ``lo`` to ``hi``) and
    the spans written to its shards (None: none yet)."""

    __slots__ = ('lo', 'hi', 'n', 'writes')

    def __init__(self) -> None:
        self.lo = self.hi = self.n = 0
        self.writes: Optional[List[_Span]] = None

    def write(self, span: _Span) -> None:
        if self.writes is None:
            self.writes = [span]
        else:
            self.writes.append(span)


def _new_log(series: Series, had: int) -> NumberLog:
    log = series.shard_log = NumberLog()
    if had:  # points loaded without inserts (a snapshot): as one insert, written
        ts, _ = series.points()
        log.write((ts[0], ts[-1], had))
    return log


def note(series: Series, ts: Sequence[int], had: int, buffer_len: int) -> None:
    """An insert of the timestamps ``ts`` into a number series that held
    ``had`` points, by SiriDB's rules for one insert into one series
    (``buffer_len``: the points a buffer holds)."""
    log = series.shard_log
    if log is None:
        log = _new_log(series, had)
    n = len(ts)
    if n == 1:
        lo = hi = ts[0]
    else:
        lo, hi = min(ts), max(ts)
    if n > buffer_len:
        log.write((lo, hi, n))  # straight to the shards, the buffer stays
        return
    if log.n:
        lo, hi, n = min(lo, log.lo), max(hi, log.hi), n + log.n
    if n >= buffer_len:  # over (written with the buffer) or just full
        log.write((lo, hi, n))
        log.n = 0
    else:
        log.lo, log.hi, log.n = lo, hi, n


def series_writes(series: Series) -> List[Tuple[Sequence[int], Sequence[Any]]]:
    """The points of each write of a series to its shards, in order."""
    if series.tp == TYPE_STRING:
        return [c for c in (series.chunks or ()) if len(c[0])]
    log = series.shard_log
    if log is None:
        if not len(series):
            return []
        log = _new_log(series, len(series))
    ts, values = series.points()
    out: List[Tuple[Sequence[int], Sequence[Any]]] = []
    for lo, hi, n in log.writes or ():
        i = bisect_left(ts, lo)
        j = min(bisect_right(ts, hi), i + n)
        if j > i:
            out.append((ts[i:j], values[i:j]))
    return out


class ShardBook:
    """Each series' part of one database's shards, with what it was computed
    from (kept until the series or the settings change)."""

    def __init__(self) -> None:
        self.parts: Dict[str, Tuple[Any, List[_Part]]] = {}


_BOOKS: weakref.WeakKeyDictionary[Database, ShardBook] = weakref.WeakKeyDictionary()


def book_for(db: Database) -> ShardBook:
    book = _BOOKS.get(db)
    if book is None:
        book = _BOOKS[db] = ShardBook()
    return book


def buffer_len(db: Database) -> int:
    """Points a number series' buffer holds before they are written."""
    return db.buffer_size // _POINT_SIZE


# -- what the real server derives -------------------------------------------

def series_mask(name: str, tp: int, db: Database) -> int:
    """The mask SiriDB adds to a window's start to get a series' shard id:
    the sum of the name's bytes (as signed chars, in 32 bits) / 11, modulo a
    number derived from the duration (log shards count from 600)."""
    n = 0
    for b in name.encode('utf-8'):
        n = (n + (b - 256 if b > 127 else b)) & UINT32_MAX
    duration = db.duration_log if tp == TYPE_STRING else db.duration_num
    modulo = max(1, int(math.sqrt(db.duration_seconds(duration))) // 24)
    mask = (n // 11) % modulo
    return mask + 600 if tp == TYPE_STRING else mask


def _interval(ts: Sequence[int]) -> int:
    """The regular interval of the first 64 points, 0 when there is none
    (SiriDB's detection: the median gap, unless the quartiles are more than
    10% off it)."""
    if len(ts) < 8:
        return 0
    n = min(len(ts) - 1, 63)
    gaps = sorted(ts[i + 1] - ts[i] for i in range(n))
    a, b = n // 4, n // 2
    low, mid, high = gaps[a], gaps[b], gaps[2 * b - a]
    tol = mid // 10
    return 0 if (low + tol < mid or high - tol > mid) else mid


def _auto_duration(interval: int, db: Database) -> int:
    n = interval * _POINTS_PER_SHARD
    num = db.duration_seconds(db.duration_num) * db.factor
    log = db.duration_seconds(db.duration_log) * db.factor
    if n in (num, log):
        return n
    for unit in (604800, 86400, 3600):
        step = unit * db.factor
        if n // step or unit == 3600:
            return (n // step + 1) * step
    raise AssertionError('unreachable')


def _bytes_used(x: int) -> int:
    """Index (1-8) of the highest non-zero byte, 0 for 0."""
    return (x.bit_length() + 7) // 8


def _time_bytes(ts: Sequence[int]) -> Tuple[int, int]:
    """(bytes per time gap, bytes of the first gap) of the compressed form."""
    last = ts[-1] - ts[-2]
    tdiff = 0
    for i in range(len(ts) - 1):
        tdiff |= (ts[i + 1] - ts[i]) ^ last
    tcount = _bytes_used(tdiff)
    shift = 0
    for i in range(8):
        if not (tdiff >> (8 * i)) & 0xFF and (last >> (8 * i)) & 0xFF:
            shift = i + 1
    return tcount, max(tcount, shift)


def _zip_number_size(tp: int, ts: Sequence[int], values: Sequence[Any]) -> int:
    if len(ts) < _ZIP_THRESHOLD:
        return len(ts) * 16
    tcount, shift = _time_bytes(ts)
    if tp == TYPE_FLOAT:
        bits = [_Q.unpack(_DOUBLE.pack(v))[0] for v in values]
        vdiff = 0
        for b in bits:
            vdiff |= b ^ bits[-1]
        vcount = sum(1 for i in range(8) if (vdiff >> (8 * i)) & 0xFF)
    else:
        vdiff = 0
        for i in range(len(values) - 1):
            vdiff |= abs(values[i + 1] - values[i]) & _U64
        if not vdiff >> 63:
            vdiff = (vdiff << 1) & _U64
        vcount = _bytes_used(vdiff)
    return 16 + shift - tcount + (tcount + vcount) * (len(ts) - 1)


def _c_string(value: str) -> bytes:
    """A value as SiriDB keeps it: UTF-8 up to the first NUL, NUL-terminated."""
    return value.encode('utf-8', 'surrogatepass').split(b'\0', 1)[0] + b'\0'


def _rounded(size: int) -> int:
    """Sizes from 32 KiB on are stored in whole KiB."""
    return -(-size // 1024) * 1024 if size >= 0x8000 else size


def _varlen(n: int) -> int:
    """Bytes of a length/offset: 6 bits, then 7 bits a byte."""
    size = 1
    n >>= 6
    while n:
        size += 1
        n >>= 7
    return size


def _zip_strings_size(strings: List[bytes], ascii_only: bool) -> int:
    """Bytes of SiriDB's dictionary compression of the strings of a chunk
    (4-byte matches against everything earlier in the chunk)."""
    src = b''.join(strings)
    table: Dict[int, int] = {}
    out = 0
    pos = 0
    for s in strings:
        end = pos + len(s)
        literal = p = pos
        while p < end - 4:
            word = _I.unpack_from(src, p)[0]
            key = ((word >> 17) ^ (word & 0xFFFF)) & 0x3FFF
            match = table.get(key)
            table[key] = p
            if match is not None and match < p and src[match:match + 4] == src[p:p + 4]:
                if literal < p:
                    out += (p - literal) + (0 if ascii_only else _varlen(p - literal))
                q = p + 4
                m = match + 4
                while q < end and src[m] == src[q]:
                    m += 1
                    q += 1
                out += _varlen(q - m) + _varlen(q - p)
                literal = p = q
            else:
                p += 1
        if literal < end:
            out += (end - literal) + (0 if ascii_only else _varlen(end - literal))
        pos = end
    return out


def _string_size(ts: Sequence[int], values: Sequence[str], compressed: bool,
                 ts_size: int) -> int:
    strings = [_c_string(v) for v in values]
    n = len(strings)
    if not compressed or n < _ZIP_THRESHOLD:
        stamp = ts_size if not compressed else 8
        return _rounded(sum(map(len, strings))) + n * stamp
    tinfo, shift = _time_bytes(ts)
    ascii_only = all(b < 0x80 for s in strings for b in s)
    return _rounded(13 + shift + tinfo * (n - 2) + _zip_strings_size(strings, ascii_only))


def _chunks(n: int, max_chunk: int) -> List[Tuple[int, int]]:
    count = (n - 1) // max_chunk + 1
    size = n // count + (n % count != 0)
    return [(i, min(i + size, n)) for i in range(0, n, size)]


#: one series' part of a shard: (sid, duration, is_log, bytes, overlaps)
_Part = Tuple[int, int, bool, int, bool]


def _series_parts(series: Series, writes: List[Tuple[Sequence[int], Sequence[Any]]],
                  db: Database, settings: ServerSettings) -> List[_Part]:
    """What one series' writes put in each of its shards."""
    is_log = series.tp == TYPE_STRING
    compressed = settings.shard_compression
    ts_size = 4 if db.precision == 's' else 8
    mask = series_mask(series.name, series.tp, db)
    interval = _interval(writes[0][0]) if settings.shard_auto_duration else 0
    duration = _auto_duration(interval, db) if interval else db.duration_seconds(
        db.duration_log if is_log else db.duration_num) * db.factor
    max_chunk = _MAX_CHUNK_LOG if is_log else _MAX_CHUNK_NUM
    entry = 4 + 2 * ts_size + 2 + (2 if compressed or is_log else 0)
    sizes: Dict[int, int] = {}
    spans: Dict[int, List[Tuple[int, int]]] = {}
    for ts, values in writes:
        i = 0
        while i < len(ts):
            start = ts[i] // duration * duration
            j = bisect_left(ts, start + duration, i)
            for a, b in _chunks(j - i, max_chunk):
                cts, cvals = ts[i + a:i + b], values[i + a:i + b]
                if is_log:
                    data = _string_size(cts, cvals, compressed, ts_size)
                elif compressed:
                    data = _zip_number_size(series.tp, cts, cvals)
                else:
                    data = (ts_size + 8) * len(cts)
                sizes[start] = sizes.get(start, 0) + entry + data
                spans.setdefault(start, []).append((cts[0], cts[-1]))
            i = j
    return [(start + mask, duration, is_log, size, _overlaps(spans[start]))
            for start, size in sizes.items()]


def shards(db: Database, settings: ServerSettings) -> List[Shard]:
    """The database's shards (ordered by start, then sid). Each series' part
    is kept until the series or the settings change."""
    book = book_for(db)
    setup = (settings.shard_compression, settings.shard_auto_duration, db.precision,
             db.duration_num, db.duration_log)
    found: Dict[Tuple[int, int], Shard] = {}
    cache = book.parts
    for name in [n for n in cache if n not in db.series]:
        del cache[name]
    for series in db.series.values():
        log = series.shard_log
        stamp = (series.seq, len(series), setup,
                 len(series.chunks) if series.chunks is not None else
                 len(log.writes or ()) if log is not None else -1)
        cached = cache.get(series.name)
        if cached is not None and cached[0] == stamp:
            parts = cached[1]
        else:
            writes = series_writes(series)
            parts = _series_parts(series, writes, db, settings) if writes else []
            cache[series.name] = (stamp, parts)
        for sid, duration, is_log, size, overlaps in parts:
            shard = found.get((sid, duration))
            if shard is None:
                shard = found[(sid, duration)] = Shard(
                    sid, duration, 'log' if is_log else 'number',
                    flags=_NEW_VALUES | (_COMPRESSED if settings.shard_compression else 0))
            shard.size += size
            shard.series.add(series.name)
            if overlaps:
                shard.flags |= _OVERLAP
    return sorted(found.values(), key=lambda s: (s.start, s.sid))


def _overlaps(ranges: List[Tuple[int, int]]) -> bool:
    ordered = sorted(ranges)
    return any(b[0] < a[1] for a, b in zip(ordered, ordered[1:]))


def shard_row(shard: Shard, server_name: str, pool: int) -> Dict[str, Any]:
    """A shard as a ``list shards`` row (column -> value)."""
    return {'sid': shard.sid, 'pool': pool, 'server': server_name, 'size': shard.size,
            'start': shard.start, 'end': shard.end, 'type': shard.tp,
            'status': shard.status}


def drop(db: Database, dropped: Sequence[Shard]) -> None:
    """Remove the points of dropped shards from their series (the points a
    number series still holds in its buffer go as well)."""
    for shard in dropped:
        for name in shard.series:
            series = db.series.get(name)
            if series is not None:
                series.remove_between(shard.start, shard.end)
