"""The fault proxy itself, against a plain loopback echo server."""
from __future__ import annotations

import ast
import asyncio
import socket
from typing import Any, AsyncIterator, Dict, List, Tuple

import pytest
from _docs import code_blocks

from siridb.testing.proxy import FaultProxy

Conn = Tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Echo:
    """A loopback echo server that records what it received per read."""

    def __init__(self) -> None:
        self.reads: List[bytes] = []
        self.server: asyncio.AbstractServer
        self.port = 0
        self.resets = 0
        self.eofs = 0
        self.writers: List[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, '127.0.0.1', 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    self.eofs += 1
                    break
                self.reads.append(data)
                writer.write(data)
                await writer.drain()
        except ConnectionResetError:
            self.resets += 1
        finally:
            writer.close()

    async def close(self) -> None:
        self.server.close()
        for w in self.writers:
            w.close()
        await self.server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    srv = Echo()
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
async def proxy(echo: Echo) -> AsyncIterator[FaultProxy]:
    async with FaultProxy('127.0.0.1', echo.port) as p:
        yield p
    assert p.connections == 0
    assert not p._link_tasks


async def connect(proxy: FaultProxy) -> Conn:
    return await asyncio.open_connection(*proxy.address)


async def read_exactly(reader: asyncio.StreamReader, n: int, timeout: float = 2.0) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), timeout)


async def close(conn: Conn) -> None:
    conn[1].close()
    try:
        await conn[1].wait_closed()
    except OSError:
        pass


async def test_passthrough(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    conn[1].write(b'hello world')
    assert await read_exactly(conn[0], 11) == b'hello world'
    assert proxy.connections == 1
    assert proxy.bytes_out == {'up': 11, 'down': 11}
    assert proxy.address[0] == '127.0.0.1' and proxy.address[1] > 0
    await close(conn)


async def test_latency_per_direction(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    loop = asyncio.get_running_loop()
    proxy.set_latency(0.15, direction='down')
    t0 = loop.time()
    conn[1].write(b'x')
    assert await read_exactly(conn[0], 1) == b'x'
    assert loop.time() - t0 >= 0.15
    proxy.set_latency(0.0)
    t0 = loop.time()
    conn[1].write(b'y')
    assert await read_exactly(conn[0], 1) == b'y'
    assert loop.time() - t0 < 0.15
    await close(conn)


async def test_latency_keeps_order_without_adding_up(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    loop = asyncio.get_running_loop()
    proxy.set_latency(0.1, direction='up')
    t0 = loop.time()
    for i in range(10):
        conn[1].write(bytes([i]))
        await asyncio.sleep(0.005)
    got = await read_exactly(conn[0], 10)
    assert got == bytes(range(10))
    # latency is per chunk, not cumulative: 10 chunks do not take 1 s
    assert loop.time() - t0 < 0.6
    await close(conn)


async def test_stall_is_half_open(proxy: FaultProxy, echo: Echo) -> None:
    conn = await connect(proxy)
    conn[1].write(b'a')
    assert await read_exactly(conn[0], 1) == b'a'
    proxy.stall('up')
    conn[1].write(b'lost')
    await conn[1].drain()
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(conn[0].read(1), 0.2)
    assert proxy.bytes_in['up'] == 5  # accepted...
    assert b''.join(echo.reads) == b'a'  # ...but never forwarded
    assert proxy.connections == 1
    proxy.unstall()
    conn2 = await connect(proxy)
    conn2[1].write(b'back')
    assert await read_exactly(conn2[0], 4) == b'back'
    await close(conn)
    await close(conn2)


async def test_reset_aborts_both_sides(proxy: FaultProxy, echo: Echo) -> None:
    conn = await connect(proxy)
    conn[1].write(b'a')
    assert await read_exactly(conn[0], 1) == b'a'
    proxy.reset()
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(conn[0].read(10), 2)
    for _ in range(100):
        if echo.resets:
            break
        await asyncio.sleep(0.01)
    assert echo.resets == 1
    assert proxy.connections == 0
    await close(conn)


async def test_close_after_mid_package(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    proxy.close_after(5, direction='down')
    conn[1].write(b'0123456789')
    data = await asyncio.wait_for(conn[0].read(100), 2)
    assert data == b'01234'
    assert await asyncio.wait_for(conn[0].read(100), 2) == b''  # FIN
    await close(conn)


async def test_truncate_drops_bytes_and_stream_goes_on(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    proxy.truncate(offset=2, count=3, direction='down')
    conn[1].write(b'0123456789')
    assert await read_exactly(conn[0], 7) == b'0156789'
    conn[1].write(b'more')
    assert await read_exactly(conn[0], 4) == b'more'
    await close(conn)


async def test_truncate_spanning_chunks(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    proxy.truncate(offset=3, count=4, direction='up')
    conn[1].write(b'abcde')
    assert await read_exactly(conn[0], 3) == b'abc'
    conn[1].write(b'fghij')
    assert await read_exactly(conn[0], 3) == b'hij'
    await close(conn)


async def test_corrupt_one_byte_at_offset(proxy: FaultProxy) -> None:
    conn = await connect(proxy)
    conn[1].write(b'skip')
    assert await read_exactly(conn[0], 4) == b'skip'
    proxy.corrupt(offset=6, direction='down', xor=0x01)
    conn[1].write(b'0123')
    assert await read_exactly(conn[0], 4) == b'0123'
    conn[1].write(b'4567')
    assert await read_exactly(conn[0], 4) == b'4577'  # '6' ^ 0x01 == '7'
    await close(conn)


async def test_split_into_single_bytes(proxy: FaultProxy, echo: Echo) -> None:
    conn = await connect(proxy)
    proxy.split(1, direction='both')
    payload = bytes(range(200))
    conn[1].write(payload)
    assert await read_exactly(conn[0], 200) == payload
    assert proxy.writes['up'] == 200
    assert proxy.writes['down'] == 200
    assert len(echo.reads) > 1  # the server really saw it in pieces
    await close(conn)


async def test_pending_fault_hits_next_connection(proxy: FaultProxy) -> None:
    proxy.corrupt(offset=0, direction='up', xor=0x20)
    conn = await connect(proxy)
    conn[1].write(b'abc')
    assert await read_exactly(conn[0], 3) == b'Abc'
    conn2 = await connect(proxy)
    conn2[1].write(b'abc')
    assert await read_exactly(conn2[0], 3) == b'abc'  # fired once only
    await close(conn)
    await close(conn2)


async def test_refuse_and_clear(proxy: FaultProxy) -> None:
    proxy.refuse()
    conn = await connect(proxy)
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(conn[0].read(10), 2)
    await close(conn)
    proxy.set_latency(5)
    proxy.clear()
    conn = await connect(proxy)
    conn[1].write(b'ok')
    assert await read_exactly(conn[0], 2, timeout=1) == b'ok'
    await close(conn)


async def test_target_down_resets_client() -> None:
    probe = await asyncio.start_server(lambda r, w: None, '127.0.0.1', 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    async with FaultProxy('127.0.0.1', port) as p:
        conn = await connect(p)
        try:
            data = await asyncio.wait_for(conn[0].read(10), 2)
        except ConnectionResetError:
            data = b''
        assert data == b''
        await close(conn)


async def test_client_close_closes_upstream(proxy: FaultProxy, echo: Echo) -> None:
    conn = await connect(proxy)
    conn[1].write(b'z')
    assert await read_exactly(conn[0], 1) == b'z'
    await close(conn)
    for _ in range(100):
        if echo.eofs or echo.resets:
            break
        await asyncio.sleep(0.01)
    assert echo.eofs == 1
    assert proxy.connections == 0


async def test_restart_on_same_port(echo: Echo) -> None:
    p = FaultProxy('127.0.0.1', echo.port)
    await p.start()
    port = p.port
    await p.close()
    await p.start()
    assert p.port == port
    conn = await connect(p)
    conn[1].write(b'r')
    assert await read_exactly(conn[0], 1) == b'r'
    await close(conn)
    await p.close()


def test_bad_arguments() -> None:
    p = FaultProxy('127.0.0.1', 1)
    with pytest.raises(ValueError):
        p.stall('sideways')
    with pytest.raises(ValueError):
        p.set_latency(-1)
    with pytest.raises(ValueError):
        p.corrupt(-1)
    with pytest.raises(ValueError):
        p.truncate(0, count=0)
    with pytest.raises(ValueError):
        p.corrupt(0, xor=0)
    assert 'FaultProxy' in repr(p)


def _unresponsive_target() -> Tuple[socket.socket, List[socket.socket]]:
    """A listener that never accepts, its queue already full: connects hang."""
    lsock = socket.socket()
    lsock.bind(('127.0.0.1', 0))
    lsock.listen(0)
    fillers = []
    for _ in range(2):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(lsock.getsockname())
        fillers.append(s)
    return lsock, fillers


async def test_unresponsive_target_times_out_and_close_is_prompt() -> None:
    lsock, fillers = _unresponsive_target()
    try:
        loop = asyncio.get_running_loop()
        port = lsock.getsockname()[1]
        async with FaultProxy('127.0.0.1', port, connect_timeout=0.3) as p:
            conn = await connect(p)
            t0 = loop.time()
            try:
                data = await asyncio.wait_for(conn[0].read(10), 3)
            except ConnectionResetError:
                data = b''
            assert data == b''
            assert 0.25 <= loop.time() - t0 < 2
            await close(conn)
        p2 = FaultProxy('127.0.0.1', port, connect_timeout=30)
        await p2.start()
        conn = await connect(p2)
        for _ in range(500):  # accepted; its link's first step connects upstream
            if p2.accepted:
                break
            await asyncio.sleep(0.01)
        assert p2.accepted == 1
        await asyncio.sleep(0)  # the link is connecting upstream now
        t0 = loop.time()
        await p2.close()
        assert loop.time() - t0 < 1
        await close(conn)
    finally:
        for s in fillers:
            s.close()
        lsock.close()


def readme_blocks() -> List[str]:
    """The ```python blocks of docs/adversity.md."""
    return code_blocks('docs/adversity.md')


async def test_readme_proxy_snippet_runs_as_written() -> None:
    # the documented fault proxy example, so that it never rots
    blocks = readme_blocks()
    assert len(blocks) == 1
    code = compile(blocks[0], '<README>', 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    namespace: Dict[str, Any] = {}
    result = eval(code, namespace)
    assert result is not None
    await result
    assert namespace['client'].is_closed
    assert namespace['proxy'].accepted >= 1
