"""The bulk-speed session paths (per-point fast path, write_many,
write_series, several packages in flight) under faults, on loopback against
the embedded server, through ``FaultProxy`` where the network misbehaves."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter, namedtuple
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, List, Set, Tuple

import pytest
from _embedded_helpers import poll, stored
from _session_helpers import connected, fast_client

from siridb.connector import BufferFullError, Point, RejectedPointsError, SiriDBClient
from siridb.connector.lib.codec import packb
from siridb.connector.lib.dbprecision import known_precision
from siridb.connector.lib.exceptions import (
    ClientClosedError,
    ConnectionLostError,
    Failover,
    InsertError,
    LoadingDatabaseError,
    PoolError,
    RequestTimeoutError,
    ServerError,
    TooManyRequestsError,
    failover_of,
    is_retriable,
)
from siridb.connector.lib.session import Rejected, WriteSession
from siridb.connector.lib.validate import unpack_points
from siridb.embedded import EmbeddedServer
from siridb.testing.proxy import FaultProxy

DB = 'dbtest'


class CountingClient(SiriDBClient):
    """Counts inserts in flight at the same time (the session's concurrency)."""

    in_flight = 0
    peak = 0

    async def insert_packed(self, body: bytes, timeout: Any = 300) -> Any:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super().insert_packed(body, timeout)
        finally:
            self.in_flight -= 1


class BadValueClient(SiriDBClient):
    """Turns the values of series named 'bad*' into None on the wire, so
    that the server rejects any insert holding them (InsertError 66)."""

    async def insert_packed(self, body: bytes, timeout: Any = 300) -> Any:
        data = unpack_points(body)
        if any(k.startswith('bad') for k in data):
            body = packb({k: ([(ts, None) for ts, _ in v] if k.startswith('bad') else v)
                          for k, v in data.items()})
        return await super().insert_packed(body, timeout)


async def test_kill_and_restart_with_packages_in_flight(server: EmbeddedServer) -> None:
    """Connections reset and the server stopped and started while several
    packages are in flight: every point is stored (at least once) and
    confirmed exactly once; nothing is left pending."""
    sent: Set[Tuple[str, int, float]] = set()
    async with FaultProxy(server.host, server.port) as proxy:
        c = fast_client([proxy.address], CountingClient)
        await c.connect()
        try:
            s = c.session(autocommit_every=40, flush_interval=0.01, max_in_flight=4,
                          retry_delay=0.01, retry_max_delay=0.05, insert_timeout=2,
                          time_precision='ms')
            produced = 0

            async def produce() -> None:
                nonlocal produced
                for step in range(60):
                    base = step * 100
                    if step % 3 == 0:
                        for i in range(100):
                            p = (f'k{i % 7}', base + i, float(i))
                            await s.write(p[0], p[2], p[1])
                            sent.add(p)
                    elif step % 3 == 1:
                        pts = [(f'k{i % 7}', base + i, float(i)) for i in range(100)]
                        await s.write_many(pts)
                        sent.update(pts)
                    else:
                        tss = list(range(base, base + 100))
                        vals = [float(i) for i in range(100)]
                        await s.write_series('col', tss, vals)
                        sent.update(('col', t, v) for t, v in zip(tss, vals))
                    produced += 100
                    await asyncio.sleep(0.002)

            producer = asyncio.ensure_future(produce())
            await poll(lambda: produced >= 1500)
            proxy.reset()  # every connection aborted with packages in flight
            await poll(lambda: produced >= 3000)
            await server.stop()  # the server goes down...
            await asyncio.sleep(0.1)
            await server.start()  # ...and comes back (same store)
            await poll(lambda: produced >= 4500)
            proxy.reset()
            await asyncio.wait_for(producer, 30)
            await asyncio.wait_for(s.close(), 30)
        finally:
            c.close()
            await c.wait_closed()
    assert len(sent) == 6000
    got: Counter[Tuple[str, int, Any]] = Counter()
    for name in [f'k{i}' for i in range(7)] + ['col']:
        got.update((name, ts, v) for ts, v in stored(server, name))
    assert set(got) == sent  # nothing lost (a few may be stored twice)
    st = s.stats()
    assert st.written == 6000 and st.pending == 0 and st.rejected == 0  # confirmed once
    assert st.retried > 0
    assert c.peak >= 2  # several packages were in flight


async def test_rejected_series_isolated_with_several_in_flight(
        server: EmbeddedServer) -> None:
    c = fast_client([(server.host, server.port)], BadValueClient)
    await c.connect()
    seen: List[Rejected] = []
    try:
        async with c.session(autocommit_every=30, max_in_flight=3, time_precision='ms',
                             on_error=seen.append) as s:
            await s.write_many([(f'ok{i % 3}', i, i) for i in range(200)]
                               + [('bad1', i, i) for i in range(20)])
            await s.write_series('bad2', list(range(15)), [0.5] * 15)
            await s.write_series('okcol', list(range(50)), [1.5] * 50)
            for i in range(10):
                await s.write('bad1', i, 100 + i)
                await s.write('ok0', i, 1000 + i)
    finally:
        c.close()
        await c.wait_closed()
    bad = Counter(p.series for r in seen for p in r.points)
    assert bad == {'bad1': 30, 'bad2': 15}
    assert all(isinstance(r.error, InsertError) for r in seen)
    for r in seen:  # each report names one bad series only
        assert len({p.series for p in r.points}) == 1
    assert sum(len(stored(server, f'ok{i}')) for i in range(3)) == 210
    assert len(stored(server, 'okcol')) == 50
    assert stored(server, 'bad1') == [] and stored(server, 'bad2') == []
    assert (s.written, s.rejected, s.pending) == (260, 45, 0)


async def test_rejections_without_on_error_are_raised(server: EmbeddedServer) -> None:
    c = fast_client([(server.host, server.port)], BadValueClient)
    await c.connect()
    try:
        s = c.session(time_precision='ms', max_in_flight=2)
        await s.write_series('bad', [1, 2], [1, 2])
        await s.write_many([('good', 1, 1), ('good', 2, 2)])
        with pytest.raises(RejectedPointsError) as info:
            await s.commit()
        assert [p.series for r in info.value.rejected for p in r.points] == ['bad', 'bad']
        await s.close()
    finally:
        c.close()
        await c.wait_closed()
    assert stored(server, 'good') == [(1, 1), (2, 2)]


@pytest.mark.parametrize('path', ['write', 'write_many', 'write_series'])
async def test_stalled_server_never_exceeds_max_buffer_points(
        server: EmbeddedServer, path: str) -> None:
    """Requests vanish (the proxy drops them): the producer is held at
    ``max_buffer_points``; sampled on every loop turn the buffer never holds
    more. Once the link works again, every point is stored exactly once."""
    limit = 400
    async with FaultProxy(server.host, server.port) as proxy:
        c = fast_client([proxy.address])
        await c.connect()
        try:
            s = c.session(autocommit_every=50, max_buffer_points=limit, max_in_flight=4,
                          flush_interval=0.01, retry_delay=0.01, retry_max_delay=0.05,
                          insert_timeout=0.3, time_precision='ms')
            proxy.stall('up')  # nothing reaches the server: never stored twice
            peak = 0
            produced = 0
            stop = False

            async def sample() -> None:
                nonlocal peak
                while not stop:
                    peak = max(peak, s.pending)
                    await asyncio.sleep(0)

            async def produce() -> None:
                nonlocal produced, peak
                for i in range(0, 2000, 20):
                    if path == 'write':
                        for j in range(20):
                            await s.write('st', i + j, i + j)
                    elif path == 'write_many':
                        await s.write_many([('st', i + j, i + j) for j in range(20)])
                    else:
                        await s.write_series('st', range(i, i + 20), range(i, i + 20))
                    produced += 20
                    peak = max(peak, s.pending)

            sampler = asyncio.ensure_future(sample())
            producer = asyncio.ensure_future(produce())
            await poll(lambda: produced >= limit)
            retried = s.retried
            await poll(lambda: s.retried > retried)  # attempts time out, go again
            assert not producer.done()
            assert produced == limit and s.pending == limit
            proxy.unstall('up')
            proxy.reset()  # the stalled connections are out of step: start anew
            await asyncio.wait_for(producer, 30)
            await asyncio.wait_for(s.close(), 30)
            stop = True
            await sampler
        finally:
            c.close()
            await c.wait_closed()
    assert peak <= limit
    assert stored(server, 'st') == [(i, i) for i in range(2000)]
    assert (s.written, s.pending) == (2000, 0)


class FakeArray:
    """Duck-typed like a numpy array: a dtype and tolist()."""

    class dtype:
        kind = 'i'

    def __init__(self, items: List[Any]) -> None:
        self.items = items

    def tolist(self) -> List[Any]:
        return list(self.items)


class FakeDatetimeArray(FakeArray):
    class dtype:
        kind = 'M'


async def test_write_series_checks_and_takes_nothing_on_error(
        server: EmbeddedServer) -> None:
    c = fast_client([(server.host, server.port)])
    await c.connect()
    try:
        s = c.session(time_precision='ms')
        with pytest.raises(ValueError, match='2 timestamps but 3 values'):
            await s.write_series('w', [1, 2], [1, 2, 3])
        with pytest.raises(TypeError, match='series name must be a str'):
            await s.write_series(b'w', [1], [1])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="out of range for precision 'ms'"):
            await s.write_series('w', [1, -5], [1, 2])
        with pytest.raises(ValueError, match='outside the signed 64-bit range'):
            await s.write_series('w', [1, 2], [1, 2 ** 63])
        with pytest.raises(TypeError, match='value must be int, float or str'):
            await s.write_series('w', [1, 2], [1, None])
        with pytest.raises(TypeError, match='datetime64'):
            await s.write_series('w', FakeDatetimeArray([1]), [1])
        with pytest.raises(TypeError, match='sequence or an array'):
            await s.write_series('w', 5, [1])
        assert s.pending == 0
        when = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
        ms = int(when.timestamp() * 1000)
        assert await s.write_series('w', FakeArray([1, 2]), FakeArray([10, 20])) == 2
        assert await s.write_series('w2', (3, when), ('x', 'y')) == 2
        assert await s.write_series('w', [], []) == 0
        await s.close()
    finally:
        c.close()
        await c.wait_closed()
    assert stored(server, 'w') == [(1, 10), (2, 20)]
    assert stored(server, 'w2') == [(3, 'x'), (ms, 'y')]


async def test_write_many_takes_any_point_shape_or_none(server: EmbeddedServer) -> None:
    Reordered = namedtuple('Reordered', 'value series timestamp')
    c = fast_client([(server.host, server.port)])
    await c.connect()
    try:
        s = c.session(time_precision='ms')
        good = [('m', 1, 1.5), ['m', 2, 2.5], Point('m', 3, 3.5),
                Reordered(4.5, 'm', 4), ('m', 5.0, 5.5)]  # float seconds: 5000 ms
        with pytest.raises(ValueError, match='out of range'):
            await s.write_many(good + [('m', -1, 1)])
        with pytest.raises(TypeError):
            await s.write_many(good + [('m', 1)])
        with pytest.raises(TypeError, match='series name must be a str'):
            await s.write_many(good + [(7, 1, 1)])
        with pytest.raises(ValueError, match='cannot be empty'):
            await s.write_many([('', 1, 1)])
        with pytest.raises(TypeError, match='iterable of points'):
            await s.write_many('m')
        assert s.pending == 0
        assert await s.write_many(iter(good)) == 5
        await s.close()
    finally:
        c.close()
        await c.wait_closed()
    assert stored(server, 'm') == [(1, 1.5), (2, 2.5), (3, 3.5), (4, 4.5), (5000, 5.5)]


async def test_precision_is_checked_with_a_clear_error(server: EmbeddedServer) -> None:
    c = fast_client([(server.host, server.port)])
    await c.connect()
    try:
        s = c.session(time_precision='s')
        with pytest.raises(ValueError,
                           match=r"out of range for precision 's' \(0\.\.4294967295\)"):
            await s.write('p', 1, 2 ** 32)
        with pytest.raises(ValueError, match="precision 's'"):
            await s.write_many([('p', 2 ** 40, 1)])
        await s.write('p', 1, 2 ** 32 - 1)
        assert s.pending == 1
        await s.close(timeout=5)
        # learned from the server once per client, kept outside the client
        assert await c.time_precision() == 'ms'
        assert known_precision(c) == 'ms'
        assert '_siridb_precision' not in vars(c)
    finally:
        c.close()
        await c.wait_closed()


@asynccontextmanager
async def paused_client(server: EmbeddedServer) -> AsyncIterator[SiriDBClient]:
    """A connected fast client of ``server``, paused (every request answered
    67) until the test resumes it; resumed and closed after the block."""
    server.pause()
    try:
        async with connected(fast_client([(server.host, server.port)])) as c:
            yield c
    finally:
        server.resume()


async def test_on_full_error_for_the_new_paths(server: EmbeddedServer) -> None:
    async with paused_client(server) as c:
        s = c.session(max_buffer_points=10, on_full='error', time_precision='ms',
                      flush_interval=0.01, retry_delay=0.01)
        await s.write_series('f', range(6), range(6))
        with pytest.raises(BufferFullError):
            await s.write_series('f', range(6, 11), range(5))
        with pytest.raises(BufferFullError):
            await s.write_many([('f', 6 + i, i) for i in range(5)])
        await s.write_many([('f', 6 + i, i) for i in range(4)])
        with pytest.raises(BufferFullError):
            await s.write('f', 1, 99)
        assert s.pending == 10
        server.resume()
        await asyncio.wait_for(s.close(), 10)
        assert s.stats().verifications == 0  # a paused server stored nothing
    assert [ts for ts, _ in stored(server, 'f')] == list(range(10))


async def test_packages_are_spread_over_the_pool() -> None:
    """With several packages in flight the pool sends them to every server."""
    from siridb.embedded import EmbeddedCluster

    async with EmbeddedCluster(n=3, databases={DB: 'ms'}) as cluster:
        c = SiriDBClient('iris', 'siri', DB, cluster.hostlist, keepalive=False)
        await c.connect()
        try:
            async with c.session(autocommit_every=100, max_in_flight=4,
                                 time_precision='ms') as s:
                for i in range(0, 6000, 500):
                    await s.write_series('spread', range(i, i + 500), range(500))
            st = c.stats()
        finally:
            c.close()
            await c.wait_closed()
        ts, _ = cluster.store.databases[DB].series['spread'].points()
        assert list(ts) == list(range(6000))
        assert all(x.requests >= 5 for x in st), [x.requests for x in st]


def test_one_retry_policy_for_pool_and_session() -> None:
    """The pool and the session read the same definition (the error classes)."""
    assert [is_retriable(e) for e in (
        ServerError('x'), PoolError('x'), ConnectionLostError('x'), LoadingDatabaseError('x'),
        TooManyRequestsError('x'), RequestTimeoutError('x'), ConnectionResetError(),
        OSError(), asyncio.TimeoutError())] == [True] * 9
    assert [is_retriable(e) for e in (
        InsertError('x'), ClientClosedError('x'), ValueError(), RejectedPointsError([]))] \
        == [False] * 4
    assert failover_of(ServerError('x')) is Failover.OTHER_SERVER
    assert failover_of(ConnectionLostError('x')) is Failover.OTHER_SERVER
    assert failover_of(ConnectionRefusedError()) is Failover.OTHER_SERVER
    assert failover_of(PoolError('x')) is Failover.WAIT
    for exc in (ClientClosedError('x'), InsertError('x'), RequestTimeoutError('x'),
                LoadingDatabaseError('x'), TooManyRequestsError('x'), OSError()):
        assert failover_of(exc) is Failover.RAISE, exc
    # every retriable error the pool fails over on is retried by the session
    for cls in (ServerError, PoolError, ConnectionLostError):
        assert cls.retriable and cls.failover is not Failover.RAISE


async def test_session_wait_for_precision_uses_backoff(server: EmbeddedServer) -> None:
    """No server answers yet: the first write waits and retries (Backoff),
    then takes the point once the server is up."""
    await server.stop()
    c = fast_client([(server.host, server.port)])
    await c.connect()
    try:
        s = WriteSession(c, retry_delay=0.01, retry_max_delay=0.05)
        writer = asyncio.ensure_future(s.write('late', 1, 1))
        await poll(lambda: s.stats().last_error is not None)
        assert not writer.done()
        await server.start()
        await asyncio.wait_for(writer, 10)
        await asyncio.wait_for(s.close(), 10)
    finally:
        c.close()
        await c.wait_closed()
    assert stored(server, 'late') == [(1, 1)]


class DictOnlyClient:
    """Anything with ``insert(data)`` and ``query``: no ``insert_packed``."""

    def __init__(self, client: SiriDBClient) -> None:
        self.client = client
        self.inserts: List[Any] = []

    async def insert(self, data: Any, timeout: Any = 300) -> Any:
        self.inserts.append(data)
        return await self.client.insert(data, timeout)

    async def query(self, query: Any, time_precision: Any = None, timeout: Any = 60) -> Any:
        return await self.client.query(query, time_precision, timeout)


async def test_a_client_without_insert_packed_gets_dicts(server: EmbeddedServer) -> None:
    c = fast_client([(server.host, server.port)])
    await c.connect()
    try:
        duck = DictOnlyClient(c)
        async with WriteSession(duck, autocommit_every=10) as s:
            await s.write_many([('d', i, i) for i in range(25)])
    finally:
        c.close()
        await c.wait_closed()
    assert all(isinstance(d, dict) for d in duck.inserts) and len(duck.inserts) == 3
    assert stored(server, 'd') == [(i, i) for i in range(25)]


async def test_insert_packed(server: EmbeddedServer) -> None:
    from siridb.connector import async_connect
    from siridb.connector.lib.codec import MAX_PAYLOAD
    from siridb.connector.lib.exceptions import InsertDataError
    from siridb.connector.lib.validate import pack_insert

    c = fast_client([(server.host, server.port)])
    await c.connect()
    conn = await async_connect('iris', 'siri', DB, server.host, server.port)
    try:
        res = await c.insert_packed(pack_insert({'ip': [[1, 1]]}))
        assert res == {'success_msg': 'Successfully inserted 1 point(s).'}
        await conn.insert_packed(bytearray(pack_insert({'ip': [[2, 2]]})))
        with pytest.raises(TypeError, match='packed insert is bytes'):
            await c.insert_packed({'ip': [[3, 3]]})  # type: ignore[arg-type]
        with pytest.raises(InsertDataError, match='more than the server accepts'):
            await c.insert_packed(b'\0' * (MAX_PAYLOAD + 1))
    finally:
        conn.close()
        c.close()
        await c.wait_closed()
    assert stored(server, 'ip') == [(1, 1), (2, 2)]


async def test_per_point_path_checks_every_point(server: EmbeddedServer) -> None:
    """A series already in the open package does not let a bad point through."""
    c = fast_client([(server.host, server.port)])
    await c.connect()
    try:
        s = c.session(time_precision='ms', autocommit_every=1000)
        await s.write('pp', 1.5, 1)
        for series, value, ts, exc, text in (
                (['pp'], 1.5, 2, TypeError, 'series name must be a str'),
                (b'pp', 1.5, 2, TypeError, 'series name must be a str'),
                ('', 1.5, 2, ValueError, 'cannot be empty'),
                ('pp', True, 2, TypeError, 'value must be int, float or str'),
                ('pp', None, 2, TypeError, 'value must be int, float or str'),
                ('pp', 2 ** 63, 2, ValueError, 'signed 64-bit'),
                ('pp', 1.5, -1, ValueError, 'out of range'),
                ('pp', 1.5, 2 ** 63, ValueError, 'out of range'),
                ('pp', 1.5, '2', TypeError, 'timestamp must be')):
            with pytest.raises(exc, match=text):
                await s.write(series, value, ts)  # type: ignore[arg-type]
        assert s.pending == 1
        await s.write('pp', 2.5, 0.002)  # float seconds: 2 ms
        await s.write('pp', 3, 3)
        await s.close()
    finally:
        c.close()
        await c.wait_closed()
    assert stored(server, 'pp') == [(1, 1.5), (2, 2.5), (3, 3.0)]


@pytest.mark.parametrize('path', ['write_many', 'write_series'])
async def test_a_batch_waiting_for_room_is_taken_whole_or_not_at_all(
        server: EmbeddedServer, path: str) -> None:
    async with paused_client(server) as c:
        s = c.session(max_buffer_points=10, time_precision='ms', flush_interval=0.01,
                      retry_delay=0.01, retry_max_delay=0.02)
        await s.write_many([('w', i, i) for i in range(8)])

        async def more() -> None:
            if path == 'write_many':
                await s.write_many([('w', 100 + i, i) for i in range(5)])
            else:
                await s.write_series('w', range(100, 105), range(5))

        waiting = asyncio.ensure_future(more())
        retried = s.retried
        await poll(lambda: s.retried > retried)  # the first 8 are being retried
        assert not waiting.done() and s.pending == 8  # none of the 5 taken yet
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        assert s.pending == 8
        server.resume()
        await asyncio.wait_for(s.close(), 10)
        assert s.stats().verifications == 0  # a paused server stored nothing
    assert [ts for ts, _ in stored(server, 'w')] == list(range(8))
