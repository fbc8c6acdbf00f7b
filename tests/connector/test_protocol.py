"""SiriDBProtocol and SiriDBAsyncConnection over loopback against a scripted server:
framing, pid allocation, every response type, timeouts, cancellation, loss."""
from __future__ import annotations

import asyncio
import random
from typing import Any, Dict, List, Optional

import pytest
from _driver_helpers import (
    ScriptedConn,
    ScriptedServer,
    default_handler,
    raw_header,
    scripted_connection,
    wait_until,
)

from siridb.connector import (
    SiriDBAsyncConnection,
    SiriDBProtocol,
    async_connect,
    async_server_info,
)
from siridb.connector.lib import exceptions as ex
from siridb.connector.lib import protomap as pm
from siridb.connector.lib.codec import Package, encode, pack


async def _connect(srv: ScriptedServer, **kw: Any) -> SiriDBAsyncConnection:
    return await async_connect('iris', 'siri', 'dbtest', srv.host, srv.port, **kw)


def _only_auth(handler: Any) -> Any:
    def h(conn: ScriptedConn, pkg: Package) -> None:
        if pkg.tp == pm.CPROTO_REQ_AUTH:
            conn.reply(pkg.pid, pm.CPROTO_RES_AUTH_SUCCESS)
        else:
            handler(conn, pkg)
    return h


async def test_auth_and_query_roundtrip() -> None:
    async with scripted_connection() as (srv, conn):
        assert conn.connected
        res = await conn.query('show dbname', time_precision='ms')
        assert res['query'] == 'show dbname'
        assert res['precision'] == 1
        auth = srv.received[0]
        assert auth.tp == pm.CPROTO_REQ_AUTH
        assert auth.data() == ['iris', 'siri', 'dbtest']
        assert 'siri' not in repr(conn) and 'siri' not in repr(conn._protocol)
    assert not conn.connected


@pytest.mark.parametrize('tp,cls', [
    (pm.CPROTO_ERR_AUTH_CREDENTIALS, ex.InvalidCredentialsError),
    (pm.CPROTO_ERR_AUTH_UNKNOWN_DB, ex.UnknownDatabaseError),
])
async def test_auth_failures(tp: int, cls: type) -> None:
    async with ScriptedServer(lambda c, p: c.reply(p.pid, tp)) as srv:
        with pytest.raises(cls) as info:
            await _connect(srv)
        assert isinstance(info.value, ex.AuthenticationError)
        assert info.value.tp == tp
        await asyncio.sleep(0.01)
        assert all(c.writer.is_closing() or c.reader.at_eof() for c in srv.conns)


_ERROR_CASES: List[Any] = [
    (64, {'error_msg': 'generic'}, ex.ErrorMessage, 'generic', RuntimeError),
    (65, {'error_msg': 'Query error at position 0.'}, ex.QueryError,
     'Query error at position 0.', ex.SiriDBError),
    (66, {'error_msg': 'Expecting an array with points.'}, ex.InsertError,
     'Expecting an array with points.', ex.SiriDBError),
    (67, {'error_msg': 'Server is not running'}, ex.ServerError,
     'Server is not running', ex.SiriDBError),
    (68, {'error_msg': 'At least one pool'}, ex.PoolError, 'At least one pool',
     ex.SiriDBError),
    (69, {'error_msg': "Access denied. User 'x' has no 'insert' privileges."},
     ex.UserAuthError, "Access denied. User 'x' has no 'insert' privileges.",
     ex.AuthenticationError),
    (70, None, ex.GenericError, None, RuntimeError),
    (71, None, ex.NotAuthenticatedError, None, ex.AuthenticationError),
    (72, None, ex.InvalidCredentialsError, None, ex.AuthenticationError),
    (73, None, ex.UnknownDatabaseError, None, ex.AuthenticationError),
    (74, None, ex.LoadingDatabaseError, None, RuntimeError),
    (75, None, ex.FileError, None, RuntimeError),
    (96, {'error_msg': "cannot find database 'x'"}, ex.ServiceError,
     "cannot find database 'x'", ex.SiriDBError),
    (97, None, ex.ServiceInvalidRequestError, None, ex.ServiceError),
    (150, {'error_msg': 'future error'}, ex.SiriDBError, 'future error', ex.SiriDBError),
    (50, None, ex.UnknownResponseError, None, RuntimeError),
    (200, None, ex.UnknownResponseError, None, RuntimeError),
]


@pytest.mark.parametrize('tp,data,cls,msg,base', _ERROR_CASES)
async def test_every_error_type(tp: int, data: Any, cls: type, msg: Optional[str],
                                base: type) -> None:
    """Each error reply fails its request at once with the mapped class."""
    reply = _only_auth(lambda c, p: c.reply(p.pid, tp, data))
    async with scripted_connection(reply) as (srv, conn):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(cls) as info:
            await conn.query('x', timeout=30)
        assert loop.time() - t0 < 5  # never waits out the timeout
        assert type(info.value) is cls
        assert isinstance(info.value, base)
        assert isinstance(info.value, ex.SiriDBError)
        assert info.value.tp == tp
        if msg is not None:
            assert str(info.value) == msg
        else:
            assert str(info.value)  # a fixed, non-empty text
        assert conn.connected  # an error reply does not close the connection


@pytest.mark.parametrize('req,tp,data,expected', [
    (pm.CPROTO_REQ_QUERY, pm.CPROTO_RES_QUERY, {'series': 3}, {'series': 3}),
    (pm.CPROTO_REQ_INSERT, pm.CPROTO_RES_INSERT, {'success_msg': 'ok'}, {'success_msg': 'ok'}),
    (pm.CPROTO_REQ_PING, pm.CPROTO_RES_ACK, None, None),
    (pm.CPROTO_REQ_INFO, pm.CPROTO_RES_INFO, ['2.0.55'], ['2.0.55']),
    (pm.CPROTO_REQ_SERVICE, pm.CPROTO_ACK_SERVICE, None, None),
    (pm.CPROTO_REQ_SERVICE, pm.CPROTO_ACK_SERVICE_DATA, ['dbtest', 'other'],
     ['dbtest', 'other']),
])
async def test_success_types(req: int, tp: int, data: Any, expected: Any) -> None:
    # each success type answers the request type(s) it belongs to
    reply = _only_auth(lambda c, p: c.reply(p.pid, tp, data))
    async with scripted_connection(reply) as (srv, conn):
        assert await conn.send_request(req, ['sa', 'siri', 66, {}],
                                       timeout=5) == expected


async def test_res_file_returns_raw_bytes() -> None:
    body = b'\xfe\xff raw file'
    handler = _only_auth(lambda c, p: c.reply_raw(p.pid, pm.CPROTO_RES_FILE, body))
    async with scripted_connection(handler) as (srv, conn):
        assert await conn.send_request(pm.CPROTO_REQ_FILE_DATABASE, timeout=5) == body


async def test_a_big_reply_is_bounded_while_it_arrives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # the decoder bounds a big reply's nesting from the chunks the transport
    # hands over; only a reply that may nest too deep is scanned again
    from siridb.wire import decode as codec
    data = {'s': [[i, i * 0.25] for i in range(800_000)]}
    good = pack(0, pm.CPROTO_RES_QUERY, data)[8:]
    hostile = b'\xee' * (codec.MAX_DEPTH + 1) + b'\x00'
    assert len(good) > codec.MAX_DEPTH and len(hostile) > codec.MAX_DEPTH
    bodies = iter([good, hostile])
    rescans: List[int] = []
    real = codec._containers
    monkeypatch.setattr(codec, '_containers',
                        lambda b, limit: rescans.append(len(b)) or real(b, limit))
    handler = _only_auth(lambda c, p: c.reply_raw(p.pid, pm.CPROTO_RES_QUERY, next(bodies)))
    async with scripted_connection(handler) as (srv, conn):
        assert await conn.query('select * from "s"', timeout=30) == data
        assert rescans == []
        with pytest.raises(ex.ProtocolError, match='too many containers'):
            await conn.query('select * from "s"', timeout=30)
        assert rescans == [len(hostile)]


# ------------------------------------------------------------------ framing
async def test_reply_in_one_byte_chunks() -> None:
    async def dribble(conn: ScriptedConn, data: bytes) -> None:
        for i in range(len(data)):
            conn.write(data[i:i + 1])
            await conn.writer.drain()
            await asyncio.sleep(0)

    tasks: List[asyncio.Task[None]] = []

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        if pkg.tp == pm.CPROTO_REQ_AUTH:
            data = pack(pkg.pid, pm.CPROTO_RES_AUTH_SUCCESS)
        else:
            data = pack(pkg.pid, pm.CPROTO_RES_QUERY, {'name': ['é' * 50, 1.5, -7]})
        tasks.append(asyncio.ensure_future(dribble(conn, data)))

    async with ScriptedServer(handler) as srv:
        conn = await _connect(srv)
        try:
            assert await conn.query('q') == {'name': ['é' * 50, 1.5, -7]}
        finally:
            conn.close()
            await conn.wait_closed()
            await asyncio.gather(*tasks)


async def test_coalesced_replies_in_one_write() -> None:
    held: List[Package] = []

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        held.append(pkg)
        if len(held) == 5:
            conn.write(b''.join(pack(p.pid, 0, {'n': p.data()[0]}) for p in held))

    async with scripted_connection(_only_auth(handler)) as (srv, conn):
        res = await asyncio.gather(*(conn.query(str(i)) for i in range(5)))
        assert [r['n'] for r in res] == [str(i) for i in range(5)]


@pytest.mark.parametrize('make', [
    pytest.param(lambda pid: raw_header(2, pid, 0, check=0x00) + b'\x00\x00',
                 id='bad-check-byte'),
    pytest.param(lambda pid: raw_header(41_943_041, pid, 0), id='oversize-length'),
    pytest.param(lambda pid: encode(pid, 0, b'\xfe'), id='body-0xfe'),
    pytest.param(lambda pid: encode(pid, 0, b'\xff\x01\x02'), id='body-0xff'),
    pytest.param(lambda pid: encode(pid, 64, b'\xfe'), id='error-body-0xfe'),
    pytest.param(lambda pid: encode(pid, 0, b'\xf4\x81'), id='truncated-qpack'),
    pytest.param(lambda pid: b'GET / HTTP/1.1\r\nHost: x\r\n\r\n', id='garbage'),
])
async def test_corrupt_input_fails_all_pending_and_closes(make: Any) -> None:
    """A corrupt reply fails every pending request with ProtocolError at once."""
    held: List[Package] = []

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        held.append(pkg)
        if len(held) == 3:
            conn.write(make(held[0].pid))

    async with scripted_connection(_only_auth(handler)) as (srv, conn):
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        res = await asyncio.gather(*(conn.query(str(i), timeout=30) for i in range(3)),
                                   return_exceptions=True)
        assert loop.time() - t0 < 5
        assert all(isinstance(r, ex.ProtocolError) for r in res), res
        assert all(isinstance(r, ConnectionError) for r in res)
        await asyncio.sleep(0.01)
        assert not conn.connected
        with pytest.raises(ex.ConnectionLostError):
            await conn.query('after')


async def test_intact_reply_before_corrupt_frame_in_one_chunk_is_delivered() -> None:
    """A good reply and a corrupt frame arriving in one read: the good reply
    resolves its request, the others fail with ProtocolError at once."""
    held: List[Package] = []

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        held.append(pkg)
        if len(held) == 3:
            good = pack(held[0].pid, 0, {'ok': 1})
            conn.write(good + raw_header(2, held[1].pid, 0, check=0x00) + b'\x00\x00')

    async with scripted_connection(_only_auth(handler)) as (srv, conn):
        res = await asyncio.gather(*(conn.query(str(i), timeout=30) for i in range(3)),
                                   return_exceptions=True)
        assert res[0] == {'ok': 1}
        assert all(isinstance(r, ex.ProtocolError) for r in res[1:]), res


# ------------------------------------------------------------------ pids
async def test_pid_wraparound_with_out_of_order_replies() -> None:
    """A socket-level smoke: 2,000 requests across the pid wrap, replies
    shuffled per batch (the full 70,000-request run is in memory, in
    test_request_core.py)."""
    rnd = random.Random(7)
    held: List[Package] = []
    batch = 500

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        held.append(pkg)
        if len(held) == batch:
            rnd.shuffle(held)
            conn.write(b''.join(encode(p.pid, 0, p.body) for p in held))
            held.clear()

    async with scripted_connection(_only_auth(handler)) as (srv, conn):
        proto = conn._protocol
        assert proto is not None
        proto.core.next_pid = 65536 - 1000
        total = 2_000
        for start in range(0, total, batch):
            futs = [proto.send_package(pm.CPROTO_REQ_QUERY, i, timeout=30)
                    for i in range(start, start + batch)]
            # each reply echoes its own request body: i
            assert await asyncio.gather(*futs) == list(range(start, start + batch))
        assert proto.pending == 0
        pids = {p.pid for p in srv.received if p.tp == pm.CPROTO_REQ_QUERY}
        assert pids == set(range(65536 - 1000, 65536)) | set(range(1000))


async def test_timed_out_pid_is_not_reused_and_late_reply_dropped() -> None:
    """A socket-level smoke (the round of the whole pid space is in memory,
    in test_request_core.py): the timed-out pid is skipped when the pids
    come round to it, and its late reply is dropped."""
    stalled: List[Package] = []

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        data = pkg.data()
        if data == 'stall':
            stalled.append(pkg)
        else:
            conn.reply(pkg.pid, 0, data)

    async with scripted_connection(_only_auth(handler)) as (srv, conn):
        proto = conn._protocol
        assert proto is not None
        with pytest.raises(ex.RequestTimeoutError) as info:
            await proto.send_package(pm.CPROTO_REQ_QUERY, 'stall', timeout=0.05)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, asyncio.TimeoutError)
        stalled_pid = stalled[0].pid
        assert proto.pending == 1  # reserved
        proto.core.next_pid = (stalled_pid - 5) & 0xFFFF  # come round to it
        futs = [proto.send_package(pm.CPROTO_REQ_QUERY, i, timeout=30) for i in range(10)]
        assert await asyncio.gather(*futs) == list(range(10))
        used = [p.pid for p in srv.received[2:] if p.tp == pm.CPROTO_REQ_QUERY]
        assert stalled_pid not in used and len(used) == 10
        # the late reply arrives while another request is in flight
        srv.conns[0].reply(stalled_pid, 0, 'late')
        assert await proto.send_package(pm.CPROTO_REQ_QUERY, 'next', timeout=5) == 'next'
        assert proto.pending == 0  # the reservation ended with the late reply


async def test_pid_space_exhausted_fails_clearly() -> None:
    async with scripted_connection(_only_auth(lambda c, p: None)) as (srv, conn):
        proto = conn._protocol
        assert proto is not None
        futs = []
        futs = [proto.send_package(pm.CPROTO_REQ_PING, timeout=None)
                for _ in range(65536)]
        with pytest.raises(ex.TooManyRequestsError):
            proto.send_package(pm.CPROTO_REQ_PING)
    res = await asyncio.gather(*futs, return_exceptions=True)
    assert all(isinstance(r, ex.ClientClosedError) for r in res)


# ------------------------------------------------------- timeouts, cancel
async def test_cancel_one_request_leaves_others_alone() -> None:
    held: Dict[str, Package] = {}

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        held[pkg.data()[0]] = pkg

    async with scripted_connection(_only_auth(handler)) as (srv, conn):
        a = asyncio.ensure_future(conn.query('a'))
        b = asyncio.ensure_future(conn.query('b'))
        await wait_until(lambda: len(held) == 2)
        a.cancel()
        with pytest.raises(asyncio.CancelledError):
            await a
        c = srv.conns[0]
        c.reply(held['a'].pid, 0, {'for': 'a'})  # late reply of the cancelled one
        c.reply(held['b'].pid, 0, {'for': 'b'})
        assert await b == {'for': 'b'}
        assert conn._protocol is not None and conn._protocol.pending == 0


async def test_wait_for_timeout_then_late_reply() -> None:
    held: List[Package] = []

    async with scripted_connection(_only_auth(lambda c, p: held.append(p))) as (srv, conn):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(conn.query('slow'), 0.05)
        srv.conns[0].reply(held[0].pid, 0, {'late': True})
        srv.handler = default_handler
        assert (await conn.query('fast', timeout=5))['query'] == 'fast'


async def test_connection_loss_fails_inflight_at_once() -> None:
    async with ScriptedServer(_only_auth(lambda c, p: None)) as srv:
        lost: List[Optional[BaseException]] = []

        class Hooked(SiriDBProtocol):
            def on_connection_lost(self, exc: Optional[BaseException]) -> None:
                lost.append(exc)

        conn = await _connect(srv, protocol=Hooked)
        try:
            futs = [asyncio.ensure_future(conn.query(str(i), timeout=30)) for i in range(4)]
            await wait_until(lambda: len(srv.received) == 5)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            srv.conns[0].abort()
            res = await asyncio.gather(*futs, return_exceptions=True)
            assert loop.time() - t0 < 5
            assert all(isinstance(r, ex.ConnectionLostError) for r in res)
            assert all(isinstance(r, ConnectionError) for r in res)
            assert len(lost) == 1
            t0 = loop.time()
            with pytest.raises(ex.ConnectionLostError):
                await conn.insert({'a': [[1, 1]]}, timeout=30)
            assert loop.time() - t0 < 1
        finally:
            conn.close()
            await conn.wait_closed()


async def test_hooks_are_called_in_order() -> None:
    calls: List[str] = []

    class Hooked(SiriDBProtocol):
        def on_connection_made(self) -> None:
            calls.append('made')

        def on_authenticated(self) -> None:
            calls.append('auth')

        def on_connection_lost(self, exc: Optional[BaseException]) -> None:
            calls.append('lost')

    async with ScriptedServer() as srv:
        conn = await _connect(srv, protocol=Hooked)
        assert calls == ['made', 'auth']
        conn.close()
        await conn.wait_closed()
        assert calls == ['made', 'auth', 'lost']


async def test_keepalive_detects_dead_peer() -> None:
    pings: List[Package] = []

    def handler(conn: ScriptedConn, pkg: Package) -> None:
        if pkg.tp == pm.CPROTO_REQ_PING:
            pings.append(pkg)
            if len(pings) <= 2:
                conn.reply(pkg.pid, pm.CPROTO_RES_ACK)
            # then: half-open, no more replies

    async with scripted_connection(_only_auth(handler)) as (srv, conn):
        proto = conn._protocol
        assert proto is not None
        proto.start_keepalive(idle=0.05, timeout=0.1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await wait_until(lambda: not conn.connected)
        assert len(pings) == 3
        assert loop.time() - t0 < 2


async def test_unix_socket_and_subclass_without_init(tmp_path: Any) -> None:
    """The SiriDB server's tests subclass SiriDBAsyncConnection without
    calling __init__ and connect their own protocol over a unix socket."""
    path = str(tmp_path / 'siridb.sock')

    class UnixConnection(SiriDBAsyncConnection):
        def __init__(self) -> None:  # no super().__init__()
            pass

        async def connect(self, username: str, password: str, dbname: str,  # type: ignore[override]
                          unix_path: str, timeout: int = 10) -> None:
            loop = asyncio.get_running_loop()
            _t, self._protocol = await asyncio.wait_for(loop.create_unix_connection(
                lambda: SiriDBProtocol(username, password, dbname), path=unix_path),
                timeout=timeout)
            await self._protocol.auth_future

    async with ScriptedServer(unix_path=path) as srv:
        conn = UnixConnection()
        await conn.connect('iris', 'siri', 'dbtest', path)
        try:
            assert (await conn.query('show dbname'))['query'] == 'show dbname'
            assert (await conn.insert({'a': [[1, 2]]}))['success_msg'] == \
                'Successfully inserted 1 point(s).'
        finally:
            conn.close()
        conn2 = await async_connect('iris', 'siri', 'dbtest', unix_path=path)
        try:
            assert (await conn2.query('x'))['query'] == 'x'
        finally:
            conn2.close()
            await conn2.wait_closed()
        assert srv.count(pm.CPROTO_REQ_AUTH) == 2


async def test_async_connection_context_manager() -> None:
    async with ScriptedServer() as srv:
        async with await _connect(srv) as conn:
            assert conn.connected
        assert not conn.connected


async def test_server_info_pings() -> None:
    async with ScriptedServer() as srv:
        info = await async_server_info(srv.host, srv.port, timeout=5)
        assert info['reachable'] is True
        assert info['host'] == srv.host and info['port'] == srv.port
        assert 0 <= info['round_trip'] < 5
        assert srv.count(pm.CPROTO_REQ_PING) == 1
        assert srv.count(pm.CPROTO_REQ_AUTH) == 0


async def test_server_info_fails_fast() -> None:
    async with ScriptedServer() as srv:
        port = srv.port
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    with pytest.raises(ConnectionError):
        await async_server_info('127.0.0.1', port, timeout=5)
    assert loop.time() - t0 < 2
    async with ScriptedServer(lambda c, p: None) as srv:  # never answers
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            await async_server_info(srv.host, srv.port, timeout=0.2)
        assert loop.time() - t0 < 2


async def test_validation_before_sending() -> None:
    async with scripted_connection() as (srv, conn):
        with pytest.raises(TypeError):
            await conn.query(123)
        with pytest.raises(ValueError):
            await conn.query('x', time_precision=4)
        with pytest.raises(ValueError):
            await conn.query('x', time_precision='minutes')
        with pytest.raises(TypeError):
            await conn.query('x', time_precision=1.0)
        with pytest.raises(ex.InsertDataError) as info:
            await conn.insert({'a': [[1, 2 ** 64]]})
        assert isinstance(info.value, ex.InsertError)
        assert 'SystemError' not in str(info.value)
        with pytest.raises(ex.InsertDataError):
            await conn.insert({'a': [[1, object()]]})
        assert srv.count(pm.CPROTO_REQ_QUERY) == 0
        assert srv.count(pm.CPROTO_REQ_INSERT) == 0
        for name, tp in (('s', 0), ('ms', 1), ('us', 2), ('ns', 3), (None, None), (3, 3)):
            assert (await conn.query('x', time_precision=name))['precision'] == tp


async def test_writes_in_one_iteration_are_batched() -> None:
    async with scripted_connection() as (srv, conn):
        proto = conn._protocol
        assert proto is not None
        futs = [proto.send_package(pm.CPROTO_REQ_QUERY, [str(i), None]) for i in range(50)]
        assert len(proto._wbuf) == 50  # queued, one write at the end of the iteration
        await asyncio.sleep(0)
        assert proto._wbuf == []
        res = await asyncio.gather(*futs)
        assert [r['query'] for r in res] == [str(i) for i in range(50)]


async def test_oversize_request_refused_before_sending() -> None:
    async with scripted_connection() as (srv, conn):
        with pytest.raises(ex.RequestTooLargeError) as info:
            await conn.query('x' * 41_943_041)
        assert isinstance(info.value, ValueError)
        assert (await conn.query('small'))['query'] == 'small'  # still connected
        assert srv.count(pm.CPROTO_REQ_QUERY) == 1


async def test_pid_space_full_of_unanswered_requests_drops_the_connection() -> None:
    async with scripted_connection(_only_auth(lambda c, p: None)) as (srv, conn):
        proto = conn._protocol
        assert proto is not None
        futs = [proto.send_package(pm.CPROTO_REQ_PING, timeout=0.01)
                for _ in range(65536)]
        res = await asyncio.gather(*futs, return_exceptions=True)
        assert all(isinstance(r, ex.RequestTimeoutError) for r in res)
        assert proto.pending == 65536  # all reserved: late replies may come
        with pytest.raises(ex.ConnectionLostError, match='without a reply'):
            proto.send_package(pm.CPROTO_REQ_PING)
        await conn.wait_closed()
        assert not conn.connected and proto.pending == 0


async def test_keepalive_ping_error_closes_the_connection() -> None:
    def handler(conn: ScriptedConn, pkg: Package) -> None:
        if pkg.tp == pm.CPROTO_REQ_PING:
            conn.reply(pkg.pid, pm.CPROTO_ERR_SERVER, {'error_msg': 'shutting down'})

    async with scripted_connection(_only_auth(handler)) as (srv, conn):
        proto = conn._protocol
        assert proto is not None
        proto.start_keepalive(idle=0.05, timeout=1)
        await wait_until(lambda: not conn.connected)
        assert srv.count(pm.CPROTO_REQ_PING) == 1
