"""Aggregate and filter functions of the embedded server's ``select`` statement.

Pure functions over the points of one series (timestamps ascending, as the store hands
them over; anything else is re-sorted stably), values of one type; the query evaluator
chains them with ``=>``. Every rule below was worked out
from the transcripts of a real SiriDB 2.0.55 (tests/conformance/query.jsonl) or taken
from SiriDB's public documentation; where both are silent the choice is marked "chosen".

Rules (g = group size, o = offset, both in database time units):

- Buckets: with ``fn(g)`` a point at ts falls in the bucket (label - g, label] where
  label = ceil((ts - o) / g) * g + o (o = 0 unless ``=> offset(o)`` follows); the
  bucket's value is reported at its label. Empty buckets are left out.
- Without ``(g)`` one value over all points, reported at the last point's timestamp
  (``first()`` at the first point's): ``mean()`` of aggr -> [[last ts, 7.45]].
- ``offset(o)`` re-runs the aggregate before it with its buckets shifted by o:
  ``mean(5m) => offset(60)`` buckets (ts - 60) and labels land on ...060.
- ``limit(n, fn)``: at most n points are returned unchanged; more points are reduced with
  ``fn`` in windows of g = (last - first) // n + 1 with o = (first - 1) % g, as SiriDB
  2.0.55 does it: a window starts at its first point t and is labelled
  ceil(t / g) * g + o; it takes every point up to its label, and the next point past
  the label starts the next window (705, 707, 710 with limit(2, max): g = 3, o = 2,
  labels 707 and 713, as SiriDB's own tests expect).
- ``difference()``/``derivative()``/``interval()`` without g work on consecutive points
  and report at the later point; ``difference(g)`` is last - first in the bucket and
  ``derivative(u, g)`` is (last - first) * u / g (the bucket size, not the points' span).
  ``derivative(u)`` is (v2 - v1) * u / (t2 - t1); u defaults to 1 database time unit.
- ``variance`` divides by n - 1, ``pvariance`` by n, both two-pass around the mean.
- ``filter(v)`` means ``== v``; numbers compare with == != < > <= >=, strings also
  with ``~`` (contains), ``!~`` and ``/regex/``, ``== /regex/``, ``!= /regex/`` (the
  select statement compiles it anchored like a selector; other operators before a
  regex are an error). NaN equals NaN here: ``filter(== nan)``, ``>=`` and ``<=``
  keep NaN points, ``!=`` drops them (the server's own tests show this).
  ``timeval()`` gives each timestamp as value, ``interval()`` the time between
  consecutive points.
- Types: mean, median, variance, pvariance, stddev and derivative give floats; count,
  timeval and interval integers; the others keep the series type (sum of ints stays int).
"""
from __future__ import annotations

import math
import operator
from bisect import bisect_right
from dataclasses import dataclass, replace
from itertools import accumulate, compress, islice, repeat
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...wire import types as pm
from ...wire.units import INT64_MAX, INT64_MIN
from ..context import QueryFailure
from ..patterns import REGEX_TYPES, compile_regex
from ..store import TYPE_FLOAT, TYPE_INTEGER, TYPE_STRING

__all__ = [
    'AggrSpec', 'check_chain', 'apply', 'apply_chain', 'AGGREGATES', 'NAMES',
    'result_type', 'INT64_MIN', 'INT64_MAX',
]


#: aggregation methods: reduce points (optionally per time bucket) to one value each
AGGREGATES = frozenset((
    'mean', 'median', 'median_low', 'median_high', 'sum', 'min', 'max', 'count',
    'variance', 'pvariance', 'stddev', 'first', 'last', 'difference', 'derivative'))
#: every name a select may use
NAMES = AGGREGATES | frozenset(('filter', 'limit', 'timeval', 'interval', 'offset'))
#: names that refuse string series ("Cannot use mean() on string type.")
_NUMBER_ONLY = frozenset((
    'mean', 'median', 'median_low', 'median_high', 'sum', 'min', 'max', 'variance',
    'pvariance', 'stddev', 'difference', 'derivative'))
#: without (g) these give one value whatever the order of the points: no sorting needed
_ORDER_FREE = frozenset((
    'mean', 'median', 'median_low', 'median_high', 'sum', 'min', 'max', 'count',
    'variance', 'pvariance', 'stddev'))
_FLOAT_RESULT = frozenset((
    'mean', 'median', 'variance', 'pvariance', 'stddev', 'derivative'))
_INT_RESULT = frozenset(('count', 'timeval', 'interval'))
_FILTER_OPS: Dict[str, Callable[[Any, Any], Any]] = {
    '==': operator.eq, '!=': operator.ne, '<': operator.lt, '>': operator.gt,
    '<=': operator.le, '>=': operator.ge}
_STRING_OPS = frozenset(('~', '!~', 'regex'))

ERR_GROUP = 'Group by time must be an integer value larger than zero.'
ERR_LIMIT = 'Limit must be an integer value larger than zero.'
ERR_OFFSET = 'Offset must be used after an aggregation method.'
ERR_NUMBER_FILTER = 'Cannot use a number filter on string type.'
ERR_STRING_FILTER = 'Cannot use a string filter on number type.'
# the real server's text (grammar.jsonl)
ERR_REGEX_OP = ("Regular expressions can only be used with 'equal' (==) or 'not equal' "
                "(!=) operator.")
# chosen (no transcript): the texts below follow the style of the recorded ones
ERR_TIME_UNIT = 'Time-span must be an integer value larger than zero.'  # the real text


def _err_string(name: str) -> QueryFailure:
    return QueryFailure(pm.CPROTO_ERR_QUERY, f'Cannot use {name}() on string type.')


def _err_overflow(name: str) -> QueryFailure:
    # chosen: SiriDB keeps integers in int64; a result outside it (or a bucket label
    # after the last valid time-stamp) is refused instead of returning a bigint.
    return QueryFailure(pm.CPROTO_ERR_QUERY, f'Overflow detected while using {name}().')


@dataclass(frozen=True)
class AggrSpec:
    """One step of a select's aggregate chain, as the parser hands it over."""

    name: str                       # one of NAMES
    group: Optional[int] = None     # bucket size in database time units; None = one bucket
    limit: Optional[int] = None     # limit(n, fn): n
    fn: Optional[str] = None        # limit(n, fn): the aggregate name
    op: Optional[str] = None        # filter: == != < > <= >= ~ !~ regex (None means ==)
    operand: Any = None             # filter operand: int/float, str or a compiled regex
    ts_unit: Optional[int] = None   # derivative(u) / derivative(u, g): the time unit
    offset: Optional[int] = None    # offset(o), or the offset folded into an aggregate


def result_type(spec: AggrSpec, tp: int) -> int:
    """The series type a step produces from input type ``tp`` (limit: when reducing)."""
    name = spec.fn if spec.name == 'limit' and spec.fn else spec.name
    if name in _FLOAT_RESULT:
        return TYPE_FLOAT
    if name in _INT_RESULT:
        return TYPE_INTEGER
    return tp


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_spec(spec: AggrSpec) -> None:
    name = spec.name
    if name not in NAMES:
        raise QueryFailure(pm.CPROTO_ERR_QUERY, f'Unknown aggregate function: {name}()')  # chosen
    if spec.group is not None and (not _is_int(spec.group) or spec.group <= 0):
        raise QueryFailure(pm.CPROTO_ERR_QUERY, ERR_GROUP)
    if name == 'limit':
        if not _is_int(spec.limit) or spec.limit is None or spec.limit <= 0:
            raise QueryFailure(pm.CPROTO_ERR_QUERY, ERR_LIMIT)
        if spec.fn not in AGGREGATES:
            raise QueryFailure(  # chosen; the grammar only offers aggregates here
                pm.CPROTO_ERR_QUERY,
                f'Cannot use {spec.fn}() as the aggregation method of limit().')
    if name == 'derivative' and spec.ts_unit is not None and (
            not _is_int(spec.ts_unit) or not 0 < spec.ts_unit <= INT64_MAX):
        raise QueryFailure(pm.CPROTO_ERR_QUERY, ERR_TIME_UNIT)
    if spec.offset is not None and not _is_int(spec.offset):
        raise QueryFailure(pm.CPROTO_ERR_QUERY, ERR_OFFSET)
    if name == 'filter':
        if spec.op is not None and spec.op not in _FILTER_OPS and \
                spec.op not in _STRING_OPS:
            raise QueryFailure(
                pm.CPROTO_ERR_QUERY, f'Unknown filter operator: {spec.op}')  # chosen
        operand = spec.operand
        if (spec.op == 'regex' or isinstance(operand, REGEX_TYPES)) and \
                spec.op not in (None, 'regex', '==', '!='):
            raise QueryFailure(pm.CPROTO_ERR_QUERY, ERR_REGEX_OP)
        if spec.op in ('~', '!~') and isinstance(operand, (int, float)) and \
                not isinstance(operand, bool):
            raise QueryFailure(
                pm.CPROTO_ERR_QUERY, f"Operator '{spec.op}' can only be used with strings.")
        if not isinstance(operand, (int, float, str) + REGEX_TYPES) or \
                isinstance(operand, bool):
            raise QueryFailure(pm.CPROTO_ERR_QUERY, 'Filter needs a number, string or regular '
                               'expression.')  # chosen; the grammar never sends this


def _fold_offsets(specs: Sequence[AggrSpec]) -> List[AggrSpec]:
    """Check every step and move each ``offset(o)`` into the aggregate before it."""
    out: List[AggrSpec] = []
    for spec in specs:
        _check_spec(spec)
        if spec.name == 'offset':
            if not out or out[-1].name not in AGGREGATES or out[-1].offset is not None:
                raise QueryFailure(pm.CPROTO_ERR_QUERY, ERR_OFFSET)
            # chosen: after an aggregate without (g) there is no window to shift, so
            # the offset has no effect there
            out[-1] = replace(out[-1], offset=spec.offset or 0)
        else:
            out.append(spec)
    return out


def check_chain(specs: Sequence[AggrSpec]) -> None:
    """Raise a query error (QueryFailure) for a chain the real server refuses up front."""
    _fold_offsets(specs)


# --- helpers --------------------------------------------------------------------------

def _ensure_sorted(first: Optional[AggrSpec], ts: Sequence[int], values: Sequence[Any]
                   ) -> Tuple[Sequence[int], Sequence[Any]]:
    """The store hands over sorted points; re-sort (stably) anything that is not.

    Checking costs a pass over the timestamps, so it is skipped when the first step
    reduces all points to one value regardless of their order (plain mean(), sum() ...).
    """
    n = len(ts)
    if len(values) != n:
        raise QueryFailure(
            pm.CPROTO_ERR_QUERY, 'Time-stamps and values differ in length.')  # chosen
    if first is not None and first.group is None and first.name in _ORDER_FREE:
        return ts, values
    if n < 2 or all(map(operator.le, islice(ts, 0, n - 1), islice(ts, 1, None))):
        return ts, values
    order = sorted(range(n), key=ts.__getitem__)
    return [ts[i] for i in order], [values[i] for i in order]


def _has_nan(tp: int, vals: Sequence[Any]) -> bool:
    return tp == TYPE_FLOAT and any(map(math.isnan, vals))


def _div0(x: Any) -> float:
    """x / 0 the way IEEE floats (and so the C server) do it, without an exception."""
    if x != x or x == 0:
        return math.nan
    return math.inf if x > 0 else -math.inf


def _check_int64(name: str, tp: int, vals: List[Any]) -> None:
    if tp == TYPE_INTEGER and vals and (max(vals) > INT64_MAX or min(vals) < INT64_MIN):
        raise _err_overflow(name)


Reducer = Callable[[Sequence[Any], int, int], Any]


def _reducer(name: str, tp: int, unit: int, group: int) -> Reducer:
    """A function (values, i, j) -> the aggregate of values[i:j] (never empty)."""
    if name == 'count':
        return lambda v, i, j: j - i
    if name == 'first':
        return lambda v, i, j: v[i]
    if name == 'last':
        return lambda v, i, j: v[j - 1]
    if name == 'difference':
        return lambda v, i, j: v[j - 1] - v[i]
    if name == 'derivative':  # the values as doubles first, as the real server
        return lambda v, i, j: (float(v[j - 1]) - float(v[i])) * unit / group
    if name == 'sum':
        if tp == TYPE_INTEGER:
            return _int_sum
        return lambda v, i, j: sum(v[i:j])
    if name == 'mean':
        if tp == TYPE_INTEGER:  # summed in a double, as the real server does
            return lambda v, i, j: sum(map(float, v[i:j]), 0.0) / (j - i)
        return lambda v, i, j: sum(v[i:j]) / (j - i)

    def nan_aware(fn: Callable[[Sequence[Any]], Any]) -> Reducer:
        # chosen: a NaN in a bucket makes its min, max and medians NaN, as it does for
        # mean, sum and variance (instead of depending on where the NaN sits)
        def run(v: Sequence[Any], i: int, j: int) -> Any:
            vals = v[i:j]
            return math.nan if _has_nan(tp, vals) else fn(vals)
        return run

    if name == 'min':
        return nan_aware(min)
    if name == 'max':
        return nan_aware(max)
    if name in ('median', 'median_low', 'median_high'):
        return nan_aware(_MEDIANS[name])
    if name in ('variance', 'pvariance', 'stddev'):
        return lambda v, i, j: _VARIANCES[name](v[i:j])
    raise AssertionError(name)  # pragma: no cover - guarded by _check_spec


def _int_sum(v: Sequence[int], i: int, j: int) -> int:
    """sum() of integers: the real server refuses a running total beyond int64."""
    vals = v[i:j]
    if vals and max(map(abs, (max(vals), min(vals)))) * len(vals) > INT64_MAX:
        for total in accumulate(vals):
            if not -INT64_MAX - 1 <= total <= INT64_MAX:
                raise _err_overflow('sum')
    return sum(vals)


def _median(vals: Sequence[Any]) -> float:
    s = sorted(vals)
    n = len(s)
    mid = n // 2
    if n % 2:
        return float(s[mid])
    return float((s[mid - 1] + s[mid]) / 2)


def _median_low(vals: Sequence[Any]) -> Any:
    return sorted(vals)[(len(vals) - 1) // 2]


def _median_high(vals: Sequence[Any]) -> Any:
    return sorted(vals)[len(vals) // 2]


_MEDIANS: Dict[str, Callable[[Sequence[Any]], Any]] = {
    'median': _median, 'median_low': _median_low, 'median_high': _median_high}


def _sum_sq(vals: Sequence[Any]) -> float:
    """Sum of squared deviations from the mean, two-pass (stable, matches the server)."""
    m: float = sum(vals) / len(vals)
    return float(sum([(x - m) * (x - m) for x in vals]))


def _variance(vals: Sequence[Any]) -> float:
    # chosen: the sample variance of a single point is 0.0 (nan for nan or inf), not a
    # division by zero
    n = len(vals)
    return _sum_sq(vals) / (n - 1) if n > 1 else _sum_sq(vals)


def _pvariance(vals: Sequence[Any]) -> float:
    return _sum_sq(vals) / len(vals)


def _stddev(vals: Sequence[Any]) -> float:
    return math.sqrt(_variance(vals))


_VARIANCES: Dict[str, Callable[[Sequence[Any]], float]] = {
    'variance': _variance, 'pvariance': _pvariance, 'stddev': _stddev}


def _bucket_bounds(ts: Sequence[int], group: int, offset: int
                   ) -> Tuple[List[int], List[int], List[int]]:
    """Labels, start and end indexes of every (label - group, label] holding points.

    label = ceil(ts / group) * group, in exact integers (with an offset: the real
    server's windows, see below). Few large
    buckets are found by bisecting; many small ones by labelling every point in one
    pass (no Python call per point), which is several times faster there.
    """
    n = len(ts)
    labels: List[int] = []
    starts: List[int] = []
    offset %= group
    if offset:
        # SiriDB 2.0.55's windows with an offset: a window opened by the point at t
        # is labelled ceil(t / g) * g + o and takes every point up to its label
        i = 0
        while i < n:
            label = -(-ts[i] // group) * group + offset
            labels.append(label)
            starts.append(i)
            i = bisect_right(ts, label, i, n)
    elif n and ((ts[-1] - ts[0]) // group + 1) * 16 < n:
        i = 0
        while i < n:
            label = offset - ((offset - ts[i]) // group) * group
            labels.append(label)
            starts.append(i)
            i = bisect_right(ts, label, i, n)
    elif n:
        every = [offset - ((offset - t) // group) * group for t in ts]
        starts.append(0)
        starts.extend(compress(range(1, n), map(
            operator.ne, islice(every, 1, None), every)))
        labels = [every[i] for i in starts]
    ends = starts[1:]
    ends.append(n)
    return labels, starts, ends


def _pairwise(name: str, ts: Sequence[int], values: Sequence[Any], unit: int
              ) -> List[Any]:
    """difference(), derivative() and interval() over consecutive points."""
    if name == 'interval':
        return list(map(operator.sub, islice(ts, 1, None), ts))
    if name == 'difference':
        return list(map(operator.sub, islice(values, 1, None), values))
    # derivative: the values as doubles first, as the real server computes it
    fv = list(map(float, values))
    diffs = list(map(operator.sub, islice(fv, 1, None), fv))
    dts = map(operator.sub, islice(ts, 1, None), ts)
    # chosen: two points at the same time-stamp give +-inf or nan, as C doubles would
    return [d * unit / dt if dt else _div0(d) for d, dt in zip(diffs, dts)]


def _filter(spec: AggrSpec, ts: Sequence[int], values: Sequence[Any], tp: int
            ) -> Tuple[List[int], List[Any]]:
    op = spec.op or '=='
    operand = spec.operand
    is_regex = op == 'regex' or isinstance(operand, REGEX_TYPES)
    text_operand = isinstance(operand, (str,) + REGEX_TYPES)
    if tp == TYPE_STRING:
        if not text_operand:  # filter(> 5), but also filter(~ 5)
            raise QueryFailure(pm.CPROTO_ERR_QUERY, ERR_NUMBER_FILTER)
    elif text_operand or op in _STRING_OPS:  # filter(> "x"), filter(~ "x"), regex
        raise QueryFailure(pm.CPROTO_ERR_QUERY, ERR_STRING_FILTER)

    if tp == TYPE_INTEGER and isinstance(operand, float):
        # the real server compares integers with the operand converted to int64 as C
        # does (toward zero; nan and +-inf become the smallest int64)
        operand = int(operand) if math.isfinite(operand) and \
            INT64_MIN <= operand <= INT64_MAX else INT64_MIN
    mask: Any
    if is_regex:
        pattern = operand
        if not isinstance(pattern, REGEX_TYPES):
            pattern = compile_regex(str(pattern), False, anchored=False)
        # searched: the select statement hands over a pattern anchored like a selector
        mask = map(pattern.search, values)
        if op == '!=':
            mask = map(operator.not_, mask)
    elif op == '~':
        mask = map(operator.contains, values, repeat(operand))
    elif op == '!~':
        mask = map(operator.not_, map(operator.contains, values, repeat(operand)))
    elif isinstance(operand, float) and math.isnan(operand):
        # NaN equals NaN: filter(!= nan) drops NaN values (SiriDB's documented idiom),
        # filter(== nan), filter(>= nan) and filter(<= nan) keep only them
        if op in ('==', '>=', '<='):
            mask = map(math.isnan, values)
        elif op == '!=':
            mask = map(operator.not_, map(math.isnan, values))
        else:
            return [], []
    else:
        mask = map(_FILTER_OPS[op], values, repeat(operand))
    keep = list(mask)
    return list(compress(ts, keep)), list(compress(values, keep))


# --- the steps ------------------------------------------------------------------------

def _apply(spec: AggrSpec, ts: Sequence[int], values: Sequence[Any], tp: int,
           clamp: bool = False) -> Tuple[List[int], List[Any], int]:
    name = spec.name
    if name == 'offset':
        raise QueryFailure(pm.CPROTO_ERR_QUERY, ERR_OFFSET)
    if name == 'limit':
        fn = spec.fn or ''
        if tp == TYPE_STRING and fn in _NUMBER_ONLY:
            raise _err_string(fn)
        if len(ts) <= (spec.limit or 0):
            return list(ts), list(values), tp
        group = (ts[-1] - ts[0]) // (spec.limit or 1) + 1
        inner = AggrSpec(fn, group=group, offset=(ts[0] - 1) % group)
        return _apply(inner, ts, values, tp, clamp=True)
    if tp == TYPE_STRING and name in _NUMBER_ONLY:
        raise _err_string(name)
    out_tp = result_type(spec, tp)
    if name == 'filter':
        f_ts, f_v = _filter(spec, ts, values, tp)
        return f_ts, f_v, out_tp
    if name == 'timeval':
        return list(ts), list(ts), out_tp
    n = len(ts)
    if not n:
        return [], [], out_tp
    unit = spec.ts_unit or 1
    try:
        if name == 'interval' or (spec.group is None and name in (
                'difference', 'derivative')):
            out_v = _pairwise(name, ts, values, unit)
            out_ts = list(islice(ts, 1, None))
        elif spec.group is None:
            out_v = [_reducer(name, tp, unit, 1)(values, 0, n)]
            # the last point's timestamp (first() the first's); max() as the order-free
            # aggregates may get their points unsorted
            out_ts = [ts[0] if name == 'first' else ts[-1] if name == 'last' else max(ts)]
        else:
            reduce = _reducer(name, tp, unit, spec.group)
            out_ts, starts, ends = _bucket_bounds(ts, spec.group, spec.offset or 0)
            if out_ts[-1] > INT64_MAX:
                if not clamp:
                    raise _err_overflow(name)
                # limit's last bucket may reach past the last valid time-stamp: it
                # can only hold points up to there, so that is its label
                out_ts[-1] = INT64_MAX
            out_v = [reduce(values, i, j) for i, j in zip(starts, ends)]
            if tp == TYPE_STRING and name in ('first', 'last'):
                # strings keep the timestamp of the point taken (SiriDB 2.0.55)
                out_ts = [ts[i] if name == 'first' else ts[j - 1]
                          for i, j in zip(starts, ends)]
    except OverflowError:  # a float conversion of an enormous integer
        raise _err_overflow(name) from None
    if name in ('sum', 'difference'):
        _check_int64(name, out_tp, out_v)
    return out_ts, out_v, out_tp


def apply(spec: AggrSpec, ts: Sequence[int], values: Sequence[Any], tp: int
          ) -> Tuple[List[int], List[Any], int]:
    """Run one step; returns the new timestamps, values and series type."""
    _check_spec(spec)
    ts, values = _ensure_sorted(spec, ts, values)
    return _apply(spec, ts, values, tp)


def apply_chain(specs: Sequence[AggrSpec], ts: Sequence[int], values: Sequence[Any],
                tp: int) -> Tuple[List[int], List[Any], int]:
    """Run a whole ``a => b => c`` chain (offsets folded into the step before them)."""
    steps = _fold_offsets(specs)
    ts, values = _ensure_sorted(steps[0] if steps else None, ts, values)
    if not steps:
        return list(ts), list(values), tp
    out_ts, out_v, tp = _apply(steps[0], ts, values, tp)  # steps return new lists
    for spec in steps[1:]:
        out_ts, out_v, tp = _apply(spec, out_ts, out_v, tp)
    return out_ts, out_v, tp
