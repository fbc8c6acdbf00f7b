"""A linear-time matcher for the regular subset of Python/PCRE patterns.

``re`` backtracks, so a pattern such as ``^.*.*.*=$`` costs O(n**3) steps on
an n-character name. ``LinearMatcher`` answers the same question as
``re.compile(p).search(s) is not None`` by simulating a Thompson automaton,
building the deterministic states it visits lazily: every character costs at
most O(automaton size) Python steps, usually one dict look-up. It supports
literals, classes, ``.``, groups, alternation, every quantifier (lazy ones
accept the same strings) and ``^ $ \\A \\Z``; patterns with look-around,
back-references, atomic groups, possessive quantifiers, word boundaries or
multi-line anchors raise ``Unsupported``. Each character class is decided by
``re`` itself (compiled alone with the pattern's flags), so case folding and
Unicode classes are exactly those of ``re``.
"""
from __future__ import annotations

import importlib
import re
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Protocol, Sequence, Set, Tuple

__all__ = ['LinearMatcher', 'RegexLike', 'Unsupported', 'TooExpensive', 'MAX_STATES',
           'MAX_WORK', 'QUERY_WORK', 'PATTERN_CACHE', 'TOTAL_CACHE', 'work_budget', 'op_name',
           'sre_parse']

try:  # Python >= 3.11
    sre_parse: Any = importlib.import_module('re._parser')
except ImportError:  # pragma: no cover - Python 3.9 and 3.10
    sre_parse = importlib.import_module('sre_parse')

#: automaton states a pattern may expand to (counted repetitions are unrolled)
MAX_STATES = 20_000
#: automaton states one search may visit while building transitions (about 0.2 s)
MAX_WORK = 200_000
#: the same for all searches of one query together (about 1 s), see work_budget
QUERY_WORK = 1_000_000
#: what the running query has left of QUERY_WORK (None: outside work_budget)
_QUERY_LEFT: ContextVar[Optional[List[int]]] = ContextVar('regex_work_left', default=None)
#: cache entries (automaton states in cached sets, transitions, class answers;
#: roughly 50 bytes each) one pattern, and all patterns together, may keep
#: before a search starts its pattern's cache over
PATTERN_CACHE = 500_000
TOTAL_CACHE = 2_000_000
_MAXREPEAT = int(sre_parse.MAXREPEAT)
_CHAR_FLAGS = re.IGNORECASE | re.DOTALL | re.ASCII
_CATEGORIES = {
    'CATEGORY_DIGIT': r'\d', 'CATEGORY_NOT_DIGIT': r'\D', 'CATEGORY_SPACE': r'\s',
    'CATEGORY_NOT_SPACE': r'\S', 'CATEGORY_WORD': r'\w', 'CATEGORY_NOT_WORD': r'\W',
}
# position checks of the anchors: at the start, at the very end, at the end
# or before a final newline (``$`` without MULTILINE)
_BOS, _EOS, _EOL = 1, 2, 4
_ANCHORS = {'AT_BEGINNING': _BOS, 'AT_BEGINNING_STRING': _BOS,
            'AT_END': _EOL, 'AT_END_STRING': _EOS}


class RegexLike(Protocol):
    """What the query engine uses of a compiled pattern (``re.Pattern`` has it)."""

    @property
    def pattern(self) -> str: ...

    def search(self, string: str) -> Any: ...


class Unsupported(Exception):
    """The pattern uses a construct the automaton cannot express."""


class TooExpensive(Exception):
    """A search visited more than MAX_WORK automaton states, or the searches of
    one query more than QUERY_WORK."""


@contextmanager
def work_budget(work: int = QUERY_WORK) -> Iterator[None]:
    """Share ``work`` among every automaton search inside the block (one query)."""
    token = _QUERY_LEFT.set([work])
    try:
        yield
    finally:
        _QUERY_LEFT.reset(token)


def op_name(code: Any) -> str:
    """The name of an ``re`` parser opcode (``MAX_REPEAT``, ``CATEGORY_DIGIT``)."""
    return str(getattr(code, 'name', code))


def _class_source(name: str, av: Any) -> str:
    """The ``re`` source of one single-character item of the parse tree."""
    if name == 'LITERAL':
        return re.escape(chr(av))
    if name == 'NOT_LITERAL':
        return '[^' + re.escape(chr(av)) + ']'
    if name == 'ANY':
        return '.'
    parts: List[str] = []
    for op, arg in av:  # IN
        item = op_name(op)
        if item == 'NEGATE':
            parts.insert(0, '^')
        elif item == 'LITERAL':
            parts.append(re.escape(chr(arg)))
        elif item == 'RANGE':
            parts.append(re.escape(chr(arg[0])) + '-' + re.escape(chr(arg[1])))
        elif item == 'CATEGORY' and op_name(arg) in _CATEGORIES:
            parts.append(_CATEGORIES[op_name(arg)])
        else:
            raise Unsupported(item)
    return '[' + ''.join(parts) + ']'


class _Builder:
    """Thompson construction, back to front: each call gets the state to continue at.

    A state is ('char', predicate, next), ('split', a, b), ('assert', bit, next)
    or ('match',); they live in ``states`` and refer to each other by index.
    """

    def __init__(self) -> None:
        self.states: List[List[Any]] = [['match']]
        self.preds: List[re.Pattern[str]] = []
        self._pred_ids: Dict[Tuple[str, int], int] = {}

    def _new(self, state: List[Any]) -> int:
        if len(self.states) >= MAX_STATES:
            raise Unsupported(f'more than {MAX_STATES} automaton states')
        self.states.append(state)
        return len(self.states) - 1

    def _pred(self, source: str, flags: int) -> int:
        key = (source, flags & _CHAR_FLAGS)
        found = self._pred_ids.get(key)
        if found is None:
            found = len(self.preds)
            self.preds.append(re.compile(source, key[1]))
            self._pred_ids[key] = found
        return found

    def seq(self, items: Sequence[Tuple[Any, Any]], nxt: int, flags: int) -> int:
        for op, av in reversed(items):
            nxt = self.item(op_name(op), av, nxt, flags)
        return nxt

    def item(self, name: str, av: Any, nxt: int, flags: int) -> int:
        if name in ('LITERAL', 'NOT_LITERAL', 'ANY', 'IN'):
            return self._new(['char', self._pred(_class_source(name, av), flags), nxt])
        if name == 'AT':
            bit = _ANCHORS.get(op_name(av))
            if bit is None or flags & re.MULTILINE:
                raise Unsupported(op_name(av))
            return self._new(['assert', bit, nxt])
        if name == 'SUBPATTERN':
            _group, add, remove, body = av
            return self.seq(body, nxt, (flags | add) & ~remove)
        if name == 'BRANCH':
            alts = [self.seq(alt, nxt, flags) for alt in av[1]]
            start = alts[-1]
            for alt in reversed(alts[:-1]):
                start = self._new(['split', alt, start])
            return start
        if name in ('MAX_REPEAT', 'MIN_REPEAT'):
            return self._repeat(av, nxt, flags)
        raise Unsupported(name)

    def _repeat(self, av: Any, nxt: int, flags: int) -> int:
        lo, hi, body = av
        if hi >= _MAXREPEAT:
            loop = self._new(['split', -1, nxt])
            self.states[loop][1] = self.seq(body, loop, flags)
            tail = loop
        else:
            tail = nxt
            for _ in range(hi - lo):  # optional copies, nested: (x(x(x)?)?)?
                tail = self._new(['split', self.seq(body, tail, flags), nxt])
        for _ in range(lo):
            tail = self.seq(body, tail, flags)
        return tail


class LinearMatcher:
    """``search(s)``: whether the pattern matches somewhere in ``s``, in O(len(s)).

    The automaton is started again at every position, as ``re.search`` does;
    a leading ``^`` makes those later starts die at once.
    """

    #: cache entries of all live matchers (see TOTAL_CACHE)
    _total = 0

    def __init__(self, pattern: str, flags: int = 0) -> None:
        parsed = sre_parse.parse(pattern, flags)
        global_flags = int(parsed.state.flags)
        if global_flags & re.MULTILINE:
            raise Unsupported('MULTILINE')
        builder = _Builder()
        self._start = builder.seq(list(parsed), 0, global_flags)
        self.pattern = pattern
        self._states = builder.states
        self._preds = builder.preds
        self._ids: Dict[FrozenSet[int], int] = {}
        # per cached set: (predicate, next state, predicate, ...) and whether it matches
        self._sets: List[Tuple[Tuple[int, ...], bool]] = []
        self._next: Dict[Tuple[int, str, int], int] = {}
        self._pred_cache: Dict[Tuple[int, str], bool] = {}
        self._starts: Dict[int, int] = {}  # position context -> the start's closure
        self._work = 0
        self._stored = 0
        # whether a match can only start at position 0 (a leading ^): then no
        # live state means no match, whatever follows
        self._only_at_start = all(
            self._sets[self._closure([self._start], ctx)] == ((), False)
            for ctx in (0, _EOL, _EOS | _EOL))

    def _closure(self, seeds: Sequence[int], ctx: int) -> int:
        """Intern the states reachable from ``seeds`` without consuming a character."""
        seen: Set[int] = set()
        stack = list(seeds)
        states = self._states
        self._work += len(stack)
        while stack:
            idx = stack.pop()
            if idx in seen:
                continue
            seen.add(idx)
            self._work += 1
            st = states[idx]
            kind = st[0]
            if kind == 'split':
                stack.append(st[2])
                stack.append(st[1])
            elif kind == 'assert':
                if st[1] & ctx:
                    stack.append(st[2])
        key = frozenset(i for i in seen if states[i][0] in ('char', 'match'))
        found = self._ids.get(key)
        if found is None:
            found = len(self._sets)
            chars = tuple(x for i in sorted(key) if states[i][0] == 'char'
                          for x in states[i][1:])
            self._sets.append((chars, 0 in key))
            self._work += len(chars)
            self._ids[key] = found
            self._keep(len(key) + len(chars))
        return found

    def _step(self, dstate: int, char: str, ctx: int) -> int:
        chars, _ = self._sets[dstate]
        preds = self._preds
        cache = self._pred_cache
        seeds: List[int] = [self._start]  # search: a match may start here too
        for at in range(0, len(chars), 2):
            pred = chars[at]
            hit = cache.get((pred, char))
            if hit is None:
                hit = cache[(pred, char)] = preds[pred].fullmatch(char) is not None
                self._keep(2)
            if hit:
                seeds.append(chars[at + 1])
        self._keep(2)  # the transition being made
        return self._closure(seeds, ctx)

    def _keep(self, entries: int) -> None:
        self._stored += entries
        LinearMatcher._total += entries

    def _forget(self) -> None:
        """Start the cache over (its entries leave the shared total)."""
        LinearMatcher._total -= self._stored
        self._stored = 0
        self._next.clear()
        self._pred_cache.clear()
        self._starts.clear()
        self._ids.clear()
        self._sets.clear()

    def __del__(self) -> None:
        LinearMatcher._total -= getattr(self, '_stored', 0)

    def search(self, string: str) -> Optional[bool]:
        """True when ``re.search`` of the pattern would find a match, else None;
        TooExpensive when building transitions takes more than MAX_WORK (or what
        is left of the query's work_budget)."""
        if self._stored > PATTERN_CACHE or LinearMatcher._total > TOTAL_CACHE:
            self._forget()
        size = len(string)
        last = size - 1
        final_nl = size > 0 and string[last] == '\n'
        ctx = _BOS | (_EOS | _EOL if size == 0 else 0) | (_EOL if final_nl and size == 1 else 0)
        self._work = 0
        dstate = self._starts.get(ctx, -1)
        if dstate < 0:
            dstate = self._starts[ctx] = self._closure([self._start], ctx)
        sets = self._sets
        trans = self._next
        left = _QUERY_LEFT.get()
        limit = MAX_WORK if left is None else min(MAX_WORK, left[0])
        for pos, char in enumerate(string):
            if sets[dstate][1]:
                break
            if pos == last:
                ctx = _EOS | _EOL
            elif pos == last - 1 and final_nl:
                ctx = _EOL
            else:
                ctx = 0
            key = (dstate, char, ctx)
            found = trans.get(key)
            if found is None:
                found = trans[key] = self._step(dstate, char, ctx)
                if self._work > limit:
                    if left is not None:
                        left[0] -= self._work
                    raise TooExpensive(pos)
            dstate = found
            if self._only_at_start and sets[dstate] == ((), False):
                break
        if left is not None:
            left[0] -= self._work
        return True if sets[dstate][1] else None
