"""`merge as` orders points of the same time-stamp as SiriDB 2.0.55 does: its three
merge methods (fewer than 4 series; up to 250,000 points; more), each taking points
from the series' ends and moving the last series into an emptied one's place."""
from __future__ import annotations

from siridb.embedded.query.merging import MAX_QSORT, merge_points


def test_few_series_take_the_latest_point_first_series_first() -> None:
    # aggregates.jsonl `big` (i.big, i.bigneg, i.bigpos): at the shared first time
    # the real server answers bigneg, bigpos, big
    big = ([1, 2, 3], ['big1', 'big2', 'big3'])
    neg = ([1, 4], ['neg1', 'neg4'])
    pos = ([1, 5], ['pos1', 'pos5'])
    got = merge_points([big, neg, pos])
    assert [v for _, v in got] == ['neg1', 'pos1', 'big1', 'big2', 'big3', 'neg4', 'pos5']
    assert [t for t, _ in got] == sorted(t for t, _ in got)


def test_many_series_round_robin_then_a_stable_sort() -> None:
    # four or more series: points are gathered round-robin from the ends (an emptied
    # series is replaced by the last one, which waits for the next round), then
    # sorted keeping that order among equal times
    series = [([1], ['a']), ([1, 2], ['b1', 'b2']), ([1], ['c']), ([1], ['d'])]
    got = merge_points(series)
    assert got == [(1, 'b1'), (1, 'd'), (1, 'c'), (1, 'a'), (2, 'b2')]


def test_empty_series_and_one_series() -> None:
    assert merge_points([([], []), ([1, 2], ['x', 'y'])]) == [(1, 'x'), (2, 'y')]
    assert merge_points([([], []), ([], [])]) == []


def test_above_the_qsort_limit_the_highest_is_taken() -> None:
    n = MAX_QSORT // 4 + 1
    series = [(list(range(i, i + 4 * n, 4)), [i] * n) for i in range(4)]
    got = merge_points(series)
    assert len(got) == 4 * n
    assert [t for t, _ in got] == list(range(4 * n))
    assert [v for _, v in got[:8]] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_the_fast_path_agrees_with_the_methods() -> None:
    """Without a time-stamp twice the sorted points are the answer; the real server's
    methods (run here on the same data) give the same."""
    import random

    from siridb.embedded.query import merging

    rng = random.Random(7)
    for k in (2, 3, 5):
        stamps = rng.sample(range(10_000), 40 * k)
        series = [(sorted(stamps[i::k]), [f'{i}'] * 40) for i in range(k)]
        fast = merge_points(series)
        out: list = [(0, None)] * (40 * k)
        tails = [merging._Tail(ts, vals) for ts, vals in series]
        (merging._sort_while_merge if k < 4 else merging._merge_and_sort)(tails, out)
        assert fast == out
