"""Service API (type 32), ping, server version and per-server stats against
the embedded server."""
from __future__ import annotations

import asyncio

import pytest

from siridb.connector import ServiceAPI, SiriDBClient, SiriDBService
from siridb.connector.lib.exceptions import (
    InvalidCredentialsError,
    ServiceError,
    ServiceInvalidRequestError,
    SiriDBError,
)
from siridb.embedded import EmbeddedCluster, EmbeddedServer


async def test_standalone_service_full_cycle(server: EmbeddedServer) -> None:
    async with SiriDBService('sa', 'siri', server.host, server.port) as svc:
        assert await svc.get_version() == '2.0.55'
        assert await svc.get_databases() == ['dbtest']
        assert await svc.get_accounts() == ['sa']

        await svc.new_database('db_s', time_precision='s', buffer_size=2048,
                               duration_num='2w', duration_log='12h')
        await svc.new_database('db_default')
        assert set(await svc.get_databases()) == {'dbtest', 'db_s', 'db_default'}
        db = server.store.databases['db_s']
        assert (db.precision, db.buffer_size, db.duration_num, db.duration_log) == (
            's', 2048, '2w', '12h')
        assert server.store.databases['db_default'].precision == 'ms'

        # the new database works with its default user
        async with SiriDBClient('iris', 'siri', 'db_s', [(server.host, server.port)]) as c:
            assert await c.time_precision() == 's'

        await svc.new_account('ops', 'pw123')
        assert sorted(await svc.get_accounts()) == ['ops', 'sa']
        await svc.change_password('ops', 'other')
        async with SiriDBService('ops', 'other', server.host, server.port) as ops:
            assert await ops.get_version() == '2.0.55'
        await svc.drop_account('ops')
        assert await svc.get_accounts() == ['sa']

        await svc.drop_database('db_default')
        await svc.drop_database('db_s', ignore_offline=True)
        assert await svc.get_databases() == ['dbtest']


@pytest.mark.parametrize('call,exc,text', [
    (lambda s: s.new_database('dbtest'), ServiceError,
     "database name already exists: 'dbtest'"),
    (lambda s: s.new_database('1bad name'), ServiceError,
     "invalid database name: '1bad name'"),
    (lambda s: s.new_database('dbx', time_precision='hours'), ServiceError,
     "invalid time precision: 'hours' (expecting s, ms, us or ns)"),
    (lambda s: s.new_database('dbx', buffer_size=1000), ServiceError,
     'invalid buffer size: 1000 (expecting a multiple of 512 with a maximum of 1048576)'),
    (lambda s: s.new_database('dbx', duration_num='100w'), ServiceError,
     "invalid number duration: '100w' (valid examples: 6h, 2d or 1w)"),
    (lambda s: s.drop_database('nope_db'), ServiceError, "cannot find database 'nope_db'"),
    (lambda s: s.new_account('x', 'pw123'), ServiceError,
     'service account name should have at least 2 characters'),
    (lambda s: s.request(3, {'dbname': 'dbx', 'bogus': 1}), ServiceInvalidRequestError,
     None),
])
async def test_service_errors_are_typed(server: EmbeddedServer, call, exc, text) -> None:  # type: ignore[no-untyped-def]
    async with SiriDBService(host=server.host, port=server.port) as svc:
        with pytest.raises(exc) as info:
            await call(svc)
        assert isinstance(info.value, SiriDBError)
        assert info.value.tp == (97 if exc is ServiceInvalidRequestError else 96)
        if text is not None:
            assert str(info.value) == text
        # the connection stays usable after an error
        assert await svc.get_version() == '2.0.55'


async def test_bad_service_credentials(server: EmbeddedServer) -> None:
    async with SiriDBService('sa', 'wrong', server.host, server.port) as svc:
        with pytest.raises(ServiceError) as info:
            await svc.get_version()
        assert str(info.value) == "incorrect password for service account 'sa'"
        assert 'wrong' not in repr(svc)
    async with SiriDBService('nobody', 'siri', server.host, server.port) as svc:
        with pytest.raises(ServiceError, match="cannot find service account 'nobody'"):
            await svc.get_databases()


async def test_service_from_url_and_reconnect(server: EmbeddedServer) -> None:
    svc = SiriDBService.from_url(f'siridb://sa:siri@{server.host}:{server.port}')
    try:
        assert await svc.get_version() == '2.0.55'  # connects on first use
        await server.stop()
        with pytest.raises((ConnectionError, OSError)):
            await svc.get_version()
        await server.start()
        assert await svc.get_databases() == ['dbtest']  # reconnected
    finally:
        svc.close()
        await svc.wait_closed()
    with pytest.raises(ConnectionError):
        await svc.get_version()


async def test_service_through_the_pool(server: EmbeddedServer) -> None:
    async with SiriDBClient('iris', 'siri', 'dbtest', [(server.host, server.port)]) as c:
        svc = c.service()
        assert isinstance(svc, ServiceAPI)
        assert await svc.get_version() == '2.0.55'
        await svc.new_database('pooled', time_precision='us')
        assert 'pooled' in await svc.get_databases()
        assert server.store.databases['pooled'].precision == 'us'
        with pytest.raises(ServiceError, match="database name already exists: 'pooled'"):
            await svc.new_database('pooled')
        with pytest.raises(ServiceError, match='incorrect password'):
            await c.service('sa', 'nope').get_version()


async def test_ping_version_and_stats() -> None:
    async with EmbeddedCluster(n=2, databases={'dbtest': 'ms'}) as cluster:
        hostlist = [cluster.hostlist[0], (*cluster.hostlist[1], {'backup': True})]
        async with SiriDBClient('iris', 'siri', 'dbtest', hostlist, backoff_base=0.05,
                                max_wait_retry=0.2, inactive_time=0.1) as c:
            rtt = await c.ping()
            assert 0 <= rtt < 5
            assert await c.server_version() == '2.0.55'
            with pytest.raises(SiriDBError):
                await c.query('bogus statement')
            st = c.stats()
            assert [(s.host, s.port) for s in st] == [h[:2] for h in cluster.hostlist]
            first, backup = st
            assert first.up and not first.backup and backup.backup
            assert first.requests >= 3 and first.errors == 1
            assert first.last_error is not None and 'QueryError' in first.last_error
            assert first.reconnects == 0 and first.in_flight == 0
            assert backup.requests == 0
            # a restart of the first server shows up as a reconnect
            await cluster.servers[0].stop()
            assert (await c.ping()) >= 0  # served by the backup
            await cluster.servers[0].start()
            for _ in range(200):
                if c.stats()[0].up:
                    break
                await asyncio.sleep(0.02)
            after = c.stats()
            assert after[0].reconnects == 1
            assert after[1].requests >= 1
            assert after[0].as_dict()['host'] == cluster.hostlist[0][0]


async def test_bad_auth_is_typed(server: EmbeddedServer) -> None:
    c = SiriDBClient('iris', 'wrong', 'dbtest', [(server.host, server.port)])
    res = await c.connect()
    try:
        assert isinstance(res[0], InvalidCredentialsError)
    finally:
        c.close()
        await c.wait_closed()


async def test_pool_and_replica_requests(server: EmbeddedServer) -> None:
    # the embedded server refuses them with a typed error ...
    async with SiriDBService(host=server.host, port=server.port) as svc:
        with pytest.raises(ServiceError, match='does not support adding pools'):
            await svc.new_pool('dbtest', 'other', 9000, 'iris', 'siri')
        with pytest.raises(ServiceError, match='does not support adding pools'):
            await svc.new_replica('dbtest', 'other', 9000, 'iris', 'siri', pool=0)


async def test_exact_service_payloads() -> None:
    """... so check what goes on the wire against the protocol facts with a
    scripted loopback server that acknowledges everything."""
    from _driver_helpers import ScriptedServer

    from siridb.connector.lib import protomap as pm

    def handler(conn, pkg):  # type: ignore[no-untyped-def]
        if pkg.data()[2] >= 64:
            conn.reply(pkg.pid, pm.CPROTO_ACK_SERVICE_DATA, ['x'])
        else:
            conn.reply(pkg.pid, pm.CPROTO_ACK_SERVICE)

    async with ScriptedServer(handler) as srv:
        async with SiriDBService('sa', 'pw', srv.host, srv.port) as svc:
            assert await svc.new_pool('db', 'h', 9001, 'u', 'p') is None
            await svc.new_replica('db', 'h', 9001, 'u', 'p', 1)
            await svc.new_database('db')
            await svc.new_database('db2', 'ns', 512, '2d', '3h')
            await svc.drop_database('db', ignore_offline=True)
            await svc.drop_database('db')
            await svc.new_account('acc', 'pw1')
            await svc.change_password('acc', 'pw2')
            await svc.drop_account('acc')
            assert await svc.get_version() == 'x'
            assert await svc.get_accounts() == ['x']
            assert await svc.get_databases() == ['x']
        sent = [p.data() for p in srv.received]
        assert all(p.tp == pm.CPROTO_REQ_SERVICE for p in srv.received)
    assert sent == [
        ['sa', 'pw', 4, {'dbname': 'db', 'host': 'h', 'port': 9001, 'username': 'u',
                         'password': 'p'}],
        ['sa', 'pw', 5, {'dbname': 'db', 'host': 'h', 'port': 9001, 'username': 'u',
                         'password': 'p', 'pool': 1}],
        ['sa', 'pw', 3, {'dbname': 'db'}],
        ['sa', 'pw', 3, {'dbname': 'db2', 'time_precision': 'ns', 'buffer_size': 512,
                         'duration_num': '2d', 'duration_log': '3h'}],
        ['sa', 'pw', 6, {'database': 'db', 'ignore_offline': True}],
        ['sa', 'pw', 6, {'database': 'db'}],
        ['sa', 'pw', 0, {'account': 'acc', 'password': 'pw1'}],
        ['sa', 'pw', 1, {'account': 'acc', 'password': 'pw2'}],
        ['sa', 'pw', 2, {'account': 'acc'}],
        ['sa', 'pw', 64, {}],
        ['sa', 'pw', 65, {}],
        ['sa', 'pw', 66, {}],
    ]
