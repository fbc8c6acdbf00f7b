"""TLS (an ``ssl.SSLContext`` on client, pool and single connection) against the
embedded server serving a throwaway certificate made with the openssl CLI."""
from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any, Tuple

import pytest
from _driver_helpers import ScriptedConn, ScriptedServer

from siridb.connector import SiriDBClient, SiriDBConn, async_connect, connect
from siridb.connector.lib import exceptions as ex
from siridb.connector.lib import protomap as pm
from siridb.connector.lib.codec import Package
from siridb.embedded import EmbeddedServer

pytestmark = pytest.mark.skipif(shutil.which('openssl') is None,
                                reason='the openssl CLI is needed to make a test certificate')


@pytest.fixture(scope='module')
def certs(tmp_path_factory: Any) -> Tuple[ssl.SSLContext, ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context trusting it, client context trusting another CA)."""
    d: Path = tmp_path_factory.mktemp('tls')
    for name in ('srv', 'other'):
        subprocess.run(
            ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
             'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
             '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
             '-keyout', str(d / f'{name}.key'), '-out', str(d / f'{name}.pem')],
            check=True, capture_output=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(str(d / 'srv.pem'), str(d / 'srv.key'))
    client = ssl.create_default_context(cafile=str(d / 'srv.pem'))
    wrong = ssl.create_default_context(cafile=str(d / 'other.pem'))
    return server, client, wrong


async def test_pool_over_tls(certs: Any) -> None:
    server_ctx, client_ctx, _ = certs
    async with EmbeddedServer(databases={'dbtest': 'ms'}, ssl=server_ctx) as srv:
        async with SiriDBClient('iris', 'siri', 'dbtest', [(srv.host, srv.port)],
                                ssl=client_ctx) as client:
            assert client.connected
            assert await client.insert({'t': [[1, 1.0]]}) == {
                'success_msg': 'Successfully inserted 1 point(s).'}
            assert await client.query('select * from "t"') == {'t': [[1, 1.0]]}
            proto = client.hosts[0].protocol
            assert proto is not None and proto.transport is not None
            assert proto.transport.get_extra_info('ssl_object') is not None


async def test_single_connection_and_siridbconn_over_tls(certs: Any) -> None:
    server_ctx, client_ctx, _ = certs
    async with EmbeddedServer(databases={'dbtest': 'ms'}, ssl=server_ctx) as srv:
        conn = await async_connect('iris', 'siri', 'dbtest', srv.host, srv.port,
                                   ssl=client_ctx)
        try:
            assert (await conn.query('show dbname'))['data'][0]['value'] == 'dbtest'
        finally:
            conn.close()
            await conn.wait_closed()
        sconn = SiriDBConn('iris', 'siri', 'dbtest', srv.host, srv.port, ssl=client_ctx)
        await sconn.connect(timeout=5)
        try:
            assert await sconn.query('count series') == {'series': 0}
        finally:
            sconn.close()
            await sconn.wait_closed()


def test_blocking_connection_over_tls(certs: Any) -> None:
    server_ctx, client_ctx, _ = certs
    with EmbeddedServer.start_in_thread(databases={'dbtest': 'ms'}, ssl=server_ctx) as srv:
        with connect('iris', 'siri', 'dbtest', srv.host, srv.port, ssl=client_ctx) as conn:
            assert conn.query('count series') == {'series': 0}


async def test_untrusted_certificate_and_plain_client_fail(certs: Any) -> None:
    server_ctx, _, wrong_ctx = certs
    async with EmbeddedServer(databases={'dbtest': 'ms'}, ssl=server_ctx) as srv:
        with pytest.raises(ssl.SSLCertVerificationError):
            await async_connect('iris', 'siri', 'dbtest', srv.host, srv.port,
                                ssl=wrong_ctx, timeout=5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises((ConnectionError, TimeoutError)):
            await async_connect('iris', 'siri', 'dbtest', srv.host, srv.port, timeout=1)
        assert loop.time() - t0 < 3


async def test_password_never_in_logs_reprs_or_errors(caplog: Any) -> None:
    secret = 'Pa55-w0rd-xyzzy'
    results = iter([pm.CPROTO_ERR_AUTH_CREDENTIALS, pm.CPROTO_RES_AUTH_SUCCESS])

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        if pkg.tp == pm.CPROTO_REQ_AUTH:
            conn.reply(pkg.pid, next(results, pm.CPROTO_RES_AUTH_SUCCESS))
        else:
            conn.reply(pkg.pid, pm.CPROTO_ERR_QUERY, {'error_msg': 'nope'})

    caplog.set_level(logging.DEBUG, logger='siridb.connector')
    texts = []
    async with ScriptedServer(handler) as srv:
        client = SiriDBClient('iris', secret, 'dbtest', [(srv.host, srv.port)],
                              backoff_base=0.01, max_wait_retry=0.05)
        res = await client.connect()
        texts += [str(res[0]), repr(res[0]), repr(client)]
        await client.wait_connected(5)
        with pytest.raises(ex.QueryError) as info:
            await client.query('x')
        texts += [str(info.value), repr(info.value), repr(client.hosts[0].protocol),
                  repr(client.hosts)]
        client.close()
        await client.wait_closed()
    texts.append(caplog.text)
    assert 'authentication failed' in caplog.text
    assert all(secret not in t for t in texts)
