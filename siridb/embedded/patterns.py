"""Regular expressions of queries and groups, compiled like SiriDB's PCRE ones.

Python's ``re`` backtracks and cannot be interrupted: ``/(a+)+b/`` costs
2**n steps on an n-character name and ``/.*.*.*=/`` n**3. ``backtrack_cost``
(regex_cost.py) bounds that cost in one pass over the parsed pattern, in time
linear in its length.

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
from functools import lru_cache
from typing import Any, Optional

from ..wire import types as pm
from .context import QueryFailure
from .linear_regex import LinearMatcher, RegexLike, TooExpensive, Unsupported
from .regex_cost import BACKTRACK_BUDGET, Cost, backtrack_cost

__all__ = ['compile_regex', 'group_pattern', 'backtrack_cost', 'Cost', 'GuardedPattern',
           'REGEX_TYPES', 'RegexLike', 'BACKTRACK_BUDGET']

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
            raise QueryFailure(pm.CPROTO_ERR_QUERY, self._refusal(
                len(string), f'it uses {self._why}, which the linear-time matcher '
                             'of the embedded server does not support'))
        try:
            return self._automaton.search(string)
        except TooExpensive:
            raise QueryFailure(pm.CPROTO_ERR_QUERY, self._refusal(
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
    source = _POSIX_RE.sub(lambda m: _POSIX_CLASSES[m.group(1)], pattern)
    lead_flags = _LEAD_FLAGS.match(source)
    lead = lead_flags.group() if lead_flags else ''
    if anchored:
        source = lead + '^' + source[len(lead):] + '$'
    flags = re.IGNORECASE if ignore_case else 0
    try:
        compiled = re.compile(source, flags)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        text = getattr(exc, 'msg', None) or str(exc)
        for py, pcre in _RE_ERRORS:
            if text.startswith(py):
                text = pcre
                break
        raise QueryFailure(
            pm.CPROTO_ERR_QUERY, f"Cannot compile regular expression '{full}': {text}") from None
    cost = backtrack_cost(source, flags)
    if cost.linear():
        return compiled
    return GuardedPattern(compiled, cost)


def group_pattern(expression: str) -> RegexLike:
    """The compiled pattern of a group expression as stored, e.g. '/aggr.*/i'."""
    end = expression.rfind('/')
    if expression.startswith('/') and end > 0:
        return compile_regex(expression[1:end], 'i' in expression[end + 1:])
    return compile_regex(expression, False)
