"""Server-side benchmark of the embedded server, through the driver.

    python bench/embedded_server.py [--points 1000000] [--batch 10000]
                                    [--data-dir DIR] [--fsync always|never]

Starts ``python -m siridb.embedded`` in a child process (so the server and
the client each have their own interpreter), inserts ``--points`` float
points into one series in requests of ``--batch`` points with a few requests
in flight, and prints the ingest rate (points/s) and the time to answer
``select * from "bench"`` (reply decoded by the driver). Targets from the
issue: >= 300,000 points/s and < 2 s for 1,000,000 points.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from typing import List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from siridb.connector import SiriDBClient  # noqa: E402


def start_server(args: argparse.Namespace) -> subprocess.Popen[str]:
    cmd = [sys.executable, '-m', 'siridb.embedded', '--port', '0', '--db',
           'bench:ms', '--log-level', 'warning']
    if args.data_dir:
        cmd += ['--data-dir', args.data_dir, '--fsync', args.fsync]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)


async def run(args: argparse.Namespace, port: int) -> List[str]:
    client = SiriDBClient('iris', 'siri', 'bench', [('127.0.0.1', port)],
                          keepalive=False)
    await client.connect()
    base = 1_600_000_000_000
    n_batches = args.points // args.batch
    batches = [{'bench': [[base + k * args.batch + i, i * 0.5]
                          for i in range(args.batch)]} for k in range(n_batches)]
    sem = asyncio.Semaphore(4)

    async def one(batch: dict) -> None:
        async with sem:
            await client.insert(batch)

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(b) for b in batches))
        ingest = time.perf_counter() - t0
        points = n_batches * args.batch
        t0 = time.perf_counter()
        res = await client.query('select * from "bench"', timeout=120)
        select = time.perf_counter() - t0
        assert len(res['bench']) == points
    finally:
        client.close()
        await client.wait_closed()
    return [
        f'ingest: {points:,} points in {ingest:.2f} s = {points / ingest:,.0f} points/s '
        f'(target >= 300,000)',
        f'select * over {points:,} points: {select:.2f} s (target < 2 s)',
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--points', type=int, default=1_000_000)
    p.add_argument('--batch', type=int, default=10_000)
    p.add_argument('--data-dir', default=None)
    p.add_argument('--fsync', default='always', choices=('always', 'never'))
    args = p.parse_args()
    proc = start_server(args)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = int(line.split('listening on ', 1)[1].split()[0].rsplit(':', 1)[1])
        for out in asyncio.run(run(args, port)):
            print(out)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return 0


if __name__ == '__main__':
    sys.exit(main())
