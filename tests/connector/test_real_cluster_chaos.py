"""Optional: verified write-session delivery against a real SiriDB 2.0.55
cluster (bench/real_cluster_chaos.py: three servers, two killed with SIGKILL
and restarted mid-stream). Skipped unless SIRIDB_REAL_CHAOS=1 and the
server binary exists (SIRIDB_SERVER, default /work/realsiridb/Release/...);
about 15 s."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from _paths import ROOT as PROJECT

ROOT = PROJECT
BINARY = os.environ.get('SIRIDB_SERVER', '/work/realsiridb/Release/siridb-server')

pytestmark = pytest.mark.skipif(
    os.environ.get('SIRIDB_REAL_CHAOS') != '1' or not os.access(BINARY, os.X_OK),
    reason='needs SIRIDB_REAL_CHAOS=1 and a siridb-server binary (SIRIDB_SERVER)')


def test_verified_session_on_a_real_cluster_loses_nothing() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(ROOT / 'bench' / 'real_cluster_chaos.py'),
                           '--binary', BINARY, '--points', '50000'],
                          capture_output=True, text=True, env=env, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr[-2000:]
    assert 'the fullest server per point: missing 0;' in out
    assert 'lost_confirmed=' in out and 'pending=0' in out
