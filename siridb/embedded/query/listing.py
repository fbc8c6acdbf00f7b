"""Read-only statements besides select: list, count, show and help."""
from __future__ import annotations

import sys
import time
import uuid
from typing import Any, Dict, List, Union

from ...wire import types as pm
from ..context import QueryContext, QueryFailure, ServerInfo
from ..store import ACCESS, ACCESS_PROFILES
from .nodes import CountStmt, HelpStmt, ListStmt, ShowStmt
from .parser import LOG_LEVELS, SHOW_PROPS
from .selectors import group_members, matches, resolve_where, select_names, series_row
from .shard_statements import shard_rows
from .timeexpr import evaluate

__all__ = ['access_text', 'rows_for', 'run_list', 'run_count', 'run_show', 'run_help',
           'server_props', 'server_uuid']


def access_text(mask: int) -> str:
    """Render an access mask the way the server does: the largest profile, then the
    other rights in alphabetical order: 'full', 'read and insert', 'alter, count, drop
    and show'."""
    parts: List[str] = []
    rest = mask
    for profile, bits in ACCESS_PROFILES.items():  # largest profile first
        if mask & bits == bits:
            parts.append(profile)
            rest = mask & ~bits
            break
    parts.extend(sorted(name for name, bit in ACCESS.items() if rest & bit))
    if not parts:
        return 'no access'
    if len(parts) == 1:
        return parts[0]
    return ', '.join(parts[:-1]) + ' and ' + parts[-1]


def server_uuid(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'siridb-embedded:' + name))


def rows_for(ctx: QueryContext, node: Union[ListStmt, CountStmt]) -> List[Dict[str, Any]]:
    """All rows (column -> value) of a list/count target, before where and limit."""
    db = ctx.db
    target = node['target']
    if target == 'series':
        return [series_row(db.series[n], db) for n in select_names(db, node['selector'])]
    if target == 'shards':
        return shard_rows(ctx)
    if target == 'users':
        return [{'name': u.name, 'access': access_text(u.access), 'access_mask': u.access}
                for u in db.users.values()]
    # groups and tags come by name, as the real server lists them (a limit shows it)
    if target == 'groups':
        return [{'name': g.name, 'series': len(group_members(db, g)),
                 'expression': g.expression}
                for g in sorted(db.groups.values(), key=lambda g: g.name)]
    if target == 'tags':
        return [{'name': name, 'series': sum(1 for n in members if n in db.series)}
                for name, members in sorted(db.tags.items())]
    if target == 'pools':
        pools = sorted({s.pool for s in ctx.servers} | {0})
        counts: Dict[int, int] = {}
        for series in db.series.values():
            counts[series.pool] = counts.get(series.pool, 0) + 1
        return [{'pool': p, 'servers': sum(1 for s in ctx.servers if s.pool == p),
                 'series': counts.get(p, 0)} for p in pools]
    now = time.time()
    return [server_props(ctx, server, now) for server in ctx.servers]


def server_props(ctx: QueryContext, server: ServerInfo, now: float) -> Dict[str, Any]:
    """What `list servers` and `show` report about one server (plausible values for
    what an in-memory server does not have: files, handles, libuv)."""
    db = ctx.db
    settings = server.settings
    host, _, port = server.name.rpartition(':')
    dbpath = settings.database_path(db.name)
    return {
        'active_handles': len(ctx.servers) + 1, 'active_tasks': 1,  # this query
        'address': host, 'buffer_path': dbpath + 'buffer/',
        'buffer_size': db.buffer_size, 'dbpath': dbpath,
        'fifo_files': 0, 'idle_percentage': 100, 'idle_time': 0,
        'ip_support': settings.ip_support,
        'libuv': '1.44.2', 'log_level': server.log_level,
        'log_level_num': LOG_LEVELS.index(server.log_level),
        'max_open_files': settings.max_open_files,
        'mem_usage': _mem_usage_mb(), 'name': server.name, 'online': server.online,
        'open_files': 0, 'pool': server.pool,
        'port': int(port) if port.isdigit() else 0,
        'received_points': server.received_points,
        'reindex_progress': 'not available', 'selected_points': 0, 'startup_time': 0,
        'status': server.status, 'sync_progress': 'not available',
        'uptime': int(now - server.started), 'uuid': server_uuid(server.name),
        'version': server.version,
    }


def _filtered(ctx: QueryContext, node: Union[ListStmt, CountStmt],
              now: int) -> List[Dict[str, Any]]:
    rows = rows_for(ctx, node)
    where = resolve_where(ctx.db, node['where'], now)
    if where is not None:
        rows = [r for r in rows if matches(where, r)]
    return rows


def run_list(ctx: QueryContext, node: ListStmt, now: int) -> Dict[str, Any]:
    db = ctx.db
    limit = db.list_limit
    limit_expr = node['limit']
    if limit_expr is not None:
        n = evaluate(limit_expr, db.factor, now, db.timezone)
        if not 1 <= n <= db.list_limit:
            raise QueryFailure(
                pm.CPROTO_ERR_QUERY,
                f'Limit must be a value between 1 and {db.list_limit} but received: '
                    f"{n} (optionally the limit can be changed, see 'help alter database')")
        limit = n
    rows = _filtered(ctx, node, now)[:limit]
    cols: List[str] = node['columns']
    return {'columns': cols, node['target']: [[r[c] for c in cols] for r in rows]}


def run_count(ctx: QueryContext, node: CountStmt, now: int) -> Dict[str, Any]:
    rows = _filtered(ctx, node, now)
    if node['length']:
        return {'series_length': sum(r['length'] for r in rows)}
    what = node.get('what')
    if what == 'size':  # count shards size
        return {'shards_size': sum(r['size'] for r in rows)}
    if what in ('received_points', 'selected_points'):
        return {f'servers_{what}': sum(r[what] for r in rows)}
    return {node['target']: len(rows)}


def _mem_usage_mb() -> int:
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss // (1024 * 1024) if sys.platform == 'darwin' else rss // 1024)


def run_show(ctx: QueryContext, node: ShowStmt) -> Dict[str, Any]:
    db = ctx.db
    server = ctx.server
    props: List[str] = node['props'] or list(SHOW_PROPS)
    values = server_props(ctx, server, time.time())
    values.update({
        'dbname': db.name, 'drop_threshold': float(db.drop_threshold),
        'duration_log': db.duration_seconds(db.duration_log) * db.factor,
        'duration_num': db.duration_seconds(db.duration_num) * db.factor,
        'list_limit': db.list_limit, 'select_points_limit': db.select_points_limit,
        'expiration_num': db.expiration_num, 'expiration_log': db.expiration_log,
        'tee': 'disabled',
        'server': server.name, 'time_precision': db.precision, 'timezone': db.timezone,
        'who_am_i': ctx.user.name,
    })
    return {'data': [{'name': p, 'value': values[p]} for p in props]}


_HELP = {
    '': 'SiriDB query language. Statements: select, list, count, show, create, alter, '
        'drop, grant, revoke, calc (a bare time expression) and help. '
        "Try 'help select' or 'help list'.",
    'select': 'select <aggregate>[ => <aggregate>...] [prefix "p"] [suffix "s"], ... from '
              '<series> [where ...] [after t | before t | between t1 and t2 | head n | '
              'tail n] [merge as "name" [using <aggregate>]]',
    'list': 'list series|users|groups|tags|pools|servers [columns] [<series>] '
            '[where ...] [limit n]',
    'count': 'count series [length]|users|groups|tags|pools|servers [<series>] [where ...]',
    'show': 'show [property, ...]: ' + ', '.join(SHOW_PROPS),
    'create': 'create group `name` for /regex/ | create user "name" set password "pw"',
    'alter': 'alter database set list_limit n|select_points_limit n|drop_threshold f|'
             "timezone 'zone' | alter group `g` set expression /re/|name \"n\" | "
             'alter series <series> tag|untag `t` | alter tag `t` set name "n" | '
             'alter user "u" set password "pw"|name "n"',
    'drop': 'drop series <series> [set ignore_threshold true] | drop group `g` | '
            'drop tag `t` | drop user "u"',
    'grant': 'grant read|write|modify|full|<right>, ... to user "name"',
    'revoke': 'revoke read|write|modify|full|<right>, ... from user "name"',
    'timeit': 'timeit <statement>: adds __timeit__ with the time the server needed',
}


def run_help(node: HelpStmt) -> Dict[str, Any]:
    topic: List[str] = node['topic']
    text = _HELP.get(topic[0] if topic else '', None)
    if text is None:
        text = _HELP['']
    return {'help': text}
