"""How SiriDB 2.0.55 reads string series through a time filter (matched on purpose).

A real 2.0.55 keeps the points of each insert of a string series as a chunk, and
compresses a chunk of ZIP_THRESHOLD points or more (shard compression is on by
default). When it reads a compressed chunk of n points through a time filter, it
takes the time-stamps of the points lo..hi-1 that pass the filter but the strings
from position n - hi of the chunk on (smaller chunks are read right). `after`,
`before` and `between` read that way, and so do `first()` and `last()` without a
time window: they read only the first (or last) chunk, through a filter that keeps
the points at the series' first (or last) time-stamp. Every line of the recorded
transcripts on string series fits this (aggregates.jsonl, grammar.jsonl,
query.jsonl); a read without a filter (`select *`, `head`, windows) is exact.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any, List, Optional, Sequence, Tuple

from ..store import Series

__all__ = ['filtered', 'first', 'last']

Chunk = Tuple[Sequence[int], List[str]]
#: chunks of at least this many points are compressed (POINTS_ZIP_THRESHOLD of 2.0.55)
ZIP_THRESHOLD = 5


def _offset(n: int, lo: int, hi: int) -> int:
    """Where the strings of points lo..hi-1 of a chunk of n are read from."""
    return n - hi if n >= ZIP_THRESHOLD else lo


def _chunks(series: Series) -> List[Chunk]:
    return [c for c in series.chunks or () if len(c[0])]


def filtered(series: Series, start: Optional[int], end: Optional[int]
             ) -> Tuple[List[int], List[Any]]:
    """The points with start <= ts < end as the real server reads them."""
    picked: List[Tuple[int, int, str]] = []
    for seq, (ts, values) in enumerate(_chunks(series)):
        n = len(ts)
        lo = 0 if start is None else bisect_left(ts, start)
        hi = n if end is None else bisect_left(ts, end)
        off = _offset(n, lo, hi)
        picked.extend((ts[lo + k], seq, values[off + k]) for k in range(hi - lo))
    picked.sort(key=lambda p: (p[0], p[1]))  # by time, chunks in their order
    return [p[0] for p in picked], [p[2] for p in picked]


def first(series: Series) -> Tuple[int, str]:
    """`first()` without a window: the first chunk, read up to the first time."""
    chunks = _chunks(series)
    ts, values = min(chunks, key=lambda c: c[0][0])
    hi = bisect_right(ts, ts[0])
    return ts[0], values[_offset(len(ts), 0, hi)]


def last(series: Series) -> Tuple[int, str]:
    """`last()` without a window: the last chunk, read from its last time on."""
    chunks = _chunks(series)
    ts, values = max(reversed(chunks), key=lambda c: c[0][-1])
    lo = bisect_left(ts, ts[-1])
    return ts[lo], values[_offset(len(ts), lo, len(ts))]
