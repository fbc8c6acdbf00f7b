"""Hand-written recursive descent parser for the SiriDB query language.

Like pyleri (the parser library of SiriDB's own grammar) it remembers the
furthest position where an element failed and, in order, the names of the
elements expected there: that gives the real server's "Query error at
position N. Expecting A, B or C" texts. Statements come out as plain dicts.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ..context import QueryFailure

__all__ = ['parse', 'Node', 'AGGR_FNS', 'SHOW_PROPS', 'ACCESS_WORDS', 'LIST_COLUMNS',
           'MAX_WHERE_DEPTH', 'MAX_DEPTH']

Node = Dict[str, Any]
T = TypeVar('T')

MAX_WHERE_DEPTH = 5  # nested parentheses allowed in a where expression
MAX_DEPTH = 48  # any nesting deeper than this is refused (keeps recursion bounded)
#: the real server's text when its parser reaches its recursion limit
MAX_DEPTH_ERROR = 'Memory allocation error or maximum recursion depth reached.'

_WS = re.compile(r'\s*')
_WORD = re.compile(r'[a-z_]+')
_INT = re.compile(r'[0-9]+')
_NUMBER = re.compile(
    r'-?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|inf(?![a-z_])|nan(?![a-z_]))')
_TIME_STR = re.compile(r'([0-9]+)([smhdw])(?![a-z_0-9])')
_SQ = re.compile(r"'[^']*(?:''[^']*)*'")
_DQ = re.compile(r'"[^"]*(?:""[^"]*)*"')
_GRAVE = re.compile(r'`[^`]*(?:``[^`]*)*`')
_REGEX = re.compile(r'/[^/\\]*(?:\\.[^/\\]*)*/i?')
_COMMENT = re.compile(r'#.*')
_UUID = re.compile(r'[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}')
LOG_LEVELS = ('debug', 'info', 'warning', 'error', 'critical')

GROUP_FNS = ('mean', 'median', 'median_low', 'median_high', 'sum', 'min', 'max', 'count',
             'variance', 'pvariance', 'stddev', 'first', 'last', 'difference')
AGGR_FNS = ('limit',) + GROUP_FNS + ('derivative', 'filter', 'interval', 'timeval', 'offset')
LIMIT_FNS = GROUP_FNS[:13]  # the functions limit(n, fn) may use
FILTER_OPS = ('==', '!=', '<=', '>=', '!~', '<', '>', '~')
CMP_OPS = ('==', '!=', '<=', '>=', '!~', '<', '>', '~')

SHOW_PROPS = (
    'active_handles', 'active_tasks', 'buffer_path', 'buffer_size', 'dbname', 'dbpath',
    'drop_threshold', 'duration_log', 'duration_num', 'fifo_files', 'idle_percentage',
    'idle_time', 'ip_support', 'libuv', 'list_limit', 'log_level', 'max_open_files',
    'mem_usage', 'open_files', 'pool', 'received_points', 'reindex_progress',
    'select_points_limit', 'selected_points', 'server', 'startup_time', 'status',
    'sync_progress', 'time_precision', 'timezone', 'uptime', 'uuid', 'version', 'who_am_i')

ACCESS_WORDS = ('read', 'write', 'modify', 'full', 'show', 'count', 'list', 'select',
                'insert', 'create', 'alter', 'drop', 'grant', 'revoke')

#: list/count targets -> (all columns in grammar order, default columns)
LIST_COLUMNS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    'series': (('name', 'type', 'length', 'start', 'end', 'pool'), ('name',)),
    'users': (('name', 'access'), ('name', 'access')),
    'groups': (('name', 'series', 'expression'), ('name',)),
    'tags': (('name', 'series'), ('name',)),
    'pools': (('pool', 'servers', 'series'), ('pool', 'servers', 'series')),
    'servers': (('address', 'name', 'port', 'pool', 'version', 'online', 'status',
                 'uptime', 'uuid', 'active_handles', 'active_tasks', 'buffer_path',
                 'buffer_size', 'dbpath', 'fifo_files', 'idle_percentage', 'idle_time',
                 'ip_support', 'libuv', 'log_level', 'max_open_files', 'mem_usage',
                 'open_files', 'received_points', 'reindex_progress', 'selected_points',
                 'startup_time', 'sync_progress'),
                ('name', 'pool', 'version', 'online', 'status')),
}
#: what list/count accept, in the real grammar's order (shards: not supported here)
LIST_TARGETS = ('series', 'users', 'shards', 'groups', 'tags', 'pools', 'servers')
#: how a where clause reads a value for each column
_PROP_KIND = {
    'name': 'str', 'type': 'type', 'length': 'num', 'start': 'num', 'end': 'num',
    'pool': 'num', 'access': 'str', 'series': 'num', 'expression': 'str',
    'servers': 'num', 'address': 'str', 'port': 'num', 'version': 'str',
    'online': 'bool', 'status': 'str', 'uptime': 'num', 'uuid': 'str',
    'active_handles': 'num', 'active_tasks': 'num', 'buffer_path': 'str',
    'buffer_size': 'num', 'dbpath': 'str', 'fifo_files': 'num', 'idle_percentage': 'num',
    'idle_time': 'num', 'ip_support': 'str', 'libuv': 'str', 'log_level': 'str',
    'max_open_files': 'num', 'mem_usage': 'num', 'open_files': 'num',
    'received_points': 'num', 'reindex_progress': 'str', 'selected_points': 'num',
    'startup_time': 'num', 'sync_progress': 'str',
}


#: elements the real server never names in "Expecting ..." (SiriDB's own tests:
#: 'list series /.*/ - ((' expects "*, all, single_quote_str, double_quote_str or (")
_UNLISTED = frozenset(('grave_str', 'regex'))


class NoMatch(Exception):
    """Internal: the current alternative does not match (backtrack)."""


def _unquote(s: str) -> str:
    q = s[0]
    return s[1:-1].replace(q + q, q)


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
        if pos == self.err_pos and name not in self.expected and name not in _UNLISTED:
            self.expected.append(name)

    def kw(self, *words: str) -> str:
        pos = self._skip()
        m = _WORD.match(self.text, pos)
        if m is not None and m.group() in words:
            self.pos = m.end()
            return m.group()
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
            raise QueryFailure(65, MAX_DEPTH_ERROR)

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

    def regex(self) -> Tuple[str, bool]:
        s = self.rx('regex', _REGEX).group()
        if s.endswith('i'):
            return s[1:-2], True
        return s[1:-1], False

    def integer(self) -> str:
        return self.rx('integer', _INT).group()

    def error(self) -> QueryFailure:
        names = self.expected
        if not names:
            return QueryFailure(65, f'Query error at position {self.err_pos}.')
        text = names[0] if len(names) == 1 else ', '.join(names[:-1]) + ' or ' + names[-1]
        return QueryFailure(65, f'Query error at position {self.err_pos}. Expecting {text}')

    # -- time expressions --------------------------------------------------
    def time_expr(self) -> Tuple[Any, ...]:
        """('chain', first, [(op, operand), ...]) per precedence level, so that long
        sums evaluate in a loop, not by recursion."""
        first = self._time_mul()
        rest: List[Tuple[str, Tuple[Any, ...]]] = []
        while True:
            op = self.opt_tok('+', '-')
            if op is None:
                return first if not rest else ('chain', first, rest)
            rest.append((op, self._time_mul()))

    def _time_mul(self) -> Tuple[Any, ...]:
        first = self._time_term()
        rest: List[Tuple[str, Tuple[Any, ...]]] = []
        while True:
            op = self.opt_tok('*', '/', '%')
            if op is None:
                return first if not rest else ('chain', first, rest)
            rest.append((op, self._time_term()))

    def _time_term(self) -> Tuple[Any, ...]:
        pos = self._skip()
        text = self.text
        m = _TIME_STR.match(text, pos)
        if m is not None:
            self.pos = m.end()
            return ('dur', m.group(1), m.group(2))
        self._record(pos, 'date/time_string')
        if self.opt_kw('now'):
            return ('now',)
        m = _SQ.match(text, pos)
        if m is not None:
            self.pos = m.end()
            return ('date', _unquote(m.group()))
        self._record(pos, 'single_quote_str')
        m = _DQ.match(text, pos)
        if m is not None:
            self.pos = m.end()
            return ('date', _unquote(m.group()))
        self._record(pos, 'double_quote_str')
        m = _INT.match(text, pos)
        if m is not None:
            self.pos = m.end()
            return ('int', m.group())
        self._record(pos, 'integer')
        self.tok('(')
        self.enter()
        node = self.time_expr()
        self.leave()
        self.tok(')')
        return node

    # -- series selectors --------------------------------------------------
    def selector(self) -> Tuple[Any, ...]:
        """('set', first, [(op, term), ...]), applied left to right."""
        first = self._sel_term()
        rest: List[Tuple[str, Tuple[Any, ...]]] = []
        while True:
            op = self.opt_tok(',', '|', '-', '&', '^')
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
        rx = self.opt(self.regex)
        if rx is not None:
            return ('regex', rx[0], rx[1])
        self.tok('(')
        self.enter()
        node = self.selector()
        self.leave()
        self.tok(')')
        return node

    # -- where -------------------------------------------------------------
    def where(self, props: Tuple[str, ...]) -> Tuple[Any, ...]:
        self.kw('where')
        return self._where_or(props, 0)

    def _where_or(self, props: Tuple[str, ...], depth: int) -> Tuple[Any, ...]:
        items = [self._where_and(props, depth)]
        while self.opt_kw('or'):
            items.append(self._where_and(props, depth))
        return items[0] if len(items) == 1 else ('or', items)

    def _where_and(self, props: Tuple[str, ...], depth: int) -> Tuple[Any, ...]:
        items = [self._where_atom(props, depth)]
        while self.opt_kw('and'):
            items.append(self._where_atom(props, depth))
        return items[0] if len(items) == 1 else ('and', items)

    def _where_atom(self, props: Tuple[str, ...], depth: int) -> Tuple[Any, ...]:
        if self.opt_tok('('):
            if depth >= MAX_WHERE_DEPTH:
                self.where_too_deep = True
            self.enter()
            node = self._where_or(props, depth + 1)
            self.leave()
            self.tok(')')
            return node
        prop = self.kw(*props)
        kind = _PROP_KIND[prop]
        if kind == 'type':
            op = self.tok('==', '!=')
            return ('cmp', prop, op, ('type', self.kw('integer', 'float', 'string')))
        if kind == 'bool':
            op = self.tok('==', '!=')
            return ('cmp', prop, op, ('bool', self.kw('true', 'false') == 'true'))
        if prop == 'access':
            # `where access < modify` compares rights (SiriDB's own tests); a quoted
            # string compares the rendered text
            op = self.tok(*CMP_OPS)
            if op not in ('~', '!~'):
                word = self.opt(lambda: self.kw(*ACCESS_WORDS))
                if word is not None:
                    return ('cmp', 'access_mask', op, ('access', word))
            return ('cmp', prop, op, ('str', self.string()))
        if kind == 'str':
            op = self.tok(*CMP_OPS)
            return ('cmp', prop, op, ('str', self.string()))
        op = self.tok('==', '!=', '<=', '>=', '<', '>')
        return ('cmp', prop, op, ('time', self.time_expr()))

    # -- select ------------------------------------------------------------
    def aggr_fn(self) -> Node:
        pos = self._skip()
        if self.text.startswith('*', pos):
            self.pos = pos + 1
            return {'fn': '*'}
        self._record(pos, '*')
        name = self.kw(*AGGR_FNS)
        self.tok('(')
        node: Node = {'fn': name, 'pos': pos}
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
            node['limit'] = self.time_expr()  # limit(6 - 6, mean) is valid
            self.tok(',')
            node['limit_fn'] = self.kw(*LIMIT_FNS)
        elif name == 'filter':
            op = self.opt_tok(*FILTER_OPS)
            node['op'] = op or '=='
            s = self.opt(self.string)
            if s is not None:
                node['operand'] = ('str', s)
            else:
                num = self.opt(lambda: self.rx('number', _NUMBER).group())
                # filter(/re/), filter(== /re/), filter(!= /re/)
                node['operand'] = ('num', num) if num is not None else \
                    ('regex',) + self.regex()
        self.tok(')')
        return node

    def aggr_chain(self) -> List[Node]:
        chain = [self.aggr_fn()]
        while self.opt_tok('=>'):
            chain.append(self.aggr_fn())
        return chain

    def _select_aggr(self) -> Node:
        chain = self.aggr_chain()
        prefix = self.opt(lambda: (self.kw('prefix'), self.string())[1])
        suffix = self.opt(lambda: (self.kw('suffix'), self.string())[1])
        if prefix is None and suffix is not None:
            prefix = self.opt(lambda: (self.kw('prefix'), self.string())[1])
        return {'chain': chain, 'prefix': prefix or '', 'suffix': suffix or ''}

    def select(self) -> Node:
        self.kw('select')
        aggrs = [self._select_aggr()]
        while self.opt_tok(','):
            aggrs.append(self._select_aggr())
        self.kw('from')
        node: Node = {'kind': 'select', 'aggrs': aggrs, 'selector': self.selector()}
        node['where'] = self.opt(lambda: self.where(LIST_COLUMNS['series'][0]))
        node['range'] = self.opt(self._time_range)
        node['merge'] = self.opt(self._merge)
        return node

    def _time_range(self) -> Tuple[Any, ...]:
        word = self.kw('after', 'before', 'between', 'head', 'tail')
        if word in ('head', 'tail'):
            return (word, self.integer())
        start = self.time_expr()
        if word == 'between':
            self.kw('and')
            return (word, start, self.time_expr())
        return (word, start)

    def _merge(self) -> Tuple[str, Optional[List[Node]]]:
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

    def _unsupported(self, what: str) -> Node:
        """A statement of the real server the embedded one lacks: take the rest of the
        text so that it parses, and let execute() answer a clear error."""
        self._skip()
        m = _COMMENT.search(self.text, self.pos)
        self.pos = m.start() if m is not None else len(self.text)
        return {'kind': 'unsupported', 'what': what}

    def list_stmt(self) -> Node:
        self.kw('list')
        target = self.kw(*LIST_TARGETS)
        if target == 'shards':
            return self._unsupported('list shards')
        allowed, default = LIST_COLUMNS[target]
        node: Node = {'kind': 'list', 'target': target}
        node['columns'] = self.opt(lambda: self._columns(allowed)) or list(default)
        node['selector'] = self.opt(self.selector) if target == 'series' else None
        node['where'] = self.opt(lambda: self.where(allowed))
        node['limit'] = self.opt(lambda: (self.kw('limit'), self.integer())[1])
        return node

    def count_stmt(self) -> Node:
        self.kw('count')
        target = self.kw(*LIST_TARGETS)
        if target == 'shards':
            return self._unsupported('count shards')
        allowed = LIST_COLUMNS[target][0]
        node: Node = {'kind': 'count', 'target': target, 'length': False, 'selector': None}
        if target == 'series':
            node['length'] = self.opt_kw('length') is not None
            node['selector'] = self.opt(self.selector)
        node['where'] = self.opt(lambda: self.where(allowed))
        return node

    def show_stmt(self) -> Node:
        self.kw('show')
        props = self.opt(lambda: self._columns(SHOW_PROPS))
        return {'kind': 'show', 'props': props}

    # -- create / alter / drop / grant / revoke ----------------------------
    def create_stmt(self) -> Node:
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

    def alter_stmt(self) -> Node:
        self.kw('alter')
        what = self.kw('database', 'group', 'series', 'server', 'servers', 'tag', 'user')
        if what in ('server', 'servers'):
            return self._alter_server(what)
        if what == 'database':
            self.kw('set')
            prop = self.kw('drop_threshold', 'list_limit', 'select_points_limit', 'timezone')
            if prop == 'timezone':
                value: Any = self.string()
            elif prop == 'drop_threshold':
                value = self.rx('float', _NUMBER).group()
            else:
                value = self.integer()
            return {'kind': 'alter_database', 'prop': prop, 'value': value}
        if what == 'group':
            name = self.grave()
            self.kw('set')
            prop = self.kw('expression', 'name')
            value = self.regex() if prop == 'expression' else self.string()
            return {'kind': 'alter_group', 'name': name, 'prop': prop, 'value': value}
        if what == 'series':
            node: Node = {'kind': 'alter_series', 'selector': self.selector()}
            node['where'] = self.opt(lambda: self.where(LIST_COLUMNS['series'][0]))
            node['action'] = self.kw('tag', 'untag')
            node['tag'] = self.grave()
            return node
        if what == 'tag':
            name = self.grave()
            self.kw('set')
            self.kw('name')
            return {'kind': 'alter_tag', 'name': name, 'value': self.string()}
        name = self.string()
        self.kw('set')
        prop = self.kw('password', 'name')
        return {'kind': 'alter_user', 'name': name, 'prop': prop, 'value': self.string()}

    def _alter_server(self, what: str) -> Node:
        """`alter server "host:port"|uuid set log_level L`, `alter servers [where ...]
        set log_level L`; other server settings are not supported here."""
        node: Node = {'kind': 'alter_server', 'server': None, 'where': None}
        if what == 'server':
            name = self.opt(self.string)
            node['server'] = name if name is not None else self.rx('uuid', _UUID).group()
        else:
            node['where'] = self.opt(lambda: self.where(LIST_COLUMNS['servers'][0]))
        self.kw('set')
        if self.opt_kw('log_level') is None:
            return self._unsupported(f'alter {what} ... set (other than log_level)')
        node['log_level'] = self.kw(*LOG_LEVELS)
        return node

    def drop_stmt(self) -> Node:
        self.kw('drop')
        what = self.kw('group', 'series', 'server', 'shards', 'tag', 'user')
        if what in ('server', 'shards'):
            return self._unsupported('drop ' + what)
        if what == 'group':
            return {'kind': 'drop_group', 'name': self.grave()}
        if what == 'tag':
            return {'kind': 'drop_tag', 'name': self.grave()}
        if what == 'user':
            return {'kind': 'drop_user', 'name': self.string()}
        node: Node = {'kind': 'drop_series', 'selector': self.selector()}
        node['where'] = self.opt(lambda: self.where(LIST_COLUMNS['series'][0]))
        node['ignore_threshold'] = self.opt(self._ignore_threshold) or False
        return node

    def _ignore_threshold(self) -> bool:
        self.kw('set')
        self.kw('ignore_threshold')
        return self.kw('true', 'false') == 'true'

    def _access_list(self) -> List[str]:
        words = [self.kw(*ACCESS_WORDS)]
        while self.opt_tok(','):
            words.append(self.kw(*ACCESS_WORDS))
        return words

    def grant_stmt(self) -> Node:
        self.kw('grant')
        access = self._access_list()
        self.kw('to')
        self.kw('user')
        return {'kind': 'grant', 'access': access, 'name': self.string()}

    def revoke_stmt(self) -> Node:
        self.kw('revoke')
        access = self._access_list()
        self.kw('from')
        self.kw('user')
        return {'kind': 'revoke', 'access': access, 'name': self.string()}

    def calc_stmt(self) -> Node:
        return {'kind': 'calc', 'expr': self.time_expr()}

    def help_stmt(self) -> Node:
        pos = self._skip()
        m = _WORD.match(self.text, pos)
        if m is not None and m.group() == 'help':
            self.pos = m.end()
        else:
            self._record(pos, 'help')
            self.tok('?')
        topic: List[str] = []
        while True:
            word = self.opt(lambda: self.rx('topic', _WORD).group())
            if word is None:
                break
            topic.append(word)
        return {'kind': 'help', 'topic': topic}

    # -- statement ---------------------------------------------------------
    def statement(self) -> Node:
        timeit = self.opt_kw('timeit') is not None
        stmt: Optional[Node] = None
        for rule in (self.select, self.list_stmt, self.count_stmt, self.alter_stmt,
                     self.create_stmt, self.drop_stmt, self.grant_stmt, self.revoke_stmt,
                     self.show_stmt, self.calc_stmt, self.help_stmt):
            stmt = self.opt(rule)
            if stmt is not None:
                break
        if stmt is None:
            stmt = {'kind': 'empty'}
        pos = self._skip()
        m = _COMMENT.match(self.text, pos)  # a trailing comment, never "expected"
        if m is not None:
            self.pos = m.end()
            pos = self._skip()
        if pos != len(self.text):
            self._record(pos, 'end_of_statement')
            raise self.error()
        stmt['timeit'] = timeit
        return stmt


def parse(text: str) -> Node:
    """Parse one query; raises QueryFailure(65, ...) on a syntax error."""
    p = Parser(text)
    stmt = p.statement()
    if p.where_too_deep:
        raise QueryFailure(65, "Max depth reached in 'where' expression!")
    return stmt
