"""Chaos check of write-session delivery against a real SiriDB cluster.

    python bench/real_cluster_chaos.py --binary /path/to/siridb-server
    python bench/real_cluster_chaos.py --delivery at_least_once

Starts three real servers on loopback (their own ports and ``db_path``
under a temporary folder): A holds the database, B joins as a replica of
pool 0, C as pool 1. One ``SiriDBClient`` with all three writes ``--points``
points over ``--series`` series through a ``WriteSession``; mid-stream B and
later C are killed with SIGKILL and started again. Afterwards every series
is read back and compared with what was written, copy by copy: prints the
points missing and the points stored more often than written, and the
session's stats; the comparison is printed as each server answers (a
server answers for its own pool from what it holds). Exits 2 when the
binary is absent. Not part of the test
suite (it takes about a minute).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from siridb.connector import SiriDBClient  # noqa: E402
from siridb.connector.lib.service import SiriDBService  # noqa: E402

BINARY = '/work/realsiridb/Release/siridb-server'
CONF = """[siridb]
listen_client_port = {client}
server_name = 127.0.0.1:{backend}
ip_support = IPV4ONLY
bind_client_address = 127.0.0.1
bind_server_address = 127.0.0.1
db_path = {path}
max_open_files = 512
enable_shard_compression = 1
enable_shard_auto_duration = 1
buffer_sync_interval = 0
heartbeat_interval = 1
http_status_port = 0
http_api_port = 0
enable_pipe_support = 0
optimize_interval = 3600
ignore_broken_data = 0
"""
T0 = 1_700_000_000_000


class Server:
    """One real siridb-server process with its own config and data folder."""

    def __init__(self, binary: str, root: Path, name: str, client: int, backend: int) -> None:
        self.binary = binary
        self.name = name
        self.client = client
        self.path = root / name
        self.path.mkdir(parents=True)
        self.conf = root / f'{name}.conf'
        self.conf.write_text(CONF.format(client=client, backend=backend,
                                         path=str(self.path) + '/'))
        self.log = open(root / f'{name}.log', 'ab')
        self.proc: Any = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, '--config', str(self.conf)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(('127.0.0.1', self.client), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f'{self.name} did not start')

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def free_ports(n: int) -> List[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def read_back(client: SiriDBClient,
                    names: List[str]) -> List[Counter[Tuple[str, int, Any]]]:
    """What each server answers for every series (a server answers for its
    own pool from what it holds, for another pool through one of its servers)."""
    views: List[Counter[Tuple[str, int, Any]]] = []
    for i in range(0, len(names), 50):
        chunk = names[i:i + 50]
        q = 'select * from ' + ', '.join(f'"{n}"' for n in chunk)
        replies: List[Dict[str, Any]] = await client.query_each(q, timeout=60)
        while len(views) < len(replies):
            views.append(Counter())
        for view, reply in zip(views, replies):
            for name, points in reply.items():
                view.update((name, ts, v) for ts, v in points)
    return views


async def run(ns: argparse.Namespace, servers: List[Server]) -> int:
    a, b, c = servers
    a.start()
    async with SiriDBService(port=a.client) as svc:
        await svc.new_database('chaos', 'ms')
    b.start()
    async with SiriDBService(port=b.client) as svc:
        await svc.new_replica('chaos', '127.0.0.1', a.client, 'iris', 'siri', pool=0,
                              timeout=120)
    await asyncio.sleep(3)  # the replica synchronizes before another server joins
    c.start()
    async with SiriDBService(port=c.client) as svc:
        await svc.new_pool('chaos', '127.0.0.1', a.client, 'iris', 'siri', timeout=120)
    await asyncio.sleep(3)
    client = SiriDBClient('iris', 'siri', 'chaos', [('127.0.0.1', s.client) for s in servers],
                          keepalive=False, backoff_base=0.2, max_wait_retry=1,
                          inactive_time=1, pool_retry_interval=0.5)
    await client.connect()
    names = [f'chaos.{i:03d}' for i in range(ns.series)]
    sent: Counter[Tuple[str, int, Any]] = Counter()
    loop = asyncio.get_running_loop()
    try:
        s = client.session(autocommit_every=500, max_in_flight=4, time_precision='ms',
                           insert_timeout=ns.insert_timeout, delivery=ns.delivery,
                           retry_delay=0.2, retry_max_delay=2,
                           verify_settle=ns.verify_settle)
        per_step = 1000
        steps = ns.points // per_step
        started = loop.time()
        for step in range(steps):
            pts = [(names[(step * per_step + i) % ns.series],
                    T0 + (step * per_step + i) // ns.series, float(i % 97))
                   for i in range(per_step)]
            await s.write_many(pts)
            sent.update(pts)
            if step == steps // 4:
                print(f'{loop.time() - started:.1f} s: kill -9 B', flush=True)
                b.kill()
            if step == steps // 4 + steps // 8:
                print(f'{loop.time() - started:.1f} s: restart B', flush=True)
                b.start()
            if step == steps // 2:
                print(f'{loop.time() - started:.1f} s: kill -9 C', flush=True)
                c.kill()
            if step == steps // 2 + steps // 8:
                print(f'{loop.time() - started:.1f} s: restart C', flush=True)
                c.start()
            await asyncio.sleep(0.01)
        await asyncio.wait_for(s.close(), 600)
        print(f'{loop.time() - started:.1f} s: session closed', flush=True)
        await asyncio.sleep(2)
        views = await read_back(client, names)
    finally:
        client.close()
        await client.wait_closed()
    for k, got in enumerate(views):
        missing = sent - got
        extra = got - sent
        print(f'delivery={ns.delivery}, as server {k} answers: written '
              f'{sum(sent.values())} points; stored {sum(got.values())}; missing '
              f'{sum(missing.values())}; stored more often than written '
              f'{sum(extra.values())} (in {len({x[0] for x in extra})} series)')
    got = views[0]
    for view in views[1:]:
        got = got | view
    missing = sent - got
    extra = got - sent
    print(s.stats())
    print(f'delivery={ns.delivery}, the fullest server per point: missing '
          f'{sum(missing.values())}; stored more often than written {sum(extra.values())}')
    # extra copies may come from SiriDB's own replication (see the notes): only a
    # point no server holds fails the run
    return 0 if not missing else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--binary', default=os.environ.get('SIRIDB_SERVER', BINARY))
    ap.add_argument('--delivery', default='verified')
    ap.add_argument('--points', type=int, default=200_000)
    ap.add_argument('--series', type=int, default=300)
    ap.add_argument('--insert-timeout', type=float, default=10)
    ap.add_argument('--verify-settle', type=float, default=5.0)
    ap.add_argument('--keep', action='store_true', help='keep the data folder')
    ns = ap.parse_args()
    if not os.access(ns.binary, os.X_OK):
        print(f'no siridb-server binary at {ns.binary}', file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix='siridb-chaos-'))
    ports = free_ports(6)
    servers = [Server(ns.binary, root, name, ports[i], ports[i + 3])
               for i, name in enumerate('abc')]
    try:
        return asyncio.run(run(ns, servers))
    finally:
        for srv in servers:
            srv.stop()
        if ns.keep:
            print(f'data and logs in {root}')
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
