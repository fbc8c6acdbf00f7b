"""Typed views of query results: series with datetime points, rows, dicts.

``client.query`` returns the server's map unchanged (the 2.1.6 contract);
these helpers turn that map into something easier to use. pandas is optional:
``to_dataframe`` imports it only when called.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from .constants import INT64_MAX, PRECISION_FACTORS
from .timestamps import Precision, from_timestamp, precision_factor, precision_name

__all__ = [
    'SeriesResult', 'parse_select', 'rows', 'count', 'show', 'to_dataframe',
    'TIMEIT_KEY', 'QueryResult', 'InsertReply',
]

#: the key ``timeit`` adds to a result
TIMEIT_KEY = '__timeit__'

Value = Union[int, float, str]

#: what ``query()`` returns: the server's map (select: ``{series: [[ts, value],
#: ...]}``; list: ``{'columns': [...], 'series': [[...], ...]}``; count, show, ...)
QueryResult = Dict[str, Any]
#: what ``insert()`` returns: ``{'success_msg': 'Successfully inserted N point(s).'}``
InsertReply = Dict[str, Any]


@dataclass(frozen=True)
class SeriesResult:
    """One series of a select result.

    ``raw`` holds the points as the server sent them (integer timestamps in
    ``precision``); ``points`` the same with aware UTC datetimes (datetime
    has microseconds, so nanosecond timestamps are floored there: use
    ``raw`` when you need them).
    """

    name: str
    raw: Tuple[Tuple[int, Value], ...]
    precision: str

    @property
    def points(self) -> List[Tuple[_dt.datetime, Value]]:
        p = self.precision
        return [(from_timestamp(ts, p), v) for ts, v in self.raw]

    @property
    def timestamps(self) -> List[int]:
        return [ts for ts, _ in self.raw]

    @property
    def values(self) -> List[Value]:
        return [v for _, v in self.raw]

    def __len__(self) -> int:
        return len(self.raw)

    def __iter__(self) -> Iterator[Tuple[_dt.datetime, Value]]:
        return iter(self.points)


def parse_select(result: Mapping[str, Any], precision: Precision) -> Dict[str, SeriesResult]:
    """``{name: SeriesResult}`` for a select result.

    ``precision`` is the precision of the timestamps in ``result``: the
    database's, or the ``time_precision`` passed to ``query``. The
    ``__timeit__`` entry is left out.
    """
    if not isinstance(result, Mapping):
        raise TypeError('expecting the dict a select query returns')
    p = precision_name(precision)
    out: Dict[str, SeriesResult] = {}
    for name, points in result.items():
        if name == TIMEIT_KEY:
            continue
        if not isinstance(points, list):
            raise ValueError(f'not a select result: {name!r} holds {type(points).__name__}')
        out[name] = SeriesResult(name, tuple((int(ts), v) for ts, v in points), p)
    return out


def _table(result: Mapping[str, Any]) -> Tuple[Sequence[str], Sequence[Sequence[Any]]]:
    if not isinstance(result, Mapping) or 'columns' not in result:
        raise ValueError('not a list result (expecting a "columns" key)')
    columns = result['columns']
    keys = [k for k in result if k not in ('columns', TIMEIT_KEY)]
    if len(keys) != 1:
        raise ValueError(f'not a list result: keys {sorted(result)}')
    return columns, result[keys[0]]


def rows(result: Mapping[str, Any]) -> List[Dict[str, Any]]:
    """The rows of a ``list ...`` result as dicts keyed by column name."""
    columns, table = _table(result)
    return [dict(zip(columns, row)) for row in table]


def count(result: Mapping[str, Any]) -> int:
    """The number of a ``count ...`` result (``{"series": 9}`` -> 9)."""
    keys = [k for k in result if k != TIMEIT_KEY]
    if len(keys) != 1 or not isinstance(result[keys[0]], int):
        raise ValueError(f'not a count result: keys {sorted(result)}')
    return int(result[keys[0]])


def show(result: Mapping[str, Any]) -> Dict[str, Any]:
    """A ``show ...`` result as ``{name: value}``."""
    data = result.get('data') if isinstance(result, Mapping) else None
    if not isinstance(data, list):
        raise ValueError('not a show result (expecting a "data" list)')
    return {item['name']: item['value'] for item in data}


def _select_columns(result: Mapping[str, Any], precision: Optional[Precision]
                    ) -> Tuple[List[str], List[int], List[int], List[Any], str]:
    """Names, point counts, timestamps and values of a select result, and
    its precision: a ``SeriesResult``'s own, else ``precision`` (default ms)."""
    names: List[str] = []
    counts: List[int] = []
    stamps: List[int] = []
    values: List[Any] = []
    found: Optional[str] = None
    for name, points in result.items():
        if name == TIMEIT_KEY:
            continue
        if isinstance(points, SeriesResult):
            if found is not None and found != points.precision:
                raise ValueError('series of different precisions in one result')
            found = points.precision
            points = points.raw
        elif not isinstance(points, (list, tuple)):
            raise ValueError(f'not a select result: {name!r} holds {type(points).__name__}')
        names.append(name)
        counts.append(len(points))
        stamps.extend([p[0] for p in points])
        values.extend([p[1] for p in points])
    if found is None:
        found = precision_name('ms' if precision is None else precision)
    return names, counts, stamps, values, found


def to_dataframe(result: Mapping[str, Any], precision: Optional[Precision] = None) -> Any:
    """A pandas DataFrame of a select or list result (pandas must be installed:
    the ``pandas`` extra).

    select: columns ``series``, ``time`` (``datetime64[ns, UTC]``, exact to the
    nanosecond) and ``value``. ``result`` is what ``select()``/``parse_select``
    return (the series know their precision) or the raw map of ``query()``, whose
    timestamps are in ``precision`` (the database's or the ``time_precision``
    passed to ``query``; default ms). list: one column per result column.
    Timestamps outside 1677..2262 (the range of ``datetime64[ns]``) raise
    ``OverflowError``.
    """
    try:
        import pandas as pd  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise ImportError("to_dataframe() needs pandas: pip install 'siridb-connector[pandas]'"
                          ) from None
    if isinstance(result, Mapping) and 'columns' in result:
        columns, table = _table(result)
        return pd.DataFrame(list(table), columns=list(columns))
    if not isinstance(result, Mapping):
        raise TypeError('expecting the dict a select query returns')
    names, counts, stamps, values, p = _select_columns(result, precision)
    to_ns = PRECISION_FACTORS[-1] // precision_factor(p)
    ts = pd.Series(stamps, dtype='int64')
    # datetime64[ns] holds int64 nanosecond counts
    if len(ts) and (ts.max() > INT64_MAX // to_ns or ts.min() < -INT64_MAX // to_ns):
        raise OverflowError(f'timestamps (precision {p}) outside the datetime64[ns] range')
    when = (ts * to_ns).astype('datetime64[ns]').dt.tz_localize('UTC')
    series = pd.Series(names, dtype=object).repeat(counts).reset_index(drop=True)
    return pd.DataFrame({'series': series, 'time': when,
                         'value': pd.Series(values, dtype=None if values else object)})


#: the largest nanosecond count ``datetime64[ns]`` holds
_NS_MAX = INT64_MAX
