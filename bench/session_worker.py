"""One write-session workload in its own process; prints its figures as JSON.

Workloads, all writing the same points (``--points`` over ``--series``
series, a float value each, ``--batch`` points per package or request):

- ``bulk``: the reference, what a user writes with bulk inserts: the points
  arrive as ``(series, ts, value)`` tuples, each ``--batch`` of them is
  grouped into ``{series: [[ts, value], ...]}`` and inserted, one request at
  a time (building the dict is measured, it is the user's work).
- ``bulk_prebuilt``: the same requests built before the clock starts (what
  the driver alone costs).
- ``write``: ``await session.write(series, value, ts)`` per point.
- ``write_many``: ``await session.write_many(tuples)`` per ``--batch`` tuples.
- ``columnar``: ``await session.write_series(series, timestamps, values)``,
  the columns of each series in slices of ``--slice`` points (the daemon
  that reads many points of one series at a time).
- the session workloads run with ``delivery='verified'`` (the default); with
  the suffix ``_alo`` the same with ``delivery='at_least_once'``.
- ``recovery``: ``write_many`` in verified mode against an embedded server in
  this process whose faults (``siridb.embedded.faults``) store part of an
  insert and drop the connection every ``--fail-every`` packages (of at most
  1,000 points), then a
  crash losing the last acknowledged point and a restart: the checks' count,
  queries, points and time per failure.

Only this process's CPU time (``time.process_time``) and the wall time from
the first point to the last confirmation are measured; the server runs in
another process. The source data is built first and frozen out of the GC
(``gc.freeze``), alike for every workload.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

from worker import Measure  # noqa: E402

from siridb.connector import SiriDBClient  # noqa: E402

T0 = 1_600_000_000_000  # ms
WORKLOADS = ('bulk', 'bulk_prebuilt', 'write', 'write_many', 'columnar',
             'write_alo', 'write_many_alo', 'columnar_alo', 'recovery')


def source(tag: str, points: int, series: int) -> List[Tuple[str, int, float]]:
    """Points in arrival order: one point of every series per tick."""
    names = [f'sess-{tag}-{i:04d}' for i in range(series)]
    return [(names[i % series], T0 + (i // series) * 1000, i * 0.25) for i in range(points)]


def group(pts: List[Tuple[str, int, float]]) -> Dict[str, List[List[Any]]]:
    """What a bulk-insert user writes to turn tuples into an insert."""
    data: Dict[str, List[List[Any]]] = {}
    for series, ts, value in pts:
        lst = data.get(series)
        if lst is None:
            lst = data[series] = []
        lst.append([ts, value])
    return data


async def run(ns: argparse.Namespace) -> Dict[str, Any]:
    if ns.url:
        client = SiriDBClient.from_url(ns.url)
    else:
        client = SiriDBClient('iris', 'siri', ns.db, [(ns.host, ns.port)])
    await client.connect()
    try:
        precision = await client.time_precision()
        pts = source(ns.tag, ns.points, ns.series)
        batch = ns.batch
        chunks = [pts[i:i + batch] for i in range(0, len(pts), batch)]
        prebuilt = [group(c) for c in chunks] if ns.workload == 'bulk_prebuilt' else []
        columns: List[Tuple[str, List[int], List[float]]] = []
        if ns.workload.startswith('columnar'):
            # the same points, built column by column as a daemon reading one
            # series at a time holds them (objects in column order in memory)
            per = ns.slice
            names = [f'sess-{ns.tag}-{j:04d}' for j in range(ns.series)]
            for j, series in enumerate(names):
                ticks = range((ns.points - j + ns.series - 1) // ns.series)
                tss = [T0 + k * 1000 for k in ticks]
                vals = [(k * ns.series + j) * 0.25 for k in ticks]
                for i in range(0, len(tss), per):
                    columns.append((series, tss[i:i + per], vals[i:i + per]))
            assert sum(len(c[1]) for c in columns) == len(pts)
        w = ns.workload
        delivery = 'verified'
        if w.endswith('_alo'):
            w = w[:-4]
            delivery = 'at_least_once'
        opts = dict(autocommit_every=batch, time_precision=precision,
                    max_in_flight=ns.max_in_flight, delivery=delivery)
        gc.freeze()
        with Measure() as m:
            if w == 'bulk':
                for c in chunks:
                    await client.insert(group(c))
            elif w == 'bulk_prebuilt':
                for d in prebuilt:
                    await client.insert(d)
            else:
                s = client.session(**opts)
                if w == 'write':
                    write = s.write
                    for series, ts, value in pts:
                        await write(series, value, ts)
                elif w == 'write_many':
                    for c in chunks:
                        await s.write_many(c)
                else:
                    for series, tss, vals in columns:
                        await s.write_series(series, tss, vals)
                await s.close()
                assert s.written == len(pts), (s.written, len(pts))
        gc.unfreeze()
        return {'workload': ns.workload, 'points': len(pts), 'cpu': m.cpu, 'user': m.user,
                'wall': m.wall, 'faults': m.faults}
    finally:
        client.close()
        await client.wait_closed()


async def recovery(ns: argparse.Namespace) -> Dict[str, Any]:
    """Verified ``write_many`` through partial inserts with dropped
    connections and a crash that loses the last acknowledged point."""
    from siridb.embedded import EmbeddedServer
    from siridb.embedded.faults import InsertFaults

    server = EmbeddedServer(port=0, databases={ns.db: 'ms'})
    await server.start()
    client = SiriDBClient('iris', 'siri', ns.db, [(server.host, server.port)],
                          keepalive=False, backoff_base=0.01, max_wait_retry=0.05,
                          inactive_time=0.01)
    await client.connect()
    try:
        faults = InsertFaults.attach(server)
        pts = source(ns.tag, ns.points, ns.series)
        batch = min(ns.batch, 1000)
        chunks = [pts[i:i + batch] for i in range(0, len(pts), batch)]
        # verify_settle=0: one server, no replica to wait for (the wait is a
        # fixed sleep, not work)
        s = client.session(autocommit_every=batch, time_precision='ms',
                           max_in_flight=ns.max_in_flight, retry_delay=0.01,
                           verify_settle=0)
        with Measure() as m:
            armed = 0
            for i, c in enumerate(chunks):
                # a failure every --fail-every packages, once the last one fired
                if i % ns.fail_every == ns.fail_every - 1 and faults.partial == armed:
                    faults.partial_then_drop(fraction=0.5)
                    armed += 1
                await s.write_many(c)
            await s.commit()
            faults.lose_last_acked = True
            await faults.crash()
            await server.start()
            await s.close()
        st = s.stats()
        stored = sum(len(x.ts) for x in server.store.databases[ns.db].series.values())
        return {'workload': 'recovery', 'points': len(pts), 'cpu': m.cpu, 'wall': m.wall,
                'stored': stored, 'failures': faults.partial + faults.lost,
                'stats': st.__dict__}
    finally:
        client.close()
        await client.wait_closed()
        await server.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--workload', choices=WORKLOADS, required=True)
    ap.add_argument('--tag', default='x')
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=9000)
    ap.add_argument('--db', default='bench')
    ap.add_argument('--url', help='siridb://user:password@host:port/db (instead of host/port)')
    ap.add_argument('--points', type=int, default=300_000)
    ap.add_argument('--series', type=int, default=100)
    ap.add_argument('--batch', type=int, default=5000)
    ap.add_argument('--max-in-flight', type=int, default=4)
    ap.add_argument('--slice', type=int, default=1000,
                    help='points per write_series call (columnar)')
    ap.add_argument('--fail-every', type=int, default=10,
                    help='recovery: a failure every this many packages')
    ns = ap.parse_args()
    print(json.dumps(asyncio.run(recovery(ns) if ns.workload == 'recovery' else run(ns))))


if __name__ == '__main__':
    main()
