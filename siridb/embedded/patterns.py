"""Regular expressions of queries and groups, compiled like SiriDB's PCRE ones.

Python's ``re`` backtracks and cannot be interrupted, so a pattern such as
``/(a+)+b/`` against a 30-character series name would block the whole server
for minutes. ``compile_regex`` therefore refuses, with a QueryError, patterns
that can backtrack exponentially: a variable repetition nested in another one
where the two can match the same text (``(a+)+``, ``(\\w+\\s?)+``), overlapping
alternatives or back-references inside a repetition. Unambiguous nesting such
as ``([a-z]+\\.)+`` is accepted.
"""
from __future__ import annotations

import importlib
import re
from functools import lru_cache
from typing import Any, FrozenSet, Iterable, List, Sequence, Tuple

from .context import QueryFailure

__all__ = ['compile_regex', 'group_pattern', 'is_exponential']

try:  # Python >= 3.11
    _sre: Any = importlib.import_module('re._parser')
except ImportError:  # pragma: no cover - Python 3.9 and 3.10
    _sre = importlib.import_module('sre_parse')

# PCRE wording for the compile errors users are most likely to hit
_RE_ERRORS = (
    ('missing ), unterminated subpattern', 'missing closing parenthesis'),
    ('unbalanced parenthesis', 'unmatched closing parenthesis'),
    ('unterminated character set', 'missing terminating ] for character class'),
    ('nothing to repeat', 'quantifier does not follow a repeatable item'),
    ('bad character range', 'range out of order in character class'),
)
#: PCRE's POSIX classes inside [...], which Python's re lacks
_POSIX_CLASSES = {
    'alpha': 'a-zA-Z', 'digit': '0-9', 'alnum': 'a-zA-Z0-9', 'upper': 'A-Z',
    'lower': 'a-z', 'space': ' \\t\\n\\r\\f\\v', 'blank': ' \\t', 'xdigit': '0-9A-Fa-f',
    'word': '\\w', 'punct': '!-/:-@\\[-`{-~', 'cntrl': '\\x00-\\x1f\\x7f',
    'print': ' -~', 'graph': '!-~',
}
_POSIX_RE = re.compile(r'\[:(' + '|'.join(_POSIX_CLASSES) + r'):\]')
#: inline flags at the start of a pattern: they must stay in front of the anchor
_LEAD_FLAGS = re.compile(r'\(\?[aiLmsux]+\)')
_TOO_COMPLEX = ('nested repetition that can match the same text (exponential '
                'backtracking; not allowed by the embedded server)')

Chars = FrozenSet[str]
#: characters that stand in for "any character" when comparing character sets
_BASE = frozenset(chr(i) for i in range(128)) | frozenset('\u00a0\u00e9\u00df\u0416\u4e2d\u0663')
_CATEGORY_RE = {
    'CATEGORY_DIGIT': r'\d', 'CATEGORY_NOT_DIGIT': r'\D', 'CATEGORY_SPACE': r'\s',
    'CATEGORY_NOT_SPACE': r'\S', 'CATEGORY_WORD': r'\w', 'CATEGORY_NOT_WORD': r'\W',
    'CATEGORY_LINEBREAK': r'\n', 'CATEGORY_NOT_LINEBREAK': r'[^\n]',
}


def _name(code: Any) -> str:
    """The name of an ``re`` parser opcode (``MAX_REPEAT``, ``CATEGORY_DIGIT``)."""
    return str(getattr(code, 'name', code))


class _Unsafe(Exception):
    """Internal: the pattern can backtrack exponentially."""


class _Checker:
    """Walks a parsed pattern, tracking which characters may follow each item."""

    def __init__(self, alphabet: Chars) -> None:
        self.all = alphabet

    def _case(self, c: str) -> Chars:
        # case-insensitive always: it can only widen an overlap (stay safe)
        return frozenset((c, c.lower(), c.upper())) & self.all | {c}

    def _in(self, items: Sequence[Tuple[Any, Any]]) -> Chars:
        negate = False
        out: set[str] = set()
        for op, av in items:
            name = _name(op)
            if name == 'NEGATE':
                negate = True
            elif name == 'LITERAL':
                out |= self._case(chr(av))
            elif name.startswith('RANGE'):
                lo, hi = av
                out |= {c for c in self.all
                        if any(len(x) == 1 and lo <= ord(x) <= hi
                               for x in (c, c.lower(), c.upper()))}
            elif name == 'CATEGORY':
                rx = re.compile(_CATEGORY_RE.get(_name(av), r'[\s\S]'))
                out |= {c for c in self.all if rx.match(c)}
            else:
                return self.all
        return self.all - out if negate else frozenset(out)

    def chars(self, seq: Iterable[Tuple[Any, Any]]) -> Chars:
        """Every character some item of ``seq`` can consume."""
        out: Chars = frozenset()
        for op, av in seq:
            name = _name(op)
            if name == 'LITERAL':
                out |= self._case(chr(av))
            elif name == 'IN':
                out |= self._in(av)
            elif name in ('AT', 'GROUPREF_EXISTS') or name.startswith('ASSERT'):
                continue
            elif name == 'SUBPATTERN':
                out |= self.chars(av[-1])
            elif name.endswith('REPEAT'):
                out |= self.chars(av[2])
            elif name == 'BRANCH':
                for alt in av[1]:
                    out |= self.chars(alt)
            elif name == 'ATOMIC_GROUP':
                out |= self.chars(av)
            else:  # ANY, NOT_LITERAL, GROUPREF, ...
                return self.all
        return out

    def first(self, seq: Sequence[Tuple[Any, Any]]) -> Tuple[Chars, bool]:
        """(characters a match of ``seq`` can start with, whether it can be empty)."""
        out: Chars = frozenset()
        for op, av in seq:
            f, nullable = self._first_item(_name(op), av)
            out |= f
            if not nullable:
                return out, False
        return out, True

    def _first_item(self, name: str, av: Any) -> Tuple[Chars, bool]:
        if name in ('LITERAL', 'IN'):
            return self.chars([(name, av)]), False
        if name in ('ANY', 'NOT_LITERAL'):
            return self.all, False
        if name == 'AT' or name.startswith('ASSERT'):
            return frozenset(), True
        if name == 'SUBPATTERN':
            return self.first(av[-1])
        if name == 'ATOMIC_GROUP':
            return self.first(av)
        if name.endswith('REPEAT'):
            f, nullable = self.first(av[2])
            return f, nullable or av[0] == 0
        if name == 'BRANCH':
            out: Chars = frozenset()
            any_null = False
            for alt in av[1]:
                f, nullable = self.first(alt)
                out |= f
                any_null = any_null or nullable
            return out, any_null
        return self.all, True

    def scan(self, seq: Sequence[Tuple[Any, Any]], follow: Chars, in_rep: bool) -> None:
        """Raise _Unsafe for an ambiguous repetition; ``follow``: what may come after
        ``seq``; ``in_rep``: inside a repetition of more than one iteration."""
        for idx, (op, av) in enumerate(seq):
            name = _name(op)
            rest, rest_null = self.first(seq[idx + 1:])
            after = rest | follow if rest_null else rest
            if name in ('MAX_REPEAT', 'MIN_REPEAT'):
                lo, hi, body = av
                if in_rep and lo != hi and self.chars(body) & after:
                    raise _Unsafe
                if hi > 1:
                    self.scan(body, self.first(body)[0] | after, True)
                else:
                    self.scan(body, after, in_rep)
            elif name == 'SUBPATTERN':
                self.scan(av[-1], after, in_rep)
            elif name == 'BRANCH':
                alts: List[Any] = av[1]
                if in_rep:
                    seen: Chars = frozenset()
                    for alt in alts:
                        f, nullable = self.first(alt)
                        if nullable or f & seen:
                            raise _Unsafe
                        seen |= f
                for alt in alts:
                    self.scan(alt, after, in_rep)
            elif name == 'GROUPREF' and in_rep:
                raise _Unsafe
            elif name == 'GROUPREF_EXISTS':
                for branch in av[1:]:
                    if branch is not None:
                        self.scan(branch, after, in_rep)
            elif name.startswith('ASSERT'):
                self.scan(av[1], self.all, in_rep)
            # ATOMIC_GROUP and POSSESSIVE_REPEAT never backtrack into themselves


def is_exponential(pattern: str) -> bool:
    """Whether ``pattern`` (valid for ``re``) can backtrack exponentially."""
    try:
        parsed = _sre.parse(pattern, 0)
        literals = {chr(av) for op, av in _walk(parsed) if _name(op) == 'LITERAL'}
        checker = _Checker(_BASE | frozenset(literals))
        checker.scan(list(parsed), frozenset(), False)
    except (_Unsafe, RecursionError):
        return True
    except Exception:  # pragma: no cover - a parser shape this walk does not know
        return True
    return False


def _walk(seq: Iterable[Tuple[Any, Any]]) -> Iterable[Tuple[Any, Any]]:
    for op, av in seq:
        yield op, av
        name = _name(op)
        if name == 'IN':
            yield from av
        elif name == 'SUBPATTERN':
            yield from _walk(av[-1])
        elif name.endswith('REPEAT'):
            yield from _walk(av[2])
        elif name == 'BRANCH':
            for alt in av[1]:
                yield from _walk(alt)
        elif name == 'ATOMIC_GROUP':
            yield from _walk(av)
        elif name.startswith('ASSERT'):
            yield from _walk(av[1])
        elif name == 'GROUPREF_EXISTS':
            for branch in av[1:]:
                if branch is not None:
                    yield from _walk(branch)


@lru_cache(maxsize=256)
def compile_regex(pattern: str, ignore_case: bool, anchored: bool = True) -> re.Pattern[str]:
    """Compile a /pattern/ the way the server does: for series names anchored as
    '^' + pattern + '$' (filter() searches, unanchored); QueryError when invalid
    or exponential (see the module docstring)."""
    full = '^' + pattern + '$' if anchored else pattern
    source = _POSIX_RE.sub(lambda m: _POSIX_CLASSES[m.group(1)], pattern)
    flags = _LEAD_FLAGS.match(source)
    lead = flags.group() if flags else ''
    if anchored:
        source = lead + '^' + source[len(lead):] + '$'
    try:
        compiled = re.compile(source, re.IGNORECASE if ignore_case else 0)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        text = getattr(exc, 'msg', None) or str(exc)
        for py, pcre in _RE_ERRORS:
            if text.startswith(py):
                text = pcre
                break
        raise QueryFailure(
            65, f"Cannot compile regular expression '{full}': {text}") from None
    if is_exponential(source):
        raise QueryFailure(
            65, f"Cannot compile regular expression '{full}': {_TOO_COMPLEX}")
    return compiled


def group_pattern(expression: str) -> re.Pattern[str]:
    """The compiled pattern of a group expression as stored, e.g. '/aggr.*/i'."""
    end = expression.rfind('/')
    if expression.startswith('/') and end > 0:
        return compile_regex(expression[1:end], 'i' in expression[end + 1:])
    return compile_regex(expression, False)
