"""Entry point of the query language: parse, check rights and pools, run, time.

The executor layer: ``prepare`` parses a query once (its kind then decides
whether it changes the store, see ``changes``), ``run`` checks the user's
rights and the pools (``access.py``) and runs it. Authentication, a paused
server and the request's shape are the wire side's (``protocol.py``).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional, cast

from ...wire import types as pm
from ..access import check_pools, check_right, required_right
from ..context import QueryContext, QueryFailure
from ..linear_regex import work_budget
from .admin import run_admin
from .listing import run_count, run_help, run_list, run_show
from .nodes import (
    AdminStmt,
    CalcStmt,
    CountStmt,
    DropShardsStmt,
    HelpStmt,
    ListStmt,
    SelectStmt,
    ShowStmt,
    Statement,
    UnsupportedStmt,
)
from .parser import parse
from .select import convert_ts, run_select
from .shard_statements import run_drop_shards
from .timeexpr import evaluate

__all__ = ['execute', 'check_precision', 'prepare', 'run', 'changes', 'required_right']

log = logging.getLogger('siridb.embedded')

#: parse trees of recent select statements by query text: a client repeating
#: the same small select skips the parser (trees are only read, never changed)
_SELECT_CACHE: Dict[str, Statement] = {}
_SELECT_CACHE_SIZE = 512
_SELECT_CACHE_TEXT = 2048  # longer texts are parsed every time

#: statement kinds that change a database (their effect is logged): the
#: kinds starting with one of these words and an underscore, or equal to one
_CHANGING = ('create', 'alter', 'drop', 'grant', 'revoke')


def changes(stmt: Statement) -> bool:
    """Whether a parsed statement may change a database."""
    return stmt['kind'].partition('_')[0] in _CHANGING


def _parse(query: str) -> Statement:
    """``parse(query)``, from the cache for a select seen recently."""
    cached = _SELECT_CACHE.get(query)
    if cached is not None:
        return cached
    stmt = parse(query)
    if stmt['kind'] == 'select' and len(query) <= _SELECT_CACHE_TEXT:
        if len(_SELECT_CACHE) >= _SELECT_CACHE_SIZE:
            _SELECT_CACHE.clear()
        _SELECT_CACHE[query] = stmt
    return stmt


def _run(ctx: QueryContext, stmt: Statement, now: int,
         time_precision: Optional[int]) -> Dict[str, Any]:
    # the kind names the statement's type (nodes.py); cast, not re-checked
    kind = stmt['kind']
    db = ctx.db
    if kind == 'select':
        return run_select(db, cast(SelectStmt, stmt), now, time_precision)
    if kind == 'list':
        return run_list(ctx, cast(ListStmt, stmt), now)
    if kind == 'count':
        return run_count(ctx, cast(CountStmt, stmt), now)
    if kind == 'show':
        return run_show(ctx, cast(ShowStmt, stmt))
    if kind == 'help':
        return run_help(cast(HelpStmt, stmt))
    if kind == 'calc':
        value = evaluate(cast(CalcStmt, stmt)['expr'], db.factor, now, db.timezone)
        return {'calc': convert_ts(value, db.factor, time_precision)}
    if kind == 'empty':
        return {'calc': convert_ts(now, db.factor, time_precision)}
    if kind == 'drop_shards':
        return run_drop_shards(ctx, cast(DropShardsStmt, stmt), now)
    return run_admin(ctx, cast(AdminStmt, stmt), now)


def _failure(exc: BaseException) -> QueryFailure:
    """The query error a query answers for an unexpected exception."""
    if isinstance(exc, RecursionError):
        return QueryFailure(pm.CPROTO_ERR_QUERY, 'Query is too deeply nested.')
    # a bug must not take the server down: log it, answer an error
    log.error('unexpected error while running a query', exc_info=exc)
    return QueryFailure(pm.CPROTO_ERR_QUERY, 'Internal error while processing the query.')


def check_precision(time_precision: Any) -> Optional[int]:
    """The time precision a query converts to: 0..3, or None for None and,
    as the real server, for any other int; anything else raises QueryFailure."""
    if time_precision is None:
        return None
    if type(time_precision) is not int:
        raise QueryFailure(
            pm.CPROTO_ERR_QUERY,
            f'Invalid time precision: {time_precision!r} (expecting '
            '0=s, 1=ms, 2=us, 3=ns or None)')
    return time_precision if 0 <= time_precision <= 3 else None


def prepare(query: str) -> Statement:
    """The parsed statement of ``query``; errors raise QueryFailure."""
    try:
        return _parse(query)
    except QueryFailure:
        raise
    except Exception as exc:
        raise _failure(exc) from None


def run(ctx: QueryContext, stmt: Statement, time_precision: Optional[int],
        started: Optional[float] = None) -> Dict[str, Any]:
    """Run a parsed statement and return the RES_QUERY payload; errors raise
    QueryFailure. ``time_precision`` as ``check_precision`` returns it;
    ``started``: when the query arrived (for ``timeit``)."""
    if started is None:
        started = time.perf_counter()
    kind = stmt['kind']
    try:
        if kind == 'unsupported':
            raise QueryFailure(
                pm.CPROTO_ERR_QUERY,
                f"The embedded server does not support '{cast(UnsupportedStmt, stmt)['what']}' "
                '(its servers share one store in one process: there is no server '
                'to reconfigure or remove).')
        check_right(ctx.user, kind)
        if ctx.pool_down:
            target = cast(ListStmt, stmt)['target'] if kind in ('list', 'count') else None
            check_pools(True, kind, target)
        with work_budget():  # every regex automaton search of this query together
            result = _run(ctx, stmt, ctx.db.now(), time_precision)
    except QueryFailure:
        raise
    except Exception as exc:
        raise _failure(exc) from None
    if stmt['timeit']:
        if kind == 'empty':  # `timeit` alone: the real server answers the timing only
            result = {}
        result['__timeit__'] = [
            {'server': ctx.server.name, 'time': time.perf_counter() - started}]
    return result


def execute(ctx: QueryContext, query: str,
            time_precision: Optional[int]) -> Dict[str, Any]:
    """Run one query and return the RES_QUERY payload; errors raise QueryFailure.
    The time precision is checked here (``check_precision``, which leaves a
    checked one as it is)."""
    started = time.perf_counter()
    time_precision = check_precision(time_precision)
    return run(ctx, prepare(query), time_precision, started)
