"""The ``siridb`` command as people used to psql and redis-cli expect it, run
through its ``main`` in this process (test_cli.py runs each command family as a
subprocess too) and ``siridb serve`` in subprocesses: a trailing ``;``,
import refusing empty values, pools and replicas in admin with the documented
exit codes, ``siridb serve`` with every option of ``python -m siridb.embedded``,
and tables padded by display width."""
from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest
from _cli_helpers import ROOT, ServeProcess, cli_env, run_main

from siridb.cli.output import Table, display_width, render_table
from siridb.embedded.__main__ import main as embedded_main


def db(server: ServeProcess) -> List[str]:
    return ['--db', 'dbtest', '--host', server.addr]


# ------------------------------------------------------------------ query

def test_query_accepts_a_trailing_semicolon(server: ServeProcess) -> None:
    for text in ('count series;', 'count series ;;', '  count series; '):
        proc = run_main('query', *db(server), '-f', 'json', text)
        assert proc.returncode == 0, proc.stderr
        assert 'series' in json.loads(proc.stdout)


# ------------------------------------------------------------------ import

def test_import_rejects_empty_values(server: ServeProcess, tmp_path: Path) -> None:
    csv_path = tmp_path / 'empty.csv'
    csv_path.write_text('e.f,1,1.5\n'
                        'e.f,2,\n'        # empty value into a float series
                        'e.new,3,\n'      # ... and into a new series
                        'e.f,4,  \n'      # blanks only
                        'e.f,,5\n'        # empty timestamp
                        'e.f,6,6.5\n')
    proc = run_main('import', str(csv_path), *db(server), '--progress', 'always')
    assert proc.returncode == 1
    err = proc.stderr.split('\n')
    rejected = [ln for ln in err if 'rejected:' in ln]
    assert [ln.split(':')[0] for ln in rejected] == ['line 2', 'line 3', 'line 4', 'line 5']
    assert all('empty value' in ln for ln in rejected[:3]), rejected
    assert 'empty timestamp' in rejected[3]
    # each message starts a line of its own: the progress line was ended first
    assert all(ln.startswith('line ') for ln in rejected), err
    assert any('points/s' in ln for ln in err)  # progress was drawn
    assert 'imported 2 points, rejected 4 rows' in proc.stderr
    out = run_main('query', *db(server), '-f', 'json', 'select * from /e\\..*/')
    assert json.loads(out.stdout) == {'e.f': [[1, 1.5], [6, 6.5]]}

    jsonl = tmp_path / 'empty.jsonl'
    jsonl.write_text('{"series": "j.e", "timestamp": 1, "value": ""}\n'
                     '["j.e", 2, "x"]\n'
                     '{"series": "j.e", "timestamp": 3}\n')
    proc = run_main('import', str(jsonl), *db(server))
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith('line ')]
    assert lines[0].startswith('line 1: rejected: empty value'), lines
    assert lines[1].startswith('line 3: rejected: missing key(s): value'), lines


# ------------------------------------------------------------------ admin

def admin(server: ServeProcess, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_main('admin', *args, '--host', server.addr, env=cli_env(**env))


def test_admin_exit_codes_follow_the_table(server: ServeProcess) -> None:
    # an unknown target account is a refused request (1), not an authentication failure
    # (with a second account: the last one cannot be dropped, and the real server
    # says so before it looks at the name)
    proc = admin(server, 'drop-account', 'nosuch')
    assert proc.returncode == 1 and 'cannot drop the last service account' in proc.stderr
    assert admin(server, 'new-account', 'ops', SIRIDB_NEW_PASSWORD='whatever1').returncode == 0
    proc = admin(server, 'drop-account', 'nosuch')
    assert proc.returncode == 1 and "cannot find service account 'nosuch'" in proc.stderr
    proc = admin(server, 'change-password', 'nosuch', SIRIDB_NEW_PASSWORD='whatever1')
    assert proc.returncode == 1
    # the service account itself unknown or refused: 3
    proc = run_main('admin', 'accounts', '--host', server.addr, '--service-user', 'nosuch')
    assert proc.returncode == 3 and "cannot find service account 'nosuch'" in proc.stderr
    proc = admin(server, 'accounts', SIRIDB_SERVICE_PASSWORD='wrong')
    assert proc.returncode == 3


def test_admin_new_pool_and_new_replica(server: ServeProcess) -> None:
    # the embedded server cannot join a cluster: the request reaches it and is refused (1)
    proc = admin(server, 'new-pool', 'dbtest', '--remote', 'other.example:9000')
    assert proc.returncode == 1, proc.stderr
    assert 'does not support adding pools' in proc.stderr
    proc = admin(server, 'new-replica', 'dbtest', '--remote', '127.0.0.1:9010',
                 '--pool', '0', '--db-user', 'iris')
    assert proc.returncode == 1 and 'does not support adding pools' in proc.stderr
    # usage errors: 2
    assert admin(server, 'new-replica', 'dbtest', '--remote', 'h').returncode == 2  # no --pool
    assert admin(server, 'new-pool', 'dbtest').returncode == 2  # no --remote
    proc = admin(server, 'new-pool', 'dbtest', '--remote', 'h', SIRIDB_PASSWORD=None)
    assert proc.returncode == 2 and 'SIRIDB_PASSWORD' in proc.stderr
    assert 'new-pool' in run_main('admin', '--help').stdout


# ------------------------------------------------------------------ serve

def _serve(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, '-m', 'siridb', 'serve', *args], cwd=ROOT,
                            env=cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _listening(proc: subprocess.Popen[str]) -> str:
    """The announce line (stderr), read with a deadline."""
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if 'siridb serve: listening on' in line:
            return line
    proc.kill()
    raise AssertionError(''.join(seen))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return err


def test_serve_unix_fsync_log_level(tmp_path: Path) -> None:
    from siridb.connector import async_connect

    sock = str(tmp_path / 's.sock')
    proc = _serve(tmp_path, '--unix', sock, '--data-dir', str(tmp_path / 'data'),
                  '--fsync', 'never', '--log-level', 'warning', '--db', 'u1:s')
    try:
        line = _listening(proc)
        assert f'listening on {sock}, databases: u1 (s)' in line

        async def roundtrip() -> object:
            conn = await async_connect('iris', 'siri', 'u1', unix_path=sock)
            async with conn:
                await conn.insert({'x': [[1, 2]]})
                return await conn.query('select * from "x"')

        assert asyncio.run(roundtrip()) == {'x': [[1, 2]]}
    finally:
        err = _stop(proc)
    assert 'stopped' in err
    assert ' INFO ' not in err  # --log-level warning: no info lines


def test_serve_option_errors_exit_2(tmp_path: Path) -> None:
    proc = run_main('serve', '--port', '0', '--tls-cert', str(tmp_path / 'c.pem'))
    assert proc.returncode == 2 and '--tls-cert and --tls-key go together' in proc.stderr
    proc = run_main('serve', '--port', '70000')
    assert proc.returncode == 2 and '--port' in proc.stderr
    proc = run_main('serve', '--db', 'not a name')
    assert proc.returncode == 2 and 'invalid database name' in proc.stderr
    proc = run_main('serve', '--fsync', 'sometimes')
    assert proc.returncode == 2
    helps = run_main('serve', '--help').stdout
    embedded = io.StringIO()
    with contextlib.redirect_stdout(embedded), pytest.raises(SystemExit) as exited:
        embedded_main(['--help'])  # python -m siridb.embedded --help
    assert exited.value.code == 0
    for flag in ('--fsync', '--tls-cert', '--tls-key', '--unix', '--log-level',
                 '--data-dir', '--db'):
        assert flag in helps and flag in embedded.getvalue(), flag


@pytest.mark.skipif(shutil.which('openssl') is None, reason='needs the openssl CLI')
def test_serve_tls(tmp_path: Path) -> None:
    from siridb.connector import async_connect

    cert, key = tmp_path / 'c.pem', tmp_path / 'k.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
                    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
                    '-keyout', str(key), '-out', str(cert)], check=True, capture_output=True)
    proc = _serve(tmp_path, '--port', '0', '--tls-cert', str(cert), '--tls-key', str(key))
    try:
        port = int(_listening(proc).split('listening on ')[1].split(',')[0].rsplit(':')[1])

        async def over_tls() -> object:
            ctx = ssl.create_default_context(cafile=str(cert))
            conn = await async_connect('iris', 'siri', 'dbtest', '127.0.0.1', port, ssl=ctx)
            async with conn:
                return await conn.query('count series')

        assert asyncio.run(over_tls()) == {'series': 0}
    finally:
        _stop(proc)


# ------------------------------------------------------------------ tables

def test_table_pads_by_display_width() -> None:
    assert display_width('温度') == 4 and display_width('ab') == 2
    assert display_width('e\u0301') == 1  # a combining accent takes no column
    text = render_table(Table(['series', 'value'], [['温度', 1], ['ab', 22], ['e\u0301x', 3]]))
    lines = text.splitlines()
    # every row puts its separator in the same terminal column
    cols = {display_width(ln.split('|')[0]) for ln in lines if '|' in ln}
    assert cols == {7}, text
    assert lines[2] == '温度   |     1'


def test_table_output_of_wide_series_names(server: ServeProcess, tmp_path: Path) -> None:
    rows = tmp_path / 'w.csv'
    rows.write_text('温度.室内,1,20\nab,1,3\n', encoding='utf-8')
    assert run_main('import', str(rows), *db(server)).returncode == 0
    proc = run_main('query', *db(server), '-f', 'table', 'select * from "温度.室内", "ab"')
    assert proc.returncode == 0, proc.stderr
    body = [ln for ln in proc.stdout.splitlines() if '|' in ln]
    assert len({display_width(ln.split('|')[0]) for ln in body}) == 1, proc.stdout
