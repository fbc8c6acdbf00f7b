"""`merge as`: the points of several series in one, in SiriDB 2.0.55's order.

Points come out sorted by time; the order of points at the same time-stamp follows
the real server's three merge methods (chosen by the number of series and points),
so that a merge answers exactly what a real server answers. Each method takes the
series' points from their ends, and drops an emptied series by moving the last
series into its place.
"""
from __future__ import annotations

from itertools import chain
from operator import itemgetter
from typing import Any, List, Optional, Sequence, Tuple

__all__ = ['merge_points']

Point = Tuple[int, Any]
#: above this many points the real server merges by repeatedly taking the highest
MAX_QSORT = 250000


class _Tail:
    """One series' points, read from the end (pos: the last point not taken)."""

    __slots__ = ('ts', 'values', 'pos')

    def __init__(self, ts: Sequence[int], values: Sequence[Any]) -> None:
        self.ts = ts
        self.values = values
        self.pos = len(ts) - 1

    def take(self) -> Point:
        return self.ts[self.pos], self.values[self.pos]


def _drop(tails: List[_Tail], i: int) -> None:
    """Remove tails[i], the last tail taking its place (as the real server does)."""
    last = tails.pop()
    if i < len(tails):
        tails[i] = last


def _sort_while_merge(tails: List[_Tail], out: List[Point]) -> None:
    n = len(out)
    while tails:
        m = 0
        for i in range(1, len(tails)):
            if tails[i].ts[tails[i].pos] > tails[m].ts[tails[m].pos]:
                m = i
        n -= 1
        out[n] = tails[m].take()
        if tails[m].pos == 0:
            _drop(tails, m)
        else:
            tails[m].pos -= 1


def _merge_and_sort(tails: List[_Tail], out: List[Point]) -> None:
    n = len(out)
    while tails:
        i = 0
        while i < len(tails):
            n -= 1
            out[n] = tails[i].take()
            if tails[i].pos == 0:
                _drop(tails, i)  # the moved tail waits for the next round
            else:
                tails[i].pos -= 1
            i += 1
    # the real server sorts with an insertion sort or glibc's qsort (a merge
    # sort): both keep points of the same time-stamp in their order
    out.sort(key=lambda p: p[0])


def _highest_and_merge(tails: List[_Tail], out: List[Point]) -> None:
    n = len(out)
    m: Optional[int] = None
    last = 0  # the index the real server keeps beside m
    highest = 0
    while tails:
        if m is not None:
            t, m = m, None
            while last < len(tails) and t < len(tails):
                if tails[t].ts[tails[t].pos] == highest:
                    m = t
                    break
                last += 1
                t += 1
        if m is None:
            m = 0
            for i in range(1, len(tails)):
                if tails[i].ts[tails[i].pos] > tails[m].ts[tails[m].pos]:
                    m = i
                    last = i
                    highest = tails[m].ts[tails[m].pos]
        n -= 1
        out[n] = tails[m].take()
        if tails[m].pos:
            tails[m].pos -= 1
            m += 1
            last += 1
        else:
            _drop(tails, m)
            if not tails:
                break


def merge_points(series: Sequence[Tuple[Sequence[int], Sequence[Any]]]) -> List[Point]:
    """The points of every series (in the order given), merged by time."""
    total = sum(len(ts) for ts, _ in series)
    if len(set(chain.from_iterable(ts for ts, _ in series))) == total:
        # no time-stamp twice: every method gives the sorted points (a C sort here)
        points = list(chain.from_iterable(zip(ts, values) for ts, values in series))
        points.sort(key=itemgetter(0))
        return points
    tails = [_Tail(ts, values) for ts, values in series]
    i = 0
    while i < len(tails):  # empty series leave, the last one taking their place
        if len(tails[i].ts):
            i += 1
        else:
            _drop(tails, i)
    if not tails:
        return []
    if len(tails) == 1:
        return list(zip(tails[0].ts, tails[0].values))
    out: List[Point] = [(0, None)] * sum(len(t.ts) for t in tails)
    if len(tails) < 4:
        _sort_while_merge(tails, out)
    elif len(out) == len(tails) or len(out) < MAX_QSORT:
        _merge_and_sort(tails, out)
    else:
        _highest_and_merge(tails, out)
    return out
