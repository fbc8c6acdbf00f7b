"""``siridb admin``: the service API (databases, pools, replicas, service
accounts, version).

Requests go to one server as the service account (``--service-user``,
password from ``SIRIDB_SERVICE_PASSWORD`` or a prompt); they need no database.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any, List, Optional, Tuple

from ..connector.lib.constants import DEFAULT_CLIENT_PORT
from ..connector.lib.exceptions import ServiceError
from .exitcodes import CONNECTION, OK, REQUEST_ERROR, CliError, UsageError, describe
from .options import HostSpec, parse_host, read_password
from .output import Table, render_table, write

__all__ = ['run']


def _refuses_account(exc: ServiceError, account: str) -> bool:
    """True when ``exc`` says the server does not accept ``account`` itself
    (unknown service account or wrong password), not a request's target."""
    return str(exc) in (f"cannot find service account '{account}'",
                        f"incorrect password for service account '{account}'")


def _new_password(account: str) -> str:
    return read_password('SIRIDB_NEW_PASSWORD', f'New password for {account}: ')


async def _admin(args: argparse.Namespace, host: HostSpec, password: str,
                 new_password: Optional[str]) -> Any:
    """Run the admin action; returns what to print (a text or a listing)."""
    from ..connector.lib.service import SiriDBService

    svc = SiriDBService(args.service_user, password, host.host, host.port,
                        timeout=args.timeout, connect_timeout=args.timeout)
    try:
        action = args.admin_command
        if action == 'new-database':
            await svc.new_database(args.dbname, time_precision=args.time_precision,
                                   buffer_size=args.buffer_size,
                                   duration_num=args.duration_num,
                                   duration_log=args.duration_log)
            return f"Database '{args.dbname}' created."
        if action == 'drop-database':
            await svc.drop_database(args.dbname, ignore_offline=args.ignore_offline)
            return f"Database '{args.dbname}' dropped."
        if action == 'databases':
            return ('database', await svc.get_databases())
        if action == 'accounts':
            return ('account', await svc.get_accounts())
        if action == 'version':
            return await svc.get_version()
        if action == 'drop-account':
            await svc.drop_account(args.account)
            return f"Service account '{args.account}' dropped."
        assert new_password is not None
        if action in ('new-pool', 'new-replica'):
            remote = parse_host(args.remote)
            if action == 'new-pool':
                await svc.new_pool(args.dbname, remote.host, remote.port, args.db_user,
                                   new_password)
                return f"This server joined database '{args.dbname}' as a new pool."
            await svc.new_replica(args.dbname, remote.host, remote.port, args.db_user,
                                  new_password, args.pool)
            return (f"This server joined database '{args.dbname}' as a replica of "
                    f"pool {args.pool}.")
        if action == 'new-account':
            await svc.new_account(args.account, new_password)
            return f"Service account '{args.account}' created."
        if action == 'change-password':
            await svc.change_password(args.account, new_password)
            return f"Password of service account '{args.account}' changed."
        raise AssertionError(action)  # pragma: no cover - argparse restricts choices
    finally:
        svc.close()
        await svc.wait_closed()


def _service_account(args: argparse.Namespace) -> Tuple[HostSpec, str, Optional[str]]:
    """Server, service account and password (None: not in the URL) from
    ``--url``, ``--host`` and ``--service-user`` (flags win); sets
    ``args.timeout`` from the URL when ``--timeout`` was not given."""
    host = HostSpec('127.0.0.1', DEFAULT_CLIENT_PORT)
    user, password = 'sa', None
    timeout = 30.0
    if args.url:
        from .connect import parse_url
        parsed = parse_url(args.url, need_dbname=False)
        if len(parsed['hostlist']) != 1:
            raise UsageError('invalid --url: admin talks to exactly one server')
        if parsed['dbname']:
            raise UsageError('invalid --url: admin needs no database (leave the path empty)')
        extra = sorted(set(parsed['options']) - {'timeout'})
        if extra:
            raise UsageError(f'invalid --url: option(s) {", ".join(extra)} do not apply '
                             'to admin (only timeout)')
        host = HostSpec(str(parsed['hostlist'][0][0]), int(parsed['hostlist'][0][1]))
        user, password = parsed['username'], parsed['password']
        timeout = parsed['options'].get('timeout', timeout)
    if args.host:
        host = parse_host(args.host)
    if args.service_user:
        user = args.service_user
    if args.timeout is None:
        args.timeout = timeout
    elif args.timeout <= 0:
        raise UsageError('--timeout must be positive')
    return host, user, password


def run(args: argparse.Namespace) -> int:
    host, user, password = _service_account(args)
    args.service_user = user
    if password is None:
        password = read_password('SIRIDB_SERVICE_PASSWORD',
                                 f'Password for service account {user}: ')
    new_password = None
    if args.admin_command in ('new-account', 'change-password'):
        new_password = _new_password(args.account)
    elif args.admin_command in ('new-pool', 'new-replica'):
        new_password = read_password('SIRIDB_PASSWORD',
                                     f'Password for database user {args.db_user}: ')
    try:
        result = asyncio.run(_admin(args, host, password, new_password))
    except ServiceError as exc:
        # the service account itself unknown or refused: an authentication
        # failure (3); any other failed request, e.g. an unknown target account (1)
        code = CONNECTION if _refuses_account(exc, user) else REQUEST_ERROR
        raise CliError(describe(exc), code) from None
    fmt = args.format or ('table' if sys.stdout.isatty() else 'json')
    if isinstance(result, tuple):
        column, names = result
        items: List[str] = sorted(names)
        if fmt == 'json':
            write(sys.stdout, json.dumps(items, ensure_ascii=False) + '\n')
        else:
            write(sys.stdout, render_table(Table([column], [[n] for n in items])))
    elif args.admin_command == 'version' and fmt == 'json':
        write(sys.stdout, json.dumps(result) + '\n')
    else:
        write(sys.stdout, f'{result}\n')
    return OK
