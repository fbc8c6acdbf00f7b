"""Regular expressions of queries and groups, compiled like SiriDB's PCRE ones.

Python's ``re`` backtracks and cannot be interrupted: ``/(a+)+b/`` costs
2**n steps on an n-character name and ``/.*.*.*=/`` n**3. ``backtrack_cost``
bounds that cost in one pass over the parsed pattern (linear in its length):
``paths * (n + 1) ** degree``, or unbounded when a variable repetition holds
another choice (nested quantifiers, alternatives inside ``+``/``*``).

``compile_regex`` hands out the plain ``re`` pattern when the bound is at most
linear, which covers what SiriDB users write (``/cpu.*/``,
``/^host-[0-9]+$/i``). Otherwise it hands out a ``GuardedPattern``: ``re`` for
strings short enough that the bound stays within ``BACKTRACK_BUDGET`` steps,
the linear-time automaton of ``linear_regex`` for longer ones. A pattern the
automaton cannot express (look-around, back-references, atomic groups) is
refused for a long string with a QueryFailure instead of being run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional, Sequence, Tuple

from .context import QueryFailure
from .linear_regex import LinearMatcher, RegexLike, TooExpensive, Unsupported, op_name, sre_parse

__all__ = ['compile_regex', 'group_pattern', 'backtrack_cost', 'Cost', 'GuardedPattern',
           'REGEX_TYPES', 'RegexLike', 'BACKTRACK_BUDGET']

#: backtracking steps ``re`` may take on one string (well under a millisecond)
BACKTRACK_BUDGET = 100_000
#: a counted repetition with more choices than this counts as unbounded
_SMALL_RANGE = 64
_BIG = 10 ** 18
_MAXREPEAT = int(sre_parse.MAXREPEAT)
_ATOMIC = ('ATOMIC_GROUP', 'POSSESSIVE_REPEAT', 'ASSERT', 'ASSERT_NOT')
#: how the error text names what the automaton cannot run
_CONSTRUCTS = {
    'GROUPREF': 'a back-reference', 'GROUPREF_EXISTS': 'a conditional group',
    'ATOMIC_GROUP': 'an atomic group', 'POSSESSIVE_REPEAT': 'a possessive quantifier',
    'ASSERT': 'a look-around', 'ASSERT_NOT': 'a look-around',
    'AT_BOUNDARY': 'a word boundary', 'AT_NON_BOUNDARY': 'a word boundary',
    'MULTILINE': 'multi-line anchors',
}

# PCRE wording for the compile errors users are most likely to hit
_RE_ERRORS = (
    ('missing ), unterminated subpattern', 'missing closing parenthesis'),
    ('unbalanced parenthesis', 'unmatched closing parenthesis'),
    ('unterminated character set', 'missing terminating ] for character class'),
    ('nothing to repeat', 'quantifier does not follow a repeatable item'),
)


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
    """Internal: a variable repetition around a choice (exponential)."""


# each walk below returns (paths, degree, has_choice) and visits a node once

def _seq(items: Sequence[Tuple[Any, Any]]) -> Tuple[int, int, bool]:
    paths, degree, choice = 1, 0, False
    for op, av in items:
        p, d, c = _item(op_name(op), av)
        paths = min(paths * p, _BIG)
        degree += d
        choice = choice or c
    return paths, degree, choice


def _item(name: str, av: Any) -> Tuple[int, int, bool]:
    if name in ('LITERAL', 'NOT_LITERAL', 'ANY', 'IN', 'AT'):
        return 1, 0, False
    if name == 'SUBPATTERN':
        return _seq(av[-1])
    if name == 'BRANCH':
        alts = [_seq(alt) for alt in av[1]]
        return (min(sum(a[0] for a in alts), _BIG), max(a[1] for a in alts), True)
    if name in ('MAX_REPEAT', 'MIN_REPEAT', 'POSSESSIVE_REPEAT'):
        lo, hi, body = av
        p, d, c = _seq(body)
        if lo == hi:  # fixed count: the body, lo times over
            reps = min(lo, 64)
            return (1 if p == 1 else min(p ** reps, _BIG)), d * lo, c
        if c and name != 'POSSESSIVE_REPEAT':
            raise _Nested
        choice = name != 'POSSESSIVE_REPEAT'
        if hi >= _MAXREPEAT or hi - lo > _SMALL_RANGE:
            return p, d + 1, choice
        return min(p * (hi - lo + 1), _BIG), d, choice
    if name in _ATOMIC:  # run once per visit; nothing to backtrack into
        p, d, _ = _seq(av if name == 'ATOMIC_GROUP' else av[1])
        return p, d, False
    if name == 'GROUPREF':  # compares up to n characters
        return 1, 1, False
    if name == 'GROUPREF_EXISTS':
        branches = [_seq(b) for b in av[1:] if b is not None]
        return (min(sum(b[0] for b in branches) or 1, _BIG),
                max((b[1] for b in branches), default=0), True)
    raise _Nested  # an opcode this walk does not know: assume the worst


def backtrack_cost(pattern: str, flags: int = 0) -> Cost:
    """The backtracking bound of ``pattern`` as ``re.search`` runs it (see Cost)."""
    try:
        parsed = list(sre_parse.parse(pattern, flags))
        paths, degree, _ = _seq(parsed)
    except (_Nested, RecursionError):
        return Cost(unbounded=True)
    first = op_name(parsed[0][1]) if parsed and op_name(parsed[0][0]) == 'AT' else ''
    if first not in ('AT_BEGINNING', 'AT_BEGINNING_STRING'):
        degree += 1  # search tries every start position
    return Cost(paths, degree)


class GuardedPattern:
    """A pattern whose backtracking can be super-linear: ``re`` for short strings,
    the linear automaton (or a QueryFailure when it has none) for long ones."""

    __slots__ = ('pattern', 'flags', 'cost', '_rx', '_automaton', '_max_len', '_why')

    def __init__(self, compiled: re.Pattern[str], cost: Cost) -> None:
        self.pattern = compiled.pattern
        self.flags = compiled.flags
        self.cost = cost
        self._rx = compiled
        self._max_len = cost.max_length()
        self._automaton: Optional[LinearMatcher] = None
        self._why = ''
        try:
            self._automaton = LinearMatcher(compiled.pattern, compiled.flags)
        except Unsupported as exc:
            self._why = _CONSTRUCTS.get(str(exc), str(exc).lower().replace('_', ' '))

    def search(self, string: str) -> Any:
        """Like ``re.Pattern.search`` but only its truth value counts."""
        if len(string) <= self._max_len:
            return self._rx.search(string)
        if self._automaton is None:
            raise QueryFailure(65, self._refusal(
                len(string), f'it uses {self._why}, which the linear-time matcher '
                             'of the embedded server does not support'))
        try:
            return self._automaton.search(string)
        except TooExpensive:
            raise QueryFailure(65, self._refusal(
                len(string), 'the linear-time matcher exceeded its work budget')) from None

    def _refusal(self, size: int, why: str) -> str:
        shown = self.pattern if len(self.pattern) <= 80 else self.pattern[:77] + '...'
        return (f"Cannot match regular expression '{shown}' against a text of "
                f"{size} characters: it can backtrack super-linearly beyond "
                f"{self._max_len} characters and {why}")

    def __repr__(self) -> str:
        return f'GuardedPattern({self.pattern!r}, {self.cost})'


#: what compile_regex returns (for isinstance checks of filter operands)
REGEX_TYPES = (re.Pattern, GuardedPattern)


@lru_cache(maxsize=256)
def compile_regex(pattern: str, ignore_case: bool, anchored: bool = True) -> RegexLike:
    """Compile a /pattern/ the way the server does: for series names anchored as
    '^' + pattern + '$' (unanchored: searched); QueryError when invalid."""
    full = '^' + pattern + '$' if anchored else pattern
    flags = re.IGNORECASE if ignore_case else 0
    try:
        compiled = re.compile(full, flags)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        text = getattr(exc, 'msg', None) or str(exc)
        for py, pcre in _RE_ERRORS:
            if text.startswith(py):
                text = pcre
                break
        raise QueryFailure(
            65, f"Cannot compile regular expression '{full}': {text}") from None
    cost = backtrack_cost(full, flags)
    if cost.linear():
        return compiled
    return GuardedPattern(compiled, cost)


def group_pattern(expression: str) -> RegexLike:
    """The compiled pattern of a group expression as stored, e.g. '/aggr.*/i'."""
    end = expression.rfind('/')
    if expression.startswith('/') and end > 0:
        return compile_regex(expression[1:end], 'i' in expression[end + 1:])
    return compile_regex(expression, False)
