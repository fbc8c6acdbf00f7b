"""Exact conversion of user time values to SiriDB integer timestamps."""
from __future__ import annotations

import datetime as dt
import numbers
import time
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siridb.connector.lib.timestamps import (
    check_timestamp,
    from_timestamp,
    max_timestamp,
    precision_factor,
    precision_name,
    to_timestamp,
)

UTC = dt.timezone.utc
PRECISIONS = ['s', 'ms', 'us', 'ns']


@pytest.mark.parametrize('p,const,factor', [('s', 0, 1), ('ms', 1, 10**3),
                                            ('us', 2, 10**6), ('ns', 3, 10**9)])
def test_precision_names_and_constants(p: str, const: int, factor: int) -> None:
    assert precision_name(p) == p
    assert precision_name(const) == p
    assert precision_factor(p) == factor


@pytest.mark.parametrize('bad', ['h', '', 4, -1, None, 1.0])
def test_bad_precision(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        precision_name(bad)  # type: ignore[arg-type]


def test_bool_precision_rejected() -> None:
    with pytest.raises(TypeError):
        precision_name(True)


@pytest.mark.parametrize('p,expected', [
    ('s', 1447250938), ('ms', 1447250938123), ('us', 1447250938123456),
    ('ns', 1447250938123456000)])
def test_aware_datetime_every_precision(p: str, expected: int) -> None:
    when = dt.datetime(2015, 11, 11, 14, 8, 58, 123456, tzinfo=UTC)
    assert to_timestamp(when, p) == expected


def test_naive_datetime_is_utc_and_offsets_apply() -> None:
    naive = dt.datetime(2015, 11, 11, 14, 8, 58)
    assert to_timestamp(naive, 's') == 1447250938
    plus2 = dt.datetime(2015, 11, 11, 16, 8, 58, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert to_timestamp(plus2, 's') == 1447250938


@pytest.mark.parametrize('p,expected', [('s', 0), ('ms', 300), ('us', 300000),
                                        ('ns', 300000000)])
def test_float_seconds_read_as_written(p: str, expected: int) -> None:
    # 0.3 is 0.29999999999999998889... in binary; naive float math gives 299 ms
    assert to_timestamp(0.3, p) == expected


@pytest.mark.parametrize('p,expected', [
    ('s', 1700000000), ('ms', 1700000000123), ('us', 1700000000123456),
    ('ns', 1700000000123456700)])
def test_float_epoch_seconds(p: str, expected: int) -> None:
    assert to_timestamp(1700000000.1234567, p) == expected


def test_decimal_and_fraction_exact() -> None:
    assert to_timestamp(Decimal('1.999999999999999999999999999999'), 'ns') == 1999999999
    assert to_timestamp(Decimal('9223372036.854775807'), 'ns') == 2 ** 63 - 1
    assert to_timestamp(Fraction(1, 3), 'ms') == 333


def test_int_is_database_precision_and_range_checked() -> None:
    assert to_timestamp(5, 'ns') == 5
    assert to_timestamp(2 ** 32 - 1, 's') == 2 ** 32 - 1
    with pytest.raises(ValueError, match='out of range'):
        to_timestamp(2 ** 32, 's')
    assert to_timestamp(2 ** 63 - 1, 'ms') == 2 ** 63 - 1
    with pytest.raises(ValueError, match='out of range'):
        to_timestamp(2 ** 63, 'us')
    with pytest.raises(ValueError, match='out of range'):
        to_timestamp(-1, 'ms')
    with pytest.raises(ValueError):
        to_timestamp(dt.datetime(1969, 12, 31, 23, 59, 59), 's')


class ReprFloat(float):
    """A float subclass printing like numpy 2's float64 ('np.float64(0.3)')."""

    def __repr__(self) -> str:
        return f'np.float64({float.__repr__(self)})'


class Int64:
    """An integer type that is not an int (like numpy.int64)."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __int__(self) -> int:
        return self.v

    def __index__(self) -> int:
        return self.v


numbers.Integral.register(Int64)


@pytest.mark.parametrize('p', PRECISIONS)
def test_number_types_of_other_libraries(p: str) -> None:
    f = precision_factor(p)
    assert to_timestamp(ReprFloat(0.3), p) == 3 * f // 10
    assert to_timestamp(ReprFloat(1447250938.25), p) == 1447250938 * f + f // 4
    assert to_timestamp(Int64(1447250938), p) == 1447250938
    with pytest.raises(ValueError, match='out of range'):
        to_timestamp(Int64(-1), p)


def test_numpy_numbers_when_installed() -> None:
    np = pytest.importorskip('numpy')
    assert to_timestamp(np.float64(1447250938.25), 'ms') == 1447250938250
    assert to_timestamp(np.int64(1447250938250), 'ms') == 1447250938250
    with pytest.raises(TypeError):
        to_timestamp(np.bool_(True), 'ms')


@pytest.mark.parametrize('bad', [True, '1447250938', [1], b'1'])
def test_bad_types(bad: object) -> None:
    with pytest.raises(TypeError):
        to_timestamp(bad, 'ms')  # type: ignore[arg-type]


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), Decimal('NaN')])
def test_non_finite(bad: object) -> None:
    with pytest.raises(ValueError):
        to_timestamp(bad, 'ms')  # type: ignore[arg-type]


@pytest.mark.parametrize('p', PRECISIONS)
def test_none_is_now(p: str) -> None:
    f = precision_factor(p)
    before = time.time_ns() * f // 10**9
    ts = to_timestamp(None, p)
    after = time.time_ns() * f // 10**9
    assert before <= ts <= after


def test_max_timestamp() -> None:
    assert max_timestamp('s') == 2 ** 32 - 1
    assert max_timestamp(3) == 2 ** 63 - 1
    assert check_timestamp(0, 'ms') == 0


@pytest.mark.parametrize('p', PRECISIONS)
@given(us=st.integers(min_value=0, max_value=2 ** 32 - 1).map(lambda s: s * 10**6)
       | st.integers(min_value=0, max_value=(2 ** 32 - 1) * 10**6))
def test_datetime_round_trip(p: str, us: int) -> None:
    when = dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=us)
    ts = to_timestamp(when, p)
    assert ts == us * precision_factor(p) // 10**6
    back = from_timestamp(ts, p)
    # exact when the precision holds microseconds, floored otherwise
    assert back <= when
    assert when - back < dt.timedelta(seconds=1) / min(precision_factor(p), 10**6)
    if p in ('us', 'ns'):
        assert back == when


def test_from_timestamp_ns_floors_to_microsecond() -> None:
    assert from_timestamp(1_500, 'ns') == dt.datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert from_timestamp(1447250938, 's') == dt.datetime(2015, 11, 11, 14, 8, 58,
                                                          tzinfo=UTC)
