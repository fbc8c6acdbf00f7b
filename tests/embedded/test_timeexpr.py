"""Time expressions: units per precision, dates and time zones, exact arithmetic."""
from __future__ import annotations

from typing import Optional

import pytest

from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.query import execute
from siridb.embedded.query.timeexpr import c_div, c_mod, parse_date
from siridb.embedded.store import Database


def calc(query: str, precision: str = 's', tz: str = 'NAIVE',
         time_precision: Optional[int] = None) -> int:
    db = Database('t', precision)
    db.timezone = tz
    ctx = QueryContext(db, db.users['iris'], ServerInfo('h:1'))
    result = execute(ctx, query, time_precision)
    assert list(result) == ['calc']
    value = result['calc']
    assert isinstance(value, int)
    return value


def calc_error(query: str, precision: str = 's') -> str:
    with pytest.raises(QueryFailure) as info:
        calc(query, precision)
    assert info.value.tp == 65
    return info.value.msg


@pytest.mark.parametrize('precision,factor', [('s', 1), ('ms', 10 ** 3), ('us', 10 ** 6),
                                              ('ns', 10 ** 9)])
def test_units_follow_the_database_precision(precision: str, factor: int) -> None:
    assert calc('1s', precision) == factor
    assert calc('2m', precision) == 120 * factor
    assert calc('1h', precision) == 3600 * factor
    assert calc('1d + 2h', precision) == 93600 * factor
    assert calc('1w', precision) == 604800 * factor
    assert calc("'2015-11-11'", precision) == 1447200000 * factor


def test_arithmetic_and_precedence() -> None:
    assert calc('1447250938 + 60') == 1447250998
    assert calc('(1447250938 + 60) % 3600') == 598
    assert calc('2 + 3 * 4') == 14
    assert calc('(2 + 3) * 4') == 20
    assert calc('100 - 10 - 1') == 89  # left to right
    assert calc('7 / 2') == 3


def test_c_style_division_and_modulo() -> None:
    assert c_div(-7, 2) == -3 and c_mod(-7, 2) == -1
    assert c_div(7, -2) == -3 and c_mod(7, -2) == 1


def test_division_and_modulo_by_zero() -> None:
    assert calc_error('10 / 0') == 'Division by zero error.'
    assert calc_error('10 % (5 - 5)') == 'Modulo by zero error.'


def test_now_is_in_database_precision() -> None:
    import time
    before = time.time_ns()
    value = calc('now', 'ns')
    assert before <= value <= time.time_ns()
    assert calc('now - now') == 0


def test_dates() -> None:
    assert calc("'2015-11-11 14:00'") == 1447250400
    assert calc("'2015-11-11T14:00:05'") == 1447250405
    assert calc('"2015-11-11 14:00"') == 1447250400
    assert calc("'2015-11-11 14:00:00Z'") == 1447250400
    assert calc("'2015-11-11 14:00+01:00'") == 1447250400 - 3600
    # the real server reads no fractions, and a day past the month's end carries over
    assert calc_error("'2015-11-11 14:00:00.5'", 'ms') == 'Invalid date string.'
    assert calc("'2015-02-30'") == 1425254400
    # glibc strptime: '60' minutes read as 6 (the last field), seconds up to 61
    assert calc("'2015-11-11 23:60'") == 1447283160
    assert calc("'2015-11-11 23:59:60'") == 1447286400
    assert calc_error("'2015-11-11 23:60:00'") == 'Invalid date string.'
    assert calc_error("'2015-11-11 24:00'") == 'Invalid date string.'


def test_the_date_formats_siridb_documents() -> None:
    # docs.siridb.com, select ranges: "2021", "2021-01-30", "2021-01-30 12:00",
    # "2021-01-30 14:31:45Z", "2021-01-30T14:31:45+0200"; and `before "2015-11"`
    assert calc("'2021'") == 1609459200
    assert calc("'2015-11'") == 1446336000
    assert calc("'2021-01-30'") == 1611964800
    assert calc("'2021-01-30 12:00'") == 1612008000
    assert calc("'2021-01-30 14:31:45Z'") == 1612017105
    assert calc("'2021-01-30T14:31:45+0200'") == 1612017105 - 7200
    assert calc("'2021-01-30T14:31:45+02'") == 1612017105 - 7200
    assert calc("'2021-01-30T14:31:45-02:30'") == 1612017105 + 9000
    assert calc("'2015-11'", tz='Europe/Amsterdam') == 1446336000 - 3600
    assert calc_error("'20151'") == 'Invalid date string.'
    assert calc_error("'2015-1-'") == 'Invalid date string.'


@pytest.mark.parametrize('text', ["'2015-13-45'", "'yesterday'", "'2015-11-11 '",
                                  "'1969-12-31'", "''", "'0000-01-01'"])
def test_invalid_dates(text: str) -> None:
    assert calc_error(text) == 'Invalid date string.'


def test_named_time_zone() -> None:
    assert calc("'2015-11-11'", tz='Europe/Amsterdam') == 1447196400
    assert calc("'2015-07-01'", tz='Europe/Amsterdam') == 1435701600  # summer time
    assert calc("'2015-11-11Z'", tz='Europe/Amsterdam') == 1447200000


def test_unknown_time_zone_fails_cleanly() -> None:
    with pytest.raises(QueryFailure) as info:
        parse_date('2015-11-11', 1, 'No/Such_Zone')
    assert info.value.msg == "Unknown time zone: 'No/Such_Zone'."


def test_overflow_is_an_error() -> None:
    # int64 arithmetic wraps as in the real server; a negative result is out of range
    assert calc_error('9223372036854775807 + 1') == 'Time expression out-of-range.'
    assert calc_error('1' * 5000) == 'Expression too long. (max 512 characters)'
    assert calc_error('3037000500 * 3037000500') == 'Time expression out-of-range.'
    assert calc('4294967296 * 4294967296') == 0
    assert calc('9223372036854775807', 'ms') == 2 ** 63 - 1
    assert calc_error('4294967296') == 'Time expression out-of-range.'  # seconds: 32 bits


def test_calc_respects_time_precision() -> None:
    assert calc('1447250938', time_precision=1) == 1447250938000
    assert calc('1447250938123', 'ms', time_precision=0) == 1447250938  # floor
    assert calc('5', 'ns', time_precision=0) == 0
