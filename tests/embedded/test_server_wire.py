"""The embedded server's wire side over real loopback sockets: auth, ping,
no-reply cases, bad input, pause/pool errors, restart, unix sockets, TLS and
the threaded handle."""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import ssl
import struct
import subprocess
from typing import Any, Dict, List, Optional

import pytest
from _embedded_helpers import RawConn

from siridb.connector.lib import protomap as pm
from siridb.connector.lib.codec import HEADER, MAX_PAYLOAD, encode, pack
from siridb.embedded import EmbeddedServer
from siridb.embedded import engine as engine_mod
from siridb.embedded.context import QueryContext, QueryFailure
from siridb.embedded.store import ACCESS_PROFILES, User


@pytest.fixture
async def server():
    async with EmbeddedServer(port=0, databases={'dbtest': 'ms', 'db_s': 's'}) as srv:
        yield srv


@pytest.fixture
async def conn(server):
    c = await RawConn.open(server.host, server.port)
    yield c
    await c.close()


async def assert_no_reply(conn: RawConn) -> None:
    """Nothing answered the requests sent so far on ``conn``: the server
    handles a connection's requests one after the other, in order, so the
    first reply after them is that of a PING sent now (no waiting for a
    reply that might come)."""
    pid = conn.send(pm.CPROTO_REQ_PING)
    assert await conn.recv() == (pid, pm.CPROTO_RES_ACK, None)


@pytest.fixture
def fake_query(monkeypatch):
    """Replace the query language by a recorder (the wire side is under test,
    not the language)."""
    calls: List[Any] = []

    def execute(ctx: QueryContext, query: str, tp: Optional[int]) -> Dict[str, Any]:
        calls.append((ctx, query, tp))
        if query == 'fail':
            raise QueryFailure(65, 'Query error at position 0.')
        if query == 'boom':
            raise RuntimeError('bug')
        if query == 'huge int':
            return {'x': 2 ** 70}
        return {'calc': 1, 'db': ctx.db.name, 'user': ctx.user.name}

    monkeypatch.setattr(engine_mod, 'execute', execute)
    return calls


async def test_ping_without_auth(conn):
    assert await conn.request(pm.CPROTO_REQ_PING) == (pm.CPROTO_RES_ACK, None)


async def test_query_and_insert_before_auth(conn):
    assert await conn.request(0, ['list series', None]) == (71, None)
    assert await conn.request(1, {'a': [[1, 1]]}) == (71, None)


async def test_auth_errors_and_success(conn, server):
    assert await conn.request(2, ['iris', 'wrong', 'dbtest']) == (72, None)
    assert await conn.request(2, ['nobody', 'siri', 'dbtest']) == (72, None)
    assert await conn.request(2, ['iris', 'siri', 'nodb']) == (73, None)
    assert await conn.request(2, ['sa', 'siri', 'dbtest']) == (72, None)
    assert await conn.request(2, ['iris', 'siri', 'dbtest']) == (2, None)
    # a failed re-auth keeps the earlier authentication
    assert await conn.request(2, ['iris', 'wrong', 'db_s']) == (72, None)
    assert (await conn.request(1, {'a': [[1, 1]]}))[0] == pm.CPROTO_RES_INSERT
    assert len(server.store.databases['dbtest'].series['a']) == 1


async def test_reauth_switches_database(conn, server):
    await conn.auth('dbtest')
    await conn.auth('db_s')
    tp, data = await conn.request(1, {'in_s': [[5, 1.5]]})
    assert (tp, data) == (1, {'success_msg': 'Successfully inserted 1 point(s).'})
    assert 'in_s' in server.store.databases['db_s'].series
    assert 'in_s' not in server.store.databases['dbtest'].series


@pytest.mark.parametrize('tp', [4, 5, 6, 10, 42, 255])
async def test_unknown_types_get_no_reply(conn, tp):
    conn.send(tp, None)
    await assert_no_reply(conn)
    # the connection still works
    assert await conn.request(pm.CPROTO_REQ_PING) == (3, None)


@pytest.mark.parametrize('payload', [None, 'x', ['iris', 'siri'], ['iris', 'siri', 5],
                                     {'a': 1}, ['iris', 'siri', 'dbtest', 'x']])
async def test_malformed_auth_gets_no_reply(conn, payload):
    conn.send(2, payload)
    await assert_no_reply(conn)
    assert await conn.request(3) == (3, None)


@pytest.mark.parametrize('payload', [None, 'list series', [], [5, None],
                                     ['q', 'ms'], ['q', None, 1], {'q': 1}])
async def test_malformed_query_gets_no_reply(conn, payload, fake_query):
    await conn.auth()
    conn.send(0, payload)
    await assert_no_reply(conn)
    assert await conn.request(3) == (3, None)
    assert fake_query == []


async def test_corrupt_bodies(conn, fake_query):
    await conn.auth()
    # bodies starting with a close marker never reach qpack
    conn.send(0, body=b'\xfe')
    await assert_no_reply(conn)
    tp, data = await conn.request(3)
    assert tp == 3
    conn.send(1, body=b'\xff\x00')
    _, tp, data = await conn.recv()
    assert tp == pm.CPROTO_ERR_INSERT
    assert data == {'error_msg': 'Expecting an array or map containing series and points.'}
    conn.send(1, body=b'\xea\x01')  # truncated qpack
    _, tp, _ = await conn.recv()
    assert tp == pm.CPROTO_ERR_INSERT
    conn.send(32, body=b'\xff')
    _, tp, _ = await conn.recv()
    assert tp == pm.CPROTO_ERR_SERVICE_INVALID_REQUEST


async def test_query_too_long(conn, fake_query):
    await conn.auth()
    tp, data = await conn.request(0, ['select * from "' + 'x' * 70000 + '"', None])
    assert (tp, data) == (65, {'error_msg': 'Query too long.'})
    assert fake_query == []


async def test_query_plumbing(conn, server, fake_query):
    await conn.auth()
    assert await conn.request(0, ['show', 2]) == (
        0, {'calc': 1, 'db': 'dbtest', 'user': 'iris'})
    ctx, query, tp = fake_query[-1]
    assert (query, tp) == ('show', 2)
    assert ctx.server is server.info and ctx.servers == [server.info]
    assert ctx.pool_down is False
    # bytes query text is decoded as utf-8
    assert (await conn.request(0, [b'show dbname', None]))[0] == 0
    assert fake_query[-1][1:] == ('show dbname', None)
    assert await conn.request(0, ['fail', None]) == (
        65, {'error_msg': 'Query error at position 0.'})
    tp, data = await conn.request(0, ['boom', None])
    assert tp == 65 and 'internal error' in data['error_msg']
    tp, data = await conn.request(0, ['huge int', None])
    assert tp == 65
    # an unknown precision converts nothing, as the real server
    await conn.request(0, ['x', 9])
    assert fake_query[-1][1:] == ('x', None)
    server.pool_error(True)
    await conn.request(0, ['x', None])
    assert fake_query[-1][0].pool_down is True


async def test_insert_needs_insert_right(conn, server):
    db = server.store.databases['dbtest']
    db.users['reader'] = User('reader', 'secret1', ACCESS_PROFILES['read'])
    await conn.auth(user='reader', password='secret1')
    assert await conn.request(1, {'a': [[1, 1]]}) == (69, {
        'error_msg': "Access denied. User 'reader' has no 'insert' privileges."})
    assert 'a' not in db.series


async def test_dropped_user_or_database_is_not_authenticated(conn, server):
    db = server.store.databases['dbtest']
    db.users['tmp'] = User('tmp', 'pass', ACCESS_PROFILES['full'])
    await conn.auth(user='tmp', password='pass')
    del db.users['tmp']
    assert await conn.request(1, {'a': [[1, 1]]}) == (71, None)
    await conn.auth('db_s')
    server.engine.drop_database('db_s')
    assert await conn.request(1, {'a': [[1, 1]]}) == (71, None)


async def test_pause_answers_server_error_to_everything(conn, server):
    await conn.auth()
    server.pause()
    for tp, payload in [(3, None), (0, ['show', None]), (1, {'a': [[1, 1]]}),
                        (2, ['iris', 'siri', 'dbtest']), (32, ['sa', 'siri', 64, {}])]:
        rtp, data = await conn.request(tp, payload)
        assert rtp == pm.CPROTO_ERR_SERVER
        assert 'not running' in data['error_msg']
    assert server.info.online is False and server.info.status == 'paused'
    server.resume()
    assert await conn.request(3) == (3, None)
    assert server.info.online is True and server.info.status == 'running'


async def test_insert_checks_in_the_real_order(conn, server):
    """INSERT: not authenticated 71, no insert right 69, server not running
    67, pool down 68, then the payload (66)."""
    server.pause()
    assert await conn.request(1, {'a': [[1, 1]]}) == (71, None)
    server.resume()
    db = server.store.databases['dbtest']
    db.users['reader'] = User('reader', 'secret1', ACCESS_PROFILES['read'])
    await conn.auth(user='reader', password='secret1')
    server.pause()
    server.pool_error(True)
    assert (await conn.request(1, {'a': [[1, 1]]}))[0] == 69
    db.users['reader'].access = ACCESS_PROFILES['write']
    assert (await conn.request(1, 'bad'))[0] == 67
    server.resume()
    assert (await conn.request(1, 'bad'))[0] == 68
    server.pool_error(False)
    assert (await conn.request(1, 'bad'))[0] == 66


async def test_pool_error_on_insert(conn, server):
    await conn.auth()
    server.pool_error(True)
    assert await conn.request(1, {'a': [[1, 1]]}) == (68, {
        'error_msg': 'At least one pool has no server available to process the request'})
    server.pool_error(False)
    assert (await conn.request(1, {'a': [[1, 1]]}))[0] == 1


async def test_bad_check_byte_closes_only_that_connection(server):
    bad = await RawConn.open(server.host, server.port)
    good = await RawConn.open(server.host, server.port)
    try:
        bad.send_raw(HEADER.pack(0, 1, 3, 0x00))
        assert await bad.is_closed_by_peer()
        assert await good.request(3) == (3, None)
    finally:
        await bad.close()
        await good.close()


async def test_oversize_package_closes(server):
    c = await RawConn.open(server.host, server.port)
    try:
        c.send_raw(HEADER.pack(MAX_PAYLOAD + 1, 1, 0, 0xFF))
        assert await c.is_closed_by_peer()
    finally:
        await c.close()


async def test_garbage_and_truncated_input_do_not_hurt_others(server):
    good = await RawConn.open(server.host, server.port)
    await good.auth()
    try:
        for junk in [os.urandom(64), b'\x00' * 7, encode(1, 1, b'\xf3\x01\x02')[:-2],
                     HEADER.pack(2 ** 32 - 1, 1, 1, 0xFE) + b'x']:
            c = await RawConn.open(server.host, server.port)
            c.send_raw(junk)
            await asyncio.sleep(0.05)
            await c.close()
        assert await good.request(1, {'ok': [[1, 1]]}) == (
            1, {'success_msg': 'Successfully inserted 1 point(s).'})
    finally:
        await good.close()


async def test_pipelined_requests_keep_their_pids(conn):
    await conn.auth()
    pids = [conn.send(1, {f's{i}': [[i, i]]}) for i in range(200)]
    pids += [conn.send(3) for _ in range(50)]
    got = {}
    for _ in pids:
        pid, tp, data = await conn.recv()
        got[pid] = tp
    assert sorted(got) == sorted(pids)
    assert all(got[p] == 1 for p in pids[:200]) and all(got[p] == 3 for p in pids[200:])


async def test_many_packages_in_one_write_and_split_writes(conn):
    data = b''.join(pack(i, 3) for i in range(1, 101))
    conn.send_raw(data[:5])
    await asyncio.sleep(0.01)
    conn.send_raw(data[5:])
    for i in range(1, 101):
        pid, tp, _ = await conn.recv()
        assert (pid, tp) == (i, 3)


async def test_large_package_logs_warning(conn, caplog):
    await conn.auth()
    caplog.set_level(logging.WARNING, logger='siridb.embedded')
    pts = [[i, 'x' * 100] for i in range(25000)]
    tp, data = await conn.request(1, {'big': pts}, timeout=20)
    assert tp == 1
    assert any('large package' in r.getMessage() for r in caplog.records)


async def test_restart_on_same_port_keeps_data(server):
    c = await RawConn.open(server.host, server.port)
    await c.auth()
    await c.request(1, {'keep': [[1, 1]]})
    port = server.port
    await server.stop()
    assert server.info.online is False
    assert await c.is_closed_by_peer()
    await c.close()
    with pytest.raises(OSError):
        await RawConn.open(server.host, port)
    await server.start()
    assert server.port == port
    c = await RawConn.open(server.host, port)
    try:
        await c.auth()
        assert len(server.store.databases['dbtest'].series['keep']) == 1
    finally:
        await c.close()


async def test_unix_socket(tmp_path):
    path = str(tmp_path / 'siridb.sock')
    async with EmbeddedServer(unix_path=path) as srv:
        c = await RawConn.open_unix(path)
        try:
            await c.auth()
            assert (await c.request(1, {'u': [[1, 1]]}))[0] == 1
        finally:
            await c.close()
        assert srv.name == path
    assert not _exists(path)  # the socket file is removed on stop


def _exists(path):
    return os.path.exists(path)


def _make_cert(tmp_path) -> Optional[tuple]:
    openssl = shutil.which('openssl')
    if openssl is None:
        return None
    cert, key = str(tmp_path / 'cert.pem'), str(tmp_path / 'key.pem')
    # (an EC key: generated in milliseconds, an RSA one takes a good part of a second)
    subprocess.run([openssl, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes',
                    '-keyout', key, '-out', cert, '-days', '1',
                    '-subj', '/CN=127.0.0.1'], check=True, capture_output=True)
    return cert, key


async def test_tls(tmp_path):
    made = _make_cert(tmp_path)
    if made is None:
        pytest.skip('openssl CLI not available to make a throwaway certificate')
    cert, key = made
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=cert)
    client_ctx.check_hostname = False
    async with EmbeddedServer(ssl=server_ctx) as srv:
        c = await RawConn.open(srv.host, srv.port, ssl=client_ctx)
        try:
            await c.auth()
            assert await c.request(3) == (3, None)
        finally:
            await c.close()
        # a plain-text client gets nothing useful from a TLS listener
        plain = await RawConn.open(srv.host, srv.port)
        try:
            plain.send(3)
            assert await plain.recv(timeout=1) is None
        finally:
            await plain.close()


def test_thread_handle_for_sync_code():
    with EmbeddedServer.start_in_thread(databases=['syncdb']) as handle:
        assert handle.port > 0
        with socket.create_connection((handle.host, handle.port), timeout=5) as s:
            s.sendall(pack(7, 2, ['iris', 'siri', 'syncdb']))
            hdr = s.recv(8)
            assert struct.unpack('<IHBB', hdr)[1:3] == (7, 2)
        assert 'syncdb' in handle.store.databases


def test_thread_handle_reports_start_errors():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError):
            EmbeddedServer.start_in_thread(port=port)


def test_warning_when_exposed_with_default_passwords(caplog):
    caplog.set_level(logging.WARNING, logger='siridb.embedded')
    srv = EmbeddedServer(host='0.0.0.0')
    srv._warn_exposed()  # checked without binding beyond loopback in tests
    assert any('default password' in r.getMessage() for r in caplog.records)
    caplog.clear()
    EmbeddedServer(host='127.0.0.1')._warn_exposed()
    srv2 = EmbeddedServer(host='0.0.0.0', databases={})
    srv2.store.accounts['sa'] = 'long-secret'
    srv2._warn_exposed()
    assert not caplog.records


async def test_random_bodies_never_kill_the_server(server):
    """Random and mutated bodies for every request type: each gets an answer
    or none, and the server keeps serving everyone."""
    import random

    from siridb.connector.lib.codec import packb
    rng = random.Random(1234)
    seeds = [packb(['iris', 'siri', 'dbtest']), packb(['select * from "x"', None]),
             packb({'x': [[1, 1], [2, 2.5]]}), packb([{'name': 'y', 'points': [[1, 's']]}]),
             packb(['sa', 'siri', 3, {'dbname': 'fz'}])]
    c = await RawConn.open(server.host, server.port)
    await c.auth()
    try:
        for i in range(400):
            body = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                op = rng.random()
                pos = rng.randrange(len(body))
                if op < 0.5:
                    body[pos] = rng.randrange(256)
                elif op < 0.75:
                    del body[pos:pos + rng.randint(1, 4)]
                else:
                    body[pos:pos] = bytes(rng.randrange(256) for _ in range(3))
            c.send(rng.choice([0, 1, 2, 32]), body=bytes(body))
            if i % 50 == 49:  # in step: everything before the ping is handled
                pid = c.send(3)
                while True:
                    reply = await c.recv()
                    assert reply is not None, 'server stopped answering'
                    if reply[0] == pid and reply[1] == 3:
                        break
                await c.auth()
        other = await RawConn.open(server.host, server.port)
        try:
            assert await other.request(3) == (3, None)
        finally:
            await other.close()
    finally:
        await c.close()


async def test_unexpected_error_in_a_request_answers_and_keeps_serving(conn, server, monkeypatch):
    def broken(*args):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(server.engine, 'new_database', broken)
    tp, data = await conn.request(32, ['sa', 'siri', 3, {'dbname': 'full_disk'}])
    assert tp == pm.CPROTO_ERR_MSG and 'internal error' in data['error_msg']
    assert await conn.request(3) == (3, None)


async def test_requests_before_a_corrupt_frame_in_one_read_are_handled(conn, server):
    """An insert and a corrupt header arriving in one read: the insert is
    stored, then the connection is closed."""
    await conn.auth()
    conn.send_raw(pack(7, 1, {'before-fault': [[1, 1]]}) +
                  struct.pack('<IHBB', 0, 8, 0, 0x00))
    # the insert's reply may or may not get out before the abort; then EOF
    try:
        rest = await asyncio.wait_for(conn.reader.read(), 5)
    except ConnectionError:
        rest = b''
    assert len(rest) < 200
    assert 'before-fault' in server.store.databases['dbtest'].series
