"""Aggregates on edge cases: empty ranges, one point, NaN and inf, int64 overflow,
bucket boundaries, offsets, ns-precision timestamps, limit, filters, types, speed."""
from __future__ import annotations

import math
import re
import time
from array import array
from typing import Any, List, Sequence

import pytest

from siridb.embedded.context import QueryFailure
from siridb.embedded.query.aggregates import (
    AGGREGATES,
    INT64_MAX,
    INT64_MIN,
    AggrSpec,
    apply,
    apply_chain,
    check_chain,
)
from siridb.embedded.store import TYPE_FLOAT, TYPE_INTEGER, TYPE_STRING

NAN = math.nan
INF = math.inf


def A(name: str, **kw: Any) -> AggrSpec:  # noqa: N802 - reads like the query
    return AggrSpec(name, **kw)


def points(spec: Any, ts: Sequence[int], values: Sequence[Any], tp: int) -> List[List[Any]]:
    chain = spec if isinstance(spec, list) else [spec]
    out_ts, out_v, _ = apply_chain(chain, ts, values, tp)
    return [[t, v] for t, v in zip(out_ts, out_v)]


def failure(spec: Any, ts: Sequence[int], values: Sequence[Any], tp: int) -> str:
    chain = spec if isinstance(spec, list) else [spec]
    with pytest.raises(QueryFailure) as info:
        apply_chain(chain, ts, values, tp)
    assert info.value.tp == 65
    return info.value.msg


def is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


# --- empty ranges and single points ---------------------------------------------------

ALL = sorted(AGGREGATES) + ['timeval', 'interval']
FLOATS = {'mean', 'median', 'variance', 'pvariance', 'stddev', 'derivative'}
INTS = {'count', 'timeval', 'interval'}


@pytest.mark.parametrize('name', ALL)
@pytest.mark.parametrize('group', [None, 60])
def test_empty_range_gives_no_points_and_the_result_type(name: str, group: Any) -> None:
    for tp in (TYPE_INTEGER, TYPE_FLOAT):
        ts, values, out_tp = apply(A(name, group=group), [], [], tp)
        assert ts == [] and values == []
        assert out_tp == (TYPE_FLOAT if name in FLOATS else
                          TYPE_INTEGER if name in INTS else tp)


def test_empty_range_for_filter_and_limit() -> None:
    assert apply(A('filter', op='>', operand=1), [], [], TYPE_FLOAT) == ([], [], TYPE_FLOAT)
    assert apply(A('limit', limit=2, fn='mean'), [], [], TYPE_INTEGER) == \
        ([], [], TYPE_INTEGER)


def test_one_point_without_group() -> None:
    ts, v = [100], [7]
    expect = {
        'mean': 7.0, 'median': 7.0, 'median_low': 7, 'median_high': 7, 'sum': 7,
        'min': 7, 'max': 7, 'count': 1, 'variance': 0.0, 'pvariance': 0.0,
        'stddev': 0.0, 'first': 7, 'last': 7}
    for name, want in expect.items():
        got = points(A(name), ts, v, TYPE_INTEGER)
        assert got == [[100, want]] and type(got[0][1]) is type(want), name
    # consecutive-point functions need two points
    for name in ('difference', 'derivative', 'interval'):
        assert points(A(name), ts, v, TYPE_INTEGER) == []
    assert points(A('timeval'), ts, v, TYPE_INTEGER) == [[100, 100]]


def test_one_point_with_group() -> None:
    ts, v = [100], [7]
    assert points(A('mean', group=60), ts, v, TYPE_INTEGER) == [[120, 7.0]]
    got = points(A('difference', group=60), ts, v, TYPE_INTEGER)
    assert got == [[120, 0]] and type(got[0][1]) is int
    got = points(A('derivative', group=60, ts_unit=1), ts, v, TYPE_INTEGER)
    assert got == [[120, 0.0]] and type(got[0][1]) is float
    assert points(A('variance', group=60), ts, v, TYPE_INTEGER) == [[120, 0.0]]


# --- NaN and inf -------------------------------------------------------------------------

def test_nan_makes_a_bucket_nan_but_never_raises() -> None:
    ts, v = [1, 2, 3], [1.0, NAN, 3.0]
    for name in ('mean', 'sum', 'min', 'max', 'median', 'median_low', 'median_high',
                 'variance', 'pvariance', 'stddev'):
        got = points(A(name), ts, v, TYPE_FLOAT)
        assert got[0][0] == 3 and is_nan(got[0][1]), name
    assert points(A('count'), ts, v, TYPE_FLOAT) == [[3, 3]]
    assert points(A('first'), ts, v, TYPE_FLOAT) == [[1, 1.0]]
    assert points(A('last'), ts, v, TYPE_FLOAT) == [[3, 3.0]]
    for name in ('variance', 'stddev', 'pvariance'):  # also for a single point
        assert is_nan(points(A(name), [1], [NAN], TYPE_FLOAT)[0][1])
    # NaN sits in the first bucket only: the second is unaffected
    got = points(A('max', group=2), ts, v, TYPE_FLOAT)
    assert is_nan(got[0][1]) and got[1] == [4, 3.0]


def test_inf_follows_float_arithmetic() -> None:
    ts = [1, 2]
    assert points(A('mean'), ts, [INF, 1.0], TYPE_FLOAT) == [[2, INF]]
    assert points(A('max'), ts, [INF, 1.0], TYPE_FLOAT) == [[2, INF]]
    assert points(A('min'), ts, [-INF, 1.0], TYPE_FLOAT) == [[2, -INF]]
    assert is_nan(points(A('sum'), ts, [INF, -INF], TYPE_FLOAT)[0][1])
    assert is_nan(points(A('variance'), ts, [INF, 1.0], TYPE_FLOAT)[0][1])
    assert is_nan(points(A('difference'), ts, [INF, INF], TYPE_FLOAT)[0][1])
    assert points(A('derivative'), ts, [1.0, INF], TYPE_FLOAT) == [[2, INF]]
    # huge finite floats overflow to inf instead of raising
    assert points(A('sum'), ts, [1e308, 1e308], TYPE_FLOAT) == [[2, INF]]
    assert points(A('variance'), ts, [-1e308, 1e308], TYPE_FLOAT) == [[2, INF]]


def test_filter_nan_and_inf() -> None:
    ts, v = [1, 2, 3, 4], [1.0, NAN, INF, -2.0]
    assert points(A('filter', op='!=', operand=NAN), ts, v, TYPE_FLOAT) == \
        [[1, 1.0], [3, INF], [4, -2.0]]
    got = points(A('filter', op='==', operand=NAN), ts, v, TYPE_FLOAT)
    assert len(got) == 1 and got[0][0] == 2 and is_nan(got[0][1])
    assert points(A('filter', op='>', operand=NAN), ts, v, TYPE_FLOAT) == []
    assert points(A('filter', op='<', operand=NAN), ts, v, TYPE_FLOAT) == []
    # NaN equals NaN for filter: >= and <= keep the NaN point (SiriDB's own tests)
    for op in ('>=', '<='):
        got = points(A('filter', op=op, operand=NAN), ts, v, TYPE_FLOAT)
        assert len(got) == 1 and got[0][0] == 2 and is_nan(got[0][1]), op
    assert points(A('filter', op='>=', operand=1.0), ts, v, TYPE_FLOAT) == \
        [[1, 1.0], [3, INF]]
    assert points(A('filter', op='!=', operand=INF), ts, v, TYPE_FLOAT)[2] == [4, -2.0]
    assert points(A('filter', op='>', operand=0), ts, v, TYPE_FLOAT) == \
        [[1, 1.0], [3, INF]]
    # the documented idiom: filter(!=nan) => filter(!=inf) => filter(!=-inf)
    chain = [A('filter', op='!=', operand=NAN), A('filter', op='!=', operand=INF),
             A('filter', op='!=', operand=-INF)]
    assert points(chain, ts, v, TYPE_FLOAT) == [[1, 1.0], [4, -2.0]]


def test_two_points_at_one_timestamp_give_ieee_derivatives() -> None:
    ts = [10, 10, 10, 10, 20]
    got = points(A('derivative'), ts, [1, 3, 0, 0, 10], TYPE_INTEGER)
    assert [t for t, _ in got] == [10, 10, 10, 20]
    assert got[0][1] == INF and got[1][1] == -INF and is_nan(got[2][1])
    assert got[3][1] == 1.0


# --- int64 overflow ------------------------------------------------------------------------

def test_sum_beyond_int64_is_a_query_error() -> None:
    big = 2 ** 62
    assert failure(A('sum'), [1, 2], [big, big], TYPE_INTEGER) == \
        'Overflow detected while using sum().'
    assert failure(A('sum', group=10), [1, 2], [big, big], TYPE_INTEGER) == \
        'Overflow detected while using sum().'
    assert failure(A('sum'), [1, 2], [INT64_MIN, -1], TYPE_INTEGER) == \
        'Overflow detected while using sum().'
    # the real server checks its running total (aggregates.jsonl: limit(2, sum) of
    # i.big): a sum that would fit at the end is refused when a step overflows
    assert failure(A('sum'), [1, 2, 3], [INT64_MAX, 1, -1], TYPE_INTEGER) == \
        'Overflow detected while using sum().'
    assert points(A('sum'), [1, 2, 3], [INT64_MAX, -1, 1], TYPE_INTEGER) == \
        [[3, INT64_MAX]]
    # limit(n, sum) reduces with sum, so it checks too
    assert failure(A('limit', limit=1, fn='sum'), [1, 2], [big, big], TYPE_INTEGER) == \
        'Overflow detected while using sum().'


def test_difference_beyond_int64_is_a_query_error() -> None:
    assert failure(A('difference'), [1, 2], [INT64_MIN, INT64_MAX], TYPE_INTEGER) == \
        'Overflow detected while using difference().'
    assert failure(A('difference', group=10), [1, 2], [INT64_MAX, -2], TYPE_INTEGER) == \
        'Overflow detected while using difference().'
    assert points(A('difference'), [1, 2], [INT64_MAX, 0], TYPE_INTEGER) == \
        [[2, -INT64_MAX]]


def test_int64_extremes_stay_finite_elsewhere() -> None:
    ts, v = [1, 2], [INT64_MIN, INT64_MAX]
    # mean sums in a double as the real server does: INT64_MAX rounds to 2 ** 63
    assert points(A('mean'), ts, v, TYPE_INTEGER) == [[2, 0.0]]
    assert points(A('median'), ts, v, TYPE_INTEGER) == [[2, -0.5]]
    assert points(A('min'), ts, v, TYPE_INTEGER) == [[2, INT64_MIN]]
    got = points(A('derivative', ts_unit=INT64_MAX), ts, v, TYPE_INTEGER)
    assert got == [[2, float((2 ** 64 - 1) * INT64_MAX)]]
    assert points(A('pvariance'), ts, v, TYPE_INTEGER)[0][1] == pytest.approx(2.0 ** 126)
    # a float series of int64-sized values
    assert points(A('sum'), ts, [9.2e18, 9.2e18], TYPE_FLOAT) == [[2, 1.84e19]]


# --- bucket boundaries and offsets ---------------------------------------------------------

BOUNDARY_TS = [0, 1, 299, 300, 301, 600, 601]


def test_buckets_are_left_open_right_closed() -> None:
    v = [1] * len(BOUNDARY_TS)
    assert points(A('count', group=300), BOUNDARY_TS, v, TYPE_INTEGER) == \
        [[0, 1], [300, 3], [600, 2], [900, 1]]
    assert points(A('first', group=300), BOUNDARY_TS, list(range(7)), TYPE_INTEGER) == \
        [[0, 0], [300, 1], [600, 4], [900, 6]]
    assert points(A('last', group=300), BOUNDARY_TS, list(range(7)), TYPE_INTEGER) == \
        [[0, 0], [300, 3], [600, 5], [900, 6]]


def test_offset_shifts_the_bucket_edges() -> None:
    v = [1] * len(BOUNDARY_TS)
    chain = [A('count', group=300), A('offset', offset=60)]
    assert points(chain, BOUNDARY_TS, v, TYPE_INTEGER) == [[60, 2], [360, 3], [660, 2]]
    chain = [A('count', group=300), A('offset', offset=-60)]
    assert points(chain, BOUNDARY_TS, v, TYPE_INTEGER) == [[240, 2], [540, 3], [840, 2]]
    # SiriDB 2.0.55's windows: the one opened by t ends at ceil(t / g) * g + o, so
    # 60 and 61 share the window ending at 360
    chain = [A('count', group=300), A('offset', offset=60)]
    assert points(chain, [60, 61], [1, 1], TYPE_INTEGER) == [[360, 2]]
    # an offset of a whole group changes nothing
    assert points([A('count', group=300), A('offset', offset=300)], BOUNDARY_TS, v,
                  TYPE_INTEGER) == points(A('count', group=300), BOUNDARY_TS, v,
                                          TYPE_INTEGER)
    # folded straight into the spec by the caller: the same result
    assert points(A('count', group=300, offset=60), BOUNDARY_TS, v, TYPE_INTEGER) == \
        [[60, 2], [360, 3], [660, 2]]


def test_offset_after_an_aggregate_without_group_changes_nothing() -> None:
    ts, v = [1, 2, 3], [1, 2, 3]
    assert points([A('mean'), A('offset', offset=60)], ts, v, TYPE_INTEGER) == \
        points(A('mean'), ts, v, TYPE_INTEGER)


def test_offset_in_the_wrong_place() -> None:
    text = 'Offset must be used after an aggregation method.'
    for chain in ([A('offset', offset=1)],
                  [A('filter', op='>', operand=1), A('offset', offset=1)],
                  [A('timeval'), A('offset', offset=1)],
                  [A('limit', limit=2, fn='mean'), A('offset', offset=1)],
                  [A('mean', group=5), A('offset', offset=1), A('offset', offset=1)]):
        assert failure(chain, [1], [1], TYPE_INTEGER) == text
    with pytest.raises(QueryFailure) as info:
        apply(A('offset', offset=1), [1], [1], TYPE_INTEGER)
    assert info.value.msg == text


def test_group_given_as_a_timestamp_ends_the_first_bucket_there() -> None:
    # count(now) style: one bucket up to `now`, the next one a whole `now` later
    ts = [100, 200, 300]
    assert points(A('count', group=250), ts, [1, 1, 1], TYPE_INTEGER) == \
        [[250, 2], [500, 1]]


# --- ns precision: timestamps up to 2**63-1 -----------------------------------------------

def test_ns_sized_timestamps() -> None:
    ts = [INT64_MAX - 1000, INT64_MAX]
    v = [1, 2]
    assert points(A('count'), ts, v, TYPE_INTEGER) == [[INT64_MAX, 2]]
    assert points(A('first'), ts, v, TYPE_INTEGER) == [[INT64_MAX - 1000, 1]]
    assert points(A('timeval'), ts, v, TYPE_INTEGER) == [[t, t] for t in ts]
    assert points(A('interval'), ts, v, TYPE_INTEGER) == [[INT64_MAX, 1000]]
    assert points(A('derivative', ts_unit=10 ** 9), ts, v, TYPE_INTEGER) == \
        [[INT64_MAX, 1e6]]
    assert points(A('count', group=1), ts, v, TYPE_INTEGER) == [[t, 1] for t in ts]
    # 2**63-1 is no multiple of 1000: its bucket would end after the last valid ts
    assert failure(A('count', group=1000), ts, v, TYPE_INTEGER) == \
        'Overflow detected while using count().'
    assert failure(A('count', group=INT64_MAX + 1), [1], [1], TYPE_INTEGER) == \
        'Overflow detected while using count().'
    # 1-second buckets in a ns database
    s = 10 ** 9
    ts = [1447250938 * s + 1, 1447250939 * s, 1447250939 * s + 1]
    assert points(A('count', group=s), ts, [1, 1, 1], TYPE_INTEGER) == \
        [[1447250939 * s, 2], [1447250940 * s, 1]]


def test_limit_near_the_last_valid_timestamp_labels_the_bucket_there() -> None:
    ts = [INT64_MAX - 2, INT64_MAX - 1, INT64_MAX]
    assert points(A('limit', limit=2, fn='count'), ts, [1, 1, 1], TYPE_INTEGER) == \
        [[INT64_MAX - 1, 2], [INT64_MAX, 1]]
    assert points(A('limit', limit=1, fn='count'), ts, [1, 1, 1], TYPE_INTEGER) == \
        [[INT64_MAX, 3]]


# --- limit -------------------------------------------------------------------------------

LOG_TS = [1447249033, 1447249040, 1447249050, 1447249060, 1447249070]
LOG_V = ['started', 'one two', 'two', '42', '-0.500000']


def test_limit_on_strings() -> None:
    # g = 37 // 2 + 1 = 19, SiriDB's sequential windows; strings keep the
    # timestamp of the point first()/last() takes (as SiriDB 2.0.55 answers)
    assert points(A('limit', limit=2, fn='first'), LOG_TS, LOG_V, TYPE_STRING) == \
        [[1447249033, 'started'], [1447249060, '42']]
    assert points(A('limit', limit=9, fn='first'), LOG_TS, LOG_V, TYPE_STRING) == \
        [[t, v] for t, v in zip(LOG_TS, LOG_V)]
    assert failure(A('limit', limit=9, fn='mean'), LOG_TS, LOG_V, TYPE_STRING) == \
        'Cannot use mean() on string type.'


def test_limit_types_and_duplicates() -> None:
    # not reduced: the points as they are; reduced: the aggregate's type
    assert apply(A('limit', limit=3, fn='mean'), [1, 2], [1, 2], TYPE_INTEGER) == \
        ([1, 2], [1, 2], TYPE_INTEGER)
    assert apply(A('limit', limit=1, fn='mean'), [1, 2], [1, 2], TYPE_INTEGER) == \
        ([2], [1.5], TYPE_FLOAT)
    # every point at one timestamp: one bucket labelled there
    assert points(A('limit', limit=1, fn='sum'), [5, 5, 5], [1, 2, 3], TYPE_INTEGER) == \
        [[5, 6]]


def test_limit_never_returns_more_than_n_points() -> None:
    ts = [0, 1, 2, 3, 10, 11, 50, 99, 100, 1000]
    for n in range(1, 12):
        got = points(A('limit', limit=n, fn='max'), ts, list(range(10)), TYPE_INTEGER)
        assert len(got) <= n
        assert got[-1][0] >= 1000 and got[-1][1] == 9


# --- filters ---------------------------------------------------------------------------------

def test_string_filters() -> None:
    def f(**kw: Any) -> List[str]:
        return [v for _, v in points(A('filter', **kw), LOG_TS, LOG_V, TYPE_STRING)]
    assert f(op='==', operand='two') == ['two']
    assert f(operand='two') == ['two']  # filter("two") means ==
    assert f(op='!=', operand='two') == ['started', 'one two', '42', '-0.500000']
    assert f(op='<', operand='b') == ['42', '-0.500000']
    assert f(op='~', operand='') == LOG_V
    assert f(op='regex', operand=re.compile('two')) == ['one two', 'two']  # searched
    assert f(op='regex', operand=re.compile('^t')) == ['two']
    assert f(op='regex', operand=re.compile('TWO', re.I)) == ['one two', 'two']
    assert f(op='regex', operand='wo$') == ['one two', 'two']  # a str is compiled
    msg = failure(A('filter', op='regex', operand='(x'), LOG_TS, LOG_V, TYPE_STRING)
    assert msg.startswith("Cannot compile regular expression '(x'")


def test_number_filters_compare_int_and_float() -> None:
    ts, v = [1, 2, 3], [7, 8, 9]
    assert points(A('filter', op='>', operand=7.5), ts, v, TYPE_INTEGER) == \
        [[2, 8], [3, 9]]
    assert points(A('filter', operand=8.0), ts, v, TYPE_INTEGER) == [[2, 8]]
    assert points(A('filter', op='<=', operand=8), ts, [7.0, 8.0, 8.5], TYPE_FLOAT) == \
        [[1, 7.0], [2, 8.0]]
    assert failure(A('filter', op='regex', operand=re.compile('7')), ts, v,
                   TYPE_INTEGER) == 'Cannot use a string filter on number type.'
    assert failure(A('filter', op='==', operand=7), LOG_TS, LOG_V, TYPE_STRING) == \
        'Cannot use a number filter on string type.'


# --- types, string series, order, chains ---------------------------------------------------

def test_result_types() -> None:
    ts = [1, 2, 3]
    assert apply(A('sum'), ts, [1, 2, 3], TYPE_INTEGER)[1:] == ([6], TYPE_INTEGER)
    assert apply(A('sum'), ts, [1.0, 2.0, 3.0], TYPE_FLOAT)[1:] == ([6.0], TYPE_FLOAT)
    assert apply(A('mean'), ts, [1, 2, 3], TYPE_INTEGER)[1:] == ([2.0], TYPE_FLOAT)
    assert apply(A('median_low'), ts, [1.0, 2.0, 3.0], TYPE_FLOAT)[2] == TYPE_FLOAT
    assert apply(A('timeval'), ts, [1.5, 2.5, 3.5], TYPE_FLOAT)[1:] == (ts, TYPE_INTEGER)
    assert apply(A('count'), LOG_TS, LOG_V, TYPE_STRING)[1:] == ([5], TYPE_INTEGER)
    assert apply(A('interval'), LOG_TS, LOG_V, TYPE_STRING)[1:] == \
        ([7, 10, 10, 10], TYPE_INTEGER)
    diff = apply(A('difference'), ts, [1.0, 2.5, 2.0], TYPE_FLOAT)
    assert diff == ([2, 3], [1.5, -0.5], TYPE_FLOAT)


@pytest.mark.parametrize('name', ['mean', 'median', 'median_low', 'median_high', 'sum',
                                  'min', 'max', 'variance', 'pvariance', 'stddev',
                                  'difference', 'derivative'])
def test_number_only_aggregates_refuse_strings(name: str) -> None:
    for group in (None, 10):
        assert failure(A(name, group=group), LOG_TS, LOG_V, TYPE_STRING) == \
            f'Cannot use {name}() on string type.'
    # refused even when the range holds no points: the type decides
    assert failure(A(name), [], [], TYPE_STRING) == f'Cannot use {name}() on string type.'


def test_string_series_after_timeval_are_numbers() -> None:
    assert points([A('timeval'), A('mean')], LOG_TS, LOG_V, TYPE_STRING) == \
        [[1447249070, sum(LOG_TS) / 5]]


def test_unsorted_input_is_sorted_stably() -> None:
    assert points(A('first'), [3, 1, 2], ['c', 'a', 'b'], TYPE_STRING) == [[1, 'a']]
    assert points(A('last'), [2, 1, 2], ['x', 'a', 'y'], TYPE_STRING) == [[2, 'y']]
    assert points(A('first'), [1, 1], ['x', 'y'], TYPE_STRING) == [[1, 'x']]
    assert apply(A('timeval'), [3, 1], [0, 0], TYPE_INTEGER)[0] == [1, 3]
    # order-free aggregates skip sorting but still report the last timestamp
    assert points(A('mean'), [3, 1, 2], [1, 2, 3], TYPE_INTEGER) == [[3, 2.0]]
    assert points([A('count'), A('timeval')], [5, 9, 1], [1, 2, 3], TYPE_INTEGER) == \
        [[9, 9]]
    assert points(A('median_low'), [3, 1, 2], [30, 10, 20], TYPE_INTEGER) == [[3, 20]]


def test_timeval_then_difference_is_interval() -> None:
    ts = [1, 4, 9, 9, 20]
    assert points([A('timeval'), A('difference')], ts, [0] * 5, TYPE_INTEGER) == \
        points(A('interval'), ts, [0] * 5, TYPE_INTEGER)


def test_arrays_from_the_store_are_accepted() -> None:
    ts = array('q', [1, 2, 3, 4])
    vi = array('q', [4, 3, 2, 1])
    vf = array('d', [4.0, 3.0, 2.0, 1.0])
    assert points(A('sum', group=2), ts, vi, TYPE_INTEGER) == [[2, 7], [4, 3]]
    assert points(A('median'), ts, vf, TYPE_FLOAT) == [[4, 2.5]]
    assert points(A('difference'), ts, vi, TYPE_INTEGER) == [[2, -1], [3, -1], [4, -1]]
    got = points([A('mean', group=2), A('offset', offset=1)], ts, vf, TYPE_FLOAT)
    assert got == [[3, 3.0], [5, 1.0]]


def test_bad_specs_are_query_errors() -> None:
    for spec, text in [
            (A('nope'), 'Unknown aggregate function: nope()'),
            (A('mean', group=-5), 'Group by time must be an integer value larger than zero.'),
            (A('limit', limit=-1, fn='mean'),
             'Limit must be an integer value larger than zero.'),
            (A('limit', fn='mean'), 'Limit must be an integer value larger than zero.'),
            (A('derivative', ts_unit=0),
             'Time-span must be an integer value larger than zero.'),
            (A('limit', limit=2, fn='filter'),
             'Cannot use filter() as the aggregation method of limit().')]:
        with pytest.raises(QueryFailure) as info:
            check_chain([spec])
        assert info.value.tp == 65 and info.value.msg == text
    with pytest.raises(QueryFailure):
        apply(A('mean'), [1, 2], [1], TYPE_INTEGER)


# --- speed ---------------------------------------------------------------------------------

def _best_of(runs: int, spec: AggrSpec, ts: Any, values: Any, tp: int) -> float:
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter()
        apply(spec, ts, values, tp)
        best = min(best, time.perf_counter() - t0)
    return best


def test_ungrouped_mean_sum_min_max_on_a_million_points_are_fast() -> None:
    n = 1_000_000
    ts = array('q', range(10 ** 12, 10 ** 12 + n))
    vi = array('q', range(n))
    vf = array('d', range(n))
    for name in ('mean', 'sum', 'min', 'max'):
        for v, tp in ((vi, TYPE_INTEGER), (vf, TYPE_FLOAT)):
            took = _best_of(3, A(name), ts, v, tp)
            assert took < 0.5, (name, tp, took)
    assert apply(A('sum'), ts, vi, TYPE_INTEGER)[1] == [n * (n - 1) // 2]
