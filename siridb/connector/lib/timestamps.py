"""Exact conversion between user time values and SiriDB integer timestamps.

A database stores integer timestamps in one precision (s, ms, us or ns).
``to_timestamp`` turns an int, a ``datetime`` (aware, or naive meaning UTC), a
float or ``Decimal`` of seconds, or None (now) into that integer without any
binary floating point rounding; ``from_timestamp`` goes back to a datetime.
"""
from __future__ import annotations

import datetime as _dt
import math
import numbers
import time
from decimal import Decimal
from fractions import Fraction
from typing import Union

from ...wire.units import MAX_TIMESTAMP, PRECISION_FACTORS, PRECISION_NAMES

__all__ = [
    'TimeValue', 'Precision', 'precision_name', 'precision_factor',
    'max_timestamp', 'to_timestamp', 'from_timestamp', 'now_timestamp',
    'check_timestamp', 'UTC', 'EPOCH',
]

UTC = _dt.timezone.utc
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)

#: what ``to_timestamp`` accepts
TimeValue = Union[int, float, Decimal, Fraction, _dt.datetime, None]
#: a precision: 's', 'ms', 'us', 'ns' or the constants SECOND..NANOSECOND (0..3)
Precision = Union[str, int]

_US_PER_DAY = 86_400_000_000


def precision_name(precision: Precision) -> str:
    """'s', 'ms', 'us' or 'ns' for a precision name or constant (0..3)."""
    if isinstance(precision, bool):
        raise TypeError('time precision must be a name or 0..3, not bool')
    if isinstance(precision, int):
        if 0 <= precision < len(PRECISION_NAMES):
            return PRECISION_NAMES[precision]
    elif isinstance(precision, str) and precision in PRECISION_NAMES:
        return precision
    raise ValueError(
        f'invalid time precision: {precision!r} (expecting s, ms, us, ns or 0..3)')


def precision_factor(precision: Precision) -> int:
    """Units per second for a precision (1 for s ... 10**9 for ns)."""
    return PRECISION_FACTORS[PRECISION_NAMES.index(precision_name(precision))]


def max_timestamp(precision: Precision) -> int:
    """The largest timestamp the server accepts for a precision (inclusive)."""
    return MAX_TIMESTAMP[precision_name(precision)]


def check_timestamp(ts: int, precision: Precision) -> int:
    """``ts`` if it is in the server's valid range for ``precision``, else
    ValueError (s: 0..2**32-1, others: 0..2**63-1)."""
    top = MAX_TIMESTAMP.get(precision) if isinstance(precision, str) else None
    if top is None:
        top = max_timestamp(precision)
    if not 0 <= ts <= top:
        raise ValueError(
            f'timestamp {ts} out of range for precision '
            f'{precision_name(precision)!r} (0..{top})')
    return ts


def now_timestamp(precision: Precision) -> int:
    """The current time as an integer in ``precision`` (floored)."""
    return time.time_ns() // (PRECISION_FACTORS[-1] // precision_factor(precision))


def _datetime_to_us(value: _dt.datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_timestamp(value: TimeValue, precision: Precision) -> int:
    """Convert ``value`` to an integer timestamp in ``precision``, exactly.

    - int (or another ``numbers.Integral`` such as ``numpy.int64``): taken as
      already in the database precision.
    - datetime: aware, or naive taken as UTC; sub-precision parts are floored.
    - float / Decimal / Fraction: seconds since the epoch. A float is read as
      its shortest decimal form (``repr``), so ``0.3`` is 300 ms, never 299;
      sub-precision parts are floored.
    - None: now.

    Raises TypeError for other types (bool included) and ValueError for NaN,
    infinity or a result outside the server's range for the precision.
    """
    if type(value) is int:  # the common case: already in the database precision
        return check_timestamp(value, precision)
    factor = precision_factor(precision)
    if value is None:
        ts = now_timestamp(precision)
    elif isinstance(value, bool):
        raise TypeError('timestamp must be int, float, Decimal, datetime or None, not bool')
    elif isinstance(value, int):
        ts = int(value)
    elif isinstance(value, _dt.datetime):
        us = _datetime_to_us(value)
        ts = us * factor // 1_000_000
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f'timestamp must be finite, got {value!r}')
        # float's own repr: a subclass (numpy.float64) may print 'np.float64(0.3)'
        ts = math.floor(Fraction(Decimal(float.__repr__(value))) * factor)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f'timestamp must be finite, got {value!r}')
        ts = math.floor(Fraction(value) * factor)
    elif isinstance(value, Fraction):
        ts = math.floor(value * factor)
    elif isinstance(value, numbers.Integral):  # e.g. numpy.int64
        ts = int(value)
    else:
        raise TypeError(
            'timestamp must be int, float, Decimal, datetime or None, '
            f'not {type(value).__name__}')
    return check_timestamp(ts, precision)


def from_timestamp(ts: int, precision: Precision) -> _dt.datetime:
    """The aware UTC datetime of an integer timestamp in ``precision``.

    datetime holds microseconds: nanosecond timestamps are floored to the
    microsecond (keep the int when you need the nanoseconds).
    """
    factor = precision_factor(precision)
    us = ts * 1_000_000 // factor
    days, rest = divmod(us, _US_PER_DAY)
    return EPOCH + _dt.timedelta(days=days, microseconds=rest)
