"""INSERT requests: validate a whole request first, then store it.

Validation follows the real server's parser, in wire order, so the first
problem found gives the same error text (``Insert error`` texts of the
protocol document); nothing is stored unless the whole request is valid.
Values of another type than their series are converted like the real server
does (C ``strtoll``/``strtod``/``"%f"``). The loops are written for bulk data:
type and range checks run over whole point lists with C-level builtins, and a
slow per-point pass only runs to find the exact error once one is known.
"""
from __future__ import annotations

import re
from array import array
from operator import itemgetter
from typing import Any, Iterator, List, Tuple

from ..wire import types as pm
from ..wire.units import INT64_MAX, INT64_MIN
from .context import QueryFailure
from .shards import buffer_len
from .shards import note as note_shards
from .store import TYPE_FLOAT, TYPE_INTEGER, TYPE_STRING, Database

__all__ = [
    'ERR_MAP_OR_ARRAY', 'ERR_SERIES_NAME', 'ERR_ARRAY', 'ERR_AT_LEAST_ONE',
    'ERR_INTEGER_TS', 'ERR_TS_RANGE', 'ERR_VALUE', 'ERR_NAME_AND_POINTS',
    'Chunk', 'iter_chunks', 'parse_insert', 'apply_insert', 'insert', 'success_msg',
    'to_int', 'to_float', 'to_str',
]

ERR_MAP_OR_ARRAY = 'Expecting an array or map containing series and points.'
ERR_SERIES_NAME = (
    'Expecting a series name (string value) with an array of points where each '
    'point should be an integer time-stamp with a value.')
ERR_ARRAY = 'Expecting an array with points.'
ERR_AT_LEAST_ONE = 'Expecting a series to have at least one point.'
ERR_INTEGER_TS = 'Expecting an integer value as time-stamp.'
ERR_TS_RANGE = 'Received at least one time-stamp which is out-of-range.'
ERR_VALUE = ('Unsupported value received. (only integer, float and string '
             'values are supported).')
ERR_NAME_AND_POINTS = 'Expecting a map with name and points.'

_INSERT_ERROR = pm.CPROTO_ERR_INSERT

#: one series' share of a request: (name, timestamps, raw values)
Chunk = Tuple[str, List[int], List[Any]]

_ts_of = itemgetter(0)
_value_of = itemgetter(1)
_VALUE_TYPES = frozenset((int, float, str))
#: point lists up to this length are checked point by point (see _points)
_SMALL = 8


def _fail(msg: str) -> QueryFailure:
    return QueryFailure(_INSERT_ERROR, msg)


def _is_point(p: Any) -> bool:
    return type(p) is list and len(p) == 2


def _points(name: str, pts: Any, max_ts: int) -> Tuple[Chunk, bool]:
    """Validate one series' points; returns the chunk and whether the point
    list ended early with a malformed point (the parser then stops reading
    series, which the caller turns into ERR_SERIES_NAME)."""
    if type(pts) is not list:
        raise _fail(ERR_ARRAY)
    if not pts or not _is_point(pts[0]):
        raise _fail(ERR_AT_LEAST_ONE)
    if len(pts) <= _SMALL:
        # a few points: one plain pass beats the bulk checks' set() and
        # min()/max() calls; anything unusual takes the bulk path below
        ts: List[int] = []
        values: List[Any] = []
        for p in pts:
            if type(p) is not list or len(p) != 2:
                break
            t, v = p
            if type(t) is not int or t < 0 or t > max_ts or \
                    type(v) not in _VALUE_TYPES:
                break
            ts.append(t)
            values.append(v)
        else:
            return (name, ts, values), False
    broken = False
    if set(map(type, pts)) != {list} or set(map(len, pts)) != {2}:
        # the real parser reads points while they are 2-item arrays
        n = 0
        for p in pts:
            if not _is_point(p):
                break
            n += 1
        pts = pts[:n]
        broken = True
    ts = list(map(_ts_of, pts))
    values = list(map(_value_of, pts))
    ok = set(map(type, ts)) == {int} and min(ts) >= 0 and max(ts) <= max_ts \
        and set(map(type, values)) <= _VALUE_TYPES
    if not ok:  # find the first bad point, in wire order
        for t, v in zip(ts, values):
            if type(t) is not int:
                raise _fail(ERR_INTEGER_TS)
            if t < 0 or t > max_ts:
                raise _fail(ERR_TS_RANGE)
            if type(v) not in _VALUE_TYPES:
                raise _fail(ERR_VALUE)
    return (name, ts, values), broken


def iter_chunks(data: Any, max_ts: int) -> Iterator[Chunk]:
    """Validate a decoded INSERT payload series by series, in wire order;
    raise QueryFailure (an insert error) at the first problem."""
    if type(data) is dict:
        for name, pts in data.items():
            if type(name) is not str or not name:
                raise _fail(ERR_SERIES_NAME)
            chunk, broken = _points(name, pts, max_ts)
            if broken:
                raise _fail(ERR_SERIES_NAME)
            yield chunk
    elif type(data) is list:
        for item in data:
            # the real parser reads the list form as maps of exactly two keys
            if type(item) is not dict or len(item) != 2:
                raise _fail(ERR_SERIES_NAME)
            name = item.get('name')
            if 'points' not in item or type(name) is not str or not name:
                raise _fail(ERR_NAME_AND_POINTS)
            chunk, broken = _points(name, item['points'], max_ts)
            if broken:
                raise _fail(ERR_SERIES_NAME)
            yield chunk
    else:
        raise _fail(ERR_MAP_OR_ARRAY)


def parse_insert(data: Any, max_ts: int) -> List[Chunk]:
    """Validate a decoded INSERT payload; raise QueryFailure (an insert error)."""
    return list(iter_chunks(data, max_ts))


# -- conversions like the C library ---------------------------------------

_STRTOLL = re.compile(r'[ \t\n\v\f\r]*([+-]?[0-9]+)')
_STRTOD = re.compile(
    r'[ \t\n\v\f\r]*([+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?'
    r'|inf(?:inity)?|nan))', re.IGNORECASE)


def to_int(v: Any) -> int:
    """Value for an integer series (float truncates, str like strtoll)."""
    if type(v) is int:
        return v
    if type(v) is float:
        if v != v:
            return 0
        if v >= 9.2233720368547758e18:
            return INT64_MAX
        if v <= -9.2233720368547758e18:
            return INT64_MIN
        return int(v)
    m = _STRTOLL.match(str(v))
    if m is None:
        return 0
    return max(INT64_MIN, min(INT64_MAX, int(m.group(1))))


def to_float(v: Any) -> float:
    """Value for a float series (int converts, str like strtod)."""
    if type(v) is float:
        return v
    if type(v) is int:
        return float(v)
    m = _STRTOD.match(str(v))
    if m is None:
        return 0.0
    try:
        return float(m.group(1))
    except (ValueError, OverflowError):
        return 0.0


def to_str(v: Any) -> str:
    """Value for a string series (int as decimal, float like C "%f")."""
    if type(v) is str:
        return v
    if type(v) is float:
        return f'{v:f}'
    return str(v)


def _typed(tp: int, values: List[Any]) -> Any:
    """``values`` converted in bulk into the storage type of ``tp``."""
    kinds = set(map(type, values))
    if tp == TYPE_INTEGER:
        if kinds == {int}:
            try:
                return array('q', values)
            except OverflowError:
                pass
        return array('q', map(to_int, values))
    if tp == TYPE_FLOAT:
        if kinds <= {int, float}:
            try:
                return array('d', values)
            except OverflowError:
                pass
        return array('d', map(to_float, values))
    if kinds == {str}:
        return values
    return list(map(to_str, values))


def _type_of(value: Any) -> int:
    if type(value) is int:
        return TYPE_INTEGER
    if type(value) is float:
        return TYPE_FLOAT
    return TYPE_STRING


def apply_insert(db: Database, chunks: List[Chunk]) -> int:
    """Store validated chunks; returns the number of points stored."""
    n = 0
    series = db.series
    room = buffer_len(db)  # the shards a real server would write
    for name, ts, values in chunks:
        s = series.get(name)
        if s is None:
            s = db.get_or_create(name, _type_of(values[0]))
        if s.tp != TYPE_STRING and ts:  # (string series keep their inserts)
            note_shards(s, ts, len(s), room)
        s.extend(ts, _typed(s.tp, values))
        n += len(ts)
    return n


def success_msg(n: int) -> str:
    return f'Successfully inserted {n} point(s).'


def insert(db: Database, data: Any) -> int:
    """Validate and store a decoded payload; raises QueryFailure (an insert error)."""
    return apply_insert(db, parse_insert(data, db.max_ts))
