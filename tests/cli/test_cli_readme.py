"""The command-line examples of docs/cli.md, run as written (bash) against
``siridb serve`` started with the documented arguments."""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from _cli_helpers import ServeProcess, cli_env
from _docs import code_blocks


def _section_blocks() -> list:
    return code_blocks('docs/cli.md', 'bash')


def test_readme_command_line_examples(tmp_path: Path) -> None:
    serve_block, script = _section_blocks()[:2]
    serve_args = shlex.split(serve_block.strip())
    assert serve_args[:4] == ['siridb', 'serve', '--port', '9000']
    args = serve_args[4:]
    args[args.index('--data-dir') + 1] = str(tmp_path / 'data')
    srv = ServeProcess(tmp_path / 'serve.log', *args)
    try:
        # the documented commands use the default host 127.0.0.1:9000: point them at
        # the test server instead (options may follow the positional arguments)
        prelude = (f'set -euo pipefail\n'
                   f'siridb() {{ {shlex.quote(sys.executable)} -m siridb "$@" '
                   f'--host {srv.addr}; }}\n')
        env = cli_env(SIRIDB_PASSWORD=None, SIRIDB_SERVICE_PASSWORD=None)
        proc = subprocess.run(['bash', '-c', prelude + script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
    finally:
        assert srv.stop() == 0
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert 'cpu    | 1447250938000 |     5' in out
    assert 'series,timestamp,value\ncpu,2015-11-11T14:09:00.000Z,5' in out
    assert "Database 'weather' created." in out and "Database 'weather' dropped." in out
    assert '"metrics"' in out
    assert (tmp_path / 'cpu.csv').read_text() == (
        'series,timestamp,value\ncpu,1447250938,5\ncpu,1447250968,7\n')
