"""How many steps Python's backtracking ``re`` can take for a pattern, bounded in
one pass over its parse tree (time linear in the pattern's length).

The bound for an n-character string is ``paths * (n + 1) ** degree``: every
unbounded repetition may try n + 1 counts (degree + 1), a small counted one or
an alternation multiplies ``paths``. A repetition around another choice is
exponential (``(a+)+``, ``(a|aa)+``) unless the choice is unambiguous within
the loop: each inner repetition and alternative can be told apart by the next
character (``([a-z]+\\.)+``, ``(cpu|mem)+``); then the loop adds one degree.
Character sets are bit masks (128 ASCII bits, one bit for the other
characters, one for the non-ASCII case partners of each ASCII letter such as
the Kelvin sign of k), widened for case folding: every test takes constant time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Sequence, Tuple

from .linear_regex import op_name, sre_parse

__all__ = ['Cost', 'backtrack_cost', 'BACKTRACK_BUDGET']

#: backtracking steps ``re`` may take on one string (well under a millisecond)
BACKTRACK_BUDGET = 100_000
#: a counted repetition with more choices than this counts as unbounded
_SMALL_RANGE = 64
_BIG = 10 ** 18
_MAXREPEAT = int(sre_parse.MAXREPEAT)
_ATOMIC = ('ATOMIC_GROUP', 'POSSESSIVE_REPEAT', 'ASSERT', 'ASSERT_NOT')

_OTHER = 1 << 128  # every character outside ASCII (but the partners below)
_PARTNERS = sum(1 << (129 + i) for i in range(26))  # non-ASCII partners of a..z
_ASCII = (1 << 128) - 1
_ALL = _ASCII | _OTHER | _PARTNERS
_NON_ASCII = _OTHER | _PARTNERS
_LETTERS = sum(1 << c for c in range(128) if chr(c).isalpha())


def _bits(chars: str) -> int:
    return sum(1 << ord(c) for c in chars)


_DIGITS = _bits('0123456789')
_WORD = _DIGITS | _LETTERS | _bits('_')
_SPACE = _bits(' \t\n\r\f\v')
# the ASCII characters a class surely holds, in str and in ASCII mode alike
_SURE = {'CATEGORY_DIGIT': _DIGITS, 'CATEGORY_NOT_DIGIT': _ASCII & ~_DIGITS,
         'CATEGORY_SPACE': _SPACE,
         'CATEGORY_NOT_SPACE': _ASCII & ~(_SPACE | _bits('\x1c\x1d\x1e\x1f')),
         'CATEGORY_WORD': _WORD, 'CATEGORY_NOT_WORD': _ASCII & ~_WORD}
# every character a class may hold (Unicode digits, letters, spaces: _OTHER)
_MAY = {'CATEGORY_DIGIT': _DIGITS | _OTHER,
        'CATEGORY_SPACE': _SPACE | _bits('\x1c\x1d\x1e\x1f') | _OTHER,
        'CATEGORY_WORD': _WORD | _NON_ASCII}


def _fold(mask: int) -> int:
    """``mask`` widened for case-insensitive matching: both cases of an ASCII
    letter and its non-ASCII partners (the Kelvin sign matches k)."""
    letters = mask & _LETTERS
    if not letters:
        return mask
    for c in range(65, 123):
        if letters >> c & 1:
            lower = ord(chr(c).lower())
            mask |= 1 << ord(chr(c).swapcase()) | 1 << (129 + lower - 97)
    return mask


def _literal(code: int) -> int:
    if code < 128:
        return _fold(1 << code)
    # a non-ASCII letter may be the partner of an ASCII one ('\u212a' -> k)
    return _NON_ASCII | _LETTERS if chr(code).isalpha() else _OTHER


def _range(lo: int, hi: int) -> int:
    mask = sum(1 << c for c in range(lo, min(hi, 127) + 1))
    if hi >= 128:  # non-ASCII characters may fold to ASCII letters
        mask |= _NON_ASCII | _LETTERS
    return _fold(mask)


def _class(items: Sequence[Tuple[Any, Any]]) -> int:
    """The characters an ``IN`` item may match (a superset)."""
    negate = any(op_name(op) == 'NEGATE' for op, _ in items)
    mask = 0
    for op, av in items:
        name = op_name(op)
        if name == 'LITERAL':
            mask |= (1 << av if av < 128 else 0) if negate else _literal(av)
        elif name == 'RANGE':
            lo, hi = av
            mask |= sum(1 << c for c in range(lo, min(hi, 127) + 1)) if negate \
                else _range(lo, hi)
        elif name == 'CATEGORY':
            cat = op_name(av)
            mask |= _SURE.get(cat, 0) if negate else _MAY.get(cat, _ALL)
        elif name != 'NEGATE':
            return _ALL
    # a negated class: everything but what the class surely holds
    return (_ASCII & ~mask) | _NON_ASCII if negate else mask


@dataclass(frozen=True)
class Cost:
    """Bound on backtracking steps for an n-character string:
    ``paths * (n + 1) ** degree``; ``unbounded``: exponential (nested choices)."""

    paths: int = 1
    degree: int = 0
    unbounded: bool = False

    def linear(self) -> bool:
        """Whether ``re`` runs in time linear in the string for every string."""
        return not self.unbounded and self.degree <= 1 and self.paths <= 10_000

    def max_length(self) -> int:
        """The longest string whose bound stays within BACKTRACK_BUDGET."""
        if self.unbounded:  # ((a*)*)*b takes 11 s in re on 12 characters
            return 0
        if self.degree == 0:
            return _BIG if self.paths <= BACKTRACK_BUDGET else 0
        room = BACKTRACK_BUDGET // max(self.paths, 1)
        if room < 1:
            return 0
        return max(0, int(room ** (1.0 / self.degree) + 1e-9) - 1)


class _Nested(Exception):
    """Internal: an ambiguous choice inside a repetition (exponential)."""


Walk = Tuple[int, int]  # (paths, degree)


class _Analysis:
    """One pass over a parse tree; first/consumable character sets of every
    sequence are computed once (memoised by the sequence object)."""

    def __init__(self) -> None:
        self._firsts: Dict[int, Tuple[int, bool]] = {}
        self._chars: Dict[int, int] = {}
        self._keep: list[Any] = []  # the memoised sequences stay alive (stable ids)

    # -- character sets -----------------------------------------------------
    def first_seq(self, items: Sequence[Tuple[Any, Any]]) -> Tuple[int, bool]:
        """(characters a match of ``items`` can start with, whether it can be empty)."""
        found = self._firsts.get(id(items))
        if found is None:
            mask, nullable = 0, True
            for op, av in items:
                f, n = self.first(op_name(op), av)
                mask |= f
                if not n:
                    nullable = False
                    break
            found = self._firsts[id(items)] = (mask, nullable)
            self._keep.append(items)
        return found

    def first(self, name: str, av: Any) -> Tuple[int, bool]:
        if name in ('LITERAL', 'NOT_LITERAL', 'ANY', 'IN'):
            return self.consumes(name, av), False
        if name == 'AT' or name in ('ASSERT', 'ASSERT_NOT'):
            return 0, True
        if name == 'SUBPATTERN':
            return self.first_seq(av[-1])
        if name == 'ATOMIC_GROUP':
            return self.first_seq(av)
        if name.endswith('REPEAT'):
            f, n = self.first_seq(av[2])
            return f, n or av[0] == 0
        if name == 'BRANCH':
            mask, nullable = 0, False
            for alt in av[1]:
                f, n = self.first_seq(alt)
                mask, nullable = mask | f, nullable or n
            return mask, nullable
        return _ALL, True  # back-references, conditionals, unknown opcodes

    def chars_seq(self, items: Sequence[Tuple[Any, Any]]) -> int:
        """Every character some item of ``items`` can consume."""
        found = self._chars.get(id(items))
        if found is None:
            found = 0
            for op, av in items:
                found |= self.consumes(op_name(op), av)
            self._chars[id(items)] = found
            self._keep.append(items)
        return found

    def consumes(self, name: str, av: Any) -> int:
        if name == 'LITERAL':
            return _literal(av)
        if name == 'IN':
            return _class(av)
        if name in ('NOT_LITERAL', 'ANY'):
            return _ALL
        if name == 'AT' or name in ('ASSERT', 'ASSERT_NOT'):
            return 0
        if name == 'SUBPATTERN':
            return self.chars_seq(av[-1])
        if name == 'ATOMIC_GROUP':
            return self.chars_seq(av)
        if name.endswith('REPEAT'):
            return self.chars_seq(av[2])
        if name == 'BRANCH':
            mask = 0
            for alt in av[1]:
                mask |= self.chars_seq(alt)
            return mask
        return _ALL

    # -- the walk ---------------------------------------------------------------
    def walk(self, items: Sequence[Tuple[Any, Any]], follow: int, in_loop: bool) -> Walk:
        """Bound of ``items`` followed by a character in ``follow``; ``in_loop``:
        inside a repetition, where every choice must be unambiguous."""
        entries = [(op_name(op), av) for op, av in items]
        afters = [0] * len(entries)
        after = follow
        for idx in range(len(entries) - 1, -1, -1):  # what may follow each item
            afters[idx] = after
            f, n = self.first(*entries[idx])
            after = f | after if n else f
        paths, degree = 1, 0
        for (name, av), after in zip(entries, afters):
            p, d = self.item(name, av, after, in_loop)
            paths = min(paths * p, _BIG)
            degree += d
        return paths, degree

    def item(self, name: str, av: Any, after: int, in_loop: bool) -> Walk:
        if name in ('LITERAL', 'NOT_LITERAL', 'ANY', 'IN', 'AT'):
            return 1, 0
        if name == 'SUBPATTERN':
            return self.walk(av[-1], after, in_loop)
        if name == 'BRANCH':
            return self._branch(av[1], after, in_loop)
        if name in ('MAX_REPEAT', 'MIN_REPEAT'):
            return self._repeat(av, after, in_loop)
        if name in _ATOMIC:  # run once per visit; nothing to backtrack into
            body = av[2] if name == 'POSSESSIVE_REPEAT' else \
                av if name == 'ATOMIC_GROUP' else av[1]
            p, d = self.walk(body, 0, False)  # nothing follows inside: it commits
            if name == 'POSSESSIVE_REPEAT' and av[0] != av[1]:
                d += 1
            return p, d
        if name == 'GROUPREF':  # compares up to n characters, one way only
            return 1, 1
        raise _Nested  # conditionals, unknown opcodes: assume the worst

    def _branch(self, alts: Sequence[Any], after: int, in_loop: bool) -> Walk:
        seen = 0
        paths, degree = 0, 0
        for alt in alts:
            if in_loop:
                f, n = self.first_seq(alt)
                if n or f & seen:
                    raise _Nested
                seen |= f
            p, d = self.walk(alt, after, in_loop)
            paths, degree = min(paths + p, _BIG), max(degree, d)
        return paths, degree

    def _repeat(self, av: Any, after: int, in_loop: bool) -> Walk:
        lo, hi, body = av
        if lo == hi:  # fixed count: the body, lo times over
            inner = self.first_seq(body)[0] | after if hi > 1 else after
            p, d = self.walk(body, inner, in_loop)
            return (1 if p == 1 else min(p ** min(lo, 64), _BIG)), d * lo
        if in_loop and self.chars_seq(body) & after:
            raise _Nested  # the loop around could take these characters too
        if hi > 1:
            p, d = self.walk(body, self.first_seq(body)[0] | after, True)
        else:
            p, d = self.walk(body, after, in_loop)
        if hi >= _MAXREPEAT or hi - lo > _SMALL_RANGE:
            return p, d + 1
        return min(p * (hi - lo + 1), _BIG), d


def backtrack_cost(pattern: str, flags: int = 0) -> Cost:
    """The backtracking bound of ``pattern`` as ``re.search`` runs it (see Cost)."""
    try:
        parsed = list(sre_parse.parse(pattern, flags))
        paths, degree = _Analysis().walk(parsed, 0, False)  # nothing follows a match
    except (_Nested, RecursionError):
        return Cost(unbounded=True)
    first = op_name(parsed[0][1]) if parsed and op_name(parsed[0][0]) == 'AT' else ''
    if first not in ('AT_BEGINNING', 'AT_BEGINNING_STRING'):
        degree += 1  # search tries every start position
    return Cost(paths, degree)
