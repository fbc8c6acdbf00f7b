"""Every example script runs as-is (a subprocess, embedded server inside)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from typing import List

import pytest
from _paths import ROOT

EXAMPLES = ROOT / 'examples'


def _env() -> dict:  # type: ignore[type-arg]
    env = dict(os.environ)
    env['PYTHONPATH'] = str(ROOT) + os.pathsep + env.get('PYTHONPATH', '')
    env['PYTHONWARNINGS'] = 'error::ResourceWarning'
    return env


def run(name: str, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'Traceback' not in proc.stderr, proc.stderr
    return proc.stdout


COVERED = {'quickstart.py', 'ingest_daemon.py', 'failover.py', 'query_builder.py',
           'service_admin.py'}


def test_every_example_has_a_test() -> None:
    """An example added without a test of its own fails here until it gets one."""
    assert {p.name for p in EXAMPLES.glob('*.py')} == COVERED


def test_quickstart() -> None:
    out = run('quickstart.py')
    assert 'Successfully inserted 5 point(s).' in out


def test_ingest_daemon_restart_nothing_lost() -> None:
    out = run('ingest_daemon.py', '--duration', '2', '--rate', '100')
    assert 'server stopped' in out and 'server started again' in out
    m = re.search(r'produced=(\d+) written=(\d+) retried=(\d+) pending=0 rejected=0', out)
    assert m, out
    produced, written = int(m.group(1)), int(m.group(2))
    assert produced > 0 and written >= produced
    assert 'nothing lost' in out


def test_ingest_daemon_sigterm_is_graceful() -> None:
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / 'ingest_daemon.py'),
                             '--duration', '0', '--no-restart'], cwd=ROOT, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith('running'), first
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out + err
    assert 'stopping:' in out
    assert re.search(r'produced=[1-9]\d* written=\d+ retried=0 pending=0 rejected=0', out)
    assert 'nothing lost' in out


def test_failover() -> None:
    out = run('failover.py')
    lines: List[str] = out.splitlines()
    assert lines[0].startswith('ping:') and 'server version 2.0.55' in lines[0]
    assert sum('stopped' in line for line in lines) == 2
    assert re.search(r'reconnects=1', out)
    m = re.search(r'written=(\d+) stored=(\d+) nothing lost, no duplicates', out)
    assert m and int(m.group(2)) == int(m.group(1)) > 0, out


def test_query_builder() -> None:
    out = run('query_builder.py')
    assert 'written: 360' in out
    assert 'merge as "all cpu" using max(1h)' in out
    assert 'select last() from "disk ""/dev/sda"" usage"' in out
    assert """-> {'disk "/dev/sda" usage': [61.0]}""" in out
    assert "'cpu.temp'" not in out.split('select count() from')[1].split('\n')[1]
    assert 'count: 3' in out


def test_service_admin() -> None:
    out = run('service_admin.py')
    assert "databases: ['dbtest', 'weather']" in out
    assert "expected error: database name already exists: 'weather'" in out
    assert "select: {'temperature': [[1700000000, 21.5]]}" in out
    assert "databases after drop: ['dbtest']" in out


@pytest.mark.parametrize('name', ['ingest_daemon.py', 'failover.py', 'query_builder.py',
                                  'service_admin.py'])
def test_examples_have_a_docstring_saying_how_to_run(name: str) -> None:
    text = (EXAMPLES / name).read_text()
    assert text.startswith('"""') and 'Run: python examples/' in text
