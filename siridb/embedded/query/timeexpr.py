"""Time expressions of the query language: durations, dates, `now` and arithmetic.

Everything is exact integer arithmetic in the database's time precision; date
strings are read in the database's time zone (NAIVE means UTC).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, List, Optional, Tuple

from ...wire import types as pm
from ...wire.units import INT64_MAX, INT64_MIN, MAX_TIMESTAMP
from ..context import QueryFailure

__all__ = ['UNITS', 'to_int', 'check_range', 'parse_date', 'get_zone',
           'evaluate', 'c_div', 'c_mod']

#: duration suffix -> seconds
UNITS = {'s': 1, 'm': 60, 'h': 3600, 'd': 86400, 'w': 604800}

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: the date strings the real server reads: YYYY[-M[-D[( |T)H[:M[:S]]]]] with one or two
#: digits after the year, then an optional zone (Z, +HH, +HH:MM or +HHMM); no
#: fractions, no spaces around (grammar.jsonl)
_DATE = re.compile(
    r'(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})'
    r'(?:[T ](\d{1,2})(?::(\d{1,2})(?::(\d{1,2}))?)?)?)?)?'
    r'(Z|[+-]\d{2}(?::?\d{2})?)?')


def _fail(msg: str) -> QueryFailure:
    return QueryFailure(pm.CPROTO_ERR_QUERY, msg)


def to_int(digits: str) -> int:
    """A decimal literal as int, refusing values beyond int64 (and absurd lengths)."""
    if len(digits.lstrip('-+0')) > 19:
        raise _fail('Integer value out of range.')
    return check_range(int(digits))


def check_range(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise _fail('Integer value out of range.')
    return value


def c_div(a: int, b: int) -> int:
    """Integer division truncating toward zero, as C does."""
    if b == 0:
        raise _fail('Division by zero error.')
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def c_mod(a: int, b: int) -> int:
    if b == 0:
        raise _fail('Modulo by zero error.')
    return a - b * c_div(a, b)


def get_zone(name: str) -> Optional[tzinfo]:
    """The tzinfo for a database time zone name; None for NAIVE (UTC)."""
    if name == 'NAIVE':
        return None
    if name.upper() == 'UTC':
        return timezone.utc
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for odd keys, missing tzdata
        raise _fail(f"Unknown time zone: '{name}'.") from None


#: the ranges the real server's date parser (glibc strptime) takes: month, day, hour,
#: minute, second
_FIELD_RANGES = ((1, 12), (1, 31), (0, 23), (0, 59), (0, 61))


def parse_date(text: str, factor: int, tz_name: str) -> int:
    """A date string like '2015-11-11 14:00' -> timestamp in units (factor per second).

    As the real server (glibc strptime, then mktime): two digits that would pass a
    field's maximum stop after the first (the last field's second digit is then
    ignored: '23:60' is 23:06), a day past the month's end and seconds 60-61 carry
    over (2015-02-30 is March 2); before 1970 is invalid."""
    m = _DATE.fullmatch(text)
    if m is None:
        raise _fail('Invalid date string.')
    year, month, day, hour, minute, sec, off = m.groups()
    fields = [f for f in (month, day, hour, minute, sec) if f is not None]
    values = [1, 1, 0, 0, 0]
    for i, digits in enumerate(fields):
        lo, hi = _FIELD_RANGES[i]
        value = int(digits[0])
        if len(digits) == 2:
            if value * 10 <= hi:
                value = int(digits)
            elif i != len(fields) - 1:
                # strptime stops before a digit that would pass the maximum; the
                # digit left over then stands where a separator must
                raise _fail('Invalid date string.')
        if not lo <= value <= hi:
            raise _fail('Invalid date string.')
        values[i] = value
    mon, d, h, mi, sc = values
    try:
        naive = datetime(int(year), mon, 1) + timedelta(
            days=d - 1, hours=h, minutes=mi, seconds=sc)
        if off:
            if off == 'Z':
                aware = naive.replace(tzinfo=timezone.utc)
            else:
                sign = -1 if off[0] == '-' else 1
                digits = off[1:].replace(':', '')
                delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
                aware = naive.replace(tzinfo=timezone(sign * delta))
        else:
            zone = get_zone(tz_name) or timezone.utc
            aware = naive.replace(tzinfo=zone)
        delta = aware - _EPOCH
    except (ValueError, OverflowError):
        raise _fail('Invalid date string.') from None
    seconds = delta.days * 86400 + delta.seconds
    if seconds < 0:
        raise _fail('Invalid date string.')
    return seconds * factor


#: the longest expression text the real server evaluates (EXPR_MAX_SIZE)
EXPR_MAX_SIZE = 512
_U64 = 2 ** 64


def _wrap(value: int) -> int:
    """``value`` as a C int64 (wrapping, as the real server computes)."""
    return (value - INT64_MIN) % _U64 + INT64_MIN


def _expr_text(tokens: Tuple[Any, ...], factor: int, now: int, tz_name: str) -> str:
    """The text the real server evaluates: operators and parentheses, integers as
    written, durations, dates and `now` as numbers in the database's units."""
    parts: List[str] = []
    for tok in tokens:
        if isinstance(tok, str):
            parts.append(tok)
            continue
        kind = tok[0]
        if kind == 'int':
            parts.append(tok[1])
        elif kind == 'dur':
            parts.append(str(int(tok[1]) * UNITS[tok[2]] * factor % _U64))
        elif kind == 'now':
            parts.append(str(now))
        else:
            parts.append(str(parse_date(tok[1], factor, tz_name)))
    return ''.join(parts)


class _CExpr:
    """SiriDB's expression evaluator: int64 arithmetic that wraps, C division and
    modulo, unary minus; an error (division by zero) still evaluates the rest."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.error: Optional[str] = None

    def _char(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ''

    def factor(self) -> int:
        c = self._char()
        if c.isdigit():
            start = self.pos
            while self._char().isdigit():
                self.pos += 1
            return _wrap(int(self.text[start:self.pos]))
        if c == '(':
            self.pos += 1
            value = self.expression(1)
            self.pos += 1  # ')'
            return value
        if c == '-':
            self.pos += 1
            return _wrap(-self.factor())
        return 0  # (a '+' sign: the real evaluator reads 0 and moves on)

    def expression(self, min_level: int) -> int:
        """Operators of level >= min_level (1: + -, 2: * / %), left to right."""
        value = self.factor()
        while True:
            op = self._char()
            level = 1 if op in ('+', '-') else 2 if op in ('*', '/', '%') else 0
            if not op or level < min_level:
                return value
            self.pos += 1
            other = self.expression(2) if level == 1 else self.factor()
            if op == '+':
                value = _wrap(value + other)
            elif op == '-':
                value = _wrap(value - other)
            elif op == '*':
                value = _wrap(value * other)
            elif other == 0:
                self.error = 'Division by zero error.' if op == '/' else \
                    'Modulo by zero error.'
            elif op == '/':
                value = _wrap(c_div(value, other))
            else:
                value = _wrap(c_mod(value, other))


def _evaluate_expr(node: Tuple[Any, ...], factor: int, now: int, tz_name: str) -> int:
    _, tokens, is_time = node
    text = _expr_text(tokens, factor, now, tz_name)
    if len(text) >= EXPR_MAX_SIZE:
        raise _fail(f'Expression too long. (max {EXPR_MAX_SIZE} characters)')
    ev = _CExpr(text)
    value = ev.expression(1)
    if ev.error is not None:
        raise _fail(ev.error)
    if is_time and not (0 <= value and (factor != 1 or value <= MAX_TIMESTAMP['s'])):
        raise _fail('Time expression out-of-range.')
    return value


def evaluate(node: Tuple[Any, ...], factor: int, now: int, tz_name: str) -> int:
    """Evaluate a time expression tree built by the parser."""
    kind = node[0]
    if kind == 'expr':
        return _evaluate_expr(node, factor, now, tz_name)
    if kind == 'int':
        return to_int(node[1])
    if kind == 'dur':
        return check_range(to_int(node[1]) * UNITS[node[2]] * factor)
    if kind == 'now':
        return now
    if kind == 'date':
        return parse_date(node[1], factor, tz_name)
    value = evaluate(node[1], factor, now, tz_name)
    for op, operand in node[2]:
        y = evaluate(operand, factor, now, tz_name)
        if op == '+':
            value = value + y
        elif op == '-':
            value = value - y
        elif op == '*':
            value = value * y
        elif op == '/':
            value = c_div(value, y)
        else:
            value = c_mod(value, y)
        check_range(value)
    return value
