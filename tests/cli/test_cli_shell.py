"""``siridb shell`` driven through a pseudo-terminal, like a person at a
terminal: prompts, multi-line statements, \\timing, errors, history, the
password prompt, and Ctrl-C cancelling only the running query."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from _cli_helpers import PtyProcess, ServeProcess, cli_env, run_main, spawn_shell

from siridb.embedded import ServerThread

#: the rows the module's server starts with (the ``server`` fixture, conftest.py)
SEED_CSV = 'sh.x,1000,5\nsh.x,2000,6\n'


def query_reached_server(port: int) -> bool:
    """True when a connection to ``port`` on 127.0.0.1 has bytes the (stopped)
    server has not read yet: the kernel's receive queue (/proc/net/tcp)."""
    for line in Path('/proc/net/tcp').read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if local == f'0100007F:{port:04X}' and state == '01' \
                and int(queues.split(':')[1], 16) > 0:
            return True
    return False


def test_shell_session(server: ServeProcess, tmp_path: Path) -> None:
    sh = spawn_shell(server.addr, tmp_path, wait=False)
    try:
        sh.expect(r'Connected to dbtest')
        sh.expect(r'dbtest> ')
        sh.send('show time_precision\r')
        out = sh.expect(r'dbtest> ')
        assert 'time_precision | ms' in out and '(1 row)' in out

        sh.send('\\timing\r')
        sh.expect(r'Timing is on\.\s+dbtest> ')
        sh.send('select * from "sh.x"\r')
        out = sh.expect(r'Time: \d+\.\d{3} ms')
        assert 'sh.x   |      1000 |     5' in out
        sh.expect(r'dbtest> ')
        sh.send('\\timing off\r')
        sh.expect(r'Timing is off\.\s+dbtest> ')

        # multi-line: a trailing backslash, then an open parenthesis
        sh.send('select max() \\\r')
        sh.expect(r'\.\.\.> ')
        sh.send('from (\r')
        sh.expect(r'\.\.\.> ')
        sh.send('"sh.x")\r')
        out = sh.expect(r'dbtest> ')
        assert 'sh.x   |      2000 |     6' in out

        sh.send('\\format json\r')
        sh.expect(r'Output format is json\.\s+dbtest> ')
        sh.send('select * from "sh.x";\r')
        out = sh.expect(r'dbtest> ')
        assert '{"sh.x": [[1000, 5], [2000, 6]]}' in out

        # errors are clear and the shell goes on
        sh.send('select * from\r')
        out = sh.expect(r'dbtest> ')
        assert 'ERROR: QueryError: Query error at position 13.' in out
        sh.send('\\nosuch\r')
        out = sh.expect(r'dbtest> ')
        assert 'Unknown or incomplete command' in out

        sh.send('\\quit\r')
        assert sh.wait() == 0
    finally:
        sh.close()
    history = (tmp_path / 'history').read_text()
    assert 'show time_precision' in history and 'select * from "sh.x"' in history


def test_shell_password_prompt_and_ctrl_d(server: ServeProcess, tmp_path: Path) -> None:
    env = cli_env(HOME=str(tmp_path))
    del env['SIRIDB_PASSWORD']
    sh = PtyProcess(['shell', '--db', 'dbtest', '--host', server.addr], env)
    try:
        sh.expect(r'Password for iris: ')
        sh.send('siri\r')
        sh.expect(r'dbtest> ')
        assert 'siri' not in sh.buffer  # not echoed
        sh.send('\x04')  # Ctrl-D
        assert sh.wait() == 0
    finally:
        sh.close()


def test_shell_wrong_password_exit_3(server: ServeProcess, tmp_path: Path) -> None:
    sh = spawn_shell(server.addr, tmp_path, wait=False, SIRIDB_PASSWORD='wrong')
    try:
        assert sh.wait() == 3
        assert 'InvalidCredentialsError' in sh.buffer
    finally:
        sh.close()


def test_ctrl_c_cancels_only_the_running_query(server: ServeProcess, tmp_path: Path) -> None:
    sh = spawn_shell(server.addr, tmp_path)
    stopped = False
    try:
        os.kill(server.proc.pid, signal.SIGSTOP)  # the server stops answering
        stopped = True
        sh.send('list series\r')
        sh.expect(r'list series\r\n')  # readline took the line
        # the request is in the stopped server's receive queue: the query runs
        # (the shell installs its Ctrl-C handler before it sends)
        deadline = time.monotonic() + 15
        while not query_reached_server(server.port):
            assert time.monotonic() < deadline, 'the query never reached the server'
            time.sleep(0.01)
        sh.send('\x03')  # Ctrl-C
        sh.expect(r'Query cancelled\.')
        sh.expect(r'dbtest> ')
        os.kill(server.proc.pid, signal.SIGCONT)
        stopped = False
        sh.send('show time_precision\r')
        out = sh.expect(r'dbtest> ')
        assert 'time_precision | ms' in out

        # Ctrl-C at the prompt drops the half-typed statement, the shell stays
        sh.send('select * \\\r')
        sh.expect(r'\.\.\.> ')
        sh.send('x')
        sh.expect(r'x')  # readline echoed it: it is reading keys
        # CPython's input() notices a SIGINT while it waits for a key; one that
        # lands while readline is busy (echoing, drawing the prompt) stays
        # pending until the next Ctrl-C: type it again until the prompt is back
        for _ in range(20):
            sh.send('\x03')
            try:
                sh.expect(r'dbtest> ', timeout=0.5)
                break
            except AssertionError:
                pass
        else:
            raise AssertionError(f'Ctrl-C did not clear the statement:\n{sh.buffer}')
        sh.send('show time_precision\r')
        sh.expect(r'show time_precision\r\n')  # past a prompt a 2nd Ctrl-C may have drawn
        out = sh.expect(r'dbtest> ')
        assert 'time_precision | ms' in out and 'ERROR' not in out
        sh.send('\\q\r')
        assert sh.wait() == 0
    finally:
        if stopped:
            os.kill(server.proc.pid, signal.SIGCONT)
        sh.close()


def test_unresponsive_server_times_out_exit_3(server: ServeProcess) -> None:
    os.kill(server.proc.pid, signal.SIGSTOP)  # accepts connections (backlog), never answers
    try:
        start = time.monotonic()
        proc = run_main('query', '--db', 'dbtest', '--host', server.addr, '--timeout', '0.5',
                        'list series')
        assert time.monotonic() - start < 15
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith('siridb: ')


def test_query_prints_a_table_on_a_terminal(server: ServeProcess, tmp_path: Path) -> None:
    term = PtyProcess(['query', '--db', 'dbtest', '--host', server.addr,
                       'select * from "sh.x"'], cli_env(HOME=str(tmp_path)))
    try:
        assert term.wait() == 0
    finally:
        term.close()
    assert 'series | timestamp | value' in term.buffer
    assert 'sh.x   |      1000 |     5' in term.buffer and '(2 rows)' in term.buffer


def test_shell_survives_a_server_restart(tmp_path: Path) -> None:
    # the embedded server in a thread of this process: it stops and starts
    # without an interpreter start (``siridb serve`` restarts in test_cli.py)
    data = str(tmp_path / 'data')
    srv = ServerThread(databases=['dbtest'], data_dir=data)
    addr = f'{srv.host}:{srv.port}'
    try:
        sh = spawn_shell(addr, tmp_path)
    except BaseException:
        srv.close()
        raise
    try:
        srv.close()
        srv = ServerThread(databases=['dbtest'], data_dir=data, port=srv.port)
        sh.send('show time_precision\r')
        out = sh.expect(r'dbtest> ', timeout=30)
        assert 'time_precision | ms' in out
        sh.send('\\q\r')
        assert sh.wait() == 0
    finally:
        sh.close()
        srv.close()


def test_import_shows_progress_on_a_terminal(server: ServeProcess, tmp_path: Path) -> None:
    path = tmp_path / 'p.csv'
    path.write_text(''.join(f'tty.p,{i},{i}\n' for i in range(1, 2001)))
    term = PtyProcess(['import', str(path), '--db', 'dbtest', '--host', server.addr],
                      cli_env(HOME=str(tmp_path)))
    try:
        assert term.wait() == 0
    finally:
        term.close()
    assert 'imported 2000 points (' in term.buffer and 'points/s), 0 rejected' in term.buffer
    assert 'imported 2000 points\r\n' in term.buffer  # the summary line
