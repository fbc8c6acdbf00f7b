"""Series selectors (names, groups, tags, regexes, set operators) and `where` filters.

A selector evaluates to the set of matching series names; results keep the
database's series order (creation order), which is also the merge order.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from ...wire import types as pm
from ..context import QueryFailure
from ..patterns import compile_regex, group_pattern
from ..store import ACCESS, ACCESS_PROFILES, TYPE_STRING, Database, Group, Series
from .parser import LOG_LEVELS
from .timeexpr import evaluate

__all__ = ['compile_regex', 'group_pattern', 'group_members', 'select_names',
           'resolve_where', 'matches', 'series_row']


def group_members(db: Database, group: Group) -> List[str]:
    rx = group.regex
    return [name for name in db.series if rx.search(name) is not None]


def _eval(db: Database, node: Tuple[Any, ...]) -> Set[str]:
    kind = node[0]
    if kind == 'all':
        return set(db.series)
    if kind == 'name':
        return {node[1]} if node[1] in db.series else set()
    if kind == 'regex':
        rx = compile_regex(node[1], node[2])
        return {name for name in db.series if rx.search(name) is not None}
    if kind == 'group':
        name = node[1]
        group = db.groups.get(name)
        if group is not None:
            return set(group_members(db, group))
        tag = db.tags.get(name)
        if tag is not None:
            return {n for n in tag if n in db.series}
        raise QueryFailure(pm.CPROTO_ERR_QUERY, f"Cannot find group or tag '{name}'")
    result = _eval(db, node[1])
    for op, term in node[2]:
        right = _eval(db, term)
        if op in (',', '|'):
            result |= right
        elif op == '-':
            result -= right
        elif op == '&':
            result &= right
        else:
            result ^= right
    return result


def select_names(db: Database, node: Optional[Tuple[Any, ...]]) -> List[str]:
    """Names of the series a selector picks (None = all), in database order."""
    if node is None or node[0] == 'all':
        return list(db.series)
    if node[0] == 'name':  # the common case: one series, no set to build
        return [node[1]] if node[1] in db.series else []
    names = _eval(db, node)
    series = db.series
    if len(names) * 4 < len(series):
        # creation numbers follow the dict's order: O(k log k), not O(series)
        return sorted(names, key=lambda n: series[n].seq)
    return [n for n in series if n in names]


def series_row(s: Series, db: Optional[Database] = None) -> Dict[str, Any]:
    """The columns of `list series` for one series.

    shard_duration as SiriDB 2.0.55 answers it: a string series is written to log
    shards at once (the database's duration_log), a number series waits in the
    buffer, which reports 0."""
    shard = 0
    if db is not None and s.tp == TYPE_STRING:
        shard = db.duration_seconds(db.duration_log) * db.factor
    return {'name': s.name, 'type': s.type_name, 'length': len(s),
            'start': s.start, 'end': s.end, 'shard_duration': shard, 'pool': s.pool}


def resolve_where(db: Database, node: Optional[Tuple[Any, ...]], now: int) -> Optional[
        Tuple[Any, ...]]:
    """Evaluate the time expressions of a where tree once, up front."""
    if node is None:
        return None
    if node[0] in ('and', 'or'):
        return (node[0], [resolve_where(db, n, now) for n in node[1]])
    _, prop, op, (vkind, value) = node
    if vkind == 'time':
        value = evaluate(value, db.factor, now, db.timezone)
    elif vkind == 'access':
        value = ACCESS_PROFILES.get(value) or ACCESS[value]
    elif vkind == 'log':  # log levels compare by severity
        return ('cmp', 'log_level_num', op, LOG_LEVELS.index(value))
    return ('cmp', prop, op, value)


_NUM_OPS: Dict[str, Callable[[Any, Any], bool]] = {
    '==': lambda a, b: bool(a == b), '!=': lambda a, b: bool(a != b),
    '<': lambda a, b: bool(a < b), '>': lambda a, b: bool(a > b),
    '<=': lambda a, b: bool(a <= b), '>=': lambda a, b: bool(a >= b),
    '~': lambda a, b: b in a, '!~': lambda a, b: b not in a,
}


def matches(node: Optional[Tuple[Any, ...]], row: Dict[str, Any]) -> bool:
    """Whether a row (column -> value) passes a resolved where tree."""
    if node is None:
        return True
    if node[0] == 'and':
        return all(matches(n, row) for n in node[1])
    if node[0] == 'or':
        return any(matches(n, row) for n in node[1])
    _, prop, op, value = node
    have = row.get(prop)
    if have is None:
        return False
    if isinstance(value, str) != isinstance(have, str):
        have = str(have) if isinstance(value, str) else have
        if not isinstance(have, str) or not isinstance(value, str):
            return False
    return _NUM_OPS[op](have, value)
