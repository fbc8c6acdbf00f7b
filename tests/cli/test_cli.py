"""The ``siridb`` command against ``siridb serve`` in a subprocess: each command
family runs at least once for real (``python -m siridb`` in a subprocess, and
the console script's entry point); the other checks of output and exit code
call the same ``main`` in this process (``run_main``)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli_helpers import ROOT, ServeProcess, cli_env, free_port, run_cli, run_main

#: the databases of the module's server (the ``server`` fixture, conftest.py)
SERVE_DBS = ['dbtest', 'secs:s']


def db(server: ServeProcess, name: str = 'dbtest') -> list:
    return ['--db', name, '--host', server.addr]


def write_csv(path: Path, text: str) -> str:
    path.write_text(text, encoding='utf-8')
    return str(path)


def query_json(server: ServeProcess, q: str, name: str = 'dbtest') -> dict:
    proc = run_main('query', *db(server, name), '-f', 'json', q)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


# ------------------------------------------------------------------ help

def test_help_lists_commands_and_exit_codes() -> None:
    proc = run_cli('--help')  # python -m siridb, in a subprocess
    assert proc.returncode == 0
    for word in ('query', 'shell', 'import', 'export', 'admin', 'serve', 'exit codes',
                 'SIRIDB_PASSWORD'):
        assert word in proc.stdout
    proc = run_main('import', '--help')
    assert proc.returncode == 0 and 'line numbers' in proc.stdout


def test_usage_errors_exit_2() -> None:
    assert run_main('query', '--db', 'x').returncode == 2           # no query text
    proc = run_main('query', '--db', 'x', '--host', 'h:notaport', 'list series')
    assert proc.returncode == 2 and 'invalid host' in proc.stderr
    proc = run_main('query', '--db', 'x', '--url', 'http://x/y', 'list series')
    assert proc.returncode == 2 and 'invalid --url' in proc.stderr


def test_no_password_and_no_terminal_is_usage_error(server: ServeProcess) -> None:
    proc = run_main('query', *db(server), 'list series', env=cli_env(SIRIDB_PASSWORD=None))
    assert proc.returncode == 2
    assert 'SIRIDB_PASSWORD' in proc.stderr


# ------------------------------------------------------------------ query

def test_import_then_query_all_formats(server: ServeProcess, tmp_path: Path) -> None:
    path = write_csv(tmp_path / 'q.csv', 'series,timestamp,value\n'
                     'q.cpu,1447250938000,5\nq.cpu,1447250968000,7\n'
                     'q.log,1447250938000,hello world\n')
    proc = run_cli('import', path, *db(server))  # in a subprocess
    assert proc.returncode == 0, proc.stderr
    assert 'imported 3 points' in proc.stderr

    # not a terminal (a pipe, in a subprocess): JSON by default
    proc = run_cli('query', *db(server), 'select * from /q\\..*/')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {'q.cpu': [[1447250938000, 5], [1447250968000, 7]],
                                       'q.log': [[1447250938000, 'hello world']]}

    proc = run_main('query', *db(server), '-f', 'table', 'select * from "q.cpu"')
    assert proc.stdout.splitlines() == [
        'series | timestamp     | value',
        '-------+---------------+------',
        'q.cpu  | 1447250938000 |     5',
        'q.cpu  | 1447250968000 |     7',
        '(2 rows)']

    proc = run_main('query', *db(server), '-f', 'csv', '--precision', 's',
                   'select * from "q.cpu"')
    assert proc.stdout == 'series,timestamp,value\nq.cpu,1447250938,5\nq.cpu,1447250968,7\n'

    proc = run_main('query', *db(server), '-f', 'csv', '--iso', 'select * from "q.log"')
    assert proc.stdout == 'series,timestamp,value\nq.log,2015-11-11T14:08:58.000Z,hello world\n'

    proc = run_main('query', *db(server), '-f', 'table',
                   'list series name, length where name ~ "q."')
    assert 'q.cpu' in proc.stdout and 'q.log' in proc.stdout and '(2 rows)' in proc.stdout


def test_query_error_exit_1(server: ServeProcess) -> None:
    proc = run_main('query', *db(server), 'select * from')
    assert proc.returncode == 1
    assert proc.stderr.startswith('siridb: QueryError: Query error at position 13.')
    assert proc.stdout == ''


def test_unknown_database_exit_3(server: ServeProcess) -> None:
    proc = run_main('query', *db(server, 'nosuchdb'), 'list series')
    assert proc.returncode == 3
    assert 'UnknownDatabaseError' in proc.stderr


def test_wrong_password_exit_3(server: ServeProcess) -> None:
    proc = run_main('query', *db(server), 'list series',
                   env=cli_env(SIRIDB_PASSWORD='wrong'))
    assert proc.returncode == 3
    assert 'InvalidCredentialsError' in proc.stderr
    assert 'wrong' not in proc.stderr  # the password is never echoed


def test_unreachable_host_exit_3() -> None:
    port = free_port()
    proc = run_main('query', '--db', 'dbtest', '--host', f'127.0.0.1:{port}', '--timeout', '5',
                   'list series')
    assert proc.returncode == 3
    assert f'cannot connect to 127.0.0.1:{port}' in proc.stderr


def test_shell_reads_piped_statements(server: ServeProcess) -> None:
    proc = run_cli('shell', *db(server), '-f', 'json',  # in a subprocess
                   input='show time_precision\n\\precision s\nselect * from "q.cpu"\n')
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert json.loads(lines[0]) == {'data': [{'name': 'time_precision', 'value': 'ms'}]}
    assert 'dbtest>' not in proc.stdout  # no prompts without a terminal
    proc = run_main('shell', *db(server), input='select * from\nshow time_precision\n')
    assert proc.returncode == 1  # a failed statement in a script
    assert 'ERROR: QueryError' in proc.stderr and 'time_precision' in proc.stdout


def test_timeit_in_table_output(server: ServeProcess) -> None:
    proc = run_main('query', *db(server), '-f', 'table', 'timeit show time_precision')
    assert proc.returncode == 0, proc.stderr
    assert f'timeit: {server.addr} ' in proc.stdout


def test_url_with_password_from_env(server: ServeProcess) -> None:
    proc = run_main('query', '--url', f'siridb://iris@{server.addr}/secs', '-f', 'json',
                   'show time_precision')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {'data': [{'name': 'time_precision', 'value': 's'}]}


def test_failover_to_backup_host(server: ServeProcess) -> None:
    dead = free_port()
    proc = run_main('query', '--db', 'dbtest', '--host', f'127.0.0.1:{dead}',
                   '--backup', server.addr, '-f', 'json', 'show time_precision')
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)['data'][0]['value'] == 'ms'


# ------------------------------------------------------------------ import

def test_import_reports_bad_rows_with_line_numbers(server: ServeProcess,
                                                   tmp_path: Path) -> None:
    path = write_csv(tmp_path / 'bad.csv', 'series,timestamp,value\n'
                     'b.ok,1,1\n'
                     'b.ok,notatime,2\n'
                     'b.ok,3\n'
                     ',4,4\n'
                     'b.ok,-5,5\n'
                     'b.ok,6,6\n')
    proc = run_main('import', path, *db(server))
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith('line ')]
    assert [ln.split(':')[0] for ln in lines] == ['line 3', 'line 4', 'line 5', 'line 6']
    assert 'imported 2 points, rejected 4 rows' in proc.stderr
    assert query_json(server, 'select * from "b.ok"') == {'b.ok': [[1, 1], [6, 6]]}


def test_import_csv_with_byte_order_mark(server: ServeProcess, tmp_path: Path) -> None:
    path = tmp_path / 'bom.csv'
    path.write_bytes('series,timestamp,value\nbom.é,1,1\n'.encode('utf-8-sig'))
    proc = run_main('import', str(path), *db(server))
    assert proc.returncode == 0, proc.stderr
    assert query_json(server, 'select * from "bom.é"') == {'bom.é': [[1, 1]]}
    path.write_bytes(b'bad,1,\xff\n')
    proc = run_main('import', str(path), *db(server))
    assert proc.returncode == 2 and 'not UTF-8' in proc.stderr


def test_import_jsonl_with_iso_timestamps(server: ServeProcess, tmp_path: Path) -> None:
    path = tmp_path / 'points.jsonl'
    path.write_text('\n'.join(json.dumps(x) for x in [
        {'series': 'j.str', 'timestamp': '2015-11-11T14:08:58Z', 'value': '42'},
        ['j.float', 1447250938, 1.25],
        {'series': 'j.float', 'timestamp': 1447250939, 'value': 2.5},
    ]) + '\n')
    proc = run_main('import', str(path), *db(server, 'secs'))
    assert proc.returncode == 0, proc.stderr
    assert query_json(server, 'select * from /j\\..*/', 'secs') == {
        'j.str': [[1447250938, '42']], 'j.float': [[1447250938, 1.25], [1447250939, 2.5]]}


def test_import_from_stdin_in_batches(server: ServeProcess) -> None:
    rows = ''.join(f's.in,{i},{i * 2}\n' for i in range(1, 2501))
    # in a subprocess: stdin and stderr are pipes
    proc = run_cli('import', '-', *db(server), '--batch', '500', input=rows)
    assert proc.returncode == 0, proc.stderr
    assert 'imported 2500 points' in proc.stderr
    assert 'points/s' not in proc.stderr  # stderr is not a terminal: no progress
    result = query_json(server, 'select count() from "s.in"')
    assert [v for _, v in result['s.in']] == [2500]


def test_import_progress_when_asked(server: ServeProcess, tmp_path: Path) -> None:
    path = write_csv(tmp_path / 'p.csv', 'p.x,1,1\np.x,2,2\n')
    proc = run_main('import', path, *db(server), '--progress', 'always')
    assert proc.returncode == 0, proc.stderr
    assert 'points/s' in proc.stderr and 'imported 2 points' in proc.stderr


def _import_peak_rss_kib(server: ServeProcess, path: Path) -> int:
    proc = subprocess.Popen(
        [sys.executable, '-m', 'siridb', 'import', str(path), *db(server), '--batch', '1000'],
        cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return int(usage.ru_maxrss)


@pytest.mark.slow
def test_import_memory_stays_bounded(server: ServeProcess, tmp_path: Path) -> None:
    # a file 10x larger must not need more memory: rows stream through a bounded buffer
    sizes = {}
    for n in (10_000, 100_000):
        path = tmp_path / f'{n}.csv'
        with open(path, 'w') as f:
            for i in range(n):
                f.write(f'mem{n}.{i % 7},{i + 1},{i}\n')
        sizes[n] = _import_peak_rss_kib(server, path)
    assert sizes[100_000] - sizes[10_000] < 8 * 1024, sizes
    result = query_json(server, 'select count() from /mem100000\\..*/')
    assert len(result) == 7
    assert sum(v for points in result.values() for _, v in points) == 100_000


def test_import_as_read_only_user_exit_3(server: ServeProcess, tmp_path: Path) -> None:
    for q in ('create user "reader" set password "readerpw"', 'grant read to user "reader"'):
        assert run_main('query', *db(server), q).returncode == 0
    reader = cli_env(SIRIDB_PASSWORD='readerpw')
    path = write_csv(tmp_path / 'ro.csv', 'ro.x,1,1\nro.x,2,2\n')
    proc = run_main('import', path, *db(server), '--user', 'reader', env=reader)
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        "siridb: UserAuthError: Access denied. User 'reader' has no 'insert' privileges."]
    proc = run_main('query', *db(server), '--user', 'reader', 'select * from "ro.x"',
                   env=reader)
    assert proc.returncode == 0 and json.loads(proc.stdout) == {}


def test_import_missing_file_exit_2(server: ServeProcess, tmp_path: Path) -> None:
    proc = run_main('import', str(tmp_path / 'nope.csv'), *db(server))
    assert proc.returncode == 2
    assert 'cannot read' in proc.stderr


def test_import_unknown_db_exit_3(tmp_path: Path, server: ServeProcess) -> None:
    path = write_csv(tmp_path / 'x.csv', 'x,1,1\n')
    proc = run_main('import', path, *db(server, 'nosuchdb'))
    assert proc.returncode == 3


# ------------------------------------------------------------------ export

def test_export_csv_round_trips_through_import(server: ServeProcess, tmp_path: Path) -> None:
    src = write_csv(tmp_path / 'e.csv', 'e.a,1,1\ne.a,2,-3\ne.b,1,0.5\ne.c,3,"x, ""y"""\n')
    assert run_main('import', src, *db(server)).returncode == 0
    out = tmp_path / 'out.csv'
    proc = run_cli('export', *db(server), '-o', str(out),  # in a subprocess
                   'select * from /e\\..*/')
    assert proc.returncode == 0, proc.stderr
    assert 'exported 4 points' in proc.stderr
    text = out.read_text()
    assert text.splitlines()[0] == 'series,timestamp,value'
    # load the export into the other database under the same names
    proc = run_main('import', str(out), *db(server, 'secs'))
    assert proc.returncode == 0, proc.stderr
    assert query_json(server, 'select * from /e\\..*/', 'secs') == \
        query_json(server, 'select * from /e\\..*/')


def test_export_jsonl_and_non_select(server: ServeProcess, tmp_path: Path) -> None:
    src = write_csv(tmp_path / 'x.csv', 'x.j,1000,7\n')
    assert run_main('import', src, *db(server)).returncode == 0
    proc = run_main('export', *db(server), '-f', 'jsonl', '--iso', 'select * from "x.j"')
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(ln) for ln in proc.stdout.splitlines()] == [
        {'series': 'x.j', 'timestamp': '1970-01-01T00:00:01.000Z', 'value': 7}]
    proc = run_main('export', *db(server), 'list series')
    assert proc.returncode == 1 and 'select' in proc.stderr


# ------------------------------------------------------------------ admin

def admin(server: ServeProcess, *args: str, **env: str) -> tuple[int, str, str]:
    proc = run_main('admin', *args, '--host', server.addr,
                   env=cli_env(**env) if env else None)
    return proc.returncode, proc.stdout, proc.stderr


def test_admin_version_databases_accounts(server: ServeProcess) -> None:
    proc = run_cli('admin', 'version', '--host', server.addr)  # in a subprocess
    assert proc.returncode == 0, proc.stderr
    assert isinstance(json.loads(proc.stdout), str)
    code, out, _ = admin(server, 'databases')
    assert code == 0 and {'dbtest', 'secs'} <= set(json.loads(out))
    code, out, _ = admin(server, 'accounts')
    assert code == 0 and 'sa' in json.loads(out)


def test_admin_new_and_drop_database(server: ServeProcess) -> None:
    code, out, err = admin(server, 'new-database', 'clidb', '--time-precision', 'us',
                           '--buffer-size', '2048', '--duration-num', '2w',
                           '--duration-log', '2d')
    assert code == 0, err
    assert "Database 'clidb' created." in out
    assert query_json(server, 'show time_precision', 'clidb')['data'][0]['value'] == 'us'
    code, _, err = admin(server, 'new-database', 'clidb')
    assert code == 1 and "database name already exists: 'clidb'" in err
    code, _, err = admin(server, 'new-database', 'bad', '--buffer-size', '1000')
    assert code == 1 and 'invalid buffer size' in err
    code, out, err = admin(server, 'drop-database', 'clidb')
    assert code == 0, err
    code, _, err = admin(server, 'drop-database', 'clidb')
    assert code == 1 and "cannot find database 'clidb'" in err


def test_admin_accounts_lifecycle(server: ServeProcess) -> None:
    code, _, err = admin(server, 'new-account', 'ops', SIRIDB_NEW_PASSWORD='opspw')
    assert code == 0, err
    proc = run_main('admin', 'databases', '--host', server.addr, '--service-user', 'ops',
                   env=cli_env(SIRIDB_SERVICE_PASSWORD='opspw'))
    assert proc.returncode == 0, proc.stderr
    code, _, err = admin(server, 'change-password', 'ops', SIRIDB_NEW_PASSWORD='newpw')
    assert code == 0, err
    proc = run_main('admin', 'accounts', '--host', server.addr, '--service-user', 'ops',
                   env=cli_env(SIRIDB_SERVICE_PASSWORD='newpw'))
    assert proc.returncode == 0 and 'ops' in json.loads(proc.stdout)
    code, _, err = admin(server, 'drop-account', 'ops')
    assert code == 0, err
    code, out, _ = admin(server, 'accounts')
    assert 'ops' not in json.loads(out)


def test_console_script_entry_point(server: ServeProcess) -> None:
    """The ``siridb`` script pip installs (setup.cfg's entry point) runs the same
    ``main`` and passes its exit code on; the installed script too when on PATH."""
    import configparser
    import shutil

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    spec = cfg['options.entry_points']['console_scripts'].strip()
    assert spec == 'siridb = siridb.cli:main'
    module, func = spec.split('=')[1].strip().split(':')
    # what pip's generated wrapper does: import the entry point, sys.exit(its result)
    wrapper = f'import sys; from {module} import {func}; sys.exit({func}())'
    scripts = [[sys.executable, '-c', wrapper]]
    installed = shutil.which('siridb')
    if installed:
        scripts.append([installed])
    for script in scripts:
        ok = subprocess.run([*script, 'query', *db(server), '-f', 'json', 'count series'],
                            cwd=ROOT, env=cli_env(), capture_output=True, text=True,
                            timeout=30)
        assert ok.returncode == 0 and 'series' in json.loads(ok.stdout), ok.stderr
        bad = subprocess.run([*script, 'query', *db(server), 'count series'], cwd=ROOT,
                             env=cli_env(SIRIDB_PASSWORD='wrong'), capture_output=True,
                             text=True, timeout=30)
        assert bad.returncode == 3, bad.stderr


def test_admin_with_url(server: ServeProcess) -> None:
    # the service password may be in the URL (percent-encoded) or in the environment
    proc = run_main('admin', 'accounts', '--url', f'siridb://sa:siri@{server.addr}?timeout=5',
                   env=cli_env(SIRIDB_SERVICE_PASSWORD=None))
    assert proc.returncode == 0, proc.stderr
    assert 'sa' in json.loads(proc.stdout)
    proc = run_main('admin', 'version', '--url', f'siridb://sa@{server.addr}')
    assert proc.returncode == 0 and json.loads(proc.stdout) == '2.0.55', proc.stderr
    proc = run_main('admin', 'version', '--url', f'siridb://sa:nope@{server.addr}')
    assert proc.returncode == 3 and 'nope' not in proc.stderr
    proc = run_main('admin', 'version', '--url', f'siridb://sa@{server.addr}/dbtest')
    assert proc.returncode == 2 and 'no database' in proc.stderr


def test_admin_wrong_service_password_exit_3(server: ServeProcess) -> None:
    code, _, err = admin(server, 'databases', SIRIDB_SERVICE_PASSWORD='nope')
    assert code == 3
    assert "incorrect password for service account 'sa'" in err


def test_admin_unreachable_exit_3() -> None:
    proc = run_main('admin', 'version', '--host', f'127.0.0.1:{free_port()}',
                   '--timeout', '5')
    assert proc.returncode == 3


# ------------------------------------------------------------------ serve

@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_serve_clean_shutdown(tmp_path: Path, sig: int) -> None:
    srv = ServeProcess(tmp_path / 'serve.log', '--db', 'one:s', '--data-dir',
                       str(tmp_path / 'data'))
    try:
        proc = run_main('query', '--db', 'one', '--host', srv.addr, '-f', 'json',
                       'show time_precision')
        assert proc.returncode == 0, proc.stderr
    finally:
        code = srv.stop(sig)
    assert code == 0
    log = srv.log()
    assert 'shutting down' in log and 'stopped' in log
    assert 'Traceback' not in log


def test_serve_keeps_data_in_data_dir(tmp_path: Path) -> None:
    data = str(tmp_path / 'data')
    src = write_csv(tmp_path / 'd.csv', 'd.x,1,10\nd.x,2,20\n')
    srv = ServeProcess(tmp_path / 'a.log', '--db', 'keep', '--data-dir', data)
    try:
        assert run_main('import', src, '--db', 'keep', '--host', srv.addr).returncode == 0
    finally:
        assert srv.stop() == 0
    srv = ServeProcess(tmp_path / 'b.log', '--db', 'keep', '--data-dir', data)
    try:
        proc = run_main('query', '--db', 'keep', '--host', srv.addr, 'select * from "d.x"')
        assert json.loads(proc.stdout) == {'d.x': [[1, 10], [2, 20]]}
    finally:
        srv.stop()


def test_serve_bad_database_spec_exit_2() -> None:
    proc = run_main('serve', '--port', '0', '--db', 'xy:hours')
    assert proc.returncode == 2 and 'precision' in proc.stderr


@pytest.mark.slow
def test_import_survives_a_server_restart(tmp_path: Path) -> None:
    data = str(tmp_path / 'data')
    path = tmp_path / 'big.csv'
    # small packages and many points: the import must still be running at its
    # first progress line (0.5 s), however fast the machine
    n = 300_000
    with open(path, 'w') as f:
        for i in range(n):
            f.write(f'r.{i % 3},{i + 1},{i}\n')
    srv = ServeProcess(tmp_path / 'a.log', '--db', 'dbtest', '--data-dir', data)
    port = srv.port
    proc = subprocess.Popen(
        [sys.executable, '-m', 'siridb', 'import', str(path), '--db', 'dbtest',
         '--host', srv.addr, '--batch', '100', '--progress', 'always'],
        cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        seen = ''
        while not re.search(r'imported [1-9]\d* points \(', seen):  # some are in
            ch = proc.stderr.read(1)
            assert ch, seen
            seen += ch
        assert f'imported {n} points (' not in seen, 'finished before the restart'
        assert srv.stop() == 0
        time.sleep(0.5)
        srv = ServeProcess(tmp_path / 'b.log', '--db', 'dbtest', '--data-dir', data,
                           '--port', str(port))
        _, err = proc.communicate(timeout=60)
        err = seen + err
        assert proc.returncode == 0, err
        assert f'imported {n} points' in err
        assert 'server unavailable' in err and 'retrying until it is back' in err
        # at-least-once: every point is there (a retried package may be there twice)
        result = query_json(srv, 'select count() from /r\\..*/')
        assert sum(v for points in result.values() for _, v in points) >= n
        distinct = query_json(srv, 'select * from /r\\..*/')
        assert sum(len({ts for ts, _ in pts}) for pts in distinct.values()) == n
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        srv.stop()
