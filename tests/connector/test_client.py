"""SiriDBClient (the pool) against the embedded server and cluster: connect
results, failover, ServerError/PoolError handling, reconnect, keepalive."""
from __future__ import annotations

import asyncio
import gc
import logging
import random
import socket
import threading
from typing import Any, List

import pytest
from _driver_helpers import ScriptedConn, ScriptedServer, reconnect_delays, wait_until

from siridb.connector import SiriDBClient, SiriDBConn
from siridb.connector.lib import exceptions as ex
from siridb.connector.lib import protomap as pm
from siridb.connector.lib.codec import MAX_PAYLOAD, Package
from siridb.embedded import EmbeddedCluster, EmbeddedServer

FAST = dict(backoff_base=0.02, max_wait_retry=0.1, backoff_jitter=0.0,
            pool_retry_interval=0.05)


def _client(hostlist: Any, **kw: Any) -> SiriDBClient:
    opts = dict(FAST)
    opts.update(kw)
    return SiriDBClient('iris', 'siri', 'dbtest', hostlist, **opts)


async def _closed_port() -> int:
    async with ScriptedServer() as srv:
        return srv.port


async def test_insert_and_query_roundtrip() -> None:
    async with EmbeddedServer(databases={'dbtest': 's'}) as srv:
        async with _client([(srv.host, srv.port)]) as client:
            assert not client.is_closed and client.connected
            assert await client.insert({'a': [[1, 1.5], [2, 2.5]], 'b': [[3, 7]]}) == {
                'success_msg': 'Successfully inserted 3 point(s).'}
            assert await client.query('select * from "a"') == {'a': [[1, 1.5], [2, 2.5]]}
            res = await client.query('select * from "b"', time_precision='ms')
            assert res == {'b': [[3000, 7]]}
            assert await client.query('count series') == {'series': 2}
            assert len(srv.store.databases['dbtest'].series) == 2
        assert client.is_closed and not client.connected


@pytest.mark.skipif(not hasattr(socket, 'AF_UNIX'), reason='needs unix sockets')
async def test_pool_over_a_unix_socket_and_tcp(tmp_path: Any) -> None:
    """A hostlist host that is an absolute path is a unix socket; it mixes
    with TCP hosts and fails over like any other."""
    path = str(tmp_path / 'siridb.sock')
    async with EmbeddedServer(databases={'dbtest': 's'}, unix_path=path) as usrv, \
            EmbeddedServer(databases={'dbtest': 's'}) as tsrv:
        async with _client([(path, 0, {'weight': 9}), (tsrv.host, tsrv.port)]) as client:
            assert await client.connect() == [None, None]
            for i in range(20):
                await client.insert({'u': [[i + 1, i]]})
            stored = len(usrv.store.databases['dbtest'].series.get('u', ()))
            assert stored > len(tsrv.store.databases['dbtest'].series.get('u', ()))
            await usrv.stop()
            await client.insert({'after': [[1, 1]]})  # fails over to TCP
            assert 'after' in tsrv.store.databases['dbtest'].series
    with pytest.raises(ValueError):
        SiriDBClient('iris', 'siri', 'dbtest', [('localhost', 0)])


async def test_server_rejection_text_is_exact() -> None:
    async with EmbeddedServer(databases={'dbtest': 's'}) as srv:
        async with _client([(srv.host, srv.port)]) as client:
            with pytest.raises(ex.InsertError) as info:
                await client.insert({'a': []})
            assert str(info.value) == 'Expecting a series to have at least one point.'
            assert info.value.tp == pm.CPROTO_ERR_INSERT
            with pytest.raises(ex.QueryError) as qinfo:
                await client.query('selec')
            assert str(qinfo.value).startswith('Query error at position')


async def test_connect_results_in_hostlist_order() -> None:
    dead = await _closed_port()
    async with EmbeddedCluster(n=2, databases={'dbtest': 'ms'}) as cluster:
        s0, s1 = cluster.servers
        client = _client([(s0.host, s0.port), ('127.0.0.1', dead), (s1.host, s1.port)])
        try:
            res = await client.connect()
            assert res[0] is None and res[2] is None
            assert isinstance(res[1], ConnectionRefusedError)
            assert client._reconnect_task is not None  # a failure starts reconnecting
            assert (await client.query('show dbname'))['data'][0]['value'] == 'dbtest'
        finally:
            client.close()
            await client.wait_closed()


def test_construct_outside_running_loop() -> None:
    client = SiriDBClient('iris', 'siri', 'dbtest', [('127.0.0.1', 9000)])
    assert client.is_closed  # valid before the first connect
    assert not client.connected
    assert 'siri' not in repr(client).replace("'iris'", '')

    async def main() -> Any:
        async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
            client._hosts[0].port = srv.port
            await client.connect()
            try:
                return await client.query('show dbname')
            finally:
                client.close()
                await client.wait_closed()

    # asyncio.run in its own thread: it resets the thread's default loop,
    # which must not disturb the test runner's loop handling in this thread
    out: List[Any] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(main())))
    t.start()
    t.join()
    assert out[0]['data'][0]['value'] == 'dbtest'


async def test_failover_when_one_of_three_stops() -> None:
    async with EmbeddedCluster(n=3, databases={'dbtest': 'ms'}) as cluster:
        async with _client(cluster.hostlist, max_wait_retry=10, backoff_base=5) as client:
            assert all(h.up for h in client.hosts)
            await cluster.servers[1].stop()
            for i in range(60):
                assert await client.insert({'s': [[i + 1, i]]}, timeout=5) == {
                    'success_msg': 'Successfully inserted 1 point(s).'}
                assert (await client.query('count series', timeout=5)) == {'series': 1}
            assert not client.hosts[1].up
            assert len(cluster.store.databases['dbtest'].series['s']) == 60


async def test_inflight_requests_move_to_another_server_on_loss() -> None:
    """A drop with requests in flight fails them with ConnectionError; the pool
    retries them on another server."""
    held: List[Package] = []

    def hold(conn: ScriptedConn, pkg: Package) -> None:
        if pkg.tp == pm.CPROTO_REQ_AUTH:
            conn.reply(pkg.pid, pm.CPROTO_RES_AUTH_SUCCESS)
        else:
            held.append(pkg)
            if len(held) == 5:
                conn.abort()

    async with ScriptedServer(hold) as bad, ScriptedServer() as good:
        client = _client([(bad.host, bad.port), (good.host, good.port, {'backup': True})],
                         max_wait_retry=10, backoff_base=5)
        await client.connect()
        try:
            res = await asyncio.gather(*(client.query(f'q{i}', timeout=5) for i in range(5)))
            assert [r['query'] for r in res] == [f'q{i}' for i in range(5)]
            assert len(held) == 5  # all five went to the primary first
            assert good.count(pm.CPROTO_REQ_QUERY) == 5
        finally:
            client.close()
            await client.wait_closed()


async def test_server_error_marks_inactive_and_retries_elsewhere() -> None:
    async with EmbeddedCluster(n=2, databases={'dbtest': 'ms'}) as cluster:
        s0, s1 = cluster.servers
        async with _client([(s0.host, s0.port, {'weight': 9}), (s1.host, s1.port)],
                           inactive_time=30) as client:
            s0.pause()
            for _ in range(20):
                assert (await client.query('show dbname'))['data'][0]['value'] == 'dbtest'
            h0 = client.hosts[0]
            assert h0.up and h0.inactive_until > asyncio.get_running_loop().time()
            # with every server paused the ServerError surfaces
            s1.pause()
            for h in client.hosts:
                h.inactive_until = 0.0
            with pytest.raises(ex.PoolError):
                await client.insert({'a': [[1, 1]]})


async def test_no_available_connections_is_immediate() -> None:
    dead = await _closed_port()
    client = _client([('127.0.0.1', dead)], max_wait_retry=10, backoff_base=5)
    res = await client.connect()
    try:
        assert isinstance(res[0], ConnectionError)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ex.PoolError) as info:
            await client.query('show dbname', timeout=10)
        assert str(info.value) == 'No available connections found'
        # at once, not after the next reconnect round (5 s, no jitter) nor the
        # 10 s request timeout; the margin below that is for a loaded machine
        assert loop.time() - t0 < 2.5
    finally:
        client.close()
        await client.wait_closed()


async def test_pool_error_retried_until_deadline() -> None:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        async with _client([(srv.host, srv.port)]) as client:
            srv.pool_error(True)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(ex.PoolError) as info:
                # a client that retried past its deadline would retry forever
                await asyncio.wait_for(client.insert({'a': [[1, 1]]}, timeout=0.3), 10)
            # retried (every 0.05 s) until the deadline; the upper bound is loose
            # for a loaded machine, the broken case above never ends
            assert 0.2 <= loop.time() - t0 < 0.3 + 2.0
            assert str(info.value) == \
                'At least one pool has no server available to process the request'
            # recovers when the pool comes back before the deadline
            loop.call_later(0.15, srv.pool_error, False)
            assert await client.insert({'a': [[1, 1]]}, timeout=3) == {
                'success_msg': 'Successfully inserted 1 point(s).'}


async def test_timeout_is_overall_deadline() -> None:
    async with ScriptedServer(lambda c, p: c.reply(p.pid, 2) if p.tp == 2 else None) as srv:
        async with _client([(srv.host, srv.port)]) as client:
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.query('never answered', timeout=0.2), 10)
            # the request's own deadline; loose above for a loaded machine (a
            # client without it waits for the 10 s guard)
            assert 0.15 <= loop.time() - t0 < 0.2 + 2.0


async def test_reconnect_backoff_timing(caplog: pytest.LogCaptureFixture) -> None:
    """Reconnect attempts wait base, 2*base, 4*base, ... capped."""
    caplog.set_level(logging.INFO, logger='siridb.connector')
    attempts: List[float] = []
    loop = asyncio.get_running_loop()

    def refuse(conn: ScriptedConn, pkg: Package) -> None:
        conn.abort()

    async with ScriptedServer(refuse) as srv:
        orig = srv._serve

        async def serve(reader: Any, writer: Any) -> None:
            attempts.append(loop.time())
            await orig(reader, writer)

        srv._serve = serve  # type: ignore[method-assign]
        await srv.stop()
        srv.port = srv.port  # same port
        await srv.start()
        client = _client([(srv.host, srv.port)], backoff_base=0.03, max_wait_retry=0.12,
                         backoff_jitter=0.0)
        res = await client.connect()
        try:
            assert isinstance(res[0], ConnectionError)
            await wait_until(lambda: len(attempts) >= 6, timeout=5)
        finally:
            client.close()
            await client.wait_closed()
    expected = [0.03, 0.06, 0.12, 0.12, 0.12]
    # the delays the client chose (no jitter): the doubling schedule, capped
    assert reconnect_delays(caplog)[:5] == pytest.approx(expected)
    # and it waits each one out before the next attempt. The upper bound is
    # loose on purpose: on a loaded machine a gap may run late; the schedule
    # above is what proves that no longer delay was chosen.
    gaps = [b - a for a, b in zip(attempts, attempts[1:])][:5]
    for gap, exp in zip(gaps, expected):
        assert exp * 0.9 <= gap <= exp + 2.0, (gaps, expected)


async def test_reconnects_after_server_restart() -> None:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        async with _client([(srv.host, srv.port)]) as client:
            await srv.stop()
            await wait_until(lambda: not client.hosts[0].up)
            with pytest.raises(ex.PoolError):
                await client.query('show dbname')
            await srv.start()
            await client.wait_connected(5)
            assert (await client.query('show dbname'))['data'][0]['value'] == 'dbtest'


async def test_keepalive_detects_dead_peer_and_reconnects() -> None:
    pings: List[int] = []

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        if pkg.tp == pm.CPROTO_REQ_AUTH:
            conn.reply(pkg.pid, pm.CPROTO_RES_AUTH_SUCCESS)
        elif pkg.tp == pm.CPROTO_REQ_PING:
            pings.append(len(srv.conns))
            if len(srv.conns) > 1:  # the first connection went half-open
                conn.reply(pkg.pid, pm.CPROTO_RES_ACK)

    async with ScriptedServer(handler) as srv:
        client = _client([(srv.host, srv.port)], keepalive_idle=0.05, keepalive_timeout=0.1)
        await client.connect()
        try:
            await wait_until(lambda: len(srv.conns) >= 2 and client.hosts[0].up)
            await wait_until(lambda: pings.count(2) >= 2)  # pings on the new connection
            assert client.hosts[0].up
            assert pings[0] == 1
        finally:
            client.close()
            await client.wait_closed()


async def test_bad_credentials_are_clear_and_not_retried_in_a_tight_loop(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger='siridb.connector')
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        client = SiriDBClient('iris', 'wrong-secret', 'dbtest', [(srv.host, srv.port)],
                              backoff_base=0.001, max_wait_retry=0.5)
        try:
            res = await client.connect()
            assert isinstance(res[0], ex.InvalidCredentialsError)
            assert isinstance(res[0], ex.AuthenticationError)
            assert 'wrong-secret' not in str(res[0]) + repr(res[0])
            # refused credentials: the next attempt waits the capped delay
            # (0.5 s less up to 20 % jitter), not the 1 ms backoff base
            await wait_until(lambda: len(reconnect_delays(caplog)) >= 1, 5)
            assert reconnect_delays(caplog)[0] >= 0.4
            assert isinstance(client.hosts[0].last_error, ex.InvalidCredentialsError)
            assert client.hosts[0].auth_failed
            with pytest.raises(ex.PoolError) as info:
                await client.query('show dbname')
            # the reason the pool is empty is attached as the cause
            assert isinstance(info.value.__cause__, ex.InvalidCredentialsError)
        finally:
            client.close()
            await client.wait_closed()

    async with EmbeddedServer(databases={'other': 'ms'}) as srv:
        client = _client([(srv.host, srv.port)])
        try:
            res = await client.connect()
            assert isinstance(res[0], ex.UnknownDatabaseError)
        finally:
            client.close()
            await client.wait_closed()


async def test_auth_attempts_are_spaced(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger='siridb.connector')
    auths: List[float] = []
    loop = asyncio.get_running_loop()

    def deny(conn: ScriptedConn, pkg: Package) -> None:
        auths.append(loop.time())
        conn.reply(pkg.pid, pm.CPROTO_ERR_AUTH_CREDENTIALS)

    async with ScriptedServer(deny) as srv:
        client = _client([(srv.host, srv.port)], backoff_base=0.001, max_wait_retry=0.1,
                         backoff_jitter=0.2)
        await client.connect()
        try:
            await wait_until(lambda: len(auths) >= 3, 5)
        finally:
            client.close()
            await client.wait_closed()
    # refused credentials are retried at the capped delay (0.1 s less up to 20 %
    # jitter), not at the 1 ms backoff base: as the client chose them, and as
    # the server saw them (a lower bound only, which load cannot break)
    assert min(reconnect_delays(caplog)) >= 0.08
    gaps = [b - a for a, b in zip(auths, auths[1:])]
    assert min(gaps) >= 0.075, gaps


async def test_close_then_reconnect_and_wait_closed() -> None:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        client = _client([(srv.host, srv.port)])
        with pytest.raises(ex.PoolError, match='No available connections found'):
            await client.query('show dbname')  # before connect(), as 2.1.6
        assert await client.connect() == [None]
        client.close()
        assert client.is_closed
        with pytest.raises(ex.ClientClosedError):
            await client.query('show dbname')
        assert await client.connect() == [None]  # re-opens at once
        assert (await client.query('show dbname'))['data'][0]['value'] == 'dbtest'
        client.close()
        await client.wait_closed()
        assert not client.connected


async def test_insert_checks_before_sending() -> None:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        async with _client([(srv.host, srv.port)]) as client:
            with pytest.raises(ex.InsertDataError) as info:
                await client.insert({'big': [[1, 'x' * (MAX_PAYLOAD + 1)]]})
            assert 'more than the server accepts' in str(info.value)
            with pytest.raises(ex.InsertDataError):
                await client.insert({'a': [[1, -2 ** 63 - 1]]})
            with pytest.raises(TypeError):
                await client.query(b'x'.decode() and 5)
            assert 'big' not in srv.store.databases['dbtest'].series
            # packs fine, rejected by the server with its own text
            with pytest.raises(ex.InsertError) as sinfo:
                await client.insert({'a': [[1, None]]})
            assert not isinstance(sinfo.value, ex.InsertDataError)
            assert str(sinfo.value) == ('Unsupported value received. (only integer, float '
                                        'and string values are supported).')


async def test_send_request_service_with_failover() -> None:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        async with _client([(srv.host, srv.port)]) as client:
            res = await client.send_request(pm.CPROTO_REQ_SERVICE,
                                            ['sa', 'siri', pm.SERVICE_GET_DATABASES, {}])
            assert 'dbtest' in res
            with pytest.raises(ex.ServiceError):
                await client.send_request(pm.CPROTO_REQ_SERVICE,
                                          ['sa', 'bad', pm.SERVICE_GET_DATABASES, {}])


async def test_unclosed_client_warns() -> None:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        client = _client([(srv.host, srv.port)], keepalive=False)
        await client.connect()
        protocols = [h.protocol for h in client.hosts]
        with pytest.warns(ResourceWarning, match='unclosed'):
            del client
            gc.collect()
        for p in protocols:
            assert p is not None
            p.close()
            await p.wait_closed()


async def test_siridbconn_connects_and_fails_fast_on_auth() -> None:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        conn = SiriDBConn('iris', 'siri', 'dbtest', srv.host, srv.port)
        await conn.connect(timeout=5)
        try:
            assert conn.is_connected()
            await conn.insert({'a': [[5, 5]]})
            assert await conn.query('select * from "a"') == {'a': [[5, 5]]}
        finally:
            conn.close()
            await conn.wait_closed()
        assert not conn.is_connected()

        bad = SiriDBConn('iris', 'nope', 'dbtest', srv.host, srv.port)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ex.AuthenticationError):
            await bad.connect(timeout=60)
        assert loop.time() - t0 < 2


async def test_siridbconn_waits_for_the_server() -> None:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        port = srv.port
        await srv.stop()
        conn = SiriDBConn('iris', 'siri', 'dbtest', srv.host, port,
                          backoff_base=0.05, max_wait_retry=0.1)
        asyncio.get_running_loop().call_later(0.1, lambda: asyncio.ensure_future(srv.start()))
        try:
            await conn.connect(timeout=5)
            assert conn.is_connected()
        finally:
            conn.close()
            await conn.wait_closed()
        conn2 = SiriDBConn('iris', 'siri', 'dbtest', srv.host, await _closed_port())
        with pytest.raises(TimeoutError):
            await conn2.connect(timeout=0.15)
        assert conn2.is_closed


async def test_weighted_choice_through_the_cluster() -> None:
    async with EmbeddedCluster(n=3, databases={'dbtest': 'ms'}) as cluster:
        weights = (1, 3, 6)
        hostlist = [(s.host, s.port, {'weight': w}) for s, w in zip(cluster.servers, weights)]
        async with _client(hostlist, rng=random.Random(5)) as client:
            n = 2000
            for _ in range(n // 100):
                await asyncio.gather(*(client.query('show dbname') for _ in range(100)))
            counts = [st.requests for st in client.stats()]
        assert sum(counts) == n
        chi2 = sum((c - n * w / 10) ** 2 / (n * w / 10) for c, w in zip(counts, weights))
        assert chi2 < 13.8, counts  # df = 2, p = 0.001


async def test_server_stopped_with_requests_in_flight() -> None:
    """Requests in flight on a server that stops fail over; none is lost."""
    async with EmbeddedCluster(n=3, databases={'dbtest': 'ms'}) as cluster:
        async with _client(cluster.hostlist, max_wait_retry=10, backoff_base=5) as client:
            tasks = [asyncio.ensure_future(client.insert({'s': [[i + 1, i]]}, timeout=10))
                     for i in range(300)]
            await asyncio.sleep(0)
            await cluster.servers[0].stop()
            res = await asyncio.gather(*tasks)
            assert all(r == {'success_msg': 'Successfully inserted 1 point(s).'} for r in res)
            ts = set(cluster.store.databases['dbtest'].series['s'].ts)
            assert ts == set(range(1, 301))  # at least once (a retried one may repeat)
            assert not client.hosts[0].up
            first = client.stats()[0]
            assert first.requests > 0 and first.errors > 0  # some were in flight there


def test_connect_timeout_is_the_timeout_argument() -> None:
    assert SiriDBClient('iris', 'siri', 'dbtest', [('127.0.0.1', 9000)],
                        timeout=3.5).connect_timeout == 3.5
    assert SiriDBClient('iris', 'siri', 'dbtest', [('127.0.0.1', 9000)]).connect_timeout == 10
