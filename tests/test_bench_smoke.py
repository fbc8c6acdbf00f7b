"""A seconds-long smoke of the client benchmarks (bench/run.py --smoke), so
that the benchmark never rots; it times nothing and asserts no target."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _paths import ROOT


def test_bench_smoke_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, str(ROOT / 'bench' / 'run.py'), '--smoke', '--points', '20000',
         '--small', '512', '--json', str(out)],
        capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '| bulk insert: CPU per point' in proc.stdout
    doc = json.loads(out.read_text())
    assert doc['raw']['bulk']['points'] == 20_000
    assert doc['ours']['bulk']['points'] == 20_000
    assert doc['ours']['decode']['points'] == 20_000  # the select saw every point
    assert doc['ours']['small']['ops'] == 512
    assert doc['legacy'] is None  # 2.1.6 only with --legacy-venv
    assert set(doc['summary']['targets']) == {'bulk', 'small', 'decode'}
    # decode user-space CPU is split out: recorded for every run and summed up
    assert all(len(run) == 4 for run in doc['ours']['decode']['runs'])
    assert doc['summary']['decode_user_us']['ours'] is not None
    assert 'decode, user-space CPU only' in proc.stdout
    table = out.with_suffix('.md').read_text()
    assert table.startswith('Command: `python bench/run.py --smoke')
    assert '\n| workload' in table
