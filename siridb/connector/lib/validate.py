"""Client-side checks that save a round trip without changing what the server decides.

Every API level (pool, single connection, blocking connection) packs its query
and insert payloads here, so the rules are the same everywhere.
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple, Union

import qpack

from ...wire.units import PRECISION_INDEX
from .codec import MAX_PAYLOAD, packb
from .constants import INT64_MAX, INT64_MIN
from .exceptions import InsertDataError
from .timestamps import max_timestamp, to_timestamp

__all__ = ['check_query', 'check_time_precision', 'pack_query', 'pack_insert',
           'Value', 'Pair', 'check_series', 'check_value', 'group_points', 'column_pairs',
           'pair_estimate', 'series_estimate', 'check_packed_insert', 'pack_points',
           'unpack_points']

_qpack_packb: Callable[[Any], bytes] = qpack.packb


def check_query(query: Any) -> Union[str, bytes]:
    """The query text; anything but str/bytes raises ``TypeError``."""
    if isinstance(query, (str, bytes)):
        return query
    if isinstance(query, (bytearray, memoryview)):
        return bytes(query)
    raise TypeError(
        f'query must be str or bytes, not {type(query).__name__}')


def check_time_precision(time_precision: Any) -> Optional[int]:
    """None, 0-3 or one of 's', 'ms', 'us', 'ns' (returned as 0-3).

    A wrong type raises ``TypeError``, a wrong value ``ValueError``.
    """
    if time_precision is None:
        return None
    if isinstance(time_precision, str):
        try:
            return PRECISION_INDEX[time_precision]
        except KeyError:
            raise ValueError(
                f'time_precision must be None, 0-3 or one of s, ms, us, ns; '
                f'got {time_precision!r}') from None
    if isinstance(time_precision, bool) or not isinstance(time_precision, int):
        raise TypeError(
            f'time_precision must be None, an int 0-3 or a str, '
            f'not {type(time_precision).__name__}')
    if not 0 <= time_precision <= 3:
        raise ValueError(
            f'time_precision must be 0 (s), 1 (ms), 2 (us) or 3 (ns); '
            f'got {time_precision}')
    return time_precision


def pack_query(query: Any, time_precision: Any = None) -> bytes:
    """The QUERY payload ``[query, time_precision]`` after both checks."""
    if time_precision is None and type(query) is str:  # the common case
        return packb([query, None])
    return packb([check_query(query), check_time_precision(time_precision)])


#: inserts of at most this many points get their nesting measured (cheap for
#: them); bigger ones are packed as they are (see ``_pack_checked``)
CHECKED_POINTS = 64
#: valid inserts nest 5 levels deep; this is far more than any needs
_SHALLOW = 32
_CONTAINERS = (list, tuple, dict)


def _count_points(data: Any) -> int:
    """Roughly how many points ``data`` holds (cheap: no per-point work)."""
    if isinstance(data, dict):
        n = 0
        for v in data.values():
            n += len(v) if isinstance(v, (list, tuple)) else 1
        return n
    if isinstance(data, (list, tuple)):
        n = 0
        for item in data:
            points = item.get('points') if isinstance(item, dict) else None
            n += len(points) if isinstance(points, (list, tuple)) else 1
        return n
    return 1


def _children(obj: Any) -> Iterable[Any]:
    """What qpack packs inside container ``obj``: the items of a list or
    tuple, the keys and values of a dict (through the base type, as qpack
    reads subclasses too, ignoring their attributes and overrides)."""
    if isinstance(obj, dict):
        return [*dict.keys(obj), *dict.values(obj)]
    if isinstance(obj, list):
        return list.__iter__(obj)
    return tuple.__iter__(obj)


class _TooDeep(Exception):
    pass


class _TooBig(Exception):
    pass


def _measure(obj: Any, limit: int, memo: Dict[int, Tuple[int, int]],
             path: Set[int]) -> Tuple[int, int]:
    """``(height, items)`` of container ``obj``: containers on the longest
    chain down from it, and how many values qpack writes for it (shared
    parts counted each time they occur, as qpack packs them).

    Raises ``_TooDeep`` past ``limit`` levels or on a reference cycle (which
    qpack follows forever), ``_TooBig`` past ``MAX_PAYLOAD`` items (each packs
    to at least one byte). ``memo`` makes shared parts cost one visit.
    """
    key = id(obj)
    known = memo.get(key)
    if known is not None:
        # measured before, maybe higher up: here it reaches this much deeper
        if len(path) + known[0] > limit:
            raise _TooDeep
        return known
    if key in path or len(path) >= limit:
        raise _TooDeep
    path.add(key)
    height = 0
    items = 1
    for child in _children(obj):
        if isinstance(child, _CONTAINERS):
            h, n = _measure(child, limit, memo, path)
            height = max(height, h)
            items += n
        else:
            items += 1
    if items > MAX_PAYLOAD:
        raise _TooBig
    path.discard(key)
    memo[key] = (height + 1, items)
    return height + 1, items


def _check_nesting(data: Any, limit: int) -> None:
    """``InsertDataError`` when ``data`` nests lists/tuples/dicts more than
    ``limit`` deep, refers to itself, or shares parts so often that it would
    pack to more than ``MAX_PAYLOAD`` bytes; linear in the size of ``data``."""
    if not isinstance(data, _CONTAINERS):
        return
    try:
        _measure(data, limit, {}, set())
    except _TooDeep:
        # SiriDB rejects any of these (values are scalars): refuse it here
        # rather than risk the server's decoder on it
        raise InsertDataError(
            f'insert data nests lists/maps more than {limit} levels deep '
            f'or refers to itself (points hold scalar values only); '
            f'nothing was sent') from None
    except _TooBig:
        raise InsertDataError(
            f'insert data repeats shared lists/maps so often that it packs to '
            f'more than the server accepts ({MAX_PAYLOAD} bytes); '
            f'nothing was sent') from None


#: exact types a point of the fast path may hold (anything else, subclasses
#: included, takes the general checks)
_FLAT_VALUES = frozenset({int, float, str})
_SEQUENCES = frozenset({list, tuple})


def _is_small_flat(data: Any) -> bool:
    """True for the common small insert, ``{str: [[int, int|float|str], ...]}``
    with at most ``CHECKED_POINTS`` points: it nests 3 levels, so it needs
    no nesting measure."""
    if type(data) is not dict:
        return False
    n = 0
    for series, points in data.items():
        if type(series) is not str or type(points) not in _SEQUENCES:
            return False
        n += len(points)
        if n > CHECKED_POINTS:
            return False
        for point in points:
            if (type(point) not in _SEQUENCES or len(point) != 2
                    or type(point[0]) is not int or type(point[1]) not in _FLAT_VALUES):
                return False
    return True


def _pack_checked(data: Any) -> bytes:
    # qpack packs in C, recursing per nesting level without a limit: data
    # nested ~90,000 deep, or holding a reference cycle, overflows the C stack
    # and kills the process. Small inserts are measured first. Big ones are
    # packed as they are, like qpack does: every sound check (a per-point type
    # test, a gc.get_referents walk) or packing on a big-stack thread costs
    # 15-100 % of the packing itself on every bulk insert (measured), and
    # such data only comes from a program bug (json and msgpack refuse to
    # decode it, for one).
    if _count_points(data) <= CHECKED_POINTS:
        _check_nesting(data, _SHALLOW)
    return packb(data)


def check_packed_insert(body: Any, max_payload: int = MAX_PAYLOAD) -> bytes:
    """``body`` (an INSERT payload packed before) if it is bytes the server
    accepts by size; ``TypeError`` or ``InsertDataError`` otherwise."""
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError(f'a packed insert is bytes, not {type(body).__name__}')
    if type(body) is not bytes:
        body = bytes(body)
    out: bytes = body
    if len(out) > max_payload:
        raise InsertDataError(
            f'insert data is {len(body)} bytes packed, more than the server '
            f'accepts ({max_payload}); split it into smaller inserts; '
            f'nothing was sent')
    return out


def pack_points(data: Dict[str, List[Pair]]) -> bytes:
    """The INSERT payload of points validated before (``group_points``,
    ``column_pairs``, ``check_value``): packed without checking them again."""
    return packb(data)


def unpack_points(body: bytes) -> Dict[str, List[Pair]]:
    """The points of a payload made by ``pack_points``, back as pairs."""
    data = qpack.unpackb(body, decode='utf-8')
    return {series: [(ts, value) for ts, value in pairs] for series, pairs in data.items()}


def pack_insert(data: Any, max_payload: int = MAX_PAYLOAD) -> bytes:
    """The INSERT payload, or ``InsertDataError`` before anything is sent.

    Data that packs but that the server will reject is returned as is, so the
    caller gets the server's exact ``InsertError`` text.
    """
    if _is_small_flat(data):
        try:
            body = _qpack_packb(data)
        except Exception:
            pass  # the general path below raises the fitting InsertDataError
        else:
            if len(body) <= max_payload:
                return body
    try:
        body = _pack_checked(data)
    except InsertDataError:
        raise
    except OverflowError:
        raise InsertDataError(
            'insert data holds an integer outside the signed 64-bit range '
            '(-2**63 .. 2**63-1); nothing was sent') from None
    except (TypeError, ValueError, SystemError) as exc:
        raise InsertDataError(
            f'insert data cannot be packed ({exc}); nothing was sent') from None
    if len(body) > max_payload:
        raise InsertDataError(
            f'insert data is {len(body)} bytes packed, more than the server '
            f'accepts ({max_payload}); split it into smaller inserts; '
            f'nothing was sent')
    return body


# ------------------------------------------------------------------ points
#: a point value as the server stores it
Value = Union[int, float, str]
#: one point in the shape of an INSERT package: ``(timestamp, value)``
Pair = Tuple[int, Value]
_VALUE_TYPES = frozenset({int, float, str})


def check_series(series: Any) -> str:
    """``series`` if it is a non-empty str, else ``TypeError``/``ValueError``."""
    if not isinstance(series, str):
        raise TypeError(f'a series name must be a str, not {type(series).__name__}')
    if not series:
        raise ValueError('a series name cannot be empty')
    return series


def check_value(value: Any) -> Value:
    """``value`` as int, float or str (numpy scalars too), else
    ``TypeError``; an int outside 64 bits is a ``ValueError``."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f'a value must be int, float or str, not {value!r}')
    if isinstance(value, (int, numbers.Integral)):  # numpy.int64 too
        number = int(value)
        if not INT64_MIN <= number <= INT64_MAX:
            raise ValueError(f'integer value {number} is outside the signed 64-bit range')
        return number
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(f'a value must be int, float or str, not {type(value).__name__}')


def _unpack(item: Any) -> Tuple[Any, Any, Any]:
    # a plain tuple/list is positional; an object (a named tuple too, whatever
    # the order of its fields) is read by attribute name
    if type(item) in _SEQUENCES and len(item) == 3:
        series, ts, value = item
    elif hasattr(item, 'series') and hasattr(item, 'value'):
        series, value = item.series, item.value
        ts = getattr(item, 'timestamp', getattr(item, 'ts', None))
    elif isinstance(item, (tuple, list)) and len(item) == 3:
        series, ts, value = item
    else:
        raise TypeError('a point must be a (series, timestamp, value) tuple/list or an object '
                        'with series, timestamp and value attributes')
    return series, ts, value


def _group_tuples(items: List[Any], top: int, *, type: Any = type, int: Any = int,
                  float: Any = float, str: Any = str, low: int = INT64_MIN,
                  high: int = INT64_MAX
                  ) -> Optional[Tuple[Dict[str, List[Pair]], int, Set[str]]]:
    """``group_points`` for the common input, a list of plain 3-tuples of a
    str, an int timestamp in range and an int (64-bit), float or str value,
    in one loop as lean as building the insert by hand; None when the input
    is anything else (then every point takes the general checks). The
    builtins and bounds are bound as locals (16 % of the loop's time)."""
    if set(map(type, items)) != _TUPLE:
        return None
    groups: Dict[str, List[Pair]] = {}
    texts: Set[str] = set()
    get = groups.get
    try:
        for series, ts, value in items:
            if type(ts) is not int or not 0 <= ts <= top:
                return None
            tv = type(value)
            if tv is not float and not (tv is int and low <= value <= high):
                if tv is not str:
                    return None
                texts.add(series)
            pairs = get(series)
            if pairs is None:
                pairs = groups[series] = []
            pairs.append((ts, value))
    except (TypeError, ValueError):  # not three items, or an unhashable name
        return None
    for series in groups:  # names are checked once per series
        if type(series) is not str or not series:
            return None
    return groups, len(items), texts


_TUPLE = {tuple}


def group_points(items: Iterable[Any], precision: str
                 ) -> Tuple[Dict[str, List[Pair]], int, Set[str]]:
    """Validate ``(series, timestamp, value)`` points and group them by series
    as ``{series: [(ts, value), ...]}`` (input order kept per series); returns
    the groups, the number of points and the series holding str values.
    Raises on the first bad point, so a caller takes all points or none."""
    if isinstance(items, (str, bytes, dict)):
        raise TypeError('write_many expects an iterable of points')
    if type(items) is not list:
        items = list(items)
    if not items:
        return {}, 0, set()
    fast = _group_tuples(items, max_timestamp(precision))
    if fast is not None:
        return fast
    groups: Dict[str, List[Pair]] = {}
    texts: Set[str] = set()
    for item in items:
        series, ts, value = _unpack(item)
        series = check_series(series)
        pair = (to_timestamp(ts, precision), check_value(value))
        pairs = groups.get(series)
        if pairs is None:
            pairs = groups[series] = []
        pairs.append(pair)
        if type(pair[1]) is str:
            texts.add(series)
    return groups, len(items), texts


def _as_list(column: Any, what: str) -> List[Any]:
    """A list of the items of a sequence or of a numpy-like array (through its
    ``tolist()``, which gives Python ints/floats/strs without importing numpy)."""
    if type(column) is list:
        return column
    dtype = getattr(column, 'dtype', None)
    if dtype is not None and hasattr(column, 'tolist'):
        if getattr(dtype, 'kind', None) == 'M':
            raise TypeError(
                f'{what}: datetime64 arrays are not converted implicitly; pass '
                f"int64 in the database precision (arr.astype('datetime64[ms]')"
                f".astype('int64') for 'ms')")
        out = column.tolist()
        if isinstance(out, list):
            return out
    if isinstance(column, (str, bytes, dict)) or not isinstance(column, Iterable):
        raise TypeError(f'{what} must be a sequence or an array, '
                        f'not {type(column).__name__}')
    return list(column)


def column_pairs(timestamps: Any, values: Any, precision: str) -> Tuple[List[Pair], bool]:
    """Validate one series' columns and return its ``(ts, value)`` pairs and
    whether any value is a str. Whole columns are checked at once (C speed)
    where they hold the plain types; anything else goes point by point."""
    ts = _as_list(timestamps, 'timestamps')
    vals = _as_list(values, 'values')
    if len(ts) != len(vals):
        raise ValueError(f'{len(ts)} timestamps but {len(vals)} values')
    if not ts:
        return [], False
    if set(map(type, ts)) == {int}:
        top = max_timestamp(precision)
        if min(ts) < 0 or max(ts) > top:
            bad = next(t for t in ts if not 0 <= t <= top)
            to_timestamp(bad, precision)  # raises its error
    else:
        ts = [to_timestamp(t, precision) for t in ts]
    vtypes = set(map(type, vals))
    if vtypes <= _VALUE_TYPES:
        if int not in vtypes:
            ints: List[Any] = []
        else:
            ints = vals if len(vtypes) == 1 else [v for v in vals if type(v) is int]
        if ints and (min(ints) < INT64_MIN or max(ints) > INT64_MAX):
            for v in ints:
                check_value(v)
    else:
        vals = [check_value(v) for v in vals]
        vtypes = set(map(type, vals))
    return list(zip(ts, vals)), str in vtypes


def pair_estimate(pair: Pair) -> int:
    """A conservative estimate of the packed size of one point."""
    value = pair[1]
    return 20 + 4 * len(value) if type(value) is str else 20


def series_estimate(series: str) -> int:
    """A conservative estimate of the packed size of a series name (the key)."""
    return 4 * len(series) + 10

