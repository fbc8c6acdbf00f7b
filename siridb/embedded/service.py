"""SERVICE requests (type 32): service accounts and databases.

``handle_service(engine, data)`` checks the account and the options the way
the real server does and returns the reply (type, payload). Changes go
through the engine so that they are logged when it has a data directory.
"""
from __future__ import annotations

import re
from typing import Any, Dict, Optional, Tuple

from ..wire import types as pm
from .engine import WRITE_FAILED, Engine
from .persist import LogWriteError
from .store import PRECISIONS, VERSION, valid_db_name

__all__ = ['handle_service', 'serve_request', 'ServiceFailure', 'DURATION_RE']

Reply = Tuple[int, Any]

#: 1-99 followed by h, d or w
DURATION_RE = re.compile(r'^[1-9][0-9]?[hdw]$')

_OPTIONS: Dict[int, Dict[str, type]] = {
    pm.SERVICE_NEW_ACCOUNT: {'account': str, 'password': str},
    pm.SERVICE_CHANGE_PASSWORD: {'account': str, 'password': str},
    pm.SERVICE_DROP_ACCOUNT: {'account': str},
    pm.SERVICE_NEW_DATABASE: {
        'dbname': str, 'time_precision': str, 'buffer_size': int,
        'duration_num': str, 'duration_log': str},
    pm.SERVICE_NEW_POOL: {
        'dbname': str, 'host': str, 'port': int, 'username': str,
        'password': str},
    pm.SERVICE_NEW_REPLICA: {
        'dbname': str, 'host': str, 'port': int, 'username': str,
        'password': str, 'pool': int},
    pm.SERVICE_DROP_DATABASE: {'database': str, 'ignore_offline': bool},
    pm.SERVICE_GET_VERSION: {},
    pm.SERVICE_GET_ACCOUNTS: {},
    pm.SERVICE_GET_DATABASES: {},
}

_REQUIRED: Dict[int, Tuple[str, ...]] = {
    pm.SERVICE_NEW_ACCOUNT: ('account', 'password'),
    pm.SERVICE_CHANGE_PASSWORD: ('account', 'password'),
    pm.SERVICE_DROP_ACCOUNT: ('account',),
    pm.SERVICE_NEW_DATABASE: ('dbname',),
    pm.SERVICE_NEW_POOL: ('dbname',),
    pm.SERVICE_NEW_REPLICA: ('dbname',),
    pm.SERVICE_DROP_DATABASE: ('database',),
}

_INVALID: Reply = (pm.CPROTO_ERR_SERVICE_INVALID_REQUEST, None)
_ACK: Reply = (pm.CPROTO_ACK_SERVICE, None)


class ServiceFailure(Exception):
    """A service request refused with an error text (reply type 96)."""


def _error(msg: str) -> Reply:
    return pm.CPROTO_ERR_SERVICE, {'error_msg': msg}


def _options(request: int, options: Any) -> Optional[Dict[str, Any]]:
    """Options checked against the request's keys and types, or None."""
    allowed = _OPTIONS.get(request)
    if allowed is None or type(options) is not dict:
        return None
    for key, value in options.items():
        want = allowed.get(key) if type(key) is str else None
        if want is None or type(value) is not want:
            return None
    for key in _REQUIRED.get(request, ()):
        if key not in options:
            return None
    return options


def handle_service(engine: Engine, data: Any) -> Reply:
    """The reply to one decoded SERVICE payload."""
    return serve_request(engine, data)[0]


def serve_request(engine: Engine, data: Any) -> Tuple[Reply, bool]:
    """The reply to one decoded SERVICE payload and whether it was refused
    for a wrong service account or password (a failed login)."""
    if type(data) is not list or len(data) != 4:
        return _INVALID, False
    user, password, request, options = data
    if type(user) is not str or type(password) is not str or \
            type(request) is not int:
        return _INVALID, False
    accounts = engine.store.accounts
    if user not in accounts:
        return _error(f"cannot find service account '{user}'"), True
    if accounts[user] != password:
        return _error(f"incorrect password for service account '{user}'"), True
    opts = _options(request, options)
    if opts is None:
        return _INVALID, False
    try:
        return _dispatch(engine, request, opts), False
    except ServiceFailure as exc:
        return _error(str(exc)), False
    except LogWriteError as exc:  # nothing changed (see Engine)
        return _error('Request failed: ' + WRITE_FAILED.format(exc.strerror)), False


def _dispatch(engine: Engine, request: int, opts: Dict[str, Any]) -> Reply:
    store = engine.store
    if request == pm.SERVICE_GET_VERSION:
        return pm.CPROTO_ACK_SERVICE_DATA, [VERSION]
    if request == pm.SERVICE_GET_ACCOUNTS:
        return pm.CPROTO_ACK_SERVICE_DATA, list(store.accounts)
    if request == pm.SERVICE_GET_DATABASES:
        return pm.CPROTO_ACK_SERVICE_DATA, list(store.databases)
    if request == pm.SERVICE_NEW_ACCOUNT:
        name = opts['account']
        if name in store.accounts:
            raise ServiceFailure(f"service account '{name}' already exists")
        if len(name) < 2:
            raise ServiceFailure(
                'service account name should have at least 2 characters')
        _check_password(opts['password'])
        engine.set_account(name, opts['password'])
        return _ACK
    if request == pm.SERVICE_CHANGE_PASSWORD:
        name = opts['account']
        if name not in store.accounts:
            raise ServiceFailure(f"cannot find service account '{name}'")
        _check_password(opts['password'])
        engine.set_account(name, opts['password'])
        return _ACK
    if request == pm.SERVICE_DROP_ACCOUNT:
        name = opts['account']
        if len(store.accounts) == 1:  # checked first, as the real server does
            raise ServiceFailure('at least one service account is required, cannot '
                                 'drop the last service account')
        if name not in store.accounts:
            raise ServiceFailure(f"cannot find service account '{name}'")
        engine.drop_account(name)
        return _ACK
    if request == pm.SERVICE_NEW_DATABASE:
        _new_database(engine, opts)
        return _ACK
    if request in (pm.SERVICE_NEW_POOL, pm.SERVICE_NEW_REPLICA):
        raise ServiceFailure(
            'the embedded server does not support adding pools or replicas; '
            'use EmbeddedCluster to simulate a cluster')
    # SERVICE_DROP_DATABASE (the only request left in _OPTIONS)
    name = opts['database']
    if name not in store.databases:
        raise ServiceFailure(f"cannot find database '{name}'")
    engine.drop_database(name)
    return _ACK


def _check_password(password: str) -> None:
    if len(password) < 4:
        raise ServiceFailure('password should have at least 4 characters')


def _new_database(engine: Engine, opts: Dict[str, Any]) -> None:
    name = opts['dbname']
    if not valid_db_name(name):
        raise ServiceFailure(f"invalid database name: '{name}'")
    if name in engine.store.databases:
        raise ServiceFailure(f"database name already exists: '{name}'")
    precision = opts.get('time_precision', 'ms')
    if precision not in PRECISIONS:
        raise ServiceFailure(f"invalid time precision: '{precision}' "
                             f'(expecting s, ms, us or ns)')
    buffer_size = opts.get('buffer_size', 1024)
    if buffer_size <= 0 or buffer_size % 512 or buffer_size > 1048576:
        raise ServiceFailure(f'invalid buffer size: {buffer_size} (expecting a '
                             f'multiple of 512 with a maximum of 1048576)')
    duration_num = opts.get('duration_num', '1w')
    if not DURATION_RE.fullmatch(duration_num):
        raise ServiceFailure(f"invalid number duration: '{duration_num}' "
                             f'(valid examples: 6h, 2d or 1w)')
    duration_log = opts.get('duration_log', '1d')
    if not DURATION_RE.fullmatch(duration_log):
        raise ServiceFailure(f"invalid log duration: '{duration_log}' "
                             f'(valid examples: 6h, 2d or 1w)')
    engine.new_database(name, precision, buffer_size=buffer_size,
                        duration_num=duration_num, duration_log=duration_log)
