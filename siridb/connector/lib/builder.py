"""Immutable, injection-safe builder for SiriDB select/list/count queries.

Series names, strings and regular expressions are always quoted or escaped
here, never pasted, so a hostile name (quotes, slashes, newlines, unicode)
selects exactly that series. Aggregate chains and time expressions are
SiriDB syntax written by the programmer; they are checked token by token and
anything that could end the clause (a keyword such as ``from``, an unbalanced
quote or parenthesis) is refused with ValueError.
"""
from __future__ import annotations

import datetime as _dt
import numbers
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Iterable, Optional, Tuple, TypeVar, Union

from .timestamps import Precision, to_timestamp

__all__ = [
    'quote', 'regex_literal', 'Selector', 'series', 'regex', 'group', 'tag',
    'ALL', 'Select', 'ListSeries', 'CountSeries', 'QueryBuilder', 'TimeArg',
]

#: a time bound: int (database precision), datetime, float/Decimal seconds,
#: or a SiriDB time expression such as ``'now - 1d'`` or ``"'2024-01-01'"``
TimeArg = Union[int, float, Decimal, Fraction, _dt.datetime, str]


def quote(text: str) -> str:
    """``text`` as a SiriDB double-quoted string (inner quotes doubled)."""
    if not isinstance(text, str):
        raise TypeError(f'expecting a str, got {type(text).__name__}')
    if '\x00' in text:
        raise ValueError('a SiriDB string cannot contain a NUL character')
    return '"' + text.replace('"', '""') + '"'


_REGEX_CHAR_ESCAPES = {'/': '\\/', '\n': '\\n', '\r': '\\r', '\t': '\\t'}


def regex_literal(pattern: str, ignore_case: bool = False) -> str:
    """``pattern`` (PCRE/Python syntax) as a SiriDB ``/.../`` literal.

    Unescaped ``/`` becomes ``\\/`` and control characters become escapes,
    which the regex engine reads as the same characters; escape pairs the
    caller wrote are kept as they are. SiriDB anchors the pattern at both ends.
    """
    if not isinstance(pattern, str):
        raise TypeError(f'expecting a str pattern, got {type(pattern).__name__}')
    if not pattern:
        raise ValueError('empty regular expression')
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == '\\':
            if i + 1 >= n:
                raise ValueError('regular expression ends with a lone backslash')
            nxt = pattern[i + 1]
            # an escaped '/' or control character: the escape that means the same
            if nxt in _REGEX_CHAR_ESCAPES:
                out.append(_REGEX_CHAR_ESCAPES[nxt])
            elif ord(nxt) < 32 or nxt == '\x7f':
                out.append(f'\\x{ord(nxt):02x}')
            else:
                out.append('\\' + nxt)
            i += 2
            continue
        if c in _REGEX_CHAR_ESCAPES:
            out.append(_REGEX_CHAR_ESCAPES[c])
        elif ord(c) < 32 or c == '\x7f':
            out.append(f'\\x{ord(c):02x}')
        else:
            out.append(c)
        i += 1
    return '/' + ''.join(out) + '/' + ('i' if ignore_case else '')


def _name_in_backticks(name: str, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f'{what} name must be a non-empty str')
    if '`' in name or any(ord(c) < 32 for c in name):
        raise ValueError(f'{what} name cannot contain a backtick or control character')
    return f'`{name}`'


# --- syntax checks for programmer-written fragments -------------------------

_TOKEN = re.compile(r'''
    (?P<ws>\s+)
  | (?P<arrow>=>)
  | (?P<dq>"(?:[^"]|"")*")
  | (?P<sq>'(?:[^']|'')*')
  | (?P<num>\d+(?:\.\d+)?[a-z]*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>!=|==|<=|>=|!~|[()<>=!~,*+%-])
  | (?P<slash>/)
''', re.VERBOSE | re.ASCII)
_REGEX_TOKEN = re.compile(r'/(?:[^/\\\n]|\\.)+/i?')

#: words that would end or change the clause an aggregate is embedded in
_KEYWORDS = frozenset({
    'from', 'merge', 'as', 'using', 'prefix', 'suffix', 'where', 'after',
    'before', 'between', 'and', 'or', 'head', 'tail', 'select', 'list',
    'count', 'drop', 'alter', 'create', 'grant', 'revoke', 'show', 'set',
    'timeit', 'to', 'series',
})
_AGGREGATES = frozenset({
    'mean', 'median', 'median_low', 'median_high', 'sum', 'min', 'max',
    'count', 'variance', 'pvariance', 'stddev', 'first', 'last',
    'difference', 'derivative', 'filter', 'limit', 'timeval', 'interval',
    'offset', 'points',
})
_DURATION = re.compile(r'[0-9]+[smhdw]?')


def _tokens(text: str, regex_ok: bool) -> Iterable[Tuple[str, str]]:
    pos = 0
    n = len(text)
    while pos < n:
        if regex_ok and text[pos] == '/':
            m = _REGEX_TOKEN.match(text, pos)
            if m is None:
                raise ValueError(f'unterminated regular expression in {text!r}')
            yield 'regex', m.group()
            pos = m.end()
            continue
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f'unexpected character {text[pos]!r} in {text!r}')
        kind = m.lastgroup or ''
        if kind != 'ws':
            yield kind, m.group()
        pos = m.end()


def _check_aggregate(text: str) -> str:
    """``text`` if it is a plain aggregate chain like ``mean(1h) => max()``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError('an aggregate must be a non-empty str such as "mean(1h)" or "*"')
    if '\x00' in text:
        raise ValueError('NUL character in aggregate')
    if text.strip() == '*':
        return '*'
    depth = 0
    state = 'fn'  # at depth 0: 'fn' -> 'open' -> (inside parens) -> 'next'
    for kind, tok in _tokens(text, regex_ok=True):
        if depth == 0:
            if state == 'fn' and kind == 'word':
                if tok.lower() not in _AGGREGATES:
                    raise ValueError(f'unknown aggregate function {tok!r} in {text!r}')
                state = 'open'
            elif state == 'open' and tok == '(':
                depth = 1
            elif state == 'next' and kind == 'arrow':
                state = 'fn'
            else:
                raise ValueError(f'unexpected {tok!r} in aggregate {text!r}')
            continue
        if kind == 'word' and tok.lower() in _KEYWORDS:
            raise ValueError(f'keyword {tok!r} is not allowed in aggregate {text!r}')
        if kind == 'arrow':
            raise ValueError(f'"=>" inside parentheses in aggregate {text!r}')
        if tok == '(':
            depth += 1
        elif tok == ')':
            depth -= 1
            if depth == 0:
                state = 'next'
    if depth or state != 'next':
        raise ValueError(f'incomplete aggregate {text!r}')
    return text.strip()


def _check_time_expr(text: str) -> str:
    """``text`` if it is a SiriDB time expression (now, ints, durations,
    quoted dates, + - * / %, parentheses)."""
    depth = 0
    count = 0
    for kind, tok in _tokens(text, regex_ok=False):
        count += 1
        if kind == 'word':
            if tok != 'now':
                raise ValueError(f'unexpected {tok!r} in time expression {text!r}')
        elif kind == 'num':
            if not _DURATION.fullmatch(tok):
                raise ValueError(f'unexpected {tok!r} in time expression {text!r}')
        elif kind in ('dq', 'sq', 'slash'):
            pass
        elif kind == 'op' and tok in '()+-*%' and len(tok) == 1:
            depth += tok == '('
            depth -= tok == ')'
            if depth < 0:
                raise ValueError(f'unbalanced parentheses in time expression {text!r}')
        else:
            raise ValueError(f'unexpected {tok!r} in time expression {text!r}')
    if depth or not count:
        raise ValueError(f'invalid time expression {text!r}')
    return text.strip()


def _check_time(value: TimeArg) -> TimeArg:
    """Validate a time bound now, so that a bad one fails where it is given."""
    if isinstance(value, str):
        _time_text(value, None)
    else:
        _time_text(value, 'ns')
    return value


def _time_text(value: TimeArg, precision: Optional[Precision]) -> str:
    if isinstance(value, str):
        if '\x00' in value:
            raise ValueError('NUL character in time expression')
        return _check_time_expr(value)
    if isinstance(value, bool):
        raise TypeError('a time bound cannot be a bool')
    if isinstance(value, (int, numbers.Integral)):  # numpy.int64 too
        if value < 0:
            raise ValueError(f'negative timestamp {value}')
        return str(int(value))
    if isinstance(value, (_dt.datetime, float, Decimal, Fraction)):
        if precision is None:
            raise ValueError(
                'a datetime or seconds time bound needs the database time precision: '
                'use client.query(builder) or builder.build(precision="ms")')
        return str(to_timestamp(value, precision))
    raise TypeError(f'unsupported time bound type {type(value).__name__}')


# --- series selectors ----------------------------------------------------------

@dataclass(frozen=True)
class Selector:
    """A series selection; combine with ``|`` (union), ``-`` (difference),
    ``&`` (intersection) and ``^`` (symmetric difference)."""

    text: str
    compound: bool = False

    def _op(self, op: str, other: Selector) -> Selector:
        if not isinstance(other, Selector):
            raise TypeError(f'cannot combine a Selector with {type(other).__name__}')
        left = f'({self.text})' if self.compound else self.text
        right = f'({other.text})' if other.compound else other.text
        return Selector(f'{left} {op} {right}', True)

    def __or__(self, other: Selector) -> Selector:
        return self._op('|', other)

    def __sub__(self, other: Selector) -> Selector:
        return self._op('-', other)

    def __and__(self, other: Selector) -> Selector:
        return self._op('&', other)

    def __xor__(self, other: Selector) -> Selector:
        return self._op('^', other)

    def __str__(self) -> str:
        return self.text


def series(*names: str) -> Selector:
    """The series with exactly these names (a union when several)."""
    if not names:
        raise ValueError('series() needs at least one name')
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError('a series name must be a non-empty str')
    return Selector(', '.join(quote(n) for n in names), len(names) > 1)


def regex(pattern: str, ignore_case: bool = False) -> Selector:
    """Series whose whole name matches ``pattern``."""
    return Selector(regex_literal(pattern, ignore_case))


def group(name: str) -> Selector:
    """The series of a group."""
    return Selector(_name_in_backticks(name, 'group'))


def tag(name: str) -> Selector:
    """The series of a tag (same syntax as a group in SiriDB)."""
    return Selector(_name_in_backticks(name, 'tag'))


ALL = Selector('*')

_B = TypeVar('_B', bound='QueryBuilder')

_WHERE_FIELDS = {'name': 'str', 'type': 'type', 'length': 'int', 'pool': 'int',
                 'start': 'time', 'end': 'time'}
_NUM_OPS = ('==', '!=', '<', '>', '<=', '>=')
_WHERE_OPS = {'str': _NUM_OPS + ('~', '!~'), 'type': ('==', '!='), 'int': _NUM_OPS,
              'time': _NUM_OPS}


@dataclass(frozen=True)
class QueryBuilder:
    """Common part of the builders: the series selection.

    Every method returns a new builder; ``build(precision)`` gives the text.
    ``client.query(builder)`` builds it with the database's precision.
    """

    _selector: Optional[Selector] = None
    _where: Tuple[Tuple[str, str, Any], ...] = ()

    def _evolve(self: _B, **changes: Any) -> _B:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def _add(self: _B, sel: Selector) -> _B:
        if self._selector is None:
            return self._evolve(_selector=sel)
        return self._evolve(_selector=self._selector | sel)

    def from_(self: _B, selector: Selector) -> _B:
        """Add a selector (see ``series``, ``regex``, ``group``, operators)."""
        if not isinstance(selector, Selector):
            raise TypeError('expecting a Selector')
        return self._add(selector)

    def from_series(self: _B, *names: str) -> _B:
        return self._add(series(*names))

    def from_regex(self: _B, pattern: str, ignore_case: bool = False) -> _B:
        return self._add(regex(pattern, ignore_case))

    def from_group(self: _B, name: str) -> _B:
        return self._add(group(name))

    def from_tag(self: _B, name: str) -> _B:
        return self._add(tag(name))

    def from_all(self: _B) -> _B:
        return self._add(ALL)

    def where(self: _B, field: str, op: str, value: Any) -> _B:
        """Keep only series where ``field op value``; several calls are
        joined with ``and``. Fields: ``name`` (str; ops == != < > <= >= ~ !~,
        ``~`` meaning "contains"), ``type`` ('integer', 'float' or 'string';
        == !=), ``length`` and ``pool`` (int), ``start`` and ``end`` (time
        bounds as for ``between``); numeric ops == != < > <= >=."""
        kind = _WHERE_FIELDS.get(field)
        if kind is None:
            raise ValueError(f'unknown where field {field!r} '
                             f'(expecting one of {sorted(_WHERE_FIELDS)})')
        ops = _WHERE_OPS[kind]
        if op not in ops:
            raise ValueError(f'operator {op!r} cannot be used with {field!r} '
                             f'(expecting one of {list(ops)})')
        if kind == 'str':
            quote(value)
        elif kind == 'type':
            if value not in ('integer', 'float', 'string'):
                raise ValueError("type must be 'integer', 'float' or 'string'")
        elif kind == 'int':
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f'{field} must be compared with an int')
        else:
            _check_time(value)
        return self._evolve(_where=self._where + ((field, op, value),))

    def _where_text(self, precision: Optional[Precision]) -> str:
        if not self._where:
            return ''
        parts = []
        for field, op, value in self._where:
            kind = _WHERE_FIELDS[field]
            if kind == 'str':
                text = quote(value)
            elif kind in ('type', 'int'):
                text = str(value)
            else:
                text = _time_text(value, precision)
            parts.append(f'{field} {op} {text}')
        return ' where ' + ' and '.join(parts)

    def _selector_text(self, required: bool) -> str:
        if self._selector is None:
            if required:
                raise ValueError('no series selected: call from_series/from_regex/...')
            return ''
        return self._selector.text

    def build(self, precision: Optional[Precision] = None) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.build()


@dataclass(frozen=True)
class _Column:
    aggregate: str
    prefix: Optional[str] = None
    suffix: Optional[str] = None

    def text(self) -> str:
        out = self.aggregate
        if self.prefix is not None:
            out += ' prefix ' + quote(self.prefix)
        if self.suffix is not None:
            out += ' suffix ' + quote(self.suffix)
        return out


@dataclass(frozen=True, init=False)
class Select(QueryBuilder):
    """``select <aggregates> from <series> [time range] [merge as ...]``.

    >>> Select('mean(1h)').from_series('cpu.load').after('now - 1d').build()
    'select mean(1h) from "cpu.load" after now - 1d'
    """

    _columns: Tuple[_Column, ...] = ()
    _range: Tuple[Any, ...] = ()
    _merge: Optional[Tuple[str, Optional[str]]] = None

    def __init__(self, aggregate: str = '*', prefix: Optional[str] = None,
                 suffix: Optional[str] = None) -> None:
        object.__setattr__(self, '_selector', None)
        object.__setattr__(self, '_where', ())
        object.__setattr__(self, '_columns', (
            _Column(_check_aggregate(aggregate), prefix, suffix),))
        object.__setattr__(self, '_range', ())
        object.__setattr__(self, '_merge', None)
        for p in (prefix, suffix):
            if p is not None:
                quote(p)

    def also(self, aggregate: str, prefix: Optional[str] = None,
             suffix: Optional[str] = None) -> Select:
        """Another column, e.g. ``.also('max(1h)', prefix='max-')``."""
        for p in (prefix, suffix):
            if p is not None:
                quote(p)
        col = _Column(_check_aggregate(aggregate), prefix, suffix)
        return self._evolve(_columns=self._columns + (col,))

    def _set_range(self, *rng: Any) -> Select:
        # SiriDB takes one of after/before/between/head/tail: a second one would
        # silently replace the first (after(a).before(b) is not between(a, b))
        if self._range:
            raise ValueError(f'the select already has "{self._range[0]}"; a select takes '
                             'one of after, before, between, head or tail')
        return self._evolve(_range=rng)

    def after(self, start: TimeArg) -> Select:
        """Points at or after ``start``."""
        return self._set_range('after', _check_time(start))

    def before(self, end: TimeArg) -> Select:
        """Points before ``end`` (exclusive)."""
        return self._set_range('before', _check_time(end))

    def between(self, start: TimeArg, end: TimeArg) -> Select:
        """Points with start <= ts < end."""
        return self._set_range('between', _check_time(start), _check_time(end))

    def head(self, n: int) -> Select:
        """The first ``n`` points of each series."""
        return self._set_range('head', _positive(n))

    def tail(self, n: int) -> Select:
        """The last ``n`` points of each series."""
        return self._set_range('tail', _positive(n))

    def merge_as(self, name: str, using: Optional[str] = None) -> Select:
        """Merge all selected series into one named ``name`` (once per select)."""
        if self._merge is not None:
            raise ValueError(f'the select already merges as {self._merge[0]!r}')
        quote(name)
        if not name:
            raise ValueError('merge name must be non-empty')
        if using is not None:
            using = _check_aggregate(using)
        return self._evolve(_merge=(name, using))

    def build(self, precision: Optional[Precision] = None) -> str:
        cols = ', '.join(c.text() for c in self._columns)
        out = f'select {cols} from {self._selector_text(True)}'
        out += self._where_text(precision)
        r = self._range
        if r:
            kind = r[0]
            if kind == 'between':
                out += (f' between {_time_text(r[1], precision)}'
                        f' and {_time_text(r[2], precision)}')
            elif kind in ('after', 'before'):
                out += f' {kind} {_time_text(r[1], precision)}'
            else:
                out += f' {kind} {r[1]}'
        if self._merge is not None:
            name, using = self._merge
            out += f' merge as {quote(name)}'
            if using is not None:
                out += f' using {using}'
        return out


def _positive(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f'expecting a positive int, got {n!r}')
    return n


_LIST_COLUMNS = frozenset({'name', 'type', 'length', 'start', 'end', 'pool'})


@dataclass(frozen=True, init=False)
class ListSeries(QueryBuilder):
    """``list series [columns] [selection] [limit n]``."""

    _cols: Tuple[str, ...] = ()
    _limit: Optional[int] = None

    def __init__(self, *columns: str) -> None:
        for c in columns:
            if c not in _LIST_COLUMNS:
                raise ValueError(f'unknown list column {c!r} '
                                 f'(expecting one of {sorted(_LIST_COLUMNS)})')
        object.__setattr__(self, '_selector', None)
        object.__setattr__(self, '_where', ())
        object.__setattr__(self, '_cols', tuple(columns))
        object.__setattr__(self, '_limit', None)

    def limit(self, n: int) -> ListSeries:
        return self._evolve(_limit=_positive(n))

    def build(self, precision: Optional[Precision] = None) -> str:
        out = 'list series'
        if self._cols:
            out += ' ' + ', '.join(self._cols)
        sel = self._selector_text(False)
        if sel:
            out += ' ' + sel
        out += self._where_text(precision)
        if self._limit is not None:
            out += f' limit {self._limit}'
        return out


@dataclass(frozen=True, init=False)
class CountSeries(QueryBuilder):
    """``count series [length] [selection]``."""

    _length: bool = False

    def __init__(self, length: bool = False) -> None:
        object.__setattr__(self, '_selector', None)
        object.__setattr__(self, '_where', ())
        object.__setattr__(self, '_length', bool(length))

    def build(self, precision: Optional[Precision] = None) -> str:
        out = 'count series length' if self._length else 'count series'
        sel = self._selector_text(False)
        if sel:
            out += ' ' + sel
        return out + self._where_text(precision)
