"""Write sessions and single writes against the embedded server over loopback."""
from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import Counter
from typing import Any, AsyncIterator, Dict, List, Tuple

import pytest
from _embedded_helpers import poll, stored
from _session_helpers import connected

from siridb.connector import (
    BufferFullError,
    FlushTimeoutError,
    Point,
    RejectedPointsError,
    Select,
    SessionClosedError,
    SiriDBClient,
)
from siridb.connector.lib.codec import packb
from siridb.connector.lib.exceptions import InsertError, TooManyRequestsError
from siridb.connector.lib.session import Rejected, WriteSession
from siridb.connector.lib.validate import unpack_points
from siridb.embedded import EmbeddedServer

DB = 'dbtest'


def fast_client(srv: Any, cls: Any = SiriDBClient, **kw: Any) -> SiriDBClient:
    """A client that reconnects and fails over quickly (tests only)."""
    opts: Dict[str, Any] = dict(backoff_base=0.05, inactive_time=0.1, max_wait_retry=0.2,
                                timeout=2)
    opts.update(kw)
    client: SiriDBClient = cls('iris', 'siri', DB, [(srv.host, srv.port)], **opts)
    return client


@pytest.fixture
async def client(server: EmbeddedServer) -> AsyncIterator[SiriDBClient]:
    async with connected(fast_client(server)) as c:
        yield c


async def test_session_writes_everything_with_autocommit(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    async with client.session(autocommit_every=50, flush_interval=5) as s:
        for i in range(230):
            await s.write('cpu', i, i + 1)
            if i % 10 == 0:
                await asyncio.sleep(0)
        # autocommits happen without commit(); fewer than 50 remain buffered
        await poll(lambda: s.written > 230 - 50)
        assert s.written == 200 and s.pending == 30
        assert s.stats().packages >= 3
    assert stored(server, 'cpu') == [(i + 1, i) for i in range(230)]
    st = s.stats()
    assert (st.written, st.pending, st.retried, st.rejected) == (230, 0, 0, 0)
    assert s.closed
    with pytest.raises(SessionClosedError):
        await s.write('cpu', 1)


async def test_flush_interval_sends_without_commit(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    s = client.session(autocommit_every=1000, flush_interval=0.1)
    await s.write_many([('a', 1, 1.5), Point('a', 2, 2.5)])
    assert stored(server, 'a') == []
    for _ in range(100):
        await asyncio.sleep(0.02)
        if s.written == 2:
            break
    assert stored(server, 'a') == [(1, 1.5), (2, 2.5)]
    await s.close()
    await s.close()  # idempotent


async def test_commit_waits_and_packages_are_split(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    s = client.session(autocommit_every=10_000, flush_interval=60,
                       max_package_points=100, max_package_bytes=5000)
    big = 'x' * 1000
    await s.write_many([('n', i, i) for i in range(1000)])
    await s.write_many([('big', i, big) for i in range(20)])
    await s.commit()
    assert s.pending == 0
    assert len(stored(server, 'n')) == 1000
    assert len(stored(server, 'big')) == 20
    st = s.stats()
    # 1000 points at <= 100 per package, 20 * ~4 KB estimated at <= 5000 bytes
    assert st.packages >= 10 + 20
    await s.close()


async def test_session_survives_server_restart(server: EmbeddedServer,
                                               client: SiriDBClient) -> None:
    sent: List[Tuple[int, int]] = []
    halfway = asyncio.Event()

    async def produce() -> None:
        for i in range(600):
            await s.write('r', i, 1000 + i)
            sent.append((1000 + i, i))
            if i == 150:
                halfway.set()
            await asyncio.sleep(0.001)

    async with client.session(verify_settle=0, autocommit_every=20, flush_interval=0.02,
                              retry_delay=0.02, retry_max_delay=0.2) as s:
        producer = asyncio.ensure_future(produce())
        await halfway.wait()
        await server.stop()
        await asyncio.sleep(0.4)
        await server.start()
        await producer
    points = stored(server, 'r')
    counts = Counter(points)
    # at-least-once: every point is there, a few may be there twice
    assert set(counts) == set(sent)
    assert len(points) >= 600
    assert s.written >= 600
    assert s.retried > 0
    assert s.pending == 0


async def test_backpressure_bounds_the_buffer(server: EmbeddedServer,
                                              client: SiriDBClient) -> None:
    await client.time_precision()  # learned once per client, before the pause
    server.pause()  # every request: ServerError (server not running)
    peak = 0
    done = 0

    async def produce() -> None:
        nonlocal peak, done
        for i in range(3000):
            await s.write('bp', i, i + 1)
            peak = max(peak, s.pending)
            done += 1

    s = client.session(delivery='at_least_once', autocommit_every=50, flush_interval=0.01,
                       max_buffer_points=500,
                       retry_delay=0.01, retry_max_delay=0.05)
    producer = asyncio.ensure_future(produce())
    try:
        # the producer is faster than the (paused) server: it waits, memory bounded
        await poll(lambda: done >= 500 and s.retried > 0)
        assert not producer.done()
        assert done == 500
        assert s.pending == 500 and peak <= 500
        # the failed package is sent again and again; nothing more is taken
        retried = s.retried
        await poll(lambda: s.retried > retried)
        assert done == 500 and s.pending == 500 and not producer.done()
        # ServerError from the paused server, then PoolError while it is inactive
        assert s.stats().last_error is not None
        server.resume()
        await asyncio.wait_for(producer, 20)
    finally:
        server.resume()
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        await s.close(timeout=5)
    assert peak <= 500
    assert [ts for ts, _ in stored(server, 'bp')] == list(range(1, 3001))


async def test_on_full_error_takes_nothing(server: EmbeddedServer,
                                          client: SiriDBClient) -> None:
    await client.time_precision()
    server.pause()
    s = client.session(max_buffer_points=10, on_full='error', flush_interval=0.01,
                       retry_delay=0.01)
    await s.write_many([('e', i, i) for i in range(8)])
    with pytest.raises(BufferFullError):
        await s.write_many([('e', 100 + i, i) for i in range(3)])
    await s.write_many([('e', 8, 8), ('e', 9, 9)])
    with pytest.raises(BufferFullError):
        await s.write('e', 1, 11)
    assert s.pending == 10
    server.resume()
    await asyncio.wait_for(s.close(), 10)
    assert [ts for ts, _ in stored(server, 'e')] == list(range(10))


async def test_close_timeout_hands_back_unwritten_points(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    server.pause()
    s = client.session(flush_interval=0.01, retry_delay=0.01, time_precision='ms')
    await s.write_many([('t', i, i) for i in range(5)])
    with pytest.raises(FlushTimeoutError) as info:
        await s.close(timeout=0.3)
    assert sorted(p.timestamp for p in info.value.points) == [0, 1, 2, 3, 4]
    assert all(p.series == 't' for p in info.value.points)
    assert type(info.value.last_error).__name__ in ('ServerError', 'PoolError')
    assert s.closed
    # the same through async with and close_timeout
    with pytest.raises(FlushTimeoutError) as info2:
        async with client.session(close_timeout=0.2, time_precision='ms',
                                  retry_delay=0.01) as s2:
            await s2.write('t', 7, 7)
    assert info2.value.points == [Point('t', 7, 7)]
    server.resume()


class BadValueClient(SiriDBClient):
    """Turns the values of series 'bad' into None on the wire, so that the
    real server rejects any insert holding them (InsertError 66)."""

    async def insert_packed(self, body: bytes, timeout: Any = 300) -> Any:
        # a session sends each package packed once, through insert_packed
        data = unpack_points(body)
        if 'bad' in data:
            data['bad'] = [(ts, None) for ts, _ in data['bad']]  # type: ignore[misc]
            body = packb(data)
        return await super().insert_packed(body, timeout)


class BusyOnceClient(SiriDBClient):
    """The first insert finds every request id of its connection in use."""

    busy = 1

    async def insert_packed(self, body: bytes, timeout: Any = 300) -> Any:
        if self.busy:
            self.busy -= 1
            raise TooManyRequestsError('all 65536 request ids of this connection are '
                                       'waiting for a reply')
        return await super().insert_packed(body, timeout)


async def test_a_busy_connection_is_retried_not_rejected(server: EmbeddedServer) -> None:
    c = fast_client(server, BusyOnceClient)
    await c.connect()
    try:
        async with c.session(delivery='at_least_once', retry_delay=0.01, time_precision='ms') as s:
            await s.write_many([('busy', i, i) for i in range(3)])
        assert (s.written, s.rejected, s.retried) == (3, 0, 3)
        assert stored(server, 'busy') == [(0, 0), (1, 1), (2, 2)]
    finally:
        c.close()
        await c.wait_closed()


async def test_rejected_series_are_reported_and_the_rest_written(
        server: EmbeddedServer) -> None:
    c = fast_client(server, BadValueClient)
    await c.connect()
    try:
        s = c.session(autocommit_every=10_000)
        await s.write_many([('good', 1, 1), ('bad', 1, 1), ('good2', 1, 'x'), ('bad', 2, 2)])
        with pytest.raises(RejectedPointsError) as info:
            await s.commit()
        (rej,) = info.value.rejected
        assert isinstance(rej.error, InsertError)
        assert str(rej.error) == ('Unsupported value received. (only integer, float '
                                  'and string values are supported).')
        assert rej.points == [Point('bad', 1, 1), Point('bad', 2, 2)]
        assert stored(server, 'good') == [(1, 1)]
        assert stored(server, 'good2') == [(1, 'x')]
        assert 'bad' not in server.store.databases[DB].series
        assert (s.written, s.rejected) == (2, 2)
        # reported once; the session goes on
        await s.write('good', 5, 2)
        await s.close()
        assert stored(server, 'good') == [(1, 1), (2, 5)]

        seen: List[Rejected] = []

        async def on_error(r: Rejected) -> None:
            seen.append(r)

        async with c.session(on_error=on_error) as s2:
            await s2.write('bad', 3, 9)
            await s2.write('ok', 3, 9)
        assert [p.timestamp for r in seen for p in r.points] == [9]
        assert stored(server, 'ok') == [(9, 3)]
    finally:
        c.close()
        await c.wait_closed()


@pytest.mark.parametrize('args,exc', [
    (('', 1), ValueError), ((5, 1), TypeError), (('s', None), TypeError),
    (('s', True), TypeError), (('s', [1]), TypeError), (('s', 2 ** 63), ValueError),
    (('s', 1, -1), ValueError), (('s', 1, 2 ** 63), ValueError), (('s', 1, 'now'), TypeError),
    (('s', 1, float('nan')), ValueError),
])
async def test_write_validation(server: EmbeddedServer, client: SiriDBClient,
                                args: Tuple[Any, ...], exc: type) -> None:
    with pytest.raises(exc):
        await client.write(*args)
    async with client.session() as s:
        with pytest.raises(exc):
            await s.write(*args)
        bad_point = (args[0], args[2] if len(args) > 2 else None, args[1])
        with pytest.raises(exc):
            await s.write_many([('ok', 1, 1), bad_point])
        assert s.pending == 0  # nothing of a bad batch was taken
    assert server.store.databases[DB].series == {}


async def test_write_many_accepts_lists_and_point_objects(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    class Obj:
        def __init__(self, series: str, ts: int, value: float) -> None:
            self.series, self.ts, self.value = series, ts, value

    assert await client.write_many([['l', 1, 1], Point('l', 2, 2), Obj('l', 3, 3.5)]) == 3
    assert stored(server, 'l') == [(1, 1), (2, 2), (3, 3)]  # integer series

    # a named tuple is read by field name, whatever the order of its fields
    from typing import NamedTuple

    class Sample(NamedTuple):
        series: str
        value: float
        ts: int

    assert await client.write_many([Sample('n', 0.5, 7), Sample('n', 1.5, 8)]) == 2
    assert stored(server, 'n') == [(7, 0.5), (8, 1.5)]


async def test_numpy_numbers_are_written(server: EmbeddedServer,
                                         client: SiriDBClient) -> None:
    np = pytest.importorskip('numpy')
    await client.write_many([('np.i', np.int64(5), np.int64(7)),
                             ('np.f', np.float64(1.25), np.float64(2.5)),
                             ('np.s', np.int64(6), np.str_('x'))])
    assert stored(server, 'np.i') == [(5, 7)]
    assert stored(server, 'np.f') == [(1250, 2.5)]  # float seconds -> ms
    assert stored(server, 'np.s') == [(6, 'x')]
    with pytest.raises(TypeError):
        await client.write('np.b', np.bool_(True), 1)


async def test_write_many_bad_shapes(client: SiriDBClient) -> None:
    with pytest.raises(TypeError):
        await client.write_many('abc')
    with pytest.raises(TypeError):
        await client.write_many([('a', 1)])


@pytest.mark.parametrize('precision,expected', [
    ('s', 1447250938), ('ms', 1447250938250), ('us', 1447250938250000),
    ('ns', 1447250938250000000)])
async def test_exact_timestamps_end_to_end(precision: str, expected: int) -> None:
    when = dt.datetime(2015, 11, 11, 14, 8, 58, 250000, tzinfo=dt.timezone.utc)
    async with EmbeddedServer(port=0, databases={DB: precision}) as srv:
        async with fast_client(srv) as c:
            assert await c.time_precision() == precision
            await c.write('dt', 1, when)
            await c.write('naive', 1, when.replace(tzinfo=None))
            await c.write('float', 1, 1447250938.25)
            await c.write('int', 1, expected)
            before = dt.datetime.now(dt.timezone.utc)
            await c.write('now', 1)
            for name in ('dt', 'naive', 'float', 'int'):
                assert stored(srv, name) == [(expected, 1)], name
            (ts, _), = stored(srv, 'now')
            res = await c.select(Select().from_series('now'))
            got = res['now'].points[0][0]
            assert abs((got - before).total_seconds()) < 5
            assert ts > 0


HOSTILE = ['a"b', '"', "it's", 'x" from * where "', 'a/b', '\\', 'line1\nline2',
           '\r\n', 'tab\tname', '温度 ✓', '💥', 'select * from *', '`grp`', '# c',
           '/.*/', ' ']


async def test_hostile_names_end_to_end(server: EmbeddedServer,
                                        client: SiriDBClient) -> None:
    async with client.session() as s:
        for i, name in enumerate(HOSTILE):
            await s.write(name, i, 10 + i)
        await s.write('decoy', 99, 5)
    for i, name in enumerate(HOSTILE):
        res = await client.query(Select().from_series(name))
        assert res == {name: [[10 + i, i]]}, name
        # a regex for exactly that name (escaped) finds it and nothing else
        res2 = await client.query(Select().from_regex(re.escape(name)))
        assert res2 == {name: [[10 + i, i]]}, name
    assert len(await client.query(Select().from_all())) == len(HOSTILE) + 1


async def test_lost_reply_means_at_least_once(server: EmbeddedServer) -> None:
    """The server stores a package but its reply is lost: the session sends it
    again, so those points are stored twice (documented at-least-once)."""
    from siridb.testing.proxy import FaultProxy

    async with FaultProxy(server.host, server.port) as proxy:
        c = SiriDBClient('iris', 'siri', DB, [proxy.address], keepalive=False,
                         backoff_base=0.05, max_wait_retry=0.2, inactive_time=0.05)
        await c.connect()
        try:
            s = c.session(delivery='at_least_once', autocommit_every=10_000, flush_interval=60,
                          retry_delay=0.02)
            await s.write_many([('dup', i, i) for i in range(10)])
            proxy.close_after(0, direction='down')  # cut the next reply
            await asyncio.wait_for(s.commit(), 10)
            await s.write('dup', 10, 10)
            await s.close()
        finally:
            c.close()
            await c.wait_closed()
    counts = Counter(stored(server, 'dup'))
    assert dict(counts) == {
        **{(i, i): 2 for i in range(10)}, (10, 10): 1}
    # written counts confirmations; retried counts points of each failed attempt
    assert s.written == 11 and s.retried >= 10 and s.pending == 0


def test_package_size_estimate_is_conservative() -> None:
    """Every package the write buffer seals packs to at most its byte budget
    (one point larger than the budget goes alone), holds at most its point
    budget, has no empty series, and the packages hold exactly the points."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from siridb.connector.lib.codec import packb
    from siridb.connector.lib.writebuffer import WriteBuffer

    values = st.one_of(st.integers(-2 ** 63, 2 ** 63 - 1), st.floats(),
                       st.text(max_size=300))
    runs = st.lists(st.tuples(st.text(min_size=1, max_size=40),
                              st.lists(st.tuples(st.integers(0, 2 ** 63 - 1), values),
                                       min_size=1, max_size=60)), max_size=20)

    @settings(max_examples=80, deadline=None)
    @given(runs, st.integers(1, 50), st.integers(64, 4096), st.booleans())
    def check(puts: List[Any], max_points: int, max_bytes: int, grouped: bool) -> None:
        buf = WriteBuffer(max_points, max_bytes, 10 ** 6)
        groups: Dict[str, Any] = {}
        for series, pairs in puts:
            has_text = any(type(v) is str for _, v in pairs)
            if not grouped:
                buf.put(series, list(pairs), has_text)
                continue
            if series in groups:  # the write_many path: several series at once
                buf.put_groups(groups, {k for k, p in groups.items()
                                        if any(type(v) is str for _, v in p)})
                groups = {}
            groups[series] = list(pairs)
        if groups:
            buf.put_groups(groups, {k for k, p in groups.items()
                                    if any(type(v) is str for _, v in p)})
        buf.seal()
        expected = Counter((s, t, v) for s, pairs in puts for t, v in pairs
                           if v == v)  # NaN never equals itself
        got = Counter(p for pkg in buf.ready for p in pkg.points() if p[2] == p[2])
        assert got == expected
        assert buf.pending == sum(len(p) for _, p in puts)
        for pkg in buf.ready:
            assert 1 <= pkg.n <= max_points
            assert pkg.n == sum(map(len, pkg.data.values()))
            assert all(pkg.data.values())
            if pkg.n > 1:
                assert len(packb(pkg.data)) <= max_bytes

    check()


async def test_backpressure_with_a_slow_server(server: EmbeddedServer) -> None:
    """A producer much faster than a slow link: memory stays under the bound,
    the producer is slowed down, and every point arrives exactly once."""
    from siridb.testing.proxy import FaultProxy

    async with FaultProxy(server.host, server.port) as proxy:
        c = SiriDBClient('iris', 'siri', DB, [proxy.address], keepalive=False)
        await c.connect()
        try:
            await c.time_precision()
            proxy.set_latency(0.03, direction='down')  # every reply 30 ms late
            s = c.session(autocommit_every=100, max_buffer_points=300,
                          max_package_points=100, flush_interval=0.01)
            peak = 0
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(3000):
                await s.write('slow', i, i)
                peak = max(peak, s.pending)
            produced_in = loop.time() - start
            await s.close()
        finally:
            c.close()
            await c.wait_closed()
    assert peak <= 300
    # at most max_buffer_points (300) taken per 30 ms round trip, however many
    # packages are in flight: 3000 points need at least 9 round trips
    assert produced_in > 0.25
    assert stored(server, 'slow') == [(i, i) for i in range(3000)]
    assert (s.written, s.retried, s.pending) == (3000, 0, 0)


async def test_session_fails_over_across_a_cluster() -> None:
    from siridb.embedded import EmbeddedCluster

    async with EmbeddedCluster(n=3, databases={DB: 'ms'}) as cluster:
        c = SiriDBClient('iris', 'siri', DB, cluster.hostlist, backoff_base=0.05,
                         max_wait_retry=0.2, inactive_time=0.1, keepalive=False)
        await c.connect()
        try:
            async with c.session(verify_settle=0, autocommit_every=10, flush_interval=0.01,
                                 retry_delay=0.01, retry_max_delay=0.1) as s:
                for i in range(900):
                    await s.write('fo', i, i)
                    if i % 10 == 0:
                        await asyncio.sleep(0.001)
                    if i == 300:
                        await cluster.servers[0].stop()
                    if i == 450:
                        await cluster.servers[1].stop()
                    if i == 600:
                        await cluster.servers[0].start()
                        await cluster.servers[1].start()
            st = c.stats()
        finally:
            c.close()
            await c.wait_closed()
        series = cluster.store.databases[DB].series['fo']
        ts, _ = series.points()
        assert set(ts) == set(range(900))
        assert s.pending == 0 and s.written >= 900
        # every server served some of the writes
        assert all(x.requests > 0 for x in st)


async def test_session_on_single_connections(server: EmbeddedServer) -> None:
    from siridb.connector import SiriDBConn, async_connect

    conn = SiriDBConn('iris', 'siri', DB, server.host, server.port)
    await conn.connect()
    try:
        async with WriteSession(conn, autocommit_every=10) as s:
            for i in range(50):
                await s.write('single', i, i + 1)
    finally:
        conn.close()
        await conn.wait_closed()
    c2 = await async_connect('iris', 'siri', DB, server.host, server.port)
    try:
        async with WriteSession(c2) as s2:
            await s2.write_many([('single', 100, 0)])
    finally:
        c2.close()
    assert len(stored(server, 'single')) == 51
    assert (s.written, s2.written) == (50, 1)


def test_session_errors_pickle_and_print() -> None:
    import pickle

    err = InsertError('bad', 66)
    rej = RejectedPointsError([Rejected([Point('a', 1, 2)], err)])
    back = pickle.loads(pickle.dumps(rej))
    assert back.rejected[0].points == [Point('a', 1, 2)]
    assert str(back) == str(rej) == "the server rejected 1 point(s): 1 point(s) of ['a']: bad"
    ft = FlushTimeoutError([Point('a', 1, 2)], err)
    back2 = pickle.loads(pickle.dumps(ft))
    assert back2.points == [Point('a', 1, 2)] and str(back2.last_error) == 'bad'
    assert isinstance(back2, TimeoutError)


async def test_a_session_never_closed_is_not_silent(
        server: EmbeddedServer, client: SiriDBClient,
        caplog: pytest.LogCaptureFixture) -> None:
    """When the loop shuts down (cancelling every task) with a session that
    was never closed, the points it still held are reported in the log."""
    import logging

    caplog.set_level(logging.ERROR, logger='siridb.connector')
    server.pause()
    s = client.session(time_precision='ms', retry_delay=0.01, flush_interval=0.01)
    await s.write_many([('lost', i, i) for i in range(7)])
    await asyncio.sleep(0.05)
    task = s._task
    assert task is not None
    task.cancel()  # what asyncio.run() does to tasks left at the end
    await asyncio.gather(task, return_exceptions=True)
    server.resume()
    assert any('7 point(s) not confirmed written' in r.getMessage()
               for r in caplog.records), caplog.records
    # a close() with a timeout hands the points back instead, without that log
    caplog.clear()
    server.pause()
    s2 = client.session(time_precision='ms', retry_delay=0.01, flush_interval=0.01)
    await s2.write('kept', 1, 1)
    with pytest.raises(FlushTimeoutError) as info:
        await s2.close(timeout=0.1)
    assert info.value.points == [Point('kept', 1, 1)]
    assert not any('not confirmed written' in r.getMessage() for r in caplog.records)
    server.resume()


async def test_backpressure_bounds_memory_not_just_the_counter(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    """Measured with tracemalloc: a producer of 20,000 points of ~150 bytes
    against a stopped server holds about max_buffer_points of them in memory,
    not all 20,000 (~4 MB)."""
    import tracemalloc

    await client.time_precision()
    server.pause()
    s = client.session(delivery='at_least_once', autocommit_every=100, flush_interval=0.01,
                       max_buffer_points=500,
                       retry_delay=0.01, retry_max_delay=0.05)
    produced = 0

    async def produce() -> None:
        nonlocal produced
        for i in range(20_000):
            await s.write('mem', f'{i:0150d}', i + 1)  # a new 150-char value each time
            produced += 1

    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        producer = asyncio.ensure_future(produce())
        await poll(lambda: produced >= 500)
        # the producer is blocked while the package is retried again and again
        retried = s.retried
        await poll(lambda: s.retried >= retried + 3 * 100)
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        server.resume()
    try:
        assert produced == 500 and s.pending == 500
        # 500 points of ~230 bytes, the package being retried (its dict and packed
        # bytes) and log records: well under the ~4.6 MB of 20,000 such points
        assert now - before < 1_500_000, now - before
        assert peak - before < 1_500_000, peak - before
        await asyncio.wait_for(producer, 30)
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        await s.close(timeout=10)
    assert s.written == 20_000 and len(stored(server, 'mem')) == 20_000


def test_write_buffer_counts_points_of_the_per_point_path() -> None:
    """The per-point path of ``WriteSession.write`` appends to the open
    package and decrements ``room`` only; interleaved with ``put``,
    ``put_groups``, seals and completions the buffer still counts every
    point, never lets more than ``max_points`` be taken, and seals packages
    within their budgets."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from siridb.connector.lib.writebuffer import WriteBuffer

    ops = st.lists(st.one_of(
        st.tuples(st.just('point'), st.sampled_from('abc'), st.floats(allow_nan=False)),
        st.tuples(st.just('put'), st.sampled_from('abcd'), st.integers(1, 30)),
        st.tuples(st.just('groups'), st.sampled_from(['ab', 'cd', 'a', 'bcd']),
                  st.integers(1, 20)),
        st.tuples(st.just('send'), st.just(''), st.just(0))), max_size=120)

    @settings(max_examples=80, deadline=None)
    @given(ops, st.integers(1, 40), st.integers(100, 2000), st.integers(1, 120))
    def check(steps: List[Any], seal_points: int, max_bytes: int, max_points: int) -> None:
        buf = WriteBuffer(seal_points, max_bytes, max_points)
        taken = completed = 0
        sent: List[Any] = []
        for op, series, arg in steps:
            if op == 'point':  # what WriteSession.write does inline
                pairs = buf.open.get(series)
                if pairs is not None and buf.room:
                    pairs.append((taken, arg))
                    buf.room -= 1
                    if not buf.room:
                        if buf.full:
                            buf.seal()
                        else:
                            buf.refresh()
                    taken += 1
                elif buf.free > 0:
                    buf.put(series, [(taken, arg)], False)
                    taken += 1
            elif op == 'put' and buf.free >= arg:
                buf.put(series, [(taken + i, 1.0) for i in range(arg)], False)
                taken += arg
            elif op == 'groups' and buf.free >= arg * len(series):
                groups = {s: [(taken + k * arg + i, 1) for i in range(arg)]
                          for k, s in enumerate(series)}
                buf.put_groups(groups, set())
                taken += arg * len(series)
            elif op == 'send' and buf.ready:
                pkg = buf.ready.popleft()
                sent.append(pkg)
                buf.completed(pkg)
                completed += pkg.n
            assert buf.pending == taken - completed <= max_points
            assert buf.room <= buf.free
        buf.seal()
        every = sent + list(buf.ready)
        assert sum(p.n for p in every) == taken
        for pkg in every:
            assert pkg.n == sum(map(len, pkg.data.values())) <= seal_points
            assert all(pkg.data.values())
        assert sorted(ts for p in every for _, ts, _ in p.points()) == list(range(taken))

    check()


def test_write_many_fast_checks_agree_with_the_point_checks() -> None:
    """``group_points`` (a lean loop for plain tuples) takes exactly what the
    per-point checks take, and refuses what they refuse, with the same type
    of error."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from siridb.connector.lib.session import make_point
    from siridb.connector.lib.validate import group_points

    series = st.one_of(st.sampled_from(['a', 'b', 'c']), st.just(''), st.just(b'a'),
                       st.just(1))
    stamps = st.one_of(st.integers(-5, 2 ** 33), st.just(2 ** 64), st.just(True),
                       st.floats(0, 100, allow_nan=False), st.none())
    values = st.one_of(st.integers(-2 ** 64, 2 ** 64), st.floats(allow_nan=False),
                       st.text(max_size=3), st.none(), st.booleans())
    point = st.one_of(st.tuples(series, stamps, values),
                      st.lists(st.integers(0, 3), min_size=2, max_size=4).map(tuple))

    @settings(max_examples=300, deadline=None)
    @given(st.lists(point, max_size=8), st.sampled_from(['s', 'ms']))
    def check(items: List[Any], precision: str) -> None:
        expected: Dict[str, List[Any]] = {}
        error = None
        for item in items:
            try:
                if len(item) != 3:
                    raise TypeError('not a point')
                p = make_point(item[0], item[2], item[1], precision)
            except (TypeError, ValueError) as exc:
                error = exc
                break
            expected.setdefault(p.series, []).append((p.timestamp, p.value))
        if error is not None:
            with pytest.raises((TypeError, ValueError)) as info:
                group_points(items, precision)
            assert type(info.value) is type(error), (info.value, error)
            return
        if any(item[1] is None for item in items):
            return  # None means now: the clock moved between the two
        groups, n, texts = group_points(items, precision)
        assert groups == expected and n == len(items)
        assert texts == {s for s, pairs in expected.items()
                         if any(type(v) is str for _, v in pairs)}

    check()


def test_write_series_column_checks_agree_with_the_point_checks() -> None:
    """``column_pairs`` (whole columns at once) takes exactly what the
    per-point checks take, and refuses what they refuse."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from siridb.connector.lib.session import make_point
    from siridb.connector.lib.validate import column_pairs

    stamps = st.one_of(st.integers(-5, 2 ** 33), st.just(2 ** 64), st.just(False),
                       st.floats(0, 100, allow_nan=False))
    values = st.one_of(st.integers(-2 ** 64, 2 ** 64), st.floats(allow_nan=False),
                       st.text(max_size=3), st.none(), st.booleans())

    @settings(max_examples=300, deadline=None)
    @given(st.lists(st.tuples(stamps, values), max_size=8), st.sampled_from(['s', 'ms']))
    def check(points: List[Any], precision: str) -> None:
        ts = [t for t, _ in points]
        vals = [v for _, v in points]
        try:
            expected = [make_point('x', v, t, precision)[1:] for t, v in points]
        except (TypeError, ValueError):
            with pytest.raises((TypeError, ValueError)):
                column_pairs(ts, vals, precision)
            return
        pairs, texts = column_pairs(ts, vals, precision)
        assert pairs == expected
        assert texts == any(type(v) is str for v in vals)

    check()
