"""Entry point of the query language: parse, check rights and pools, run, time."""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional

from ..context import QueryContext, QueryFailure
from ..linear_regex import work_budget
from .admin import run_admin
from .listing import run_count, run_help, run_list, run_show
from .parser import parse
from .select import convert_ts, run_select
from .shard_statements import run_drop_shards
from .timeexpr import evaluate

__all__ = ['execute', 'required_right']

log = logging.getLogger('siridb.embedded')

#: parse trees of recent select statements by query text: a client repeating
#: the same small select skips the parser (trees are only read, never changed)
_SELECT_CACHE: Dict[str, Dict[str, Any]] = {}
_SELECT_CACHE_SIZE = 512
_SELECT_CACHE_TEXT = 2048  # longer texts are parsed every time

_NO_ACCESS_POOL = 'At least one pool is lacking an accessible server to process this request'
_NO_ONLINE_POOL = 'At least one pool is lacking an online server to process this request'


def required_right(kind: str) -> Optional[str]:
    """The access right a statement kind needs (None: calc, help, empty)."""
    if kind in ('select', 'list', 'count', 'show', 'grant', 'revoke'):
        return kind
    for prefix in ('create', 'alter', 'drop'):
        if kind.startswith(prefix + '_'):
            return prefix
    return None


def _parse(query: str) -> Dict[str, Any]:
    """``parse(query)``, from the cache for a select seen recently."""
    stmt = _SELECT_CACHE.get(query)
    if stmt is not None:
        return stmt
    stmt = parse(query)
    if stmt['kind'] == 'select' and len(query) <= _SELECT_CACHE_TEXT:
        if len(_SELECT_CACHE) >= _SELECT_CACHE_SIZE:
            _SELECT_CACHE.clear()
        _SELECT_CACHE[query] = stmt
    return stmt


def _run(ctx: QueryContext, stmt: Dict[str, Any], now: int,
         time_precision: Optional[int]) -> Dict[str, Any]:
    kind = stmt['kind']
    db = ctx.db
    if kind == 'select':
        return run_select(db, stmt, now, time_precision)
    if kind == 'list':
        return run_list(ctx, stmt, now)
    if kind == 'count':
        return run_count(ctx, stmt, now)
    if kind == 'show':
        return run_show(ctx, stmt)
    if kind == 'help':
        return run_help(stmt)
    if kind == 'calc':
        value = evaluate(stmt['expr'], db.factor, now, db.timezone)
        return {'calc': convert_ts(value, db.factor, time_precision)}
    if kind == 'empty':
        return {'calc': convert_ts(now, db.factor, time_precision)}
    if kind == 'drop_shards':
        return run_drop_shards(ctx, stmt, now)
    return run_admin(ctx, stmt, now)


def execute(ctx: QueryContext, query: str,
            time_precision: Optional[int]) -> Dict[str, Any]:
    """Run one query and return the RES_QUERY payload; errors raise QueryFailure."""
    started = time.perf_counter()
    if time_precision is not None and type(time_precision) is not int:
        raise QueryFailure(65, f'Invalid time precision: {time_precision!r} (expecting '
                               '0=s, 1=ms, 2=us, 3=ns or None)')
    if time_precision is not None and not 0 <= time_precision <= 3:
        time_precision = None  # as the real server: an unknown precision converts nothing
    try:
        stmt = _parse(query)
        kind = stmt['kind']
        if kind == 'unsupported':
            raise QueryFailure(
                65, f"The embedded server does not support '{stmt['what']}' "
                    '(its servers share one store in one process: there is no server '
                    'to reconfigure or remove).')
        right = required_right(kind)
        if right is not None and not ctx.user.has(right):
            raise QueryFailure(
                69, f"Access denied. User '{ctx.user.name}' has no '{right}' privileges.")
        if ctx.pool_down:
            if kind == 'select':
                raise QueryFailure(68, _NO_ACCESS_POOL)
            if (kind in ('list', 'count') and stmt['target'] == 'series') or \
                    kind in ('drop_series', 'alter_series'):
                raise QueryFailure(68, _NO_ONLINE_POOL)
        with work_budget():  # every regex automaton search of this query together
            result = _run(ctx, stmt, ctx.db.now(), time_precision)
    except QueryFailure:
        raise
    except RecursionError:
        raise QueryFailure(65, 'Query is too deeply nested.') from None
    except Exception:  # a bug must not take the server down: log it, answer an error
        log.exception('unexpected error while running a query')
        raise QueryFailure(65, 'Internal error while processing the query.') from None
    if stmt['timeit']:
        if kind == 'empty':  # `timeit` alone: the real server answers the timing only
            result = {}
        result['__timeit__'] = [
            {'server': ctx.server.name, 'time': time.perf_counter() - started}]
    return result
