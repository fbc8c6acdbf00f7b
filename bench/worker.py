"""One benchmark client in its own process; prints its measurements as JSON.

``--impl raw`` is the limit: a minimal hand-written client (qpack.packb,
header, transport.write, qpack.unpackb) plus in-memory packb/unpackb timings.
``--impl client`` uses whatever ``siridb.connector`` this interpreter imports
(this checkout via PYTHONPATH, or siridb-connector 2.1.6 in a venv), through
the API both share: ``SiriDBClient(...)``, ``connect``, ``insert``, ``query``.
Only the client's own CPU time (``time.process_time``) and wall time are
measured; the server runs in another process.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import json
import struct
import sys
import time
from functools import partial
from typing import Any, Awaitable, Callable, Dict, List, Tuple

import qpack

HDR = struct.Struct('<IHBB')
T0 = 1_600_000_000_000  # ms
SERIES_PER_REQUEST = 10


def bulk_batches(tag: str, points: int, batch: int) -> List[Dict[str, List[List[Any]]]]:
    """``points`` points in requests of ``batch`` points, 10 series each;
    even series hold ints, odd ones floats."""
    per_series = max(1, batch // SERIES_PER_REQUEST)
    out: List[Dict[str, List[List[Any]]]] = []
    made = 0
    s = 0
    while made < points:
        req: Dict[str, List[List[Any]]] = {}
        for _ in range(SERIES_PER_REQUEST):
            if made >= points:
                break
            n = min(per_series, points - made)
            if s % 2:
                req[f'bulk-{tag}-{s:05d}'] = [[T0 + i * 1000, i * 0.25] for i in range(n)]
            else:
                req[f'bulk-{tag}-{s:05d}'] = [[T0 + i * 1000, i] for i in range(n)]
            made += n
            s += 1
        out.append(req)
    return out


def _rusage() -> Any:
    """This process's resource usage so far, or None where the platform has
    no ``resource`` module."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF)


def _minor_faults() -> int:
    """Page faults of this process so far: fresh memory from the OS costs
    about 2-3 us per 4 KiB page here, a swing of 20 % in a bulk run."""
    usage = _rusage()
    return 0 if usage is None else int(usage.ru_minflt)


def _user_cpu() -> float:
    """User-space CPU seconds of this process so far (``time.process_time``
    less kernel time: socket copies and page faults)."""
    usage = _rusage()
    return time.process_time() if usage is None else float(usage.ru_utime)


class Measure:
    """CPU (process) and wall seconds of a block.

    The block's young-generation GC pass is settled inside it
    (``gc.collect(0)``): the objects a block creates cost one such pass
    sooner or later, and it must be charged to every client alike, not to
    whichever one happens to allocate next.
    """

    def __enter__(self) -> Measure:
        gc.collect()
        self.faults0 = _minor_faults()
        self.user0 = _user_cpu()
        self.cpu0 = time.process_time()
        self.wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        gc.collect(0)
        self.cpu = time.process_time() - self.cpu0
        self.user = _user_cpu() - self.user0
        self.wall = time.perf_counter() - self.wall0
        self.faults = _minor_faults() - self.faults0


def _cpu(fn: Callable[[], Any]) -> float:
    """CPU seconds of one call, its result kept alive through the young-
    generation GC pass it causes (as in ``Measure``)."""
    return _cpu_user(fn)[0]


def _cpu_user(fn: Callable[[], Any]) -> Tuple[float, float]:
    """CPU and user-space CPU seconds of one call, as ``_cpu``."""
    gc.collect()
    u = _user_cpu()
    t = time.process_time()
    result = fn()
    gc.collect(0)
    spent = time.process_time() - t
    user = _user_cpu() - u
    del result
    return spent, user


def _pack_all(batches: List[Dict[str, List[List[Any]]]]) -> List[bytes]:
    return [qpack.packb(b) for b in batches]


def _unpack_big(body: bytes) -> Any:
    """unpackb with the cyclic GC paused, as any careful client decodes a big
    result (the GC would otherwise scan the growing result many times)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return qpack.unpackb(body, decode='utf-8')
    finally:
        if enabled:
            gc.enable()


class RawProtocol(asyncio.Protocol):
    """The least a client can do: frame, write, match replies by pid."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiters: Dict[int, asyncio.Future[Tuple[int, bytes]]] = {}
        self.pid = 0
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 8:
            length, pid, tp, _check = HDR.unpack_from(buf, pos)
            end = pos + 8 + length
            if end > n:
                break
            fut = self.waiters.pop(pid)
            fut.set_result((tp, bytes(buf[pos + 8:end])))
            pos = end
        if pos:
            del buf[:pos]

    def request(self, tp: int, body: bytes) -> asyncio.Future[Tuple[int, bytes]]:
        pid = self.pid
        self.pid = (pid + 1) & 0xFFFF
        fut: asyncio.Future[Tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self.waiters[pid] = fut
        self.transport.write(HDR.pack(len(body), pid, tp, tp ^ 0xFF) + body)
        return fut


class RawClient:
    def __init__(self, proto: RawProtocol) -> None:
        self.proto = proto

    async def _call(self, tp: int, data: Any) -> Any:
        rtp, body = await self.proto.request(tp, qpack.packb(data))
        result = _unpack_big(body) if body else None
        if rtp >= 64:
            raise RuntimeError(f'error {rtp}: {result}')
        return result

    async def insert(self, data: Any) -> Any:
        return await self._call(1, data)

    async def query(self, q: str) -> Any:
        return await self._call(0, [q, None])

    def close(self) -> None:
        self.proto.transport.close()


async def open_raw(host: str, port: int, db: str) -> RawClient:
    loop = asyncio.get_running_loop()
    _t, proto = await loop.create_connection(RawProtocol, host, port)
    client = RawClient(proto)
    await client._call(2, ['iris', 'siri', db])
    return client


async def open_client(host: str, port: int, db: str) -> Any:
    from siridb.connector import SiriDBClient  # this checkout or 2.1.6

    client = SiriDBClient('iris', 'siri', db, [(host, port)], keepalive=True)
    result = await client.connect()
    errors = [r for r in result or [] if r is not None]
    if errors:
        raise RuntimeError(f'connect failed: {errors[0]!r}')
    return client


async def run(ns: argparse.Namespace) -> Dict[str, Any]:
    tag = ns.tag
    out: Dict[str, Any] = {'impl': ns.impl, 'python': sys.version.split()[0]}
    if ns.impl == 'raw':
        client: Any = await open_raw(ns.host, ns.port, ns.db)
        out['version'] = f'qpack {getattr(qpack, "__version__", "?")}'
    else:
        client = await open_client(ns.host, ns.port, ns.db)
        import siridb

        out['version'] = getattr(siridb, '__version__', '2.1.6?')
    workloads = set(ns.workloads.split(','))
    try:
        if 'small' in workloads:
            await _small(ns, client, out)
        if 'bulk' in workloads:
            await _bulk(ns, client, out)
        elif 'decode' in workloads:  # its data, inserted unmeasured
            for b in bulk_batches(f'{tag}0', ns.points, ns.batch):
                await client.insert(b)
        if 'decode' in workloads:
            await _decode(ns, client, out)
    finally:
        client.close()
        waiter: Callable[[], Awaitable[None]] = getattr(client, 'wait_closed', None) \
            or (lambda: asyncio.sleep(0.05))
        await waiter()
    return out


async def _small(ns: argparse.Namespace, client: Any, out: Dict[str, Any]) -> None:
    """Small requests, many in flight."""
    tag = ns.tag
    await client.insert({f'tiny-{tag}': [[T0, 1], [T0 + 1, 2], [T0 + 2, 3]]})
    ops = ns.small
    per = max(1, ops // ns.inflight)
    tiny_q = f'select * from "tiny-{tag}"'

    async def small_worker(w: int) -> None:
        for k in range(per):
            if k % 2:
                await client.query(tiny_q)
            else:
                await client.insert({f'small-{tag}-{w % 64}': [[T0 + w * per + k, k]]})

    # best of --reps runs, like the other workloads: a single run swings
    # with how the server happens to batch its replies
    small_runs = []
    for _ in range(ns.reps):
        with Measure() as m:
            await asyncio.gather(*(small_worker(w) for w in range(ns.inflight)))
        small_runs.append((m.cpu, m.wall, m.faults))
    done = per * ns.inflight
    out['small'] = {'cpu': min(r[0] for r in small_runs),
                    'wall': min(r[1] for r in small_runs), 'ops': done,
                    'inflight': ns.inflight, 'runs': small_runs}


async def _bulk(ns: argparse.Namespace, client: Any, out: Dict[str, Any]) -> None:
    """Bulk insert, pre-grouped; best of --reps runs (new series each run)."""
    tag = ns.tag
    runs = []
    for rep in range(ns.reps):
        batches = bulk_batches(f'{tag}{rep}', ns.points, ns.batch)
        points = sum(len(p) for b in batches for p in b.values())
        with Measure() as m:
            for b in batches:
                await client.insert(b)
        runs.append((m.cpu, m.wall, m.faults))
        if ns.impl == 'raw' and rep == 0:
            out['limit_packb'] = {'cpu': min(_cpu(partial(_pack_all, batches))
                                             for _ in range(3)), 'points': points}
        del batches
    out['bulk'] = {'cpu': min(r[0] for r in runs), 'wall': min(r[1] for r in runs),
                   'points': points, 'requests': -(-points // ns.batch),
                   'runs': runs}


async def _decode(ns: argparse.Namespace, client: Any, out: Dict[str, Any]) -> None:
    """Decoding a big select result (the first bulk run's series)."""
    tag = ns.tag
    q = f'select * from /bulk-{tag}0-.*/'
    runs = []
    body = b''
    got = 0
    for _ in range(ns.reps):
        with Measure() as m:
            if ns.impl == 'raw':
                rtp, body = await client.proto.request(0, qpack.packb([q, None]))
                result = _unpack_big(body)
            else:
                result = await client.query(q, timeout=600)
        runs.append((m.cpu, m.wall, m.faults, m.user))
        got = sum(len(v) for v in result.values())
        del result
        # let the loop run once: the finished future (held by the handle
        # that woke this task until the task yields) still holds the
        # result, whose release belongs to no measured block
        await asyncio.sleep(0)
    out['decode'] = {'cpu': min(r[0] for r in runs), 'wall': min(r[1] for r in runs),
                     'user': min(r[3] for r in runs), 'points': got, 'runs': runs}
    if ns.impl == 'raw':
        out['decode']['bytes'] = len(body)
        limit = [_cpu_user(partial(_unpack_big, body)) for _ in range(3)]
        out['limit_unpackb'] = {
            'cpu': min(c for c, _ in limit), 'user': min(u for _, u in limit),
            'cpu_gc_on': min(_cpu(partial(qpack.unpackb, body, decode='utf-8'))
                             for _ in range(3)),
            'points': got, 'bytes': len(body)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('--impl', choices=('raw', 'client'), required=True)
    ap.add_argument('--tag', required=True)
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--db', default='bench')
    ap.add_argument('--points', type=int, default=1_000_000)
    ap.add_argument('--batch', type=int, default=10_000)
    ap.add_argument('--small', type=int, default=20_000)
    ap.add_argument('--inflight', type=int, default=256)
    ap.add_argument('--reps', type=int, default=3)
    ap.add_argument('--workloads', default='small,bulk,decode',
                    help='which to measure, comma separated (decode alone '
                         'inserts its data unmeasured first)')
    ns = ap.parse_args()
    result = asyncio.run(run(ns))
    print(json.dumps(result))


if __name__ == '__main__':
    main()
