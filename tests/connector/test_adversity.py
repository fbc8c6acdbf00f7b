"""The driver on a bad day: real embedded servers behind the fault proxy.

Every test runs under ``strict_loop``: any "Task exception was never
retrieved" (or other loop-level error) and any task left pending fails it.
Inserts are used as probes because their replies tell requests apart
("Successfully inserted N point(s).").
"""
from __future__ import annotations

import asyncio
import logging
import random
import sys
from typing import Any, AsyncIterator, Callable, Dict, List, Tuple

import pytest
from _adversity_helpers import (
    LoopErrors,
    inserted,
    pending_requests,
    points,
    strict_loop,
    timed,
    wait_until,
)
from _driver_helpers import reconnect_delays
from _paths import ROOT

from siridb.connector import SiriDBClient, SiriDBConn, async_connect
from siridb.connector.lib.exceptions import (
    ConnectionLostError,
    PoolError,
    ProtocolError,
    RequestTimeoutError,
)
from siridb.embedded import EmbeddedCluster, EmbeddedServer
from siridb.testing.proxy import FaultProxy

__all__ = ['strict_loop']  # the fixture, imported for pytest

DB = {'dbtest': 'ms'}


MakeClient = Callable[..., SiriDBClient]


@pytest.fixture
async def make_client(strict_loop: LoopErrors) -> AsyncIterator[MakeClient]:
    """A factory of fast-failing clients, all closed at teardown (before
    ``strict_loop`` looks for leftovers, even when the test failed)."""
    made: List[SiriDBClient] = []

    def make(hostlist: List[Any], **kw: Any) -> SiriDBClient:
        opts: Dict[str, Any] = dict(
            keepalive=False, timeout=1.0, inactive_time=0.5, max_wait_retry=0.4,
            backoff_base=0.05, backoff_jitter=0.2, rng=random.Random(7))
        opts.update(kw)
        client = SiriDBClient('iris', 'siri', 'dbtest', hostlist, **opts)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
        await client.wait_closed()


async def shut(client: SiriDBClient) -> None:
    client.close()
    await client.wait_closed()
    assert pending_requests(client) == 0


def stored(server: Any, name: str) -> int:
    series = server.store.databases['dbtest'].series.get(name)
    return 0 if series is None else len(series)


@pytest.fixture
async def cluster3() -> AsyncIterator[Tuple[EmbeddedCluster, List[FaultProxy]]]:
    async with EmbeddedCluster(3, databases=DB) as cluster:
        proxies = [FaultProxy(s.host, s.port) for s in cluster.servers]
        for p in proxies:
            await p.start()
        try:
            yield cluster, proxies
        finally:
            for p in proxies:
                await p.close()


@pytest.fixture
async def proxied() -> AsyncIterator[Tuple[EmbeddedServer, FaultProxy]]:
    async with EmbeddedServer(databases=DB) as server:
        async with FaultProxy(server.host, server.port) as proxy:
            yield server, proxy


# --------------------------------------------------------------- pool failover

async def test_server_killed_with_requests_in_flight(
        make_client: MakeClient,
        cluster3: Tuple[EmbeddedCluster, List[FaultProxy]]) -> None:
    cluster, proxies = cluster3
    client = make_client([p.address for p in proxies])
    assert await client.connect() == [None, None, None]
    before = [h.protocol for h in client.hosts]
    for p in proxies:  # requests take 0.2 s to reach a server
        p.set_latency(0.2, direction='up')
    tasks = [asyncio.ensure_future(client.insert({f'k{i}': points(i + 1)}))
             for i in range(60)]
    await asyncio.sleep(0.05)
    await cluster.servers[0].stop()  # killed with requests on their way
    results = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert results == [inserted(i + 1) for i in range(60)]
    # each insert was stored exactly once, none lost, none doubled
    assert [stored(cluster, f'k{i}') for i in range(60)] == [i + 1 for i in range(60)]
    assert not client.hosts[0].up
    assert [h.protocol for h in client.hosts[1:]] == before[1:]
    assert pending_requests(client) == 0
    await shut(client)


async def _spawn_server() -> Tuple[asyncio.subprocess.Process, int]:
    """``python -m siridb.embedded`` in a child process on a free port."""
    probe = await asyncio.start_server(lambda r, w: None, '127.0.0.1', 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, '-m', 'siridb.embedded', '--host', '127.0.0.1',
        '--port', str(port), '--db', 'dbtest', cwd=str(ROOT),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return proc, port


async def _listening(port: int, timeout: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            _r, w = await asyncio.open_connection('127.0.0.1', port)
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        w.close()
        await w.wait_closed()
        return


async def test_server_process_killed_with_requests_in_flight(
        make_client: MakeClient) -> None:
    # the victim is a child process (SIGKILL: no goodbye, replies lost); the
    # two that take over may live in this process
    proc, port = await _spawn_server()
    try:
        async with EmbeddedCluster(2, databases=DB) as rest:
            await _listening(port)
            client = make_client([('127.0.0.1', port), *rest.hostlist])
            assert await client.connect() == [None, None, None]
            tasks = [asyncio.ensure_future(client.insert({f'x{i}': points(1 + i % 4)}))
                     for i in range(300)]
            await asyncio.sleep(0)  # all written; the servers are working on them
            victim = client.hosts[0].protocol
            assert victim is not None and victim.pending > 0
            proc.kill()
            results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
            assert results == [inserted(1 + i % 4) for i in range(300)]
            await wait_until(lambda: not client.hosts[0].up, 3)
            assert client.hosts[0].inactive_until > 0  # some were retried elsewhere
            assert all(h.up for h in client.hosts[1:])
            assert pending_requests(client) == 0
            await shut(client)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_every_server_down_then_back(make_client: MakeClient,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger='siridb.connector')
    # a 60 s base backoff that only max_wait_retry caps: a client that ignored
    # the cap would wait 48-60 s before its first reconnect attempt
    cap, jitter = 0.15, 0.2
    async with EmbeddedCluster(2, databases=DB) as cluster:
        client = make_client(cluster.hostlist, backoff_base=60, max_wait_retry=cap,
                             backoff_jitter=jitter)
        assert await client.connect() == [None, None]
        for s in cluster.servers:
            await s.stop()
        await wait_until(lambda: not client.connected, 2)
        # nothing to send to: a fast PoolError, not a hang
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(PoolError):
            await client.insert({'x': points(1)})
        assert asyncio.get_running_loop().time() - t0 < 0.2
        # several failed reconnect rounds: two done, the third one waiting
        await wait_until(lambda: len(reconnect_delays(caplog)) >= 3, 5)
        for s in cluster.servers:
            await s.start()  # same ports
        # Not a wall-clock bound on the reconnect (that flakes on a loaded
        # machine): the schedule the client reports is every delay at the cap
        # less its jitter, never the base; and the loop clock only has to
        # separate one capped delay plus a connect (under 5 s even on a busy
        # CI machine) from the 48 s of an uncapped one.
        await wait_until(lambda: all(h.up for h in client.hosts), cap + 5.0)
        delays = reconnect_delays(caplog)
        assert len(delays) >= 3
        assert all(cap * (1 - jitter) - 1e-9 <= d <= cap for d in delays), delays
        assert await client.insert({'x': points(2)}) == inserted(2)
        await shut(client)


async def test_half_open_connection(make_client: MakeClient) -> None:
    async with EmbeddedCluster(2, databases=DB) as cluster:
        a, b = cluster.servers
        async with FaultProxy(a.host, a.port) as proxy:
            client = make_client([proxy.address, (b.host, b.port)], keepalive=True,
                                 keepalive_idle=0.2, keepalive_timeout=0.2, timeout=0.5)
            assert await client.connect() == [None, None]
            loop = asyncio.get_running_loop()
            proxy.stall('both')  # A accepts bytes and never answers
            t0 = loop.time()

            async def one(i: int) -> Tuple[Any, float]:
                t = loop.time()
                try:
                    r: Any = await client.insert({'h': points(1, i)}, timeout=0.25)
                except Exception as exc:
                    r = exc
                return r, loop.time() - t

            outcomes = await asyncio.gather(*(one(i) for i in range(20)))
            timeouts = [t for r, t in outcomes if isinstance(r, Exception)]
            assert timeouts, 'no request was routed to the stalled server'
            for r, t in outcomes:
                if isinstance(r, Exception):  # failed by its own deadline
                    assert isinstance(r, RequestTimeoutError)
                    assert isinstance(r, TimeoutError)
                    assert 0.24 <= t <= 0.25 + 0.5
                else:
                    assert r == inserted(1)
            # keepalive notices within idle + timeout (0.4 s, later than the
            # requests' 0.25 s deadline) of the stall
            await wait_until(lambda: not client.hosts[0].up, 2)
            assert loop.time() - t0 <= 0.4 + 0.6
            # and the pool routes around it
            results = await asyncio.gather(
                *(client.insert({'h2': points(1, i)}, timeout=0.25) for i in range(20)))
            assert results == [inserted(1)] * 20
            proxy.unstall()
            await wait_until(lambda: client.hosts[0].up, 3)
            await shut(client)


async def test_slow_server(make_client: MakeClient,
                           proxied: Tuple[EmbeddedServer, FaultProxy]) -> None:
    server, proxy = proxied
    client = make_client([proxy.address])
    assert await client.connect() == [None]
    proto = client.hosts[0].protocol
    assert proto is not None
    proxy.set_latency(0.3, direction='down')
    took = await timed(client.insert({'slow': points(3)}, timeout=0.1))
    assert 0.09 <= took < 0.3  # its deadline, not the reply's arrival
    with pytest.raises(RequestTimeoutError):
        await client.insert({'slow': points(4)}, timeout=0.1)
    assert proto.pending == 2  # pids kept until the late replies come
    # a patient request gets its own reply through the same slow link, while
    # the late replies to the two timed out ones arrive before it
    assert await client.insert({'slow': points(5)}, timeout=2) == inserted(5)
    await wait_until(lambda: proto.pending == 0, 2)  # late replies dropped
    proxy.set_latency(0)
    assert await client.insert({'slow': points(2)}) == inserted(2)
    assert client.hosts[0].protocol is proto  # still the same connection
    assert stored(server, 'slow') == 3 + 4 + 5 + 2
    await shut(client)


# --------------------------------------------------------------- bad frames

async def test_corrupt_check_byte_single_connection(
        make_client: MakeClient, proxied: Tuple[EmbeddedServer, FaultProxy]) -> None:
    server, proxy = proxied
    conn = await async_connect('iris', 'siri', 'dbtest', *proxy.address)
    try:
        proxy.corrupt(offset=7, direction='down')  # next reply's check byte
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(conn.insert({'c': points(1)}), 2)
        await wait_until(lambda: not conn.connected, 1)
    finally:
        conn.close()
        await conn.wait_closed()


async def test_corrupt_frame_replaces_only_that_connection(
        make_client: MakeClient,
        cluster3: Tuple[EmbeddedCluster, List[FaultProxy]]) -> None:
    cluster, proxies = cluster3
    hostlist: List[Any] = [(*proxies[0].address, {'weight': 9}), proxies[1].address,
                           proxies[2].address]
    client = make_client(hostlist)
    assert await client.connect() == [None, None, None]
    old = [h.protocol for h in client.hosts]
    proxies[0].corrupt(offset=7, direction='down')
    results = await asyncio.gather(
        *(client.insert({f'cf{i}': points(i + 1)}) for i in range(10)))
    assert results == [inserted(i + 1) for i in range(10)]  # retried elsewhere
    assert old[0] is not None and not old[0].is_connected()
    await wait_until(lambda: client.hosts[0].up, 3)  # replaced by a new one
    assert client.hosts[0].protocol is not old[0]
    assert [h.protocol for h in client.hosts[1:]] == old[1:]  # untouched
    assert [p.accepted for p in proxies] == [2, 1, 1]
    await shut(client)


async def test_truncated_frame_fails_requests_fast(
        make_client: MakeClient, proxied: Tuple[EmbeddedServer, FaultProxy]) -> None:
    server, proxy = proxied
    conn = await async_connect('iris', 'siri', 'dbtest', *proxy.address)
    try:
        proxy.truncate(offset=0, count=3, direction='down')  # cut the length field
        results = await asyncio.wait_for(asyncio.gather(
            *(conn.insert({'t': points(i + 1)}, timeout=5) for i in range(4)),
            return_exceptions=True), 3)
        for i, r in enumerate(results):
            # never a wrong reply: the right one, or the connection fails
            assert r == inserted(i + 1) or isinstance(r, ConnectionLostError), r
        assert any(isinstance(r, ProtocolError) for r in results), results
        assert not conn.connected
    finally:
        conn.close()
        await conn.wait_closed()


async def test_close_mid_package(make_client: MakeClient,
                                 proxied: Tuple[EmbeddedServer, FaultProxy]) -> None:
    server, proxy = proxied
    client = make_client([proxy.address])
    assert await client.connect() == [None]
    proxy.close_after(5, direction='down')
    t = await timed(client.insert({'m': points(1)}))
    assert t < 1.0  # no wait for a timeout
    await wait_until(lambda: client.hosts[0].up, 3)  # reconnected by itself
    assert await client.insert({'m': points(2)}) == inserted(2)
    await shut(client)


async def test_split_into_single_bytes(make_client: MakeClient,
                                       proxied: Tuple[EmbeddedServer, FaultProxy]) -> None:
    server, proxy = proxied
    client = make_client([proxy.address])
    proxy.split(1, direction='both')
    assert await client.connect() == [None]
    results = await asyncio.gather(*(client.insert({'b': points(i + 1)})
                                     for i in range(5)))
    assert results == [inserted(i + 1) for i in range(5)]
    assert proxy.writes['down'] > 100
    await shut(client)


async def test_reset_with_requests_in_flight(
        make_client: MakeClient,
        cluster3: Tuple[EmbeddedCluster, List[FaultProxy]]) -> None:
    cluster, proxies = cluster3
    client = make_client([p.address for p in proxies])
    assert await client.connect() == [None, None, None]
    assert await client.insert({'r': points(3)}) == inserted(3)
    for p in proxies:
        p.set_latency(0.2, direction='down')  # replies still on their way
    queries = [asyncio.ensure_future(client.query('select * from "r"'))
               for _ in range(30)]
    await asyncio.sleep(0.05)
    old = client.hosts[1].protocol
    assert old is not None and old.pending > 0
    proxies[1].reset()  # RST: the queries on it are retried elsewhere
    results = await asyncio.wait_for(asyncio.gather(*queries), 5)
    assert results == [{'r': points(3)}] * 30
    assert not old.is_connected()
    for p in proxies:
        p.set_latency(0)
    await wait_until(lambda: all(h.up for h in client.hosts), 3)  # reconnected
    assert client.hosts[1].protocol is not old
    assert [p.accepted for p in proxies] == [1, 2, 1]
    assert pending_requests(client) == 0
    await shut(client)


async def test_paused_server_is_routed_around(
        make_client: MakeClient,
        cluster3: Tuple[EmbeddedCluster, List[FaultProxy]]) -> None:
    cluster, proxies = cluster3
    client = make_client([p.address for p in proxies], inactive_time=5)
    assert await client.connect() == [None, None, None]
    cluster.servers[2].pause()  # answers ServerError: retriable
    results = await asyncio.gather(
        *(client.insert({f'p{i}': points(1)}) for i in range(30)))
    assert results == [inserted(1)] * 30
    assert [stored(cluster, f'p{i}') for i in range(30)] == [1] * 30
    assert client.hosts[2].up  # connected, only skipped for inactive_time
    assert not client.hosts[2].available(asyncio.get_running_loop().time())
    await shut(client)


async def test_single_server_conn_waits_for_a_refusing_server(
        make_client: MakeClient, proxied: Tuple[EmbeddedServer, FaultProxy]) -> None:
    server, proxy = proxied
    proxy.refuse()  # every connection reset at once, as a server starting up
    conn = SiriDBConn('iris', 'siri', 'dbtest', *proxy.address, keepalive=False,
                      backoff_base=0.05, max_wait_retry=0.2, timeout=0.5)
    try:
        task = asyncio.ensure_future(conn.connect(timeout=5))
        await wait_until(lambda: proxy.accepted >= 2, 3)  # it keeps trying
        assert not task.done()
        proxy.refuse(False)
        await asyncio.wait_for(task, 3)
        assert conn.is_connected()
        assert await conn.insert({'sc': points(2)}) == inserted(2)
        proxy.reset()  # and again after a reset, by itself
        await wait_until(lambda: proxy.connections == 1 and conn.is_connected(), 3)
        assert await conn.insert({'sc': points(3)}) == inserted(3)
        assert stored(server, 'sc') == 5
    finally:
        conn.close()
        await conn.wait_closed()


# --------------------------------------------------------------- cancellation

async def test_cancel_during_connect_and_auth(
        make_client: MakeClient, proxied: Tuple[EmbeddedServer, FaultProxy]) -> None:
    server, proxy = proxied
    client = make_client([proxy.address])
    # at the first await (TCP connect)
    task = asyncio.ensure_future(client.connect())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # while waiting for the AUTH reply
    proxy.stall('up')
    task = asyncio.ensure_future(client.connect())
    await proxy.wait_connections(1)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: proxy.connections == 0, 2)  # nothing left open
    proxy.unstall()
    assert await client.connect() == [None]
    assert await client.insert({'cc': points(2)}) == inserted(2)
    await shut(client)


async def test_cancel_in_flight_leaves_no_stray_reply(
        make_client: MakeClient, proxied: Tuple[EmbeddedServer, FaultProxy]) -> None:
    server, proxy = proxied
    client = make_client([proxy.address])
    assert await client.connect() == [None]
    assert await client.insert({'a': points(2), 'b': points(3)}) == inserted(5)
    proxy.set_latency(0.3, direction='down')
    first = asyncio.ensure_future(client.query('select * from "a"'))
    await asyncio.sleep(0.1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    # the proxy keeps order: the next reply comes at once after the late one
    proxy.set_latency(0)
    # the late reply to the cancelled query must not answer this one
    assert await client.query('select * from "b"') == {'b': points(3)}
    assert await client.insert({'q': points(7)}) == inserted(7)
    proto = client.hosts[0].protocol
    assert proto is not None
    await wait_until(lambda: proto.pending == 0, 2)
    await shut(client)


async def test_cancel_reconnect_sleep_and_close(make_client: MakeClient) -> None:
    server = EmbeddedServer(databases=DB)
    await server.start()
    try:
        client = make_client([(server.host, server.port)], max_wait_retry=5,
                             backoff_base=2)
        assert await client.connect() == [None]
        await server.stop()
        await wait_until(lambda: not client.connected, 2)
        await asyncio.sleep(0.05)  # the reconnect loop sleeps now
        waiter = asyncio.ensure_future(client.wait_connected(10))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        closer = asyncio.ensure_future(client.wait_closed())
        await asyncio.sleep(0)
        client.close()  # cancels the reconnect sleep
        closer.cancel()  # and the wait for close itself, while it waits
        await asyncio.wait([closer])
        assert closer.cancelled() or closer.exception() is None
        await client.wait_closed()
        assert client._reconnect_task is None or client._reconnect_task.done()
        assert client.is_closed
        await server.start()
        assert await client.connect() == [None]  # usable again
        assert await client.insert({'rc': points(3)}) == inserted(3)
        await shut(client)
    finally:
        await server.stop()


# --------------------------------------------------------------- volume

async def test_ten_thousand_concurrent_queries(make_client: MakeClient) -> None:
    async with EmbeddedServer(databases=DB) as server:
        client = make_client([(server.host, server.port)])
        assert await client.connect() == [None]
        data = {f'q{j}': points(j + 1, 100 * j) for j in range(10)}
        assert await client.insert(data) == inserted(sum(range(1, 11)))
        n = 10_000
        results = await asyncio.gather(
            *(client.query(f'select * from "q{i % 10}"') for i in range(n)))
        for i, r in enumerate(results):
            assert r == {f'q{i % 10}': data[f'q{i % 10}']}
        assert pending_requests(client) == 0
        await shut(client)


async def test_requests_across_the_pid_wrap(make_client: MakeClient) -> None:
    """A real server, 6,000 inserts from 1,000 workers across the pid wrap
    (the full 70,000-request wrap is in memory, in test_request_core.py)."""
    async with EmbeddedServer(databases=DB) as server:
        client = make_client([(server.host, server.port)])
        assert await client.connect() == [None]
        proto = client.hosts[0].protocol
        assert proto is not None
        first = 65536 - 3000
        proto.core.next_pid = first
        total = 6_000
        workers = 1_000  # a sliding window: pids are in flight across the wrap
        per = total // workers
        bad: List[Any] = []

        async def worker(w: int) -> None:
            for k in range(per):
                n = 1 + (w + k) % 5
                base = (w * per + k) * 8
                reply = await client.insert({'w': [[base + j, j] for j in range(n)]})
                if reply != inserted(n):
                    bad.append((w, k, reply))

        await asyncio.gather(*(worker(w) for w in range(workers)))
        assert bad == []
        expected = sum(1 + (w + k) % 5 for w in range(workers) for k in range(per))
        assert proto.core.next_pid == (first + total) % 65536  # wrapped once
        assert client.hosts[0].protocol is proto  # all on one connection
        assert stored(server, 'w') == expected
        await shut(client)
