"""The `select` statement: series, time range, aggregate chains, prefix/suffix, merge.

Aggregate functions themselves live in `aggregates.py`; this module turns the
parse tree into `AggrSpec` chains, picks the points and shapes the reply.
"""
from __future__ import annotations

from bisect import bisect_left
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ...wire import types as pm
from ..context import QueryFailure
from ..store import TYPE_FLOAT, TYPE_INTEGER, TYPE_STRING, Database
from . import aggregates as ag
from . import merging, strings
from .nodes import AggrFn, SelectAggr, SelectStmt
from .selectors import compile_regex, matches, resolve_where, select_names, series_row
from .timeexpr import evaluate, to_int

__all__ = ['run_select', 'build_specs', 'convert_ts', 'Rows', 'deferred_rows',
           'ROWS_STEP']

#: points per slice of a reply's rows made in steps (2-4 ms to make and
#: pack); a series with more points in the answer is a ``Rows`` when deferred
ROWS_STEP = 10_000
#: whether ``run_select`` may leave big answers as ``Rows`` (``deferred_rows``)
_DEFER: ContextVar[bool] = ContextVar('siridb_embedded_defer_rows', default=False)

_UNIQUE = ('When using multiple select methods, add a prefix and/or suffix to the '
           'selection to make them unique.')
_POINTS = ('Query has reached the maximum number of selected points ({}). Please use '
           'another time window, an aggregation function or select less series to reduce '
           'the number of points.')

Result = Tuple[str, Sequence[int], Sequence[Any], int]


def _operand(node: Tuple[Any, ...]) -> Any:
    kind = node[0]
    if kind == 'str':
        return node[1]
    if kind == 'regex':
        return compile_regex(node[1], node[2])  # anchored, like a selector
    text = node[1]
    if text.lstrip('-').isdigit():
        return to_int(text)
    try:
        return float(text)
    except ValueError:  # pragma: no cover (the grammar only lets numbers through)
        raise QueryFailure(pm.CPROTO_ERR_QUERY, f'Invalid number: {text}') from None


def build_specs(chain: Sequence[AggrFn], db: Database, now: int) -> List[Any]:
    """Parse-tree chain -> checked list of aggregates.AggrSpec (`*` is the identity)."""
    specs: List[Any] = []
    if len(chain) == 1 and chain[0]['fn'] == '*':  # plain `select *`
        return specs

    def ev(expr: Tuple[Any, ...]) -> int:
        return evaluate(expr, db.factor, now, db.timezone)

    for fn in chain:
        name = fn['fn']
        if name == '*':
            continue
        kw: Dict[str, Any] = {}
        group = fn.get('group')
        if group is not None:
            kw['group'] = ev(group)
        ts_unit = fn.get('ts_unit')
        if ts_unit is not None:
            kw['ts_unit'] = ev(ts_unit)
        if name == 'offset':
            kw['offset'] = ev(fn['offset'])
        elif name == 'limit':
            kw['limit'] = ev(fn['limit'])
            kw['fn'] = fn['limit_fn']
        elif name == 'filter':
            kw['op'] = fn['op']
            kw['operand'] = _operand(fn['operand'])
        specs.append(ag.AggrSpec(name=name, **kw))
    ag.check_chain(specs)
    return specs


def convert_ts(ts: int, db_factor: int, time_precision: Optional[int]) -> int:
    """A timestamp in database units -> the requested precision (exact, floor)."""
    if time_precision is None:
        return ts
    target: int = 1000 ** time_precision
    if target >= db_factor:
        return ts * (target // db_factor)
    return ts // (db_factor // target)


def _range(node: Optional[Tuple[Any, ...]], db: Database, now: int) -> Tuple[
        Optional[int], Optional[int], Optional[int], Optional[int]]:
    """(start, end, head, tail) from an after/before/between/head/tail clause."""
    if node is None:
        return None, None, None, None
    word = node[0]
    if word in ('head', 'tail'):
        n = evaluate(node[1], db.factor, now, db.timezone)
        limit = db.select_points_limit
        if not 1 <= n <= limit:
            raise QueryFailure(
                pm.CPROTO_ERR_QUERY,
                f'{word.capitalize()} must be a value between 1 and {limit}, got {n}')
        return (None, None, n, None) if word == 'head' else (None, None, None, n)
    t0 = evaluate(node[1], db.factor, now, db.timezone)
    if word == 'after':
        return t0, None, None, None
    if word == 'before':
        return None, t0, None, None
    t1 = evaluate(node[2], db.factor, now, db.timezone)
    if t0 > t1:
        raise QueryFailure(
            pm.CPROTO_ERR_QUERY, f'Start time ({t0}) should not be greater than end time ({t1})')
    return t0, t1, None, None


def _merge(results: List[Result], using: List[Any]) -> Tuple[List[int], List[Any]]:
    types = {r[3] for r in results}
    if TYPE_STRING in types and len(types) > 1:
        raise QueryFailure(pm.CPROTO_ERR_QUERY, 'Cannot merge string and number series.')
    # at equal times in the real server's order (merging.py)
    points = merging.merge_points([(ts, vals) for _, ts, vals, _tp in results])
    tp = TYPE_INTEGER
    if TYPE_STRING in types:
        tp = TYPE_STRING
    elif TYPE_FLOAT in types:
        tp = TYPE_FLOAT
    ts_out = [p[0] for p in points]
    vals_out = [float(p[1]) for p in points] if tp == TYPE_FLOAT else [p[1] for p in points]
    if using and ts_out:
        ts_out, vals_out, tp = ag.apply_chain(using, ts_out, vals_out, tp)
    return ts_out, vals_out


def run_select(db: Database, node: SelectStmt, now: int,
               time_precision: Optional[int]) -> Dict[str, Any]:
    # in the real server's order: each aggregate is checked as the statement is read,
    # then the selection as a whole
    aggrs: List[SelectAggr] = node['aggrs']
    chains = [build_specs(a['chain'], db, now) for a in aggrs]
    if len(aggrs) > 1 and len({(a['prefix'], a['suffix']) for a in aggrs}) < len(aggrs):
        raise QueryFailure(pm.CPROTO_ERR_QUERY, _UNIQUE)
    names = select_names(db, node['selector'])
    where = resolve_where(db, node['where'], now)
    if where is not None:
        names = [n for n in names if matches(where, series_row(db.series[n], db))]
    merge = node['merge']
    using: List[Any] = []
    if merge is not None:
        if merge[1]:
            using = build_specs(merge[1], db, now)
        if not merge[0]:
            raise QueryFailure(pm.CPROTO_ERR_QUERY, 'Error while merging points. Make sure the '
                                   'destination series name is valid.')
    start, end, head, tail = _range(node['range'], db, now)

    budget = _PointBudget(db.select_points_limit)
    # every point is taken: the stored arrays themselves
    whole = start is None and end is None and head is None and tail is None
    series = db.series

    def read(name: str) -> Tuple[int, Sequence[int], Sequence[Any]]:
        """The points of one series the select takes (sliced anew for each
        aggregate, so that no copy outlives it)."""
        s = series[name]
        ts, vals = s.points()
        if whole:
            return s.tp, ts, vals
        if s.chunks is not None and (start is not None or end is not None):
            # a string series through a time filter: as SiriDB 2.0.55 reads it
            return (s.tp, *strings.filtered(s, start, end))
        lo = 0 if start is None else bisect_left(ts, start)
        hi = len(ts) if end is None else bisect_left(ts, end)
        if head is not None:
            hi = min(hi, lo + head)
        if tail is not None:
            lo = max(lo, hi - tail)
        return s.tp, ts[lo:hi], vals[lo:hi]

    factor = db.factor
    out: Dict[str, Any] = {}
    # first(), last() and count() alone read only what they need, as SiriDB 2.0.55
    # does (for string series that read is its own: see strings.py)
    skip = start is None and end is None and head is None and tail is None and \
        merge is None and all(len(a['chain']) == 1 and a['chain'][0]['fn'] in (
            'count', 'first', 'last') and a['chain'][0].get('group') is None
            for a in aggrs)
    for aggr, specs in zip(aggrs, chains):
        results: List[Result] = []
        fn = aggr['chain'][0]['fn']
        for name in names:
            tp, ts, vals = read(name)
            rts: Sequence[int]
            rvals: Sequence[Any]
            if skip and tp == TYPE_STRING and fn in ('first', 'last') and len(ts):
                t, v = (strings.first if fn == 'first' else strings.last)(series[name])
                rts, rvals, rtp = [t], [v], tp
            elif specs and len(ts):  # no points: no aggregate runs (nor refuses the type)
                rts, rvals, rtp = ag.apply_chain(specs, ts, vals, tp)
            else:
                rts, rvals, rtp = ts, vals, tp
            budget.take(len(rts))
            if merge is None:
                out[aggr['prefix'] + name + aggr['suffix']] = _rows(
                    rts, rvals, factor, time_precision)
            else:
                results.append((name, rts, rvals, rtp))
        if merge is not None:
            mts, mvals = _merge(results, using)
            out[aggr['prefix'] + merge[0] + aggr['suffix']] = _rows(
                mts, mvals, factor, time_precision)
    return out


class _PointBudget:
    """The select points limit, counted on the points each series adds to the
    answer (after its aggregates, for every prefix/suffix) as they are made,
    so a query stops at the series that passes the limit, the first one too."""

    __slots__ = ('limit', 'total')

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0

    def take(self, points: int) -> None:
        self.total += points
        if self.total > self.limit:
            raise QueryFailure(pm.CPROTO_ERR_QUERY, _POINTS.format(self.limit))


@contextmanager
def deferred_rows() -> Iterator[None]:
    """Within it, ``run_select`` answers a series of more than ``ROWS_STEP``
    points with a ``Rows`` (the server makes and packs those in steps, so
    that other clients are served meanwhile); elsewhere always with lists."""
    token = _DEFER.set(True)
    try:
        yield
    finally:
        _DEFER.reset(token)


class Rows:
    """The ``[[ts, value], ...]`` of one series in a select's answer, not
    made yet: ``slices()`` makes them ``ROWS_STEP`` at a time. It holds its
    own copy of the points, so later inserts do not change the answer."""

    __slots__ = ('ts', 'vals', 'factor', 'time_precision')

    def __init__(self, ts: Sequence[int], vals: Sequence[Any], factor: int,
                 time_precision: Optional[int]) -> None:
        # slices copy (arrays and lists alike, in C)
        self.ts = ts[:]
        self.vals = vals[:]
        self.factor = factor
        self.time_precision = time_precision

    def __len__(self) -> int:
        return len(self.ts)

    def slices(self) -> Iterator[List[Tuple[int, Any]]]:
        """The rows ``ROWS_STEP`` at a time, as tuples: qpack packs them as
        it packs lists, and the cyclic GC stops tracking them."""
        ts, vals = self.ts, self.vals
        for i in range(0, len(ts), ROWS_STEP):
            j = i + ROWS_STEP
            yield list(zip(_in_precision(ts[i:j], self.factor, self.time_precision),
                           vals[i:j]))


def _in_precision(ts: Sequence[int], factor: int,
                  time_precision: Optional[int]) -> Sequence[int]:
    """Timestamps in database units -> the requested precision."""
    if time_precision is not None and 1000 ** time_precision != factor:
        return [convert_ts(t, factor, time_precision) for t in ts]
    return ts


def _rows(ts: Sequence[int], vals: Sequence[Any], factor: int,
          time_precision: Optional[int]) -> Union[List[List[Any]], Rows]:
    """``[[ts, value], ...]`` with the timestamps in the requested precision,
    or a ``Rows`` for a big answer within ``deferred_rows``."""
    if len(ts) > ROWS_STEP and _DEFER.get():
        return Rows(ts, vals, factor, time_precision)
    return list(map(list, zip(_in_precision(ts, factor, time_precision), vals)))
