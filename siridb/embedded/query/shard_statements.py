"""``list shards``, ``count shards`` and ``drop shards`` over the shards a real
SiriDB would hold (``siridb.embedded.shards``)."""
from __future__ import annotations

from typing import Any, Dict, List

from ...wire import types as pm
from ..context import QueryContext, QueryFailure
from ..shards import drop, shard_row, shards
from .nodes import DropShardsStmt
from .selectors import matches, resolve_where

__all__ = ['shard_rows', 'run_drop_shards']


def shard_rows(ctx: QueryContext) -> List[Dict[str, Any]]:
    """One row (column -> value) per shard, as the answering server holds it."""
    server = ctx.server
    return [shard_row(s, server.name, server.pool)
            for s in shards(ctx.db, server.settings)]


def run_drop_shards(ctx: QueryContext, node: DropShardsStmt, now: int) -> Dict[str, Any]:
    """Drop the shards the where clause selects (all without one); refused,
    as by the real server, when they are at least ``drop_threshold`` of all
    shards, unless ``set ignore_threshold true``."""
    db = ctx.db
    server = ctx.server
    every = shards(db, server.settings)
    where = resolve_where(db, node.get('where'), now)
    chosen = [s for s in every
              if where is None or matches(where, shard_row(s, server.name, server.pool))]
    fraction = len(chosen) / len(every) if every else 0.0
    if chosen and not node['ignore_threshold'] and fraction >= db.drop_threshold:
        raise QueryFailure(
            pm.CPROTO_ERR_QUERY,
            f'This query would drop {fraction * 100:.2f}% of the shards in pool '
            f"{server.pool}. Add 'set ignore_threshold true' to the query statement "
                'if you really want to do this.')
    drop(db, chosen)
    return {'success_msg': f'Successfully dropped {len(chosen)} shards. (this number does '
                           'not include shards which are dropped on replica servers)'}
