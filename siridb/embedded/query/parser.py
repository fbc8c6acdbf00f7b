"""Hand-written recursive descent parser for the SiriDB query language.

It follows SiriDB 2.0.55's grammar element by element and, like the real server's
parser, remembers the furthest position where an element failed and the elements
expected there in the order it tried them: that gives the real server's "Query error
at position N. Expecting A, B or C" texts (tests/embedded/test_parser_differential.py checks
them against the recorded transcripts). Statements come out as plain dicts, typed
per kind in ``nodes.py``.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ...wire import types as pm
from ..context import QueryFailure
from .nodes import (
    AggrFn,
    AlterDatabaseStmt,
    AlterSeriesStmt,
    AlterServerStmt,
    CountStmt,
    DropSeriesStmt,
    DropShardsStmt,
    GrantStmt,
    HelpStmt,
    ListStmt,
    Merge,
    RevokeStmt,
    SelectAggr,
    SelectStmt,
    ShowStmt,
    Statement,
    UnsupportedStmt,
)

__all__ = ['parse', 'expecting_text', 'Node', 'SHOW_PROPS', 'DEFAULT_COLUMNS',
           'COLUMN_ORDER', 'MAX_WHERE_DEPTH', 'MAX_DEPTH', 'MAX_FLAT_OPS']

#: any parsed statement (the name before the per-kind types of nodes.py)
Node = Statement
T = TypeVar('T')

MAX_WHERE_DEPTH = 5  # nested parentheses allowed in a where expression
MAX_DEPTH = 200  # selector nesting deeper than this is refused (keeps recursion bounded)
#: operators (or nested parentheses) in one time expression beyond which the real
#: server's parser gives up (it takes 300 operators and 500 nested parentheses and
#: refuses 999 operators: grammar.jsonl; the exact number is not known)
MAX_FLAT_OPS = 500
#: the real server's text when its parser reaches its recursion limit
MAX_DEPTH_ERROR = 'Memory allocation error or maximum recursion depth reached.'

_WS = re.compile(r'[ \t\n\r\f\v]*')  # C isspace(): ASCII only
_WORD = re.compile(r'[a-z_]+')
_INT = re.compile(r'[0-9]+')
_TIME_STR = re.compile(r'([0-9]+)([smhdw])')
_SQ = re.compile(r"'[^']*(?:''[^']*)*'")
_DQ = re.compile(r'"[^"]*(?:""[^"]*)*"')
_GRAVE = re.compile(r'`[^`]*(?:``[^`]*)*`')
_REGEX = re.compile(r'/[^/\\]*(?:\\.[^/\\]*)*/i?')
_COMMENT = re.compile(r'#.*')
LOG_LEVELS = ('debug', 'info', 'warning', 'error', 'critical')

GROUP_FNS = ('mean', 'median', 'median_low', 'median_high', 'sum', 'min', 'max', 'count',
             'variance', 'pvariance', 'stddev', 'first', 'last', 'difference')

#: the topics of `help` (and `?`): topic -> its sub-topics, in the real server's order
HELP_TOPICS: Dict[str, Any] = {
    'access': {}, 'alter': {'database': {}, 'group': {}, 'server': {}, 'servers': {},
                            'user': {}},
    'count': {'groups': {}, 'pools': {}, 'series': {}, 'servers': {}, 'shards': {},
              'users': {}},
    'create': {'group': {}, 'user': {}},
    'drop': {'group': {}, 'series': {}, 'server': {}, 'shards': {}, 'user': {}},
    'functions': {}, 'grant': {},
    'list': {'groups': {}, 'pools': {}, 'series': {}, 'servers': {}, 'shards': {},
             'users': {}},
    'noaccess': {}, 'revoke': {}, 'select': {}, 'show': {}, 'timeit': {}, 'timezones': {},
}

#: the columns `list` gives when none are named
DEFAULT_COLUMNS: Dict[str, Tuple[str, ...]] = {
    'series': ('name',), 'users': ('name', 'access'), 'groups': ('name',),
    'tags': ('name',), 'pools': ('pool', 'servers', 'series'),
    'shards': ('sid', 'pool', 'server', 'start', 'end'),
    'servers': ('name', 'pool', 'version', 'online', 'status'),
}

#: how the real server lists element names in "Expecting ...": every alternative
#: tried at the furthest position, in the grammar's order; a group of tokens is one
#: element ("+ - * % /"). These elements are recorded but never named (the real
#: server has no text for them); they still count for where the final "or" goes.
HIDDEN = frozenset(('grave_str', 'series_re', 'uinteger'))

#: token groups (one element each), as the real server spells them
ARITH_OPS = '+ - * % /'
INT_OPS = '== != <= >= < >'
STR_OPS = '== != <= >= !~ < > ~'
BOOL_OPS = '== !='
UNION_OPS = ', |'

#: aggregate functions in the grammar's order (`all` and `points` mean `*`)
FN_ORDER = ('*', 'all', 'offset', 'limit', 'mean', 'sum', 'median', 'median_low',
            'median_high', 'min', 'max', 'count', 'variance', 'pvariance', 'stddev',
            'first', 'last', 'timeval', 'interval', 'difference', 'derivative', 'filter',
            'points')
LIMIT_ORDER = ('mean', 'median', 'median_high', 'median_low', 'sum', 'min', 'max',
               'count', 'variance', 'pvariance', 'stddev', 'first', 'last')
ACCESS_ORDER = ('read', 'write', 'modify', 'full', 'select', 'show', 'list', 'count',
                'create', 'insert', 'drop', 'grant', 'revoke', 'alter')
#: the properties of `show`, in the grammar's order (a bare `show` gives them all)
SHOW_PROPS = (
    'active_handles', 'active_tasks', 'buffer_path', 'buffer_size', 'dbname', 'dbpath',
    'drop_threshold', 'duration_log', 'duration_num', 'fifo_files', 'expiration_log',
    'expiration_num', 'idle_percentage', 'idle_time', 'ip_support', 'libuv', 'list_limit',
    'log_level', 'max_open_files', 'mem_usage', 'open_files', 'pool', 'received_points',
    'reindex_progress', 'selected_points', 'select_points_limit', 'server', 'startup_time',
    'status', 'sync_progress', 'tee', 'time_precision', 'timezone', 'uptime', 'uuid',
    'version', 'who_am_i')
#: columns each list target accepts, in the grammar's order
COLUMN_ORDER: Dict[str, Tuple[str, ...]] = {
    'series': ('name', 'type', 'length', 'start', 'end', 'shard_duration', 'pool'),
    'shards': ('sid', 'pool', 'server', 'size', 'start', 'end', 'type', 'status'),
    'servers': ('address', 'buffer_path', 'buffer_size', 'dbpath', 'ip_support', 'libuv',
                'name', 'port', 'uuid', 'pool', 'version', 'online', 'startup_time',
                'status', 'active_handles', 'active_tasks', 'fifo_files',
                'idle_percentage', 'idle_time', 'log_level', 'max_open_files', 'mem_usage',
                'open_files', 'received_points', 'reindex_progress', 'selected_points',
                'sync_progress', 'uptime'),
    'groups': ('expression', 'name', 'series'),
    'users': ('name', 'access'),
    'tags': ('name', 'series'),
    'pools': ('pool', 'servers', 'series'),
}
_SERVER_INT = ('active_handles', 'active_tasks', 'buffer_size', 'fifo_files',
               'idle_percentage', 'idle_time', 'port', 'pool', 'startup_time',
               'max_open_files', 'mem_usage', 'open_files', 'received_points',
               'selected_points', 'uptime')
_SERVER_STR = ('address', 'buffer_path', 'dbpath', 'ip_support', 'libuv', 'name', 'uuid',
               'version', 'status', 'reindex_progress', 'sync_progress')
#: where clauses per target: (properties, value kind) in the grammar's order
WHERE_ORDER: Dict[str, Tuple[Tuple[Tuple[str, ...], str], ...]] = {
    'series': ((('length', 'pool'), 'int'), (('name',), 'str'),
               (('start', 'end', 'shard_duration'), 'time'), (('type',), 'type')),
    'groups': ((('series',), 'int'), (('expression', 'name'), 'str')),
    'tags': ((('name',), 'str'), (('series',), 'int')),
    'pools': ((('pool', 'servers', 'series'), 'int'),),
    'servers': ((_SERVER_INT, 'int'), (_SERVER_STR, 'str'), (('online',), 'bool'),
                (('log_level',), 'log')),
    'users': ((('name',), 'str'), (('access',), 'access')),
    'shards': ((('sid', 'pool', 'size'), 'int'), (('server', 'status'), 'str'),
               (('start', 'end'), 'time'), (('type',), 'shard_type')),
}
_VALUE_WORDS = {'type': ('string', 'integer', 'float'), 'bool': ('true', 'false'),
                'log': LOG_LEVELS, 'access': ACCESS_ORDER, 'shard_type': ('number', 'log')}
_OPS_OF_KIND = {'int': INT_OPS, 'time': INT_OPS, 'str': STR_OPS, 'type': BOOL_OPS,
                'bool': BOOL_OPS, 'log': INT_OPS, 'access': INT_OPS,
                'shard_type': BOOL_OPS}
_SETOPS = ((UNION_OPS, ','), ('union', ','), ('-', '-'), ('difference', '-'),
           ('&', '&'), ('intersection', '&'), ('^', '^'), ('symmetric_difference', '^'))
_INT_SIGNED = re.compile(r'[-+]?[0-9]+')
_FLOAT = re.compile(r'[-+]?[0-9]*\.?[0-9]+')
_UUID_LOWER = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


class NoMatch(Exception):
    """Internal: the current alternative does not match (backtrack)."""


def _unquote(s: str) -> str:
    q = s[0]
    return s[1:-1].replace(q + q, q)


def expecting_text(pos: int, names: List[str]) -> str:
    """The real server's text: names joined by ", ", the last with " or " (a hidden
    last element leaves no "or"); nothing named still leaves "Expecting "."""
    out: List[str] = []
    last = len(names) - 1
    for i, name in enumerate(names):
        if name in HIDDEN:
            continue
        if not out:
            out.append(name)
        else:
            out.append((' or ' if i == last else ', ') + name)
    return f'Query error at position {pos}. Expecting ' + ''.join(out)


class Parser:
    """Parsing state: text, position, the furthest failure and what was expected."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.err_pos = -1
        self.expected: List[str] = []
        self.depth = 0
        self.where_too_deep = False

    # -- primitives --------------------------------------------------------
    def _skip(self) -> int:
        m = _WS.match(self.text, self.pos)
        assert m is not None
        self.pos = m.end()
        return self.pos

    def _record(self, pos: int, name: str) -> None:
        if pos > self.err_pos:
            self.err_pos = pos
            self.expected = []
        if pos == self.err_pos and name not in self.expected:
            self.expected.append(name)

    def _word(self, pos: int) -> Optional[str]:
        m = _WORD.match(self.text, pos)
        return None if m is None else m.group()

    def kw(self, *words: str) -> str:
        pos = self._skip()
        word = self._word(pos)
        if word is not None and word in words:
            self.pos = pos + len(word)
            return word
        for w in words:
            self._record(pos, w)
        raise NoMatch

    def tok(self, *toks: str) -> str:
        pos = self._skip()
        for t in toks:
            if self.text.startswith(t, pos):
                self.pos = pos + len(t)
                return t
        for t in toks:
            self._record(pos, t)
        raise NoMatch

    def toks(self, spaced: str) -> str:
        """One element made of several tokens (longest tried first)."""
        pos = self._skip()
        for t in sorted(spaced.split(), key=len, reverse=True):
            if self.text.startswith(t, pos):
                self.pos = pos + len(t)
                return t
        self._record(pos, spaced)
        raise NoMatch

    def rx(self, name: str, regex: re.Pattern[str]) -> re.Match[str]:
        pos = self._skip()
        m = regex.match(self.text, pos)
        if m is None:
            self._record(pos, name)
            raise NoMatch
        self.pos = m.end()
        return m

    def opt(self, fn: Callable[[], T]) -> Optional[T]:
        save = self.pos
        try:
            return fn()
        except NoMatch:
            self.pos = save
            return None

    def opt_kw(self, *words: str) -> Optional[str]:
        return self.opt(lambda: self.kw(*words))

    def opt_tok(self, *toks: str) -> Optional[str]:
        return self.opt(lambda: self.tok(*toks))

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryFailure(pm.CPROTO_ERR_QUERY, MAX_DEPTH_ERROR)

    def leave(self) -> None:
        self.depth -= 1

    def string(self) -> str:
        pos = self._skip()
        m = _SQ.match(self.text, pos) or _DQ.match(self.text, pos)
        if m is None:
            self._record(pos, 'single_quote_str')
            self._record(pos, 'double_quote_str')
            raise NoMatch
        self.pos = m.end()
        return _unquote(m.group())

    def grave(self) -> str:
        return _unquote(self.rx('grave_str', _GRAVE).group())

    def regex(self, name: str = 'regular_expression') -> Tuple[str, bool]:
        s = self.rx(name, _REGEX).group()
        if s.endswith('i'):
            return s[1:-2], True
        return s[1:-1], False

    def uinteger(self) -> str:
        return self.rx('uinteger', _INT).group()

    def error(self) -> QueryFailure:
        return QueryFailure(pm.CPROTO_ERR_QUERY, expecting_text(self.err_pos, self.expected))

    # -- time and integer expressions --------------------------------------
    def time_expr(self, ints_only: bool = False) -> Tuple[Any, ...]:
        """('expr', tokens, is_time): the expression's tokens in order (operators and
        parentheses as text, operands as leaves), evaluated the way the real server
        does it (timeexpr.evaluate). Parsed in a loop, so that neither deep
        parentheses nor long sums recurse. ``ints_only``: the grammar's integer
        expression (integers, parentheses and operators only)."""
        out: List[Any] = []
        depth = 0
        n_ops = 0
        while True:
            leaf = self._time_leaf(ints_only)
            if leaf is None:  # an opening parenthesis: an operand follows
                out.append('(')
                depth += 1
                if depth > MAX_FLAT_OPS:
                    raise QueryFailure(pm.CPROTO_ERR_QUERY, MAX_DEPTH_ERROR)
                continue
            out.append(leaf)
            while True:
                save = self.pos
                try:
                    out.append(self.toks(ARITH_OPS))
                except NoMatch:
                    self.pos = save
                else:
                    n_ops += 1
                    break
                if depth == 0:
                    if n_ops > MAX_FLAT_OPS:
                        raise QueryFailure(pm.CPROTO_ERR_QUERY, MAX_DEPTH_ERROR)
                    return ('expr', tuple(out), not ints_only)
                self.tok(')')
                out.append(')')
                depth -= 1

    def _time_leaf(self, ints_only: bool) -> Optional[Tuple[Any, ...]]:
        """One operand, or None after taking an opening parenthesis."""
        pos = self._skip()
        text = self.text
        if not ints_only:
            m = _TIME_STR.match(text, pos)
            if m is not None:
                self.pos = m.end()
                return ('dur', m.group(1), m.group(2))
            self._record(pos, 'date/time_string')
            if self.opt_kw('now'):
                return ('now',)
            m = _SQ.match(text, pos) or _DQ.match(text, pos)
            if m is not None:
                self.pos = m.end()
                return ('date', _unquote(m.group()))
            self._record(pos, 'single_quote_str')
            self._record(pos, 'double_quote_str')
        m = _INT_SIGNED.match(text, pos)
        if m is not None:
            self.pos = m.end()
            return ('int', m.group())
        self._record(pos, 'integer')
        self.tok('(')
        return None

    def int_expr(self) -> Tuple[Any, ...]:
        return self.time_expr(ints_only=True)

    # -- series selectors --------------------------------------------------
    def _setop(self) -> str:
        pos = self._skip()
        word = self._word(pos)
        for name, op in _SETOPS:
            if name[0].isalpha():
                if word == name:
                    self.pos = pos + len(word)
                    return op
            elif self.text.startswith(tuple(name.split()), pos):
                self.pos = pos + 1
                return op
        for name, _ in _SETOPS:
            self._record(pos, name)
        raise NoMatch

    def selector(self) -> Tuple[Any, ...]:
        """('set', first, [(op, term), ...]), applied left to right."""
        first = self._sel_term()
        rest: List[Tuple[str, Tuple[Any, ...]]] = []
        while True:
            op = self.opt(self._setop)
            if op is None:
                return first if not rest else ('set', first, rest)
            rest.append((op, self._sel_term()))

    def _sel_term(self) -> Tuple[Any, ...]:
        pos = self._skip()
        if self.text.startswith('*', pos):
            self.pos = pos + 1
            return ('all',)
        self._record(pos, '*')
        if self.opt_kw('all'):
            return ('all',)
        name = self.opt(self.string)
        if name is not None:
            return ('name', name)
        grave = self.opt(self.grave)
        if grave is not None:
            return ('group', grave)
        rx = self.opt(lambda: self.regex('series_re'))
        if rx is not None:
            return ('regex', rx[0], rx[1])
        self.tok('(')
        self.enter()
        node = self.selector()
        self.leave()
        self.tok(')')
        return node

    # -- where -------------------------------------------------------------
    def where(self, target: str) -> Tuple[Any, ...]:
        self.kw('where')
        return self._where_or(target, 0)

    def _where_or(self, target: str, depth: int) -> Tuple[Any, ...]:
        items = [self._where_and(target, depth)]
        while self.opt_kw('or'):
            items.append(self._where_and(target, depth))
        return items[0] if len(items) == 1 else ('or', items)

    def _where_and(self, target: str, depth: int) -> Tuple[Any, ...]:
        items = [self._where_atom(target, depth)]
        while self.opt_kw('and'):
            items.append(self._where_atom(target, depth))
        return items[0] if len(items) == 1 else ('and', items)

    def _where_atom(self, target: str, depth: int) -> Tuple[Any, ...]:
        pos = self._skip()
        word = self._word(pos)
        spec = WHERE_ORDER[target]
        kind = next((k for props, k in spec if word in props), None)
        if kind is None or word is None:
            for props, _ in spec:
                for p in props:
                    self._record(pos, p)
            self.tok('(')
            if depth >= MAX_WHERE_DEPTH:
                self.where_too_deep = True
            self.enter()
            node = self._where_or(target, depth + 1)
            self.leave()
            self.tok(')')
            return node
        self.pos = pos + len(word)
        op = self.toks(_OPS_OF_KIND[kind])
        if kind in ('int', 'time'):
            return ('cmp', word, op, ('time', self.time_expr(kind == 'int')))
        if kind == 'str':
            return ('cmp', word, op, ('str', self.string()))
        value = self.kw(*_VALUE_WORDS[kind])
        if kind == 'type':
            return ('cmp', word, op, ('type', value))
        if kind == 'bool':
            return ('cmp', word, op, ('bool', value == 'true'))
        if kind == 'access':
            return ('cmp', 'access_mask', op, ('access', value))
        if kind == 'log':
            return ('cmp', word, op, ('log', value))
        return ('cmp', word, op, ('str', value))

    # -- select ------------------------------------------------------------
    def aggr_fn(self) -> AggrFn:
        pos = self._skip()
        if self.text.startswith('*', pos):
            self.pos = pos + 1
            return {'fn': '*'}
        name = self.kw(*FN_ORDER[1:]) if self._word(pos) in FN_ORDER else None
        if name is None:
            for fn in FN_ORDER:
                self._record(pos, fn)
            raise NoMatch
        if name in ('all', 'points'):
            return {'fn': '*'}
        self.tok('(')
        node: AggrFn = {'fn': name, 'pos': pos}
        if name in GROUP_FNS:
            node['group'] = self.opt(self.time_expr)
        elif name == 'derivative':
            unit = self.opt(self.time_expr)
            node['ts_unit'] = unit
            if unit is not None and self.opt_tok(','):
                node['group'] = self.time_expr()
        elif name == 'offset':
            node['offset'] = self.time_expr()
        elif name == 'limit':
            node['limit'] = self.int_expr()
            self.tok(',')
            node['limit_fn'] = self.kw(*LIMIT_ORDER)
        elif name == 'filter':
            op = self.opt(lambda: self.toks(STR_OPS))
            node['op'] = op or '=='
            node['operand'] = self._filter_value()
        self.tok(')')
        return node

    def _filter_value(self) -> Tuple[Any, ...]:
        """The longest of: string, integer, float, regex, nan, inf, -inf."""
        pos = self._skip()
        text = self.text
        found: List[Tuple[int, Tuple[Any, ...]]] = []
        m = _SQ.match(text, pos) or _DQ.match(text, pos)
        if m is not None:
            found.append((m.end(), ('str', _unquote(m.group()))))
        for regex in (_INT_SIGNED, _FLOAT):
            m = regex.match(text, pos)
            if m is not None:
                found.append((m.end(), ('num', m.group())))
        m = _REGEX.match(text, pos)
        if m is not None:
            s = m.group()
            ci = s.endswith('i')
            found.append((m.end(), ('regex', s[1:-2] if ci else s[1:-1], ci)))
        word = self._word(pos)
        if word in ('nan', 'inf'):
            found.append((pos + 3, ('num', word)))
        if text.startswith('-', pos):
            after = _WS.match(text, pos + 1)
            assert after is not None
            if self._word(after.end()) == 'inf':
                found.append((after.end() + 3, ('num', '-inf')))
            elif not found:
                self._record(after.end(), 'inf')
        if found:
            end, value = max(found, key=lambda f: f[0])
            self.pos = end
            return value
        for name in ('single_quote_str', 'double_quote_str', 'integer', 'float',
                     'regular_expression', 'nan', 'inf', '-'):
            self._record(pos, name)
        raise NoMatch

    def aggr_chain(self) -> List[AggrFn]:
        chain = [self.aggr_fn()]
        while self.opt_tok('=>'):
            chain.append(self.aggr_fn())
        return chain

    def _select_aggr(self) -> SelectAggr:
        chain = self.aggr_chain()
        prefix = self.opt(lambda: (self.kw('prefix'), self.string())[1])
        suffix = self.opt(lambda: (self.kw('suffix'), self.string())[1])
        return {'chain': chain, 'prefix': prefix or '', 'suffix': suffix or ''}

    def select(self) -> SelectStmt:
        self.kw('select')
        aggrs = [self._select_aggr()]
        while self.opt_tok(','):
            aggrs.append(self._select_aggr())
        self.kw('from')
        selector = self.selector()
        where = self.opt(lambda: self.where('series'))
        time_range = self.opt(self._time_range)
        return {'kind': 'select', 'aggrs': aggrs, 'selector': selector, 'where': where,
                'range': time_range, 'merge': self.opt(self._merge)}

    def _time_range(self) -> Tuple[Any, ...]:
        word = self.kw('after', 'between', 'before', 'tail', 'head')
        if word in ('head', 'tail'):
            return (word, self.int_expr())
        start = self.time_expr()
        if word == 'between':
            self.kw('and')
            return (word, start, self.time_expr())
        return (word, start)

    def _merge(self) -> Merge:
        self.kw('merge')
        self.kw('as')
        name = self.string()
        using = None
        if self.opt_kw('using'):
            using = self.aggr_chain()
        return name, using

    # -- list / count / show -----------------------------------------------
    def _columns(self, allowed: Tuple[str, ...]) -> List[str]:
        cols = [self.kw(*allowed)]
        while self.opt_tok(','):
            cols.append(self.kw(*allowed))
        return cols

    def _unsupported(self, what: str) -> UnsupportedStmt:
        """A statement of the real server the embedded one lacks (parsed in full):
        execute() answers a clear error."""
        return {'kind': 'unsupported', 'what': what}

    def list_stmt(self) -> ListStmt:
        self.kw('list')
        target = self.kw('series', 'tags', 'users', 'shards', 'groups', 'servers', 'pools')
        columns = self.opt(lambda: self._columns(COLUMN_ORDER[target]))
        selector = self.opt(self.selector) if target == 'series' else None
        where = self.opt(lambda: self.where(target))
        limit = self.opt(lambda: (self.kw('limit'), self.int_expr())[1])
        return {'kind': 'list', 'target': target, 'selector': selector, 'where': where,
                'limit': limit, 'columns': columns or list(DEFAULT_COLUMNS[target])}

    def _opt_word_after(self, pos: int, words: Tuple[str, ...]) -> None:
        """Record the words another alternative would take at ``pos`` (a greedy
        choice of the real grammar tries them after this one)."""
        for w in words:
            self._record(pos, w)

    def count_stmt(self) -> CountStmt:
        self.kw('count')
        target = self.kw('groups', 'pools', 'series', 'servers', 'shards', 'users', 'tags')
        node: CountStmt = {'kind': 'count', 'target': target, 'length': False,
                           'selector': None, 'where': None}
        pos = self._skip()
        word = self._word(pos)
        extra = {'series': ('length',), 'servers': ('received_points', 'selected_points'),
                 'shards': ('size',)}.get(target, ())
        if word in extra:
            self.pos = pos + len(word)
            node['what'] = word
        if target == 'series':
            node['length'] = word == 'length'
            node['selector'] = self.opt(self.selector)
        node['where'] = self.opt(lambda: self.where(target))
        if word not in extra:
            self._opt_word_after(pos, extra)
        return node

    def show_stmt(self) -> ShowStmt:
        self.kw('show')
        props = self.opt(lambda: self._columns(SHOW_PROPS))
        return {'kind': 'show', 'props': props}

    # -- create / alter / drop / grant / revoke ----------------------------
    def create_stmt(self) -> Statement:
        self.kw('create')
        what = self.kw('group', 'user')
        if what == 'group':
            name = self.grave()
            self.kw('for')
            return {'kind': 'create_group', 'name': name, 'regex': self.regex()}
        name = self.string()
        self.kw('set')
        self.kw('password')
        return {'kind': 'create_user', 'name': name, 'password': self.string()}

    def _set(self, *props: str) -> str:
        """`set PROP` where every PROP is its own alternative starting with `set`."""
        self.kw('set')
        return self.kw(*props)

    def alter_stmt(self) -> Statement:
        self.kw('alter')
        what = self.kw('series', 'user', 'group', 'tag', 'server', 'servers', 'database')
        if what in ('server', 'servers'):
            return self._alter_server(what)
        if what == 'database':
            prop = self._set('drop_threshold', 'list_limit', 'select_points_limit',
                             'timezone', 'expiration_num', 'expiration_log', 'tee')
            node: AlterDatabaseStmt = {'kind': 'alter_database', 'prop': prop}
            if prop == 'timezone':
                node['value'] = self.string()
            elif prop == 'drop_threshold':
                node['value'] = self.rx('float', _FLOAT).group()
            elif prop in ('expiration_num', 'expiration_log'):
                node['value'] = self.time_expr()
                node['ignore_threshold'] = self.opt(self._ignore_threshold) or False
            elif prop == 'tee':
                node['value'] = self.opt_kw('false') or self.string()
            else:
                node['value'] = self.uinteger()
            return node
        if what == 'group':
            name = self.grave()
            prop = self._set('expression', 'name')
            value = self.regex() if prop == 'expression' else self.string()
            return {'kind': 'alter_group', 'name': name, 'prop': prop, 'value': value}
        if what == 'series':
            series: AlterSeriesStmt = {'kind': 'alter_series', 'selector': self.selector()}
            series['where'] = self.opt(lambda: self.where('series'))
            series['action'] = self.kw('tag', 'untag')
            series['tag'] = self.grave()
            return series
        if what == 'tag':
            name = self.grave()
            self._set('name')
            return {'kind': 'alter_tag', 'name': name, 'value': self.string()}
        name = self.string()
        prop = self._set('password', 'name')
        return {'kind': 'alter_user', 'name': name, 'prop': prop, 'value': self.string()}

    def _uuid_or_name(self) -> str:
        pos = self._skip()
        m = _UUID_LOWER.match(self.text, pos)
        if m is not None:
            self.pos = m.end()
            return m.group()
        self._record(pos, 'uuid')
        return self.string()

    def _alter_server(self, what: str) -> Statement:
        """`alter server "host:port"|uuid set log_level L`, `alter servers [where ...]
        set log_level L`; other server settings are not supported here."""
        node: AlterServerStmt = {'kind': 'alter_server', 'server': None, 'where': None}
        if what == 'server':
            node['server'] = self._uuid_or_name()
            prop = self._set('log_level', 'backup_mode', 'address', 'port')
        else:
            node['where'] = self.opt(lambda: self.where('servers'))
            prop = self._set('log_level')
        if prop == 'log_level':
            node['log_level'] = self.kw(*LOG_LEVELS)
            return node
        if prop == 'backup_mode':
            self.kw('true', 'false')
        elif prop == 'address':
            self.string()
        else:
            self.uinteger()
        return self._unsupported(f'alter {what} set {prop}')

    def drop_stmt(self) -> Statement:
        self.kw('drop')
        what = self.kw('group', 'tag', 'series', 'shards', 'server', 'user')
        if what == 'group':
            return {'kind': 'drop_group', 'name': self.grave()}
        if what == 'tag':
            return {'kind': 'drop_tag', 'name': self.grave()}
        if what == 'user':
            return {'kind': 'drop_user', 'name': self.string()}
        if what == 'server':
            self._uuid_or_name()
            return self._unsupported('drop server')
        if what == 'shards':
            shards: DropShardsStmt = {
                'kind': 'drop_shards', 'where': self.opt(lambda: self.where('shards')),
                'ignore_threshold': self.opt(self._ignore_threshold) or False}
            return shards
        node: DropSeriesStmt = {'kind': 'drop_series', 'selector': self.opt(self.selector)}
        node['where'] = self.opt(lambda: self.where('series'))
        node['ignore_threshold'] = self.opt(self._ignore_threshold) or False
        if node['selector'] is None:
            node['selector'] = ('all',)
        return node

    def _ignore_threshold(self) -> bool:
        self.kw('set')
        self.kw('ignore_threshold')
        return self.kw('true', 'false') == 'true'

    def _access_list(self) -> List[str]:
        words = [self.kw(*ACCESS_ORDER)]
        while self.opt_tok(','):
            words.append(self.kw(*ACCESS_ORDER))
        return words

    def _rights(self, kind: str, word: str) -> Tuple[List[str], str]:
        """``grant ACCESS to user NAME`` or ``revoke ACCESS from user NAME``:
        (ACCESS, NAME)."""
        self.kw(kind)
        access = self._access_list()
        self.kw(word)
        self.kw('user')
        return access, self.string()

    def grant_stmt(self) -> GrantStmt:
        access, name = self._rights('grant', 'to')
        node: GrantStmt = {'kind': 'grant', 'access': access, 'name': name}
        node['password'] = self.opt(lambda: (self.kw('set'), self.kw('password'),
                                             self.string())[2])
        return node

    def revoke_stmt(self) -> RevokeStmt:
        access, name = self._rights('revoke', 'from')
        return {'kind': 'revoke', 'access': access, 'name': name}

    def calc_stmt(self) -> Statement:
        return {'kind': 'calc', 'expr': self.time_expr()}

    def help_stmt(self) -> HelpStmt:
        pos = self._skip()
        m = _WORD.match(self.text, pos)
        if m is not None and m.group() == 'help':
            self.pos = m.end()
        else:
            self._record(pos, 'help')
            self.tok('?')
        topic: List[str] = []
        level = HELP_TOPICS
        while level:
            pos = self._skip()
            word = self._word(pos)
            if word not in level:
                for name in level:  # an optional choice: recorded, nothing taken
                    self._record(pos, name)
                break
            self.pos = pos + len(word)
            topic.append(word)
            level = level[word]
        return {'kind': 'help', 'topic': topic}

    # -- statement ---------------------------------------------------------
    def statement(self) -> Statement:
        timeit = self.opt_kw('timeit') is not None
        stmt: Optional[Statement] = None
        rules: Tuple[Callable[[], Statement], ...] = (
            self.select, self.list_stmt, self.count_stmt, self.alter_stmt,
            self.create_stmt, self.drop_stmt, self.grant_stmt, self.revoke_stmt,
            self.show_stmt, self.calc_stmt, self.help_stmt)
        for rule in rules:
            stmt = self.opt(rule)
            if stmt is not None:
                break
        if stmt is None:
            stmt = {'kind': 'empty'}
        pos = self._skip()
        m = _COMMENT.match(self.text, pos)  # a trailing comment, never "expected"
        if m is not None:  # the real server expects the end right after a comment
            self.pos = pos = m.end()
            if not self.text[pos:].strip(' \t\n\r\f\v'):
                pos = len(self.text)
        if pos != len(self.text):
            self._record(pos, 'end_of_statement')
            raise self.error()
        stmt['timeit'] = timeit
        return stmt


def parse(text: str) -> Statement:
    """Parse one query; raises QueryFailure (a query error) on a syntax error."""
    p = Parser(text)
    stmt = p.statement()
    if p.where_too_deep:
        raise QueryFailure(pm.CPROTO_ERR_QUERY, "Max depth reached in 'where' expression!")
    return stmt
