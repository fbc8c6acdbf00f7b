"""Service requests (type 32) of the embedded server over the wire."""
from __future__ import annotations

import pytest
from _embedded_helpers import RawConn

from siridb.embedded import EmbeddedServer


@pytest.fixture
async def svc():
    async with EmbeddedServer(databases=[]) as srv:
        c = await RawConn.open(srv.host, srv.port)
        c.server = srv
        yield c
        await c.close()


async def call(c, request, options=None, user='sa', password='siri'):
    return await c.request(32, [user, password, request, {} if options is None else options])


def err(msg):
    return (96, {'error_msg': msg})


async def test_get_version_accounts_databases(svc):
    assert await call(svc, 64) == (33, ['2.0.55'])
    assert await call(svc, 65) == (33, ['sa'])
    assert await call(svc, 66) == (33, [])


async def test_account_checks(svc):
    assert await call(svc, 64, password='wrong') == err(
        "incorrect password for service account 'sa'")
    assert await call(svc, 64, user='nobody') == err(
        "cannot find service account 'nobody'")


async def test_new_database_and_errors(svc):
    assert await call(svc, 3, {'dbname': 'conf_s', 'time_precision': 's'}) == (32, None)
    assert await call(svc, 3, {'dbname': 'conf_ms'}) == (32, None)
    db = svc.server.store.databases['conf_ms']
    assert db.precision == 'ms' and db.buffer_size == 1024
    assert db.duration_num == '1w' and db.duration_log == '1d'
    assert svc.server.store.databases['conf_s'].precision == 's'
    assert await call(svc, 3, {'dbname': 'conf_s'}) == err(
        "database name already exists: 'conf_s'")
    assert await call(svc, 3, {'dbname': '1bad name'}) == err(
        "invalid database name: '1bad name'")
    assert await call(svc, 3, {'dbname': 'a' * 21}) == err(
        f"invalid database name: '{'a' * 21}'")
    assert await call(svc, 3, {'dbname': 'conf_x', 'time_precision': 'hours'}) == err(
        "invalid time precision: 'hours' (expecting s, ms, us or ns)")
    assert await call(svc, 3, {'dbname': 'conf_x', 'buffer_size': 1000}) == err(
        'invalid buffer size: 1000 (expecting a multiple of 512 with a maximum of 1048576)')
    assert (await call(svc, 3, {'dbname': 'conf_x', 'buffer_size': 2 ** 21}))[0] == 96
    assert await call(svc, 3, {'dbname': 'conf_x', 'duration_num': '100w'}) == err(
        "invalid number duration: '100w' (valid examples: 6h, 2d or 1w)")
    assert (await call(svc, 3, {'dbname': 'conf_x', 'duration_log': '0d'}))[0] == 96
    assert await call(svc, 66) == (33, ['conf_s', 'conf_ms'])
    # the new database has user iris/siri with full access
    await svc.auth('conf_ms')


@pytest.mark.parametrize('request_, options', [
    (3, {'bogus': 1, 'dbname': 'conf_x'}),
    (3, {}),
    (3, {'dbname': 5}),
    (3, {'dbname': 'x', 'buffer_size': '1024'}),
    (0, {'account': 'abc'}),
    (6, {}),
    (6, {'database': 'x', 'ignore_offline': 1}),
    (64, {'x': 1}),
    (99, {}),
    (64, []),
])
async def test_invalid_requests(svc, request_, options):
    assert await call(svc, request_, options) == (97, None)


@pytest.mark.parametrize('payload', [None, 'x', ['sa', 'siri', 64], ['sa', 'siri', '64', {}],
                                     [1, 'siri', 64, {}], {'a': 1}])
async def test_malformed_payloads(svc, payload):
    assert await svc.request(32, payload) == (97, None)


async def test_accounts(svc):
    assert await call(svc, 0, {'account': 'conf_sa', 'password': 'pw123'}) == (32, None)
    assert await call(svc, 0, {'account': 'conf_sa', 'password': 'pw123'}) == err(
        "service account 'conf_sa' already exists")
    assert await call(svc, 0, {'account': 'x', 'password': 'pw123'}) == err(
        'service account name should have at least 2 characters')
    assert (await call(svc, 0, {'account': 'yy', 'password': 'p'}))[0] == 96
    assert await call(svc, 65) == (33, ['sa', 'conf_sa'])
    assert await call(svc, 1, {'account': 'conf_sa', 'password': 'other'}) == (32, None)
    assert await call(svc, 64, user='conf_sa', password='other') == (33, ['2.0.55'])
    assert await call(svc, 1, {'account': 'nobody', 'password': 'other'}) == err(
        "cannot find service account 'nobody'")
    assert await call(svc, 2, {'account': 'nobody'}) == err(
        "cannot find service account 'nobody'")
    assert await call(svc, 2, {'account': 'conf_sa'}) == (32, None)
    # the last account stays; the real server says so before looking the name up
    last = err('at least one service account is required, cannot drop the last '
               'service account')
    assert await call(svc, 2, {'account': 'sa'}) == last
    assert await call(svc, 2, {'account': 'conf_sa'}) == last
    assert await call(svc, 65) == (33, ['sa'])


async def test_drop_database(svc):
    assert await call(svc, 6, {'database': 'nope_db'}) == err("cannot find database 'nope_db'")
    await call(svc, 3, {'dbname': 'dropme'})
    await svc.auth('dropme')
    assert await call(svc, 6, {'database': 'dropme', 'ignore_offline': True}) == (32, None)
    assert 'dropme' not in svc.server.store.databases
    # the connection's database is gone
    assert await svc.request(1, {'a': [[1, 1]]}) == (71, None)


async def test_pools_and_replicas_are_refused_clearly(svc):
    opts = {'dbname': 'x', 'host': 'h', 'port': 9000, 'username': 'iris', 'password': 'siri'}
    tp, data = await call(svc, 4, opts)
    assert tp == 96 and 'EmbeddedCluster' in data['error_msg']
    tp, data = await call(svc, 5, dict(opts, pool=0))
    assert tp == 96 and 'replicas' in data['error_msg']


async def test_service_needs_no_database_auth(svc):
    # a connection that authenticated nowhere may still use the service api
    assert await call(svc, 64) == (33, ['2.0.55'])
    assert await svc.request(1, {'a': [[1, 1]]}) == (71, None)
