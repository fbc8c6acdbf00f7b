"""``siridb shell`` as psql and redis-cli users expect it, through a real
pseudo-terminal: one history entry per statement, exit/quit, Ctrl-D on a
continuation prompt, Tab completion from what the parser expects, a pager
for long results, line numbers in script errors, and reconnecting at once
after the server comes back."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from _cli_helpers import ServeProcess, run_main, spawn_shell

from siridb.cli.complete import Completer, expected_next
from siridb.embedded import ServerThread

UP = '\x1b[A'


#: the rows the module's server starts with (the ``server`` fixture, conftest.py)
SEED_CSV = 'sh.x,1000,5\nsh.x,2000,6\nother,1000,1\n'

#: the pool's first reconnect delay in the shell of the reconnect test (the
#: default is 1 s); see test_the_next_command_reconnects_at_once
SLOW_BACKOFF = 60.0


def test_a_statement_of_several_lines_is_one_history_entry(server: ServeProcess,
                                                           tmp_path: Path) -> None:
    sh = spawn_shell(server.addr, tmp_path)
    try:
        sh.send('select max() \\\r')
        sh.expect(r'\.\.\.> ')
        sh.send('from (\r')
        sh.expect(r'\.\.\.> ')
        sh.send('"sh.x")\r')
        out = sh.expect(r'dbtest> ')
        assert 'sh.x   |      2000 |     6' in out
        sh.send(UP)  # the whole statement comes back, not its last line
        sh.expect(re.escape('select max() from ( "sh.x")'))
        sh.send('\r')
        out = sh.expect(r'dbtest> ')
        assert 'sh.x   |      2000 |     6' in out and 'ERROR' not in out
        sh.send('exit\r')  # leaves, not sent to the server
        assert sh.wait() == 0
    finally:
        sh.close()
    history = (tmp_path / 'history').read_text().splitlines()
    assert history.count('select max() from ( "sh.x")') == 2  # typed, then recalled
    assert '"sh.x")' not in history and 'from (' not in history


@pytest.mark.parametrize('word', ['quit', 'exit;', 'QUIT'])
def test_exit_and_quit_leave(server: ServeProcess, tmp_path: Path, word: str) -> None:
    sh = spawn_shell(server.addr, tmp_path)
    try:
        sh.send(f'{word}\r')
        assert sh.wait() == 0
        assert 'ERROR' not in sh.buffer
    finally:
        sh.close()


def test_ctrl_d_on_a_continuation_prompt_says_the_statement_was_dropped(
        server: ServeProcess, tmp_path: Path) -> None:
    sh = spawn_shell(server.addr, tmp_path)
    try:
        sh.send('select * from (\r')
        sh.expect(r'\.\.\.> ')
        sh.send('\x04')  # Ctrl-D
        sh.expect(r'Unfinished statement dropped')
        assert sh.wait() == 0
    finally:
        sh.close()


def test_tab_completes_keywords_and_names(server: ServeProcess, tmp_path: Path) -> None:
    sh = spawn_shell(server.addr, tmp_path)
    try:
        sh.send('sel\t')
        sh.expect(r'select ')
        sh.send('* fr\t')
        sh.expect(r'from ')
        sh.send('"sh\t')
        sh.expect(re.escape('"sh.x" '))
        sh.send('\r')
        out = sh.expect(r'dbtest> ')
        assert 'sh.x   |      1000 |     5' in out and 'other' not in out
        sh.send('create group `grp` for /sh\\..*/\r')
        out = sh.expect(r'dbtest> ')
        assert 'ERROR' not in out, out
        sh.send('count series `gr\t')  # groups and tags complete in backticks
        sh.expect(re.escape('`grp` '))
        sh.send('\r')
        out = sh.expect(r'dbtest> ')
        assert re.search(r'series\s*\r\n-+\r\n\s*1\r\n', out), out
        sh.send('show time_p\t')
        sh.expect(r'time_precision')
        sh.send('\r')
        out = sh.expect(r'dbtest> ')
        assert 'time_precision | ms' in out
        sh.send('\\q\r')
        assert sh.wait() == 0
    finally:
        sh.close()


def test_completion_candidates_follow_the_parser() -> None:
    names = {'series': ['sh.x', 'cpu'], 'groups': ['grp'], 'tags': ['tg']}
    c = Completer(lambda kind: names[kind])
    assert c.candidates('sel', 0) == ['select']
    assert c.candidates('list ', 5) == ['groups', 'pools', 'series', 'servers', 'shards',
                                        'tags', 'users']
    assert c.candidates('select * from "x" af', 18) == ['after']
    assert c.candidates('select * from c', 14) == ['"cpu"']
    assert c.candidates('select * from `', 14) == ['`grp`', '`tg`']
    assert c.candidates('show time_p', 5) == ['time_precision']
    assert c.candidates('selec x ', 8) == []  # a syntax error before the word
    assert expected_next('select * from ') is not None
    assert expected_next('nonsense ') is None


def test_long_results_go_through_the_pager(server: ServeProcess, tmp_path: Path) -> None:
    sh = spawn_shell(server.addr, tmp_path, PAGER="sed 's/^/PAGED:/'", LINES='5')
    try:
        sh.send('select * from "sh.x"\r')  # 5 lines: taller than the terminal
        out = sh.expect(r'dbtest> ')
        assert 'PAGED:sh.x   |      1000 |     5' in out
        sh.send('show time_precision, dbname\r')
        out = sh.expect(r'dbtest> ')
        assert 'PAGED:' in out  # 5 lines again
        sh.send('count series\r')  # 4 lines fit above the prompt
        out = sh.expect(r'dbtest> ')
        assert 'series' in out and 'PAGED:' not in out
        sh.send('\\pager off\r')
        sh.expect(r'Pager is off\.\s+dbtest> ')
        sh.send('select * from "sh.x"\r')
        out = sh.expect(r'dbtest> ')
        assert 'sh.x   |      1000 |     5' in out and 'PAGED:' not in out
        sh.send('\\q\r')
        assert sh.wait() == 0
    finally:
        sh.close()


def test_script_errors_name_the_input_line(server: ServeProcess) -> None:
    script = ('show time_precision\n'          # 1
              '\n'                             # 2
              'select * from\n'                # 3: error
              'select max() \\\n'              # 4: error, spans 4-5
              'from "nosuch" (\n'              # 5
              ')\n'                            # 6
              'count series\n'                 # 7
              'select * from (\n')             # 8: unfinished at the end
    proc = run_main('shell', '--db', 'dbtest', '--host', server.addr, '-f', 'json',
                    input=script)
    assert proc.returncode == 1
    errors = proc.stderr.splitlines()
    assert errors[0].startswith('line 3: ERROR: QueryError'), errors
    assert errors[1].startswith('line 4: ERROR: QueryError'), errors
    assert errors[2] == 'line 8: Unfinished statement dropped ' \
                        '(input ended before it was complete).'
    assert '"series"' in proc.stdout  # the script went on after the errors


def test_the_next_command_reconnects_at_once(tmp_path: Path) -> None:
    # The pool waits backoff_base * 2**n (less up to 20 % jitter) before its
    # n-th reconnect, counted from when the shell's event loop notices the
    # loss; the loop runs only during a command (never at the prompt), so
    # sleeping at the prompt cannot make that wait grow. Instead the shell
    # runs with backoff_base = SLOW_BACKOFF = 60 s (set before ``main`` runs,
    # nothing else changed): the pool's own reconnect is due >= 48 s after the
    # failed command. Reconnecting at once answers in well under 1 s; a shell
    # that waited for the pool would need >= 48 s less the restart (a few
    # ms, in-thread): the 10 s bound (and the 30 s expect) separate the two.
    wrapper = ('import sys; from siridb.connector import SiriDBClient; '
               'defaults = SiriDBClient.__init__.__kwdefaults__; '
               'assert "backoff_base" in defaults; '
               f'defaults["backoff_base"] = {SLOW_BACKOFF}; '
               'from siridb.cli import main; sys.exit(main())')
    # the embedded server in a thread of this process: it stops and starts
    # without an interpreter start
    srv = ServerThread(databases=['dbtest'])
    port = srv.port
    try:
        sh = spawn_shell(f'{srv.host}:{port}', tmp_path, python=['-c', wrapper])
    except BaseException:
        srv.close()
        raise
    try:
        srv.close()
        sh.send('show time_precision\r')  # the shell notices the loss now
        out = sh.expect(r'dbtest> ')
        assert 'ERROR' in out
        srv = ServerThread(databases=['dbtest'], port=port)
        start = time.monotonic()
        sh.send('show time_precision\r')
        out = sh.expect(r'time_precision \| ms', timeout=30)
        took = time.monotonic() - start
        assert took < 10.0, f'took {took:.1f} s: waited for the backoff'
        sh.expect(r'dbtest> ')
        sh.send('\\q\r')
        assert sh.wait() == 0
    finally:
        sh.close()
        srv.close()
