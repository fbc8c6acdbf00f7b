"""Smoke runs of the child-process decoder fuzzer (bench/fuzz_decoder.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import qpack
from _paths import ROOT

SCRIPT = ROOT / 'bench' / 'fuzz_decoder.py'


def run(tmp_path: Path, *args: str) -> Tuple[int, Dict[str, Any]]:
    out = tmp_path / 'fuzz.json'
    proc = subprocess.run([sys.executable, str(SCRIPT), '--json', str(out), *args],
                          capture_output=True, text=True, timeout=60)
    summary: Dict[str, Any] = json.loads(out.read_text())
    assert json.loads(proc.stdout) == summary
    return proc.returncode, summary


def test_fuzz_smoke_finds_nothing(tmp_path: Path) -> None:
    # (about 25,000 inputs a second; the bench runs are the long campaigns)
    rc, summary = run(tmp_path, '--seconds', '1', '--seed', '7')
    assert summary['crashes'] == []
    assert summary['bugs'] == []
    assert summary['iterations'] >= 2000
    assert summary['mode'] == 'siridb codec'
    assert rc == 0


def test_fuzz_reports_a_crashing_child(tmp_path: Path) -> None:
    # a simulated interpreter crash at a known input: the parent survives,
    # pins the exact input down, and goes on fuzzing after it
    # (1.5 s: the crash, the replay that pins it and a new child take 0.5 s)
    rc, summary = run(tmp_path, '--seconds', '1.5', '--inject-crash', '345')
    assert rc == 1
    crashes: List[Dict[str, Any]] = summary['crashes']
    assert [c['iteration'] for c in crashes] == [345]
    assert crashes[0]['how'] == 'killed by SIGSEGV'
    assert crashes[0]['input_hex']
    assert summary['children'] >= 2
    assert summary['iterations'] > 345


@pytest.mark.skipif(getattr(qpack, '__version__', '') != '0.0.21'
                    or not isinstance(qpack.unpackb, types.BuiltinFunctionType),
                    reason='the 0xFE/0xFF crash is known for qpack 0.0.21 in C')
def test_unguarded_qpack_crashes_are_caught(tmp_path: Path) -> None:
    # without the codec's guard, qpack 0.0.21 segfaults on bodies starting
    # with a close marker: the runner catches those crashes in the child
    rc, summary = run(tmp_path, '--seconds', '1.5', '--unguarded')
    assert rc == 1
    assert summary['crashes'], summary
    located = [c for c in summary['crashes'] if c['iteration'] is not None]
    assert located
    for crash in located:
        assert crash['how'].startswith('killed by')


DEEP_BODIES = {  # built in the child: a 200 KB literal is too long for argv
    'open-arrays': "b'\\xfc' * 200_000",
    'fixed-arrays': "b'\\xee' * 200_000 + b'\\x00'",
    'fixed-maps': "b'\\xf4\\x80' * 200_000 + b'\\x00'",
}


@pytest.mark.parametrize('name', sorted(DEEP_BODIES))
def test_deeply_nested_body_does_not_crash(name: str) -> None:
    # qpack 0.0.21 recurses in C once per nesting level: unguarded, a body
    # nested ~90,000 levels deep overflows the C stack (found by this fuzzer)
    code = ('from siridb.connector.lib.codec import unpack_body\n'
            'from siridb.connector.lib.exceptions import ProtocolError\n'
            f'body = {DEEP_BODIES[name]}\n'
            'try:\n'
            '    unpack_body(body)\n'
            'except ProtocolError:\n'
            '    pass\n'
            'print("survived")\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=60, cwd=str(ROOT))
    assert proc.returncode == 0, f'child died: status {proc.returncode}'
    assert proc.stdout.strip() == 'survived'
