"""Run the embedded SiriDB-compatible server standalone.

    python -m siridb.embedded --host 127.0.0.1 --port 9000 --db dbtest \\
        [--db other:ms ...] [--data-dir DIR [--recover]] \\
        [--tls-cert F --tls-key F] [--server-name ADDRESS:PORT] \\
        [--ip-support ALL|IPV4ONLY|IPV6ONLY] [--max-open-files N]

Each ``--db NAME[:PRECISION]`` (s, ms, us or ns; default ms) is created unless
it already exists in the data directory. A damaged file in the data
directory stops the start with an error naming it (exit status 1) unless
``--recover`` is given. ``--server-name``, ``--ip-support`` and
``--max-open-files`` set what ``show``/``list servers`` report (SiriDB's
configuration options of those names). Stops cleanly on SIGINT/SIGTERM.
``siridb serve`` is this same server: it takes its options from ``server_parser``
and runs ``serve``.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from typing import Callable, Dict, List, Optional

from .limits import EXPOSED_AUTH_FAIL_DELAY, Limits, limits_for
from .persist import DataDirError, DataDirInUse
from .server import EmbeddedServer
from .settings import IP_SUPPORT, MAX_OPEN_FILES_RANGE, ServerSettings, check_server_name
from .store import PRECISIONS, check_db_name

__all__ = ['main', 'parse_args', 'server_parser', 'args_error', 'serve', 'setup_logging',
           'add_limit_options', 'limits_from_args', 'add_settings_options',
           'settings_from_args']

log = logging.getLogger('siridb.embedded')


def _db_arg(value: str) -> Dict[str, str]:
    name, _, precision = value.partition(':')
    precision = precision or 'ms'
    if precision not in PRECISIONS:
        raise argparse.ArgumentTypeError(
            f'expected NAME or NAME:PRECISION with precision s, ms, us or ns, '
            f'got {value!r}')
    try:
        check_db_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return {name: precision}


def add_limit_options(p: argparse.ArgumentParser) -> None:
    """The options of ``Limits`` (see ``limits.py``)."""
    d = Limits(max_connections=0)
    p.add_argument('--max-connections', type=int, default=None, metavar='N',
                   help='open connections allowed; more are closed at once '
                        '(0 = no limit; default: the open-file limit less 64)')
    p.add_argument('--pre-auth-timeout', type=float, default=None,
                   metavar='SECONDS',
                   help='close a connection that sends no request for this '
                        'long before it authenticates (0 = never; default '
                        f'{d.pre_auth_idle_timeout:g})')
    p.add_argument('--auth-fail-delay', type=float, default=None,
                   metavar='SECONDS',
                   help='delay the answers to logins of a peer by this much '
                        'per failed login (0 = off; default '
                        f'{EXPOSED_AUTH_FAIL_DELAY:g} when --host is not a '
                        f'loopback address, else {d.auth_fail_delay:g})')
    p.add_argument('--reply-budget', type=int, default=None, metavar='BYTES',
                   help='unsent replies of all connections together before '
                        'clients that do not read are held back (default '
                        f'{d.reply_budget})')


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The server's ``Limits`` from the options of ``add_limit_options``."""
    return limits_for(
        args.host, args.unix, max_connections=args.max_connections,
        pre_auth_idle_timeout=args.pre_auth_timeout,
        auth_fail_delay=args.auth_fail_delay, reply_budget=args.reply_budget)


def _server_name_arg(value: str) -> str:
    try:
        return check_server_name(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_settings_options(p: argparse.ArgumentParser) -> None:
    """The options of ``ServerSettings`` (see ``settings.py``): SiriDB's
    configuration values that ``show`` and ``list servers`` report."""
    d = ServerSettings()
    low, high = MAX_OPEN_FILES_RANGE
    p.add_argument('--server-name', type=_server_name_arg, default=None,
                   metavar='ADDRESS:PORT',
                   help="the server's name in `show server` and `list servers` "
                        '(default: the address it listens on)')
    p.add_argument('--ip-support', choices=IP_SUPPORT, default=d.ip_support,
                   help=f'reported by `show ip_support` (default {d.ip_support})')
    p.add_argument('--max-open-files', type=int, default=d.max_open_files,
                   metavar='N',
                   help=f'reported by `show max_open_files`, {low}..{high} '
                        f'(default {d.max_open_files})')


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The server's ``ServerSettings`` from the options of ``add_settings_options``."""
    return ServerSettings(server_name=args.server_name, ip_support=args.ip_support,
                          max_open_files=args.max_open_files)


def server_parser(prog: str = 'python -m siridb.embedded',
                  add_help: bool = True) -> argparse.ArgumentParser:
    """The server's options: the one definition, also used by ``siridb serve``
    (as a parent parser, ``add_help=False``)."""
    p = argparse.ArgumentParser(
        prog=prog, add_help=add_help,
        description='Embedded SiriDB-compatible server (protocol of SiriDB '
                    '2.0.55). Default users: service account sa/siri, '
                    'database user iris/siri.')
    p.add_argument('--host', default='127.0.0.1',
                   help='address to listen on (default 127.0.0.1)')
    p.add_argument('--port', type=int, default=9000,
                   help='port to listen on (default 9000, 0 = any free port)')
    p.add_argument('--db', action='append', type=_db_arg, default=[],
                   metavar='NAME[:PRECISION]',
                   help='create this database unless it exists (repeatable; '
                        'precision s, ms, us or ns, default ms; default: '
                        'dbtest when no database exists)')
    p.add_argument('--data-dir', default=None, metavar='DIR',
                   help='keep data in DIR (append-only logs replayed on '
                        'start); default: in memory only')
    p.add_argument('--fsync', choices=('always', 'never'), default='always',
                   help='with --data-dir: fsync before acknowledging changes '
                        '(always, default) or only write them (never)')
    p.add_argument('--recover', action='store_true',
                   help='with --data-dir: load what is readable of damaged '
                        'files (keeping a copy of each) instead of refusing '
                        'to start')
    p.add_argument('--unix', default=None, metavar='PATH',
                   help='listen on a unix socket instead of TCP')
    p.add_argument('--tls-cert', default=None, metavar='FILE',
                   help='serve TLS with this certificate (PEM)')
    p.add_argument('--tls-key', default=None, metavar='FILE',
                   help='private key for --tls-cert (PEM)')
    add_limit_options(p)
    add_settings_options(p)
    p.add_argument('--log-level', default='info',
                   choices=('debug', 'info', 'warning', 'error'))
    return p


def args_error(args: argparse.Namespace) -> Optional[str]:
    """What is wrong with option values argparse cannot check, or None."""
    if bool(args.tls_cert) != bool(args.tls_key):
        return '--tls-cert and --tls-key go together'
    for opt in ('max_connections', 'pre_auth_timeout', 'auth_fail_delay',
                'reply_budget'):
        if (getattr(args, opt) or 0) < 0:
            return f'--{opt.replace("_", "-")} must not be negative'
    if not 0 <= args.port < 65536:
        return '--port must be 0..65535'
    low, high = MAX_OPEN_FILES_RANGE
    if not low <= args.max_open_files <= high:
        return f'--max-open-files must be {low}..{high}'
    return None


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = server_parser()
    args = p.parse_args(argv)
    error = args_error(args)
    if error:
        p.error(error)
    return args


def announce_stdout(server: EmbeddedServer) -> None:
    """One line on stdout that scripts can wait for: the address it listens
    on (and the server name, when ``--server-name`` gives another)."""
    where = server.listening_on
    named = f' as {server.name}' if server.name != where else ''
    print(f'siridb.embedded listening on {where}{named} databases '
          f'{",".join(server.store.databases)}', flush=True)


async def serve(args: argparse.Namespace,
                announce: Callable[[EmbeddedServer], None] = announce_stdout) -> None:
    """Run the server configured by ``args`` until SIGINT or SIGTERM;
    ``announce`` is called once it listens."""
    databases: Dict[str, str] = {}
    for item in args.db:
        databases.update(item)
    context: Optional[ssl.SSLContext] = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
    server = EmbeddedServer(args.host, args.port, databases=databases,
                            data_dir=args.data_dir, ssl=context,
                            unix_path=args.unix, fsync=args.fsync,
                            recover=args.recover, limits=limits_from_args(args),
                            settings=settings_from_args(args))
    if not server.store.databases:
        server.engine.ensure_database('dbtest', 'ms')
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover
            pass
    await server.start()
    try:
        announce(server)
        await stop.wait()
        log.info('shutting down')
    finally:
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


def setup_logging(level: str) -> None:
    """Server logs on stderr at ``level`` (a --log-level choice)."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format='%(asctime)s %(levelname)s %(name)s: %(message)s', stream=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    try:
        asyncio.run(serve(args))
    except (OSError, DataDirInUse, DataDirError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
