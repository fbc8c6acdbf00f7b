"""Mutating statements: groups, tags, users and rights, drop series, alter database.

Each is deterministic given its text (the server replays them on restart).
"""
from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Tuple, Union

from ...wire import types as pm
from ...wire.units import UINT32_MAX
from ..context import QueryContext, QueryFailure
from ..store import ACCESS, ACCESS_PROFILES, Database, Group, User
from .listing import server_props, server_uuid
from .nodes import (
    AdminStmt,
    AlterDatabaseStmt,
    AlterGroupStmt,
    AlterSeriesStmt,
    AlterServerStmt,
    AlterTagStmt,
    AlterUserStmt,
    CreateGroupStmt,
    CreateUserStmt,
    DropGroupStmt,
    DropSeriesStmt,
    DropTagStmt,
    DropUserStmt,
    GrantStmt,
    RevokeStmt,
)
from .selectors import compile_regex, matches, resolve_where, select_names, series_row
from .timeexpr import evaluate, get_zone, to_int

__all__ = ['run_admin']

_MAX_LIMIT = UINT32_MAX
_MIN_LIST_LIMIT = 1000  # the real server's smallest list limit


def _fail(msg: str) -> QueryFailure:
    return QueryFailure(pm.CPROTO_ERR_QUERY, msg)


def _ok(msg: str) -> Dict[str, Any]:
    return {'success_msg': msg}


def _check_free(db: Database, name: str) -> None:
    """Groups and tags share one namespace."""
    if name in db.groups:
        raise _fail(f"Group '{name}' already exists.")
    if name in db.tags:
        raise _fail(f"Tag '{name}' already exists.")


def _check_group_or_tag_name(name: str, what: str) -> None:
    if not name:
        raise _fail(f'{what} name should be at least 1 characters.')
    if len(name) > 255:
        raise _fail(f'{what} name should be at most 255 characters.')


def _regex(rx: Tuple[str, bool]) -> Tuple[str, Any]:
    pattern, icase = rx
    compiled = compile_regex(pattern, icase)
    return '/' + pattern + '/' + ('i' if icase else ''), compiled


def _selected(db: Database, node: Union[AlterSeriesStmt, DropSeriesStmt], now: int) -> List[str]:
    names = select_names(db, node['selector'])
    where = resolve_where(db, node.get('where'), now)
    if where is not None:
        names = [n for n in names if matches(where, series_row(db.series[n], db))]
    return names


def _user(db: Database, name: str) -> User:
    user = db.users.get(name)
    if user is None:
        raise _fail(f"Cannot find user: '{name}'")
    return user


def _check_user_name(name: str) -> None:
    if len(name) < 2:
        raise _fail('User name should be at least 2 characters.')
    if len(name) > 60:
        raise _fail('User name should be at most 60 characters.')
    if not name.isprintable() or any(c.isspace() for c in name):
        raise _fail('User name contains illegal characters. (only graphical characters '
                    'are allowed, no spaces, tabs etc.)')


def _check_password(password: str) -> None:
    if len(password) < 4:
        raise _fail('Password should be at least 4 characters.')
    if len(password) > 128:
        raise _fail('Password should be at most 128 characters.')


def _access_bits(words: List[str]) -> int:
    bits = 0
    for w in words:
        if w in ('read', 'write', 'modify', 'full'):
            bits |= ACCESS_PROFILES[w]
        else:
            bits |= ACCESS[w]
    return bits


def _check_tee(address: str) -> None:
    """The real server's checks of `alter database set tee "ADDRESS[:PORT]"`."""
    if not address:
        raise _fail('Tee address must not be empty')
    host, sep, port = address.rpartition(':')
    if not sep:
        host, port = address, '9104'
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail('Invalid tee address; expecting ADDRESS[:PORT]')


def _alter_database(db: Database, node: AlterDatabaseStmt, now: int) -> Dict[str, Any]:
    prop, value = node['prop'], node['value']
    if prop in ('expiration_num', 'expiration_log'):
        n = evaluate(value, db.factor, now, db.timezone)
        if not 0 <= n <= db.max_ts:
            raise _fail('Time expression out-of-range.')
        old_exp = getattr(db, prop) or 0
        setattr(db, prop, n or None)
        return _ok(f'Successfully changed expiration from {old_exp} to {n}.')
    if prop == 'tee':
        if value != 'false':
            _check_tee(value)
            raise _fail("The embedded server does not support 'alter database set tee'.")
        return _ok('Successfully disabled tee.')
    if prop in ('list_limit', 'select_points_limit'):
        n = to_int(value) if len(value) < 30 else _MAX_LIMIT + 1
        label = prop.replace('_', ' ')
        if prop == 'list_limit' and not _MIN_LIST_LIMIT <= n <= _MAX_LIMIT:
            raise _fail('List limit should be a value greater than or equal to '
                        f'{_MIN_LIST_LIMIT} and smaller than {_MAX_LIMIT + 1} but got {n}')
        if not 1 <= n <= _MAX_LIMIT:
            raise _fail('Select points limit should be a value greater than 0 and '
                        f'smaller than {_MAX_LIMIT + 1} but got {n}')
        old = getattr(db, prop)
        setattr(db, prop, n)
        return _ok(f'Successfully changed {label} from {old} to {n}.')
    if prop == 'drop_threshold':
        f = float(value)
        if not 0.0 <= f <= 1.0:
            raise _fail('Drop threshold should be a value between or equal to 0 and 1.0 '
                        f'but got {f:.3f}')
        old_f = db.drop_threshold
        db.drop_threshold = f
        return _ok(f'Successfully changed drop_threshold from {old_f:g} to {f:g}.')
    zone = 'NAIVE' if value.upper() == 'NAIVE' else value
    try:
        get_zone(zone)
    except QueryFailure as exc:  # the real server points at the list of zones
        raise _fail(f"{exc.msg} (see 'help timezones' for a list of valid time "
                    'zones)') from None
    old_tz = db.timezone
    db.timezone = zone
    return _ok(f"Successfully changed timezone from '{old_tz}' to '{zone}'.")


def _drop_series(ctx: QueryContext, node: DropSeriesStmt, now: int) -> Dict[str, Any]:
    db = ctx.db
    names = _selected(db, node, now)
    if not node.get('ignore_threshold') and names:
        per_pool: Dict[int, int] = {}
        for s in db.series.values():
            per_pool[s.pool] = per_pool.get(s.pool, 0) + 1
        drop: Dict[int, int] = {}
        for series_name in names:
            p = db.series[series_name].pool
            drop[p] = drop.get(p, 0) + 1
        for pool in sorted(drop):
            fraction = drop[pool] / per_pool[pool]
            if fraction >= db.drop_threshold:
                raise _fail(
                    f'This query would drop {fraction * 100:.2f}% of the series in pool '
                    f"{pool}. Add 'set ignore_threshold true' to the query statement if "
                    'you really want to do this.')
    n = db.drop_series(names)
    return _ok(f'Successfully dropped {n} series.')


def _alter_server(ctx: QueryContext, node: AlterServerStmt, now: int) -> Dict[str, Any]:
    """Set the log level a server reports (texts of SiriDB's own server tests)."""
    level = node['log_level']
    wanted = node['server']
    if wanted is not None:
        for server in ctx.servers:
            if wanted in (server.name, server_uuid(server.name)):
                server.log_level = level
                return _ok(f"Successfully set log level to '{level}' on '{server.name}'.")
        raise _fail(f"Cannot find server: '{wanted}'")  # our text
    where = resolve_where(ctx.db, node['where'], now)
    servers = [s for s in ctx.servers
               if matches(where, server_props(ctx, s, time.time()))]
    for server in servers:
        server.log_level = level
    return _ok(f"Successfully set log level to '{level}' on {len(servers)} servers.")


def _rename(d: Dict[str, Any], old: str, new: str) -> None:
    d[new] = d.pop(old)


Result = Dict[str, Any]


def _create_group(ctx: QueryContext, node: CreateGroupStmt, now: int) -> Result:
    db, name = ctx.db, node['name']
    _check_group_or_tag_name(name, 'Group')
    _check_free(db, name)
    expression, compiled = _regex(node['regex'])
    db.groups[name] = Group(name, expression, compiled)
    return _ok(f"Successfully created group '{name}'.")


def _alter_group(ctx: QueryContext, node: AlterGroupStmt, now: int) -> Result:
    db, name = ctx.db, node['name']
    group = db.groups.get(name)
    if group is None:
        raise _fail(f"Cannot find group: '{name}'")
    if node['prop'] == 'expression':
        group.expression, group.regex = _regex(node['value'])
    else:  # the real server refuses the group's own name as well
        new = node['value']
        _check_group_or_tag_name(new, 'Group')
        _check_free(db, new)
        _rename(db.groups, name, new)
        group.name = new
    return _ok(f"Successfully updated group '{group.name}'.")


def _drop(table: Dict[str, Any], name: str, what: str) -> Result:
    """Drop a group, tag or user by name (``what``: its word in the texts)."""
    if table.pop(name, None) is None:
        raise _fail(f"{what} '{name}' does not exist.")
    return _ok(f"Successfully dropped {what.lower()} '{name}'.")


def _drop_group(ctx: QueryContext, node: DropGroupStmt, now: int) -> Result:
    return _drop(ctx.db.groups, node['name'], 'Group')


def _alter_series(ctx: QueryContext, node: AlterSeriesStmt, now: int) -> Result:
    db, tag = ctx.db, node['tag']
    names = _selected(db, node, now)
    if node['action'] == 'tag':
        if tag not in db.tags:
            _check_group_or_tag_name(tag, 'Tag')
            if tag in db.groups:
                raise _fail(f'Cannot create tag `{tag}` because a group with this '
                            'name already exist.')
            db.tags[tag] = set()
        db.tags[tag].update(names)
        return _ok(f'Successfully tagged {len(names)} series.')
    members = db.tags.get(tag)
    if members is None:
        raise _fail(f"Cannot find tag: '{tag}'")
    members.difference_update(names)
    return _ok(f'Successfully untagged {len(names)} series.')


def _alter_tag(ctx: QueryContext, node: AlterTagStmt, now: int) -> Result:
    db, name = ctx.db, node['name']
    if name not in db.tags:
        raise _fail(f"Cannot find tag: '{name}'")
    new = node['value']
    if new != name:
        _check_group_or_tag_name(new, 'Tag')
        _check_free(db, new)
        _rename(db.tags, name, new)
    return _ok(f"Successfully updated tag '{new}'.")


def _drop_tag(ctx: QueryContext, node: DropTagStmt, now: int) -> Result:
    return _drop(ctx.db.tags, node['name'], 'Tag')


def _create_user(ctx: QueryContext, node: CreateUserStmt, now: int) -> Result:
    db, name = ctx.db, node['name']
    _check_user_name(name)
    if name in db.users:
        raise _fail(f"User '{name}' already exists.")
    _check_password(node['password'])
    db.users[name] = User(name, node['password'], 0)
    return _ok(f"Successfully created user '{name}'.")


def _alter_user(ctx: QueryContext, node: AlterUserStmt, now: int) -> Result:
    db, name = ctx.db, node['name']
    user = _user(db, name)
    value = node['value']
    if node['prop'] == 'password':
        _check_password(value)
        user.password = value
    elif value != name:
        _check_user_name(value)
        if value in db.users:
            raise _fail(f"User '{value}' already exists.")
        _rename(db.users, name, value)
        user.name = value
    return _ok(f"Successfully updated user '{user.name}'.")


def _drop_user(ctx: QueryContext, node: DropUserStmt, now: int) -> Result:
    db, name = ctx.db, node['name']
    if name == ctx.user.name and name in db.users:
        raise _fail('Cannot drop your own user.')
    return _drop(db.users, name, 'User')


def _grant(ctx: QueryContext, node: GrantStmt, now: int) -> Result:
    name = node['name']
    _user(ctx.db, name).access |= _access_bits(node['access'])
    return _ok(f"Successfully granted permissions to user '{name}'.")


def _revoke(ctx: QueryContext, node: RevokeStmt, now: int) -> Result:
    name = node['name']
    _user(ctx.db, name).access &= ~_access_bits(node['access'])
    return _ok(f"Successfully revoked permissions from user '{name}'.")


def _alter_db(ctx: QueryContext, node: AlterDatabaseStmt, now: int) -> Result:
    return _alter_database(ctx.db, node, now)


#: statement kind -> its handler (each takes the statement type of its kind)
_HANDLERS: Dict[str, Callable[[QueryContext, Any, int], Result]] = {
    'create_group': _create_group, 'alter_group': _alter_group, 'drop_group': _drop_group,
    'alter_series': _alter_series, 'drop_series': _drop_series,
    'alter_tag': _alter_tag, 'drop_tag': _drop_tag,
    'create_user': _create_user, 'alter_user': _alter_user, 'drop_user': _drop_user,
    'grant': _grant, 'revoke': _revoke,
    'alter_database': _alter_db, 'alter_server': _alter_server,
}


def run_admin(ctx: QueryContext, node: AdminStmt, now: int) -> Result:
    """Run one create/alter/drop/grant/revoke statement."""
    handler = _HANDLERS.get(node['kind'])
    if handler is None:  # pragma: no cover (the parser makes no other kind)
        raise _fail(f"Statement not supported: {node['kind']}")
    return handler(ctx, node, now)
