"""A scripted SiriDB-speaking loopback server for driver tests.

It decodes requests with the real codec and lets each test decide, per
package, what raw bytes to send back (or nothing): the tool for framing edge
cases, bad check bytes, unknown response types, out-of-order replies and stalls.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, List, Optional, Tuple

import pytest

from siridb.connector import SiriDBAsyncConnection, async_connect
from siridb.connector.lib import protomap as pm
from siridb.connector.lib.codec import Decoder, Package, encode, pack, packb

Handler = Callable[['ScriptedConn', Package], None]


class ScriptedConn:
    """One accepted connection of the scripted server."""

    def __init__(self, server: ScriptedServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.received: List[Package] = []

    def write(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    def reply(self, pid: int, tp: int, data: Any = None) -> None:
        self.write(pack(pid, tp, data))

    def reply_raw(self, pid: int, tp: int, body: bytes) -> None:
        self.write(encode(pid, tp, body))

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        transport = self.writer.transport
        transport.abort()


def default_handler(conn: ScriptedConn, pkg: Package) -> None:
    """AUTH ok, PING ack, QUERY echoes its payload, INSERT counts points."""
    if pkg.tp == pm.CPROTO_REQ_AUTH:
        conn.reply(pkg.pid, pm.CPROTO_RES_AUTH_SUCCESS)
    elif pkg.tp == pm.CPROTO_REQ_PING:
        conn.reply(pkg.pid, pm.CPROTO_RES_ACK)
    elif pkg.tp == pm.CPROTO_REQ_QUERY:
        query, precision = pkg.data()
        conn.reply(pkg.pid, pm.CPROTO_RES_QUERY,
                   {'query': query, 'precision': precision, 'pid': pkg.pid})
    elif pkg.tp == pm.CPROTO_REQ_INSERT:
        data = pkg.data()
        n = sum(len(v) for v in data.values()) if isinstance(data, dict) else 0
        conn.reply(pkg.pid, pm.CPROTO_RES_INSERT,
                   {'success_msg': f'Successfully inserted {n} point(s).'})


class ScriptedServer:
    """``async with ScriptedServer(handler) as srv``: listens on 127.0.0.1:0
    (or ``unix_path``); ``handler(conn, package)`` writes what it likes."""

    def __init__(self, handler: Optional[Handler] = None,
                 unix_path: Optional[str] = None) -> None:
        self.handler: Handler = handler or default_handler
        self.unix_path = unix_path
        self.conns: List[ScriptedConn] = []
        self.received: List[Package] = []
        self._server: Optional[asyncio.AbstractServer] = None
        self._tasks: List[asyncio.Task[None]] = []
        self.host = '127.0.0.1'
        self.port = 0

    async def start(self) -> None:
        if self.unix_path is not None:
            self._server = await asyncio.start_unix_server(self._serve, self.unix_path)
        else:
            self._server = await asyncio.start_server(self._serve, '127.0.0.1', self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection (restart with start())."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for conn in self.conns:
            conn.abort()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.conns = []

    async def __aenter__(self) -> ScriptedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.append(task)
        conn = ScriptedConn(self, reader, writer)
        self.conns.append(conn)
        decoder = Decoder()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                for pkg in decoder.feed(chunk):
                    conn.received.append(pkg)
                    self.received.append(pkg)
                    self.handler(conn, pkg)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, asyncio.CancelledError):
                pass
            if task in self._tasks:
                self._tasks.remove(task)

    def count(self, tp: int) -> int:
        return sum(1 for p in self.received if p.tp == tp)


async def wait_until(pred: Callable[[], bool], timeout: float = 5.0,
                     step: float = 0.005) -> None:
    """Poll ``pred`` until true; AssertionError after ``timeout``."""
    for _ in range(int(timeout / step) + 1):
        if pred():
            return
        await asyncio.sleep(step)
    raise AssertionError('condition not reached in time')


def reconnect_delays(caplog: pytest.LogCaptureFixture) -> List[float]:
    """The reconnect delays (seconds) a client chose so far, in order, as it
    logs them ("reconnecting N server(s) in D s" on ``siridb.connector``).
    The test sets ``caplog.set_level(logging.INFO, 'siridb.connector')``.
    The schedule the client itself reports cannot flake on a loaded machine
    the way a wall-clock measurement of it can."""
    return [float(r.args[-1]) for r in caplog.records
            if r.name == 'siridb.connector' and isinstance(r.msg, str)
            and r.msg.startswith('reconnecting ') and isinstance(r.args, tuple)]


def raw_header(length: int, pid: int, tp: int, check: Optional[int] = None) -> bytes:
    """A package header with an optional wrong check byte."""
    import struct
    return struct.pack('<IHBB', length, pid, tp, tp ^ 0xFF if check is None else check)


__all__ = ['ScriptedServer', 'ScriptedConn', 'default_handler', 'raw_header', 'packb',
           'wait_until']


@asynccontextmanager
async def scripted_connection(handler: Optional[Handler] = None, **kw: Any
                              ) -> AsyncIterator[Tuple[ScriptedServer, SiriDBAsyncConnection]]:
    """A ``ScriptedServer`` answering with ``handler`` (``default_handler``
    when None) and a connection to it (``async_connect`` keywords in ``kw``),
    closed after the block."""
    async with ScriptedServer(handler) as srv:
        conn = await async_connect('iris', 'siri', 'dbtest', srv.host, srv.port, **kw)
        try:
            yield srv, conn
        finally:
            conn.close()
            await conn.wait_closed()
