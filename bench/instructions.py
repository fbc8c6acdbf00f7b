"""Instruction counts per operation (valgrind callgrind): the bench without noise.

    python bench/instructions.py [--legacy-venv DIR] [--json FILE]

CPU time on a shared machine moves 10-30 % between runs; instruction counts
do not. Each client process runs under ``valgrind --tool=callgrind`` twice,
doing N and 2N operations after the same setup; the difference, divided by N,
is what one operation costs, with start-up, imports and warm-up cancelled
out. Building the insert batches is measured the same way and taken off;
every decode is charged the young-generation GC pass over its result.
Rows: a 10,000-point bulk insert and decoding a 1,000,000-point select, for the
raw client (bench/worker.py), ours, 2.1.6 (with ``--legacy-venv``) and the
in-memory limit (``qpack.packb`` / ``qpack.unpackb`` alone). Instructions
leave out the kernel (system calls, page faults), which the main bench shows.
Needs valgrind on PATH; takes a few minutes.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import ROOT, env_with_checkout, free_port, legacy_python, wait_port  # noqa: E402

BATCH = 10_000
DECODE_POINTS = 1_000_000


# the child: one measured process ---------------------------------------------

async def _child(mode: str, impl: str, port: int, n: int, tag: str) -> None:
    import qpack
    from worker import _unpack_big, bulk_batches, open_client, open_raw

    opener = open_client if impl == 'client' else open_raw
    client: Any = await opener('127.0.0.1', port, 'bench')
    try:
        if mode == 'bulk':
            batches = bulk_batches(tag, n * BATCH, BATCH)
            for b in batches:
                if impl == 'pack':
                    qpack.packb(b)
                elif impl != 'none':
                    await client.insert(b)
        else:  # decode: the same setup in both runs, then n selects
            for b in bulk_batches(tag, DECODE_POINTS, BATCH):
                await client.insert(b)
            q = f'select * from /bulk-{tag}-.*/'
            if impl == 'unpack':
                _tp, body = await client.proto.request(0, qpack.packb([q, None]))
            for _ in range(n):
                if impl == 'unpack':
                    result = _unpack_big(body)
                elif impl == 'raw':
                    _tp, raw_body = await client.proto.request(0, qpack.packb([q, None]))
                    result = _unpack_big(raw_body)
                else:
                    result = await client.query(q, timeout=600)
                # the young-generation GC pass over the new result: due
                # sooner or later, charged to everyone alike (as in worker.py)
                gc.collect(0)
                del result
                await asyncio.sleep(0)
    finally:
        client.close()
        if hasattr(client, 'wait_closed'):
            await client.wait_closed()


# the parent --------------------------------------------------------------------

def instructions(python: str, env: Dict[str, str], args: List[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ['valgrind', '--tool=callgrind', f'--callgrind-out-file={tmp}/cg.out',
             python, str(Path(__file__).resolve()), '--child', *args],
            capture_output=True, text=True, env=env, cwd=str(BENCH), timeout=1800)
    found = re.search(r'I\s+refs:\s+([\d,]+)', proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f'{args}: {proc.stderr.strip()[-400:]}')
    return int(found.group(1).replace(',', ''))


def per_op(python: str, env: Dict[str, str], mode: str, impl: str, port: int,
           n: int, tag: str) -> float:
    """Instructions of one operation: (count at 2n - count at n) / n."""
    one = instructions(python, env, [mode, impl, str(port), str(n), f'{tag}a'])
    two = instructions(python, env, [mode, impl, str(port), str(2 * n), f'{tag}b'])
    return (two - one) / n


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--legacy-venv', type=Path)
    ap.add_argument('--requests', type=int, default=10, help='N bulk requests (and 2N)')
    ap.add_argument('--json', type=Path, default=BENCH / 'results' / 'instructions.json')
    ap.add_argument('--child', nargs=5, metavar=('MODE', 'IMPL', 'PORT', 'N', 'TAG'))
    ns = ap.parse_args(argv)
    if ns.child:
        mode, impl, port, n, tag = ns.child
        asyncio.run(_child(mode, impl, int(port), int(n), tag))
        return 0
    if shutil.which('valgrind') is None:
        print('valgrind is not installed; nothing measured', file=sys.stderr)
        return 2
    clients = [('raw', sys.executable, env_with_checkout(), 'raw'),
               ('ours', sys.executable, env_with_checkout(), 'client')]
    if ns.legacy_venv is not None:
        env = dict(env_with_checkout())
        env.pop('PYTHONPATH', None)
        clients.append(('2.1.6', str(legacy_python(ns.legacy_venv.resolve())), env, 'client'))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, '-m', 'siridb.embedded', '--host', '127.0.0.1',
         '--port', str(port), '--db', 'bench'], cwd=str(ROOT), env=env_with_checkout(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: Dict[str, Dict[str, float]] = {'bulk': {}, 'decode': {}}
    try:
        wait_port(port, server)
        py, env = sys.executable, env_with_checkout()
        build = per_op(py, env, 'bulk', 'none', port, ns.requests, 'build')
        out['bulk']['qpack only'] = per_op(py, env, 'bulk', 'pack', port, ns.requests,
                                           'pack') - build
        out['decode']['qpack only'] = per_op(py, env, 'decode', 'unpack', port, 1, 'unpack')
        for name, python, cenv, impl in clients:
            out['bulk'][name] = per_op(python, cenv, 'bulk', impl, port, ns.requests,
                                       f'b{name}') - build
            out['decode'][name] = per_op(python, cenv, 'decode', impl, port, 1, f'd{name}')
    finally:
        server.terminate()
        server.wait(10)
    names = ['qpack only'] + [c[0] for c in clients]
    lines = ['| instructions per operation | ' + ' | '.join(names) + ' | ours/raw |',
             '|---|' + '---:|' * (len(names) + 1)]
    for key, label in (('bulk', f'bulk insert, {BATCH:,} points'),
                       ('decode', f'decode select, {DECODE_POINTS:,} points')):
        row = out[key]
        lines.append(f'| {label} | ' + ' | '.join(f'{row[n] / 1e6:.2f} M' for n in names)
                     + f' | {row["ours"] / row["raw"]:.3f} |')
    text = '\n'.join(lines)
    print(text)
    ns.json.parent.mkdir(parents=True, exist_ok=True)
    ns.json.write_text(json.dumps(out, indent=2) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
