"""Property tests: random chains on random points only ever fail with QueryFailure(65),
and grouped aggregates agree with a naive, independently written reference."""
from __future__ import annotations

import math
import re
import statistics
from collections import OrderedDict
from typing import Any, Dict, List, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siridb.embedded.context import QueryFailure
from siridb.embedded.query.aggregates import INT64_MAX, INT64_MIN, NAMES, AggrSpec, apply_chain
from siridb.embedded.store import TYPE_FLOAT, TYPE_INTEGER, TYPE_STRING

# --- random chains on random points -------------------------------------------------------

ints64 = st.integers(INT64_MIN, INT64_MAX)
small_ts = st.integers(0, 5000)
any_ts = st.one_of(small_ts, st.integers(0, INT64_MAX),
                   st.integers(INT64_MAX - 10_000, INT64_MAX))
sizes = st.one_of(st.none(), st.integers(-5, 3000), st.sampled_from(
    [1, 2, 60, 300, INT64_MAX, INT64_MAX + 1, 2 ** 70]))
operands = st.one_of(
    ints64, st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=5),
    st.sampled_from([re.compile('a'), re.compile('^[0-9]+$'), re.compile('x', re.I),
                     None, True]))
# mostly valid names, so that most chains get past the checks and really run
names = st.sampled_from(sorted(NAMES) + ['', 'nope', 'MEAN'])
any_specs = st.builds(
    AggrSpec, name=names, group=sizes,
    limit=st.one_of(st.integers(-2, 50), st.none()),
    fn=st.one_of(names, st.none()),
    op=st.one_of(st.none(), st.sampled_from(
        ['==', '!=', '<', '>', '<=', '>=', '~', '!~', 'regex', '=~', ''])),
    operand=operands, ts_unit=sizes,
    offset=st.one_of(st.none(), st.integers(-10_000, 10_000), ints64))
filters = st.builds(
    AggrSpec, name=st.just('filter'), op=st.sampled_from(
        [None, '==', '!=', '<', '>', '<=', '>=', '~', '!~', 'regex']),
    operand=operands)
specs = st.one_of(any_specs, filters)


@st.composite
def series(draw: Any) -> Tuple[List[int], List[Any], int]:
    tp = draw(st.sampled_from([TYPE_INTEGER, TYPE_FLOAT, TYPE_STRING]))
    value = {TYPE_INTEGER: ints64,
             TYPE_FLOAT: st.floats(allow_nan=True, allow_infinity=True),
             TYPE_STRING: st.text(max_size=6)}[tp]
    pairs = draw(st.lists(st.tuples(draw(st.sampled_from([small_ts, any_ts])), value),
                          max_size=60))
    if draw(st.booleans()):
        pairs.sort(key=lambda p: p[0])
    return [t for t, _ in pairs], [v for _, v in pairs], tp


def _check_output(ts: List[int], values: List[Any], tp: int) -> None:
    assert len(ts) == len(values)
    assert all(type(t) is int and 0 <= t <= INT64_MAX for t in ts)
    assert all(a <= b for a, b in zip(ts, ts[1:]))
    if tp == TYPE_INTEGER:
        assert all(type(v) is int and INT64_MIN <= v <= INT64_MAX for v in values)
    elif tp == TYPE_FLOAT:
        assert all(type(v) is float for v in values)
    else:
        assert tp == TYPE_STRING and all(type(v) is str for v in values)


@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(specs, min_size=1, max_size=4), series())
def test_any_chain_on_any_points_fails_only_with_a_query_error(
        chain: List[AggrSpec], data: Tuple[List[int], List[Any], int]) -> None:
    ts, values, tp = data
    try:
        out_ts, out_v, out_tp = apply_chain(chain, ts, values, tp)
    except QueryFailure as e:
        assert e.tp == 65 and isinstance(e.msg, str) and e.msg
        return
    _check_output(out_ts, out_v, out_tp)


# --- grouped aggregates against a naive reference ------------------------------------------

REFERENCE = {
    'count': len, 'sum': sum, 'min': min, 'max': max,
    'first': lambda v: v[0], 'last': lambda v: v[-1],
    'mean': statistics.mean, 'median': statistics.median,
    'median_low': statistics.median_low, 'median_high': statistics.median_high,
    'variance': lambda v: statistics.variance(v) if len(v) > 1 else 0.0,
    'pvariance': statistics.pvariance,
    'stddev': lambda v: statistics.stdev(v) if len(v) > 1 else 0.0,
    'difference': lambda v: v[-1] - v[0],
}


def _naive(name: str, ts: List[int], values: List[int], group: int, offset: int,
           unit: int) -> List[List[Any]]:
    buckets: Dict[int, List[int]] = OrderedDict()
    if offset % group:
        # SiriDB 2.0.55: the window opened by t ends at ceil(t / g) * g + o
        label = None
        for t, v in sorted(zip(ts, values), key=lambda p: p[0]):
            if label is None or t > label:
                label = -(-t // group) * group + offset % group
            buckets.setdefault(label, []).append(v)
        offset = 0
    for t, v in sorted(zip(ts, values), key=lambda p: p[0]) if not buckets else ():
        # the end of t's bucket: the next label at or after t (labels: offset + k*group)
        label = t + (offset - t) % group
        buckets.setdefault(label, []).append(v)
    if name == 'derivative':
        return [[lb, (float(v[-1]) - float(v[0])) * unit / group]
                for lb, v in buckets.items()]
    return [[lb, REFERENCE[name](v)] for lb, v in buckets.items()]


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


@settings(max_examples=300, deadline=None, database=None)
@given(name=st.sampled_from(sorted(REFERENCE) + ['derivative']),
       points=st.lists(st.tuples(st.integers(0, 5000), st.integers(-1000, 1000)),
                       min_size=1, max_size=300),
       group=st.integers(1, 2000), offset=st.integers(-3000, 3000),
       unit=st.integers(1, 100))
def test_grouped_aggregates_match_a_naive_reference(
        name: str, points: List[Tuple[int, int]], group: int, offset: int,
        unit: int) -> None:
    ts = [t for t, _ in points]
    values = [v for _, v in points]
    chain = [AggrSpec(name, group=group, ts_unit=unit if name == 'derivative' else None),
             AggrSpec('offset', offset=offset)]
    out_ts, out_v, _ = apply_chain(chain, ts, values, TYPE_INTEGER)
    want = _naive(name, ts, values, group, offset, unit)
    assert [t for t, _ in want] == out_ts
    assert all(_close(got, w) for got, (_, w) in zip(out_v, want)), (out_v, want)


@settings(max_examples=300, deadline=None, database=None)
@given(name=st.sampled_from(sorted(REFERENCE)),
       points=st.lists(st.tuples(st.integers(0, 5000), st.integers(-1000, 1000)),
                       min_size=1, max_size=200),
       n=st.integers(1, 60))
def test_limit_is_the_aggregate_over_n_even_buckets_from_the_first_point(
        name: str, points: List[Tuple[int, int]], n: int) -> None:
    ts = sorted(t for t, _ in points)
    values = [v for _, v in sorted(points, key=lambda p: p[0])]
    out_ts, out_v, _ = apply_chain([AggrSpec('limit', limit=n, fn=name)], ts, values,
                                   TYPE_INTEGER)
    if len(ts) <= n:
        assert (out_ts, out_v) == (ts, values)
        return
    assert len(out_ts) <= n
    # SiriDB's sequential windows: g = span // n + 1, o = (first - 1) % g; a window
    # opened by the point at t ends at ceil(t / g) * g + o (its label)
    g = (ts[-1] - ts[0]) // n + 1
    o = (ts[0] - 1) % g
    labels: List[int] = []
    for t in ts:
        if not labels or t > labels[-1]:
            labels.append(-(-t // g) * g + o)
    assert labels == out_ts
    for label, got in zip(labels, out_v):
        lo = max([x for x in labels if x < label], default=None)
        window = [v for t, v in zip(ts, values) if t <= label and (lo is None or t > lo)]
        assert window and _close(got, REFERENCE[name](window))
