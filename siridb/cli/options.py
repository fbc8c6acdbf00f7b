"""Command-line options of ``siridb``: the parser and the connection settings.

Every command that talks to a database shares the same connection options;
passwords never come from the command line (``SIRIDB_PASSWORD`` or a prompt).
"""
from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..wire.units import PRECISION_NAMES
from .exitcodes import UsageError

__all__ = ['build_parser', 'HostSpec', 'parse_host', 'ConnectionSettings',
           'connection_settings', 'read_password', 'PRECISIONS', 'DEFAULT_PORT']

DEFAULT_PORT = 9000
PRECISIONS = PRECISION_NAMES

EPILOG_EXIT_CODES = """\
exit codes:
  0  success
  1  the server rejected a query, insert or admin request (or rows were rejected)
  2  usage error: bad arguments, missing password, unreadable input
  3  connection or authentication failure (unreachable host, wrong password,
     unknown database)

environment:
  SIRIDB_PASSWORD          password of --user (else an interactive prompt); for
                           'siridb admin new-pool/new-replica' of --db-user
  SIRIDB_SERVICE_PASSWORD  password of the service account for 'siridb admin'
  SIRIDB_NEW_PASSWORD      new password for 'siridb admin new-account/change-password'
"""


@dataclass(frozen=True)
class HostSpec:
    """One server from ``--host``/``--backup``: host, port, weight, backup."""

    host: str
    port: int = DEFAULT_PORT
    weight: int = 1
    backup: bool = False

    def hostlist_item(self) -> Tuple[Any, ...]:
        """The item for ``SiriDBClient``'s hostlist."""
        if self.weight == 1 and not self.backup:
            return (self.host, self.port)
        return (self.host, self.port, {'weight': self.weight, 'backup': self.backup})

    def __str__(self) -> str:
        host = f'[{self.host}]' if ':' in self.host else self.host
        return f'{host}:{self.port}'


def parse_host(text: str, backup: bool = False) -> HostSpec:
    """Parse ``host[:port[:weight]]`` (IPv6 as ``[::1]:9000``)."""
    rest = text.strip()
    if rest.startswith('['):
        end = rest.find(']')
        if end < 0:
            raise UsageError(f'invalid host {text!r}: missing "]"')
        host, rest = rest[1:end], rest[end + 1:]
        if rest and not rest.startswith(':'):
            raise UsageError(f'invalid host {text!r}')
        parts = rest[1:].split(':') if rest else []
    else:
        host, *parts = rest.split(':')
    if not host:
        raise UsageError(f'invalid host {text!r}: empty host name')
    if len(parts) > 2:
        raise UsageError(f'invalid host {text!r}: expecting host[:port[:weight]]')
    port, weight = DEFAULT_PORT, 1
    try:
        if parts and parts[0]:
            port = int(parts[0])
        if len(parts) > 1 and parts[1]:
            weight = int(parts[1])
    except ValueError:
        raise UsageError(f'invalid host {text!r}: port and weight must be integers') from None
    if not 0 < port < 65536:
        raise UsageError(f'invalid host {text!r}: port out of range')
    if not 1 <= weight <= 9:
        raise UsageError(f'invalid host {text!r}: weight must be 1..9')
    return HostSpec(host, port, weight, backup)


def read_password(env: str, prompt: str) -> str:
    """The password from environment variable ``env``, else an interactive prompt.

    Without a terminal to prompt on, this is a usage error rather than a hang.
    """
    password = os.environ.get(env)
    if password is not None:
        return password
    if not sys.stdin.isatty():
        raise UsageError(f'no password: set {env} or run from a terminal to be prompted')
    try:
        return getpass.getpass(prompt)
    except (EOFError, KeyboardInterrupt):
        raise UsageError('no password given') from None


@dataclass
class ConnectionSettings:
    """Where and as whom to connect (the password stays out of the repr)."""

    username: str
    dbname: str
    hosts: List[HostSpec]
    timeout: float
    password: str = field(default='', repr=False)
    #: other SiriDBClient arguments from the URL (inactive_time, max_wait_retry, keepalive)
    options: Dict[str, Any] = field(default_factory=dict)

    def hostlist(self) -> List[Tuple[Any, ...]]:
        return [h.hostlist_item() for h in self.hosts]


def _from_url(url: str) -> Dict[str, Any]:
    """Username, password, dbname and hostlist from a ``siridb://`` URL."""
    from .connect import parse_url
    return parse_url(url)


def connection_settings(args: argparse.Namespace, need_password: bool = True
                        ) -> ConnectionSettings:
    """Resolve the shared connection options (URL first, flags override)."""
    username: Optional[str] = None
    dbname: Optional[str] = None
    password: Optional[str] = None
    hosts: List[HostSpec] = []
    options: Dict[str, Any] = {}
    if args.url:
        parsed = _from_url(args.url)
        options = dict(parsed.get('options', {}))
        username = parsed.get('username') or None
        password = parsed.get('password')
        dbname = parsed.get('dbname') or None
        for item in parsed.get('hostlist', []):
            opts = item[2] if len(item) > 2 else {}
            hosts.append(HostSpec(str(item[0]), int(item[1]), int(opts.get('weight', 1)),
                                  bool(opts.get('backup', False))))
    if args.host:
        hosts = [h for h in hosts if h.backup] + [parse_host(h) for h in args.host]
    if args.backup:
        hosts = [h for h in hosts if not h.backup] + [
            parse_host(h, backup=True) for h in args.backup]
    if not hosts:
        hosts = [HostSpec('127.0.0.1', DEFAULT_PORT)]
    if args.user:
        username = args.user
    if args.db:
        dbname = args.db
    if not dbname:
        raise UsageError('no database: give --db NAME (or a --url with a database)')
    timeout = options.pop('timeout', 30.0) if args.timeout is None else args.timeout
    if timeout <= 0:
        raise UsageError('--timeout must be positive')
    if password is None and need_password:
        password = read_password('SIRIDB_PASSWORD', f'Password for {username or "iris"}: ')
    return ConnectionSettings(username or 'iris', dbname, hosts, timeout,
                              password or '', options)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    pass


def _connection_parent() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group('connection options')
    g.add_argument('--host', action='append', metavar='HOST[:PORT[:WEIGHT]]',
                   help='a server to connect to (repeatable; default 127.0.0.1:9000)')
    g.add_argument('--backup', action='append', metavar='HOST[:PORT[:WEIGHT]]',
                   help='a backup server, used only when no --host is available (repeatable)')
    g.add_argument('--db', metavar='NAME', help='database name')
    g.add_argument('--user', metavar='NAME', help='database user (default iris); the '
                   'password comes from SIRIDB_PASSWORD or a prompt')
    g.add_argument('--url', metavar='URL',
                   help='siridb://user[:password]@host[:port],.../dbname?backup=host:port '
                   '(options given as flags override it)')
    g.add_argument('--timeout', type=float, default=None, metavar='SECONDS',
                   help='timeout for connecting and for each request (default: the '
                   'URL\'s timeout option, else 30)')
    return p


def _add_output_options(p: argparse.ArgumentParser, formats: Sequence[str],
                        default_help: str) -> None:
    p.add_argument('-f', '--format', choices=formats, default=None, help=default_help)
    p.add_argument('--precision', choices=PRECISIONS, default=None,
                   help='time precision of returned timestamps (default: the database\'s)')
    p.add_argument('--iso', action='store_true',
                   help='show timestamps as ISO 8601 datetimes (UTC)')


def build_parser(serve_options: bool = True) -> argparse.ArgumentParser:
    """The complete ``siridb`` argument parser (``serve_options=False``: without
    the options of ``siridb serve``, for running any other command)."""
    from .. import __version__
    conn = _connection_parent()
    parser = argparse.ArgumentParser(
        prog='siridb', formatter_class=_Formatter,
        description='Query, import, export and administer SiriDB from the shell, '
                    'or run the embedded SiriDB-compatible server.',
        epilog=EPILOG_EXIT_CODES)
    parser.add_argument('--version', action='version', version=f'siridb {__version__}')
    parser.add_argument('-v', '--verbose', action='store_true',
                        help='log the driver\'s debug messages and tracebacks to stderr')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    p = sub.add_parser('query', parents=[conn], formatter_class=_Formatter,
                       help='run one query and print the result',
                       description='Run one query and print the result.',
                       epilog='example:\n  SIRIDB_PASSWORD=siri siridb query --db dbtest '
                              '\'select * from "cpu"\'\n\n' + EPILOG_EXIT_CODES)
    p.add_argument('query', help='the query text, e.g. \'select * from "cpu"\'')
    _add_output_options(p, ('table', 'json', 'csv'),
                        'output format (default: table on a terminal, else json)')

    p = sub.add_parser('shell', parents=[conn], formatter_class=_Formatter,
                       help='interactive query prompt',
                       description='An interactive prompt. A statement ends at the end of '
                       'the line unless the line ends with "\\" or a quote or parenthesis '
                       'is open. Commands: \\timing, \\format FMT, \\precision P, \\iso, '
                       '\\pager, \\help, \\quit (or exit, quit). Tab completes keywords, '
                       'series, groups and tags; results taller than the terminal go '
                       'through $PAGER (default less). Ctrl-C cancels the running query; '
                       'Ctrl-D quits.',
                       epilog=EPILOG_EXIT_CODES)
    _add_output_options(p, ('table', 'json', 'csv'), 'output format (default table)')
    p.add_argument('--history', metavar='FILE', default=None,
                   help='history file (default ~/.siridb_history)')

    p = sub.add_parser('import', parents=[conn], formatter_class=_Formatter,
                       help='load points from a CSV or JSON lines file',
                       description='Load points from FILE (or - for stdin) through a write '
                       'session. CSV rows are series,timestamp,value (an optional header '
                       'row is skipped); JSON lines are objects with "series", "timestamp" '
                       'and "value" or arrays [series, timestamp, value]. Timestamps are '
                       'integers in the database precision or ISO 8601 datetimes. '
                       'Rejected rows are reported on stderr with their line numbers and '
                       'make the exit code 1.',
                       epilog=EPILOG_EXIT_CODES)
    p.add_argument('file', help='input file, or - for stdin')
    p.add_argument('--format', choices=('auto', 'csv', 'jsonl'), default='auto',
                   help='input format (default: from the file name, else csv)')
    p.add_argument('--batch', type=int, default=10_000, metavar='N',
                   help='points per insert request (default 10000)')
    p.add_argument('--progress', choices=('auto', 'always', 'never'), default='auto',
                   help='progress on stderr (default: when stderr is a terminal)')

    p = sub.add_parser('export', parents=[conn], formatter_class=_Formatter,
                       help='write the result of a select as CSV or JSON lines',
                       description='Run a select and write its points as rows '
                       'series,timestamp,value (CSV, readable by "siridb import") or '
                       'JSON lines.',
                       epilog=EPILOG_EXIT_CODES)
    p.add_argument('query', help='a select query, e.g. \'select * from /cpu.*/\'')
    p.add_argument('-o', '--output', metavar='FILE', default='-',
                   help='output file (default stdout)')
    p.add_argument('-f', '--format', choices=('csv', 'jsonl'), default='csv',
                   help='output format (default csv)')
    p.add_argument('--precision', choices=PRECISIONS, default=None,
                   help='time precision of the timestamps (default: the database\'s)')
    p.add_argument('--iso', action='store_true',
                   help='write timestamps as ISO 8601 datetimes (UTC)')

    p = sub.add_parser('admin', formatter_class=_Formatter,
                       help='service API: databases, pools, replicas, accounts, version',
                       description='Service requests with the service account '
                       '(--service-user, password from SIRIDB_SERVICE_PASSWORD or a prompt).',
                       epilog=EPILOG_EXIT_CODES)
    asub = p.add_subparsers(dest='admin_command', metavar='ACTION')
    asub.required = True
    svc = argparse.ArgumentParser(add_help=False)
    g = svc.add_argument_group('service connection options')
    g.add_argument('--host', default=None, metavar='HOST[:PORT]',
                   help='the server (default 127.0.0.1:9000)')
    g.add_argument('--service-user', default=None, metavar='NAME',
                   help='service account (default sa)')
    g.add_argument('--url', metavar='URL',
                   help='siridb://account[:password]@host[:port] (one server; no database); '
                   '--host and --service-user override it')
    g.add_argument('--timeout', type=float, default=None, metavar='SECONDS',
                   help='request timeout (default: the URL\'s timeout option, else 30)')
    g.add_argument('-f', '--format', choices=('table', 'json'), default=None,
                   help='output format for listings (default: table on a terminal, '
                   'else json)')
    a = asub.add_parser('new-database', parents=[svc], help='create a database')
    a.add_argument('dbname', help='name: a letter, then letters, digits, - or _ '
                   '(2-20 characters)')
    a.add_argument('--time-precision', choices=PRECISIONS, default=None,
                   help='time precision (server default ms)')
    a.add_argument('--buffer-size', type=int, default=None, metavar='BYTES',
                   help='buffer size, a multiple of 512 (server default 1024)')
    a.add_argument('--duration-num', default=None, metavar='DURATION',
                   help='shard duration for numbers, e.g. 1w (server default 1w)')
    a.add_argument('--duration-log', default=None, metavar='DURATION',
                   help='shard duration for strings, e.g. 1d (server default 1d)')
    a = asub.add_parser('drop-database', parents=[svc], help='drop a database')
    a.add_argument('dbname')
    a.add_argument('--ignore-offline', action='store_true',
                   help='drop even when servers of the cluster are offline')
    asub.add_parser('databases', parents=[svc], help='list the databases')
    asub.add_parser('version', parents=[svc], help='show the server version')
    asub.add_parser('accounts', parents=[svc], help='list the service accounts')
    a = asub.add_parser('new-account', parents=[svc],
                        help='create a service account (password from '
                        'SIRIDB_NEW_PASSWORD or a prompt)')
    a.add_argument('account')
    a = asub.add_parser('change-password', parents=[svc],
                        help='change a service account\'s password (new password from '
                        'SIRIDB_NEW_PASSWORD or a prompt)')
    a.add_argument('account')
    a = asub.add_parser('drop-account', parents=[svc], help='drop a service account')
    a.add_argument('account')
    for action, text in (('new-pool', 'as a new pool'),
                         ('new-replica', 'as a replica of pool --pool')):
        a = asub.add_parser(action, parents=[svc],
                            help=f'make the server (--host) join a database {text} '
                            '(password of --db-user from SIRIDB_PASSWORD or a prompt)')
        a.add_argument('dbname', help='the database to join')
        a.add_argument('--remote', required=True, metavar='HOST[:PORT]',
                       help='a server of that database')
        a.add_argument('--db-user', default='iris', metavar='NAME',
                       help='a database user with full access (default iris)')
        if action == 'new-replica':
            a.add_argument('--pool', type=int, required=True, metavar='N',
                           help='the pool to replicate')

    parents = []
    if serve_options:
        # the one definition of the server's options (importing the server costs
        # about 0.1 s, so other commands skip it)
        from ..embedded.__main__ import server_parser
        parents.append(server_parser('siridb serve', add_help=False))
    p = sub.add_parser('serve', formatter_class=_Formatter, parents=parents,
                       help='run the embedded SiriDB-compatible server',
                       description='Run the embedded SiriDB-compatible server (the same as '
                       'python -m siridb.embedded) until SIGINT or SIGTERM; logs go to '
                       'stderr. Each database has the user iris (password siri); the '
                       'service account is sa (password siri).',
                       epilog='example:\n  siridb serve --port 9000 --db dbtest '
                              '--db metrics:s --data-dir ./data\n')
    p.add_argument('--debug', action='store_true', help='the same as --log-level debug')
    return parser
