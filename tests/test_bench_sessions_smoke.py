"""A seconds-long smoke of the session benchmark (bench/sessions.py --smoke),
so that it never rots; it asserts the report's shape, never a timing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _paths import ROOT


def test_session_bench_smoke_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / 'sessions.json'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'bench' / 'sessions.py'), '--smoke', '--points', '4000',
         '--series', '10', '--batch', '500', '--slice', '100', '--json', str(out)],
        capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for mode in ('verified', 'at-least-once'):  # both delivery modes, side by side
        assert f'| session.write per point ({mode}) |' in proc.stdout
    assert '| failures | checks | queries |' in proc.stdout  # the cost after failures
    doc = json.loads(out.read_text())
    assert doc['meta']['command'].startswith('python bench/sessions.py --smoke')
    (server,) = doc['servers'].values()
    for workload in ('bulk', 'bulk_prebuilt', 'write', 'write_many', 'columnar'):
        assert server['results'][workload]['points'] == 4000, workload
    assert len(server['summary']['targets']) == 9  # 6 of the sessions, 3 verified vs at-least-once
    text = out.with_suffix('.md').read_text()
    assert 'Command: `python bench/sessions.py --smoke' in text
