"""EmbeddedCluster: listeners sharing one store; stop/start/pause/pool errors,
automatic PoolError when a pool has no server left; and the pytest fixtures."""
from __future__ import annotations

import pytest
from _embedded_helpers import RawConn

from siridb.embedded import EmbeddedCluster

pytest_plugins = ['siridb.testing.pytest_plugin']

POOL_DOWN_INSERT = 'At least one pool has no server available to process the request'


async def test_listeners_share_one_store():
    async with EmbeddedCluster(3, {'dbc': 's'}) as cluster:
        assert len({s.port for s in cluster.servers}) == 3
        assert cluster.hostlist == [('127.0.0.1', s.port) for s in cluster.servers]
        conns = [await RawConn.open(s.host, s.port) for s in cluster.servers]
        try:
            for i, c in enumerate(conns):
                await c.auth('dbc')
                assert (await c.request(1, {f's{i}': [[1, i]]}))[0] == 1
            assert sorted(cluster.store.databases['dbc'].series) == ['s0', 's1', 's2']
            assert all(s.store is cluster.store for s in cluster.servers)
        finally:
            for c in conns:
                await c.close()


async def test_stop_start_pause_one_server():
    async with EmbeddedCluster(2, {'dbc': 's'}) as cluster:
        a, b = cluster.servers
        await b.stop()
        assert [i.online for i in cluster.infos] == [True, False]
        assert cluster.infos[1].status == 'offline'
        with pytest.raises(OSError):
            await RawConn.open(b.host, b.port)
        # all servers of pool 0 are not down: no pool error
        c = await RawConn.open(a.host, a.port)
        try:
            await c.auth('dbc')
            assert (await c.request(1, {'x': [[1, 1]]}))[0] == 1
            await b.start()
            b.pause()
            assert (await c.request(1, {'x': [[2, 1]]}))[0] == 1
            d = await RawConn.open(b.host, b.port)
            try:
                assert (await d.request(3))[0] == 67
                b.resume()
                assert await d.request(3) == (3, None)
            finally:
                await d.close()
        finally:
            await c.close()


async def test_pool_without_a_server_gives_pool_errors():
    async with EmbeddedCluster(3, {'dbc': 's'}, pools=[0, 0, 1]) as cluster:
        first, _, last = cluster.servers
        c = await RawConn.open(first.host, first.port)
        try:
            await c.auth('dbc')
            assert (await c.request(1, {'x': [[1, 1]]}))[0] == 1
            await last.stop()
            assert cluster.pool_missing()
            assert await c.request(1, {'x': [[2, 1]]}) == (68, {'error_msg': POOL_DOWN_INSERT})
            tp, data = await c.request(0, ['count series', None])
            assert tp == 68
            assert await c.request(0, ['show version', None]) == (
                0, {'data': [{'name': 'version', 'value': '2.0.55'}]})
            tp, data = await c.request(0, ['list servers name, pool, online, status', None])
            assert tp == 0
            assert sorted(map(tuple, data['servers'])) == sorted([
                (first.name, 0, True, 'running'),
                (cluster.servers[1].name, 0, True, 'running'),
                (last.name, 1, False, 'offline')])
            await last.start()
            assert not cluster.pool_missing()
            assert (await c.request(1, {'x': [[3, 1]]}))[0] == 1
            # a pause takes the pool down too
            last.pause()
            assert (await c.request(1, {'x': [[4, 1]]}))[0] == 68
            last.resume()
        finally:
            await c.close()


async def test_forced_pool_error_on_one_server():
    async with EmbeddedCluster(2, {'dbc': 's'}) as cluster:
        a, b = cluster.servers
        b.pool_error(True)
        ca = await RawConn.open(a.host, a.port)
        cb = await RawConn.open(b.host, b.port)
        try:
            await ca.auth('dbc')
            await cb.auth('dbc')
            assert (await cb.request(1, {'x': [[1, 1]]}))[0] == 68
            assert (await ca.request(1, {'x': [[1, 1]]}))[0] == 1
        finally:
            await ca.close()
            await cb.close()


def test_cluster_arguments_are_checked():
    with pytest.raises(ValueError):
        EmbeddedCluster(0)
    with pytest.raises(ValueError):
        EmbeddedCluster(2, pools=[0])


async def test_client_fails_over_between_listeners():
    from siridb.connector import SiriDBClient
    async with EmbeddedCluster(2, {'dbc': 's'}) as cluster:
        client = SiriDBClient('iris', 'siri', 'dbc', cluster.hostlist, keepalive=False)
        assert await client.connect() == [None, None]
        try:
            await cluster.servers[0].stop()
            for i in range(10):  # every insert lands, whichever server is chosen
                res = await client.insert({'f': [[i, i]]})
                assert res == {'success_msg': 'Successfully inserted 1 point(s).'}
            cluster.servers[1].pause()
            await cluster.servers[0].start()
            assert len(cluster.store.databases['dbc'].series['f']) == 10
        finally:
            client.close()
            await client.wait_closed()


# -- fixtures shipped in siridb.testing.pytest_plugin ---------------------

async def test_fixture_server(siridb_server):
    assert siridb_server.running and siridb_server.port > 0
    assert 'dbtest' in siridb_server.store.databases


async def test_fixture_client(siridb_client, siridb_server):
    res = await siridb_client.insert({'fx': [[1, 1.5]]})
    assert res == {'success_msg': 'Successfully inserted 1 point(s).'}
    assert await siridb_client.query('select * from "fx"') == {'fx': [[1, 1.5]]}
    assert len(siridb_server.store.databases['dbtest'].series['fx']) == 1


async def test_fixture_cluster(siridb_cluster):
    assert len(siridb_cluster.servers) == 3
    assert all(s.running for s in siridb_cluster.servers)
