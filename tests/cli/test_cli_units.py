"""Unit tests of the CLI's pure parts: host parsing, row reading, output
formatting, statement completion and the error -> exit code mapping."""
from __future__ import annotations

import argparse
import io
import json
from typing import Any

import pytest

from siridb.cli import main
from siridb.cli.exitcodes import exit_code_for
from siridb.cli.options import HostSpec, build_parser, connection_settings, parse_host
from siridb.cli.output import iso_timestamp, render, tabulate
from siridb.cli.rows import Point, Rejected, parse_timestamp, read_rows
from siridb.cli.shell import statement_complete
from siridb.connector.lib.exceptions import (
    ConnectionLostError,
    InsertError,
    InvalidCredentialsError,
    QueryError,
    RequestTimeoutError,
    ServiceError,
    UnknownDatabaseError,
)


@pytest.mark.parametrize('text, expected', [
    ('db1', HostSpec('db1', 9000)),
    ('db1:9001', HostSpec('db1', 9001)),
    ('db1:9001:3', HostSpec('db1', 9001, 3)),
    ('[::1]:9002', HostSpec('::1', 9002)),
    ('[::1]', HostSpec('::1', 9000)),
])
def test_parse_host(text: str, expected: HostSpec) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize('text', ['', ':9000', 'h:x', 'h:0', 'h:70000', 'h:1:0', 'h:1:10',
                                  'h:1:2:3', '[::1'])
def test_parse_host_rejects(text: str) -> None:
    from siridb.cli.exitcodes import UsageError
    with pytest.raises(UsageError):
        parse_host(text)


def test_hostlist_items_and_backup() -> None:
    assert parse_host('a:1').hostlist_item() == ('a', 1)
    assert parse_host('a:1:2', backup=True).hostlist_item() == (
        'a', 1, {'weight': 2, 'backup': True})


def _args(argv: list) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_settings_from_flags_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('SIRIDB_PASSWORD', 'pw')
    s = connection_settings(_args(['query', '--db', 'x', '--host', 'a:1', '--host', 'b:2:5',
                                   '--backup', 'c', 'q']))
    assert (s.username, s.password, s.dbname) == ('iris', 'pw', 'x')
    assert s.hostlist() == [('a', 1), ('b', 2, {'weight': 5, 'backup': False}),
                            ('c', 9000, {'weight': 1, 'backup': True})]
    assert 'pw' not in repr(s)


def test_settings_from_url_without_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('SIRIDB_PASSWORD', 'from-env')
    s = connection_settings(_args(['query', '--url', 'siridb://bob@h1:9001,h2/metrics', 'q']))
    assert (s.username, s.password, s.dbname) == ('bob', 'from-env', 'metrics')
    assert [str(h) for h in s.hosts] == ['h1:9001', 'h2:9000']
    # a password in the URL wins over the environment; --db overrides the URL
    s = connection_settings(_args(['query', '--url', 'siridb://bob:p%40ss@h1/metrics',
                                   '--db', 'other', 'q']))
    assert (s.password, s.dbname) == ('p@ss', 'other')


def test_url_options_reach_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('SIRIDB_PASSWORD', 'pw')
    s = connection_settings(_args(['query', '--url', 'siridb://bob@h1/db?timeout=4'
                                   '&keepalive=no&max_wait_retry=2&inactive_time=7', 'q']))
    assert s.timeout == 4
    assert s.options == {'keepalive': False, 'max_wait_retry': 2, 'inactive_time': 7}
    # --timeout wins over the URL; without either it is 30
    s = connection_settings(_args(['query', '--url', 'siridb://bob@h1/db?timeout=4',
                                   '--timeout', '9', 'q']))
    assert s.timeout == 9
    assert connection_settings(_args(['query', '--db', 'x', 'q'])).timeout == 30
    assert main(['query', '--db', 'x', '--timeout', '0', 'q']) == 2


def test_admin_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from siridb.cli.admin import _service_account

    args = _args(['admin', 'version', '--url', 'siridb://ops:s%40cret@h1:9001?timeout=3'])
    host, user, password = _service_account(args)
    assert (str(host), user, password, args.timeout) == ('h1:9001', 'ops', 's@cret', 3)
    args = _args(['admin', 'version', '--url', 'siridb://ops@h1:9001', '--host', 'h2',
                  '--service-user', 'sa', '--timeout', '5'])
    host, user, password = _service_account(args)
    assert (str(host), user, password, args.timeout) == ('h2:9000', 'sa', None, 5)
    args = _args(['admin', 'version'])
    assert _service_account(args) == (HostSpec('127.0.0.1', 9000), 'sa', None)
    assert args.timeout == 30
    monkeypatch.setenv('SIRIDB_SERVICE_PASSWORD', 'x')
    for url in ('siridb://sa@h1,h2', 'siridb://sa@h1/db', 'siridb://sa@h1?keepalive=no',
                'siridb://sa@h1:abc'):
        assert main(['admin', 'version', '--url', url]) == 2, url


def test_missing_password_without_terminal_is_usage_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('SIRIDB_PASSWORD', raising=False)
    monkeypatch.setattr('sys.stdin', io.StringIO(''))
    assert main(['query', '--db', 'x', 'list series']) == 2


def test_usage_errors_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('SIRIDB_PASSWORD', 'x')
    assert main(['query']) == 2                                # missing argument
    assert main(['nosuchcommand']) == 2
    assert main(['query', 'list series']) == 2                 # no --db
    assert main(['query', '--db', 'x', '--host', 'h:x', 'q']) == 2
    assert main(['--help']) == 0


@pytest.mark.parametrize('exc, code', [
    (QueryError('bad'), 1), (InsertError('bad'), 1), (ServiceError('invalid x'), 1),
    (ServiceError("incorrect password for service account 'sa'"), 3),
    (InvalidCredentialsError('x'), 3), (UnknownDatabaseError('x'), 3),
    (ConnectionLostError('x'), 3), (ConnectionRefusedError(), 3),
    (RequestTimeoutError('x'), 3), (ValueError('x'), 1),
])
def test_exit_code_for(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


def test_timestamps_exact() -> None:
    assert iso_timestamp(1447250938, 's') == '2015-11-11T14:08:58Z'
    assert iso_timestamp(1447250938123456789, 'ns') == '2015-11-11T14:08:58.123456789Z'
    assert iso_timestamp(5, 'ms') == '1970-01-01T00:00:00.005Z'
    for precision in ('s', 'ms', 'us', 'ns'):
        for ts in (0, 1, 1447250938, 2 ** 32 - 1):
            assert parse_timestamp(iso_timestamp(ts, precision), precision) == ts
    assert parse_timestamp('2015-11-11T15:08:58+01:00', 's') == 1447250938
    with pytest.raises(ValueError, match='finer'):
        parse_timestamp('2015-11-11T14:08:58.5', 's')
    with pytest.raises(ValueError, match='out of range'):
        parse_timestamp(2 ** 32, 's')


def test_read_csv_rows() -> None:
    text = ('series,timestamp,value\n'
            'cpu,1,5\n'
            'cpu,2,1.5\n'
            'log,3,hello world\n'
            'bad,x,1\n'
            'short,1\n'
            '"multi\nline",4,7\n'
            ',5,1\n')
    rows = list(read_rows(io.StringIO(text, newline=''), 'csv', 'ms'))
    assert rows == [
        Point(2, 'cpu', 1, 5), Point(3, 'cpu', 2, 1.5), Point(4, 'log', 3, 'hello world'),
        Rejected(5, "invalid timestamp 'x' (expecting an integer or ISO 8601)"),
        Rejected(6, 'expecting 3 columns (series,timestamp,value), got 2'),
        Point(7, 'multi\nline', 4, 7),
        Rejected(9, 'series name must be a non-empty string'),
    ]


def test_read_jsonl_rows() -> None:
    text = '\n'.join([
        json.dumps({'series': 'a', 'timestamp': 1, 'value': '7'}),
        json.dumps(['b', '1970-01-01T00:00:02Z', 2.5]),
        '{broken',
        json.dumps({'series': 'c', 'timestamp': 1, 'value': None}),
        json.dumps({'series': 'c'}),
    ]) + '\n'
    rows = list(read_rows(io.StringIO(text), 'jsonl', 's'))
    assert rows[:2] == [Point(1, 'a', 1, '7'), Point(2, 'b', 2, 2.5)]
    assert [r.line for r in rows[2:]] == [3, 4, 5]
    assert all(isinstance(r, Rejected) for r in rows[2:])


def test_render_select_table_and_csv() -> None:
    result = {'cpu': [[1, 5], [2, 10]], 'log': [[3, 'x']]}
    assert render(result, 'table').splitlines() == [
        'series | timestamp | value',
        '-------+-----------+------',
        'cpu    |         1 | 5',
        'cpu    |         2 | 10',
        'log    |         3 | x',
        '(3 rows)',
    ]
    assert render(result, 'csv') == 'series,timestamp,value\ncpu,1,5\ncpu,2,10\nlog,3,x\n'
    assert json.loads(render(result, 'json', 's')) == {
        'cpu': [['1970-01-01T00:00:01Z', 5], ['1970-01-01T00:00:02Z', 10]],
        'log': [['1970-01-01T00:00:03Z', 'x']]}


def test_tabulate_other_shapes() -> None:
    t = tabulate({'columns': ['name', 'length'], 'series': [['a', 3]]})
    assert t is not None and (t.columns, t.rows) == (['name', 'length'], [['a', 3]])
    t = tabulate({'data': [{'name': 'version', 'value': '2.0.55'}]})
    assert t is not None and t.rows == [['version', '2.0.55']]
    t = tabulate({'success_msg': 'Successfully dropped 1 series.'})
    assert t is not None and t.message == 'Successfully dropped 1 series.'
    t = tabulate({'series': 5})
    assert t is not None and (t.columns, t.rows) == (['series'], [[5]])
    t = tabulate({'calc': 1000}, 'ms')
    assert t is not None and t.rows == [['1970-01-01T00:00:01.000Z']]
    assert tabulate({'weird': {'nested': 1}}) is None
    assert render({'weird': {'nested': 1}}, 'table') == '{"weird": {"nested": 1}}\n'


@pytest.mark.parametrize('text, complete', [
    ('list series', True),
    ('select * from "a', False),
    ('select * from "a""b"', True),
    ("select * from 'it''s'", True),
    ('select mean(1h) from (`g` | "x"', False),
    ('select * \\', False),
    ('select * from `grp', False),
    # quotes and parentheses inside a regex do not count
    ('list series /.*\\(.*/', True),
    ('select * from /it\'s/', True),
    ('select * from /a\\/"b/ | "c', False),
    ('select * from /a(/ | ("x"', False),
    ('select * after now / (2', False),
])
def test_statement_complete(text: str, complete: bool) -> None:
    assert statement_complete(text) is complete


def test_ctrl_c_before_the_query_handler_only_cancels_the_statement() -> None:
    """A Ctrl-C that lands just before the shell installs its SIGINT handler
    (or just after the line was read) cancels that statement, not the shell."""
    import asyncio
    import signal

    from siridb.cli.options import ConnectionSettings
    from siridb.cli.shell import Shell

    class RacyLoop(asyncio.SelectorEventLoop):
        def add_signal_handler(self, sig: int, callback: Any, *args: Any) -> None:
            raise KeyboardInterrupt  # the signal arrived first

    class NoQueryClient:
        async def query(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError('the query must not run')

    loop = RacyLoop()
    try:
        settings = ConnectionSettings('iris', 'db', [HostSpec('h')], 5.0)
        args = _args(['shell', '--db', 'db'])
        out, err = io.StringIO(), io.StringIO()
        shell = Shell(loop, NoQueryClient(), settings, args, out, err)  # type: ignore[arg-type]
        assert shell.execute('list series') is False
        assert err.getvalue() == 'Query cancelled.\n' and out.getvalue() == ''
        assert not asyncio.all_tasks(loop)  # the task was cancelled and awaited

        def interrupted(statement: str, line: Any = None) -> bool:
            raise KeyboardInterrupt
        shell.execute = interrupted  # type: ignore[method-assign]
        assert shell._execute_interruptible('list series') is False
        assert err.getvalue().count('Query cancelled.') == 2
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        loop.close()


class _Session:
    """Stands in for a WriteSession: refuses any chunk holding the value 'bad'."""

    def __init__(self) -> None:
        self.taken: list = []
        self.written = 0

    async def write_many(self, points: list) -> int:
        if any(v == 'bad' for _, _, v in points):
            raise ValueError('bad value')
        self.taken.extend(points)
        return len(points)


async def test_importer_names_rows_by_line() -> None:
    from siridb.cli.importer import Importer
    from siridb.connector.lib.exceptions import InsertError
    from siridb.connector.lib.session import Point as SPoint
    from siridb.connector.lib.session import Rejected as SRejected

    err = io.StringIO()
    session = _Session()
    imp = Importer(session, chunk=3, window=10, err=err)  # type: ignore[arg-type]
    for line, value in enumerate([1, 2, 'bad', 4, 5], start=2):
        await imp.add(Point(line, 's', line, value))
    await imp.flush_rows()
    assert session.taken == [('s', 2, 1), ('s', 3, 2), ('s', 5, 4), ('s', 6, 5)]
    assert err.getvalue() == 'line 4: rejected: bad value\n'
    # points the server refuses later are traced back to their lines
    imp.on_error(SRejected([SPoint('s', 5, 4), SPoint('x', 99, 0)], InsertError('no')))
    assert err.getvalue().splitlines()[1:] == [
        'line 5: rejected: rejected by the server: no',
        'line ?: rejected: rejected by the server: no']
    assert imp.rejected == 3


def test_table_rows_stay_on_one_line() -> None:
    out = render({'multi\nline': [[1, 'tab\there']]}, 'table')
    assert out.splitlines()[2] == 'multi\\nline |         1 | tab\\there'
