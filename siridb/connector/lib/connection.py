"""Single-server connections: ``SiriDBAsyncConnection`` (asyncio) and the
blocking ``SiriDBConnection`` (runs a private event loop in a thread).

No pool, no reconnect; see ``client.SiriDBClient`` and ``single_server.SiriDBConn``.
"""
from __future__ import annotations

import asyncio
import ssl as _ssl
import threading
import warnings
from types import TracebackType
from typing import Any, Callable, Coroutine, Optional, Type, TypeVar

from . import protomap as pm
from .closing import AsyncClosing
from .codec import packb
from .constants import DEFAULT_CLIENT_PORT
from .exceptions import ClientClosedError, ConnectionLostError
from .protocol import SiriDBProtocol, open_protocol
from .results import InsertReply, QueryResult
from .validate import check_packed_insert, pack_insert, pack_query

__all__ = ['SiriDBAsyncConnection', 'SiriDBConnection', 'async_connect']

_T = TypeVar('_T')


class SiriDBAsyncConnection(AsyncClosing):
    """One authenticated connection to one server.

    Works also when a subclass skips ``__init__`` and only sets ``_protocol``
    to a protocol it connected itself (as the SiriDB server's tests do).
    """

    _protocol: Optional[SiriDBProtocol] = None
    _keepalive: bool = False

    async def connect(self, username: str, password: str, dbname: str,
                      host: str = '127.0.0.1', port: int = DEFAULT_CLIENT_PORT,
                      loop: Any = None, timeout: Optional[float] = 10,
                      keepalive: bool = False,
                      protocol: Callable[..., SiriDBProtocol] = SiriDBProtocol, *,
                      ssl: Optional[_ssl.SSLContext] = None,
                      unix_path: Optional[str] = None) -> None:
        """Connect and authenticate (``loop`` is accepted and ignored).

        ``unix_path`` connects over a unix socket instead of ``host:port``;
        ``ssl`` wraps the connection in TLS.
        """
        self._protocol = await open_protocol(
            lambda: protocol(username, password, dbname), host, port,
            timeout=timeout, ssl=ssl, unix_path=unix_path)
        self._keepalive = keepalive
        if keepalive:
            self._protocol.start_keepalive()

    async def query(self, query: Any, time_precision: Any = None,
                    timeout: Optional[float] = 3600) -> QueryResult:
        """Run a query; returns the server's reply (a dict)."""
        reply: QueryResult = await self._send(pm.CPROTO_REQ_QUERY,
                                              pack_query(query, time_precision), timeout)
        return reply

    async def insert(self, data: Any, timeout: Optional[float] = 3600) -> InsertReply:
        """Insert ``{series: [[ts, value], ...]}`` (or the list form)."""
        reply: InsertReply = await self._send(pm.CPROTO_REQ_INSERT, pack_insert(data), timeout)
        return reply

    async def insert_packed(self, body: bytes,
                            timeout: Optional[float] = 3600) -> InsertReply:
        """Insert a payload packed before (see ``SiriDBClient.insert_packed``)."""
        reply: InsertReply = await self._send(pm.CPROTO_REQ_INSERT,
                                              check_packed_insert(body), timeout)
        return reply

    async def send_request(self, tp: int, data: Any = None,
                           timeout: Optional[float] = 3600) -> Any:
        """Send any package type (e.g. 32 SERVICE); ``data`` is qpack-packed."""
        body = None if data is None else packb(data)
        return await self._send(tp, body, timeout)

    async def _send(self, tp: int, body: Optional[bytes],
                    timeout: Optional[float]) -> Any:
        protocol = self._protocol
        if protocol is None:
            raise ConnectionLostError('not connected')
        return await protocol.send_package(tp, body, is_binary=True, timeout=timeout)

    def close(self) -> None:
        """Close the connection (returns at once; see ``wait_closed``)."""
        protocol = self._protocol
        if protocol is not None:
            protocol.close()

    async def wait_closed(self) -> None:
        protocol = self._protocol
        if protocol is not None:
            await protocol.wait_closed()

    @property
    def connected(self) -> bool:
        protocol = self._protocol
        return protocol is not None and protocol.is_connected()

    def is_connected(self) -> bool:
        return self.connected

    async def __aenter__(self) -> SiriDBAsyncConnection:
        return self

    def __repr__(self) -> str:
        return f'<{type(self).__name__} {self._protocol!r}>'


async def async_connect(username: str, password: str, dbname: str,
                        host: str = '127.0.0.1', port: int = DEFAULT_CLIENT_PORT,
                        loop: Any = None, timeout: Optional[float] = 10,
                        keepalive: bool = False,
                        protocol: Callable[..., SiriDBProtocol] = SiriDBProtocol, *,
                        ssl: Optional[_ssl.SSLContext] = None,
                        unix_path: Optional[str] = None) -> SiriDBAsyncConnection:
    """A connected, authenticated ``SiriDBAsyncConnection``."""
    connection = SiriDBAsyncConnection()
    await connection.connect(username, password, dbname, host, port,
                             timeout=timeout, keepalive=keepalive,
                             protocol=protocol, ssl=ssl, unix_path=unix_path)
    return connection


class _LoopThread:
    """A private event loop running in a daemon thread (which closes it)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='siridb-connector-loop')
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if threading.current_thread() is self._thread:
            raise RuntimeError('blocking call from inside the connection loop')
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close_soon(self, conn: SiriDBAsyncConnection) -> None:
        """Close ``conn`` and stop the loop, without waiting (from any thread)."""
        async def _close() -> None:
            try:
                conn.close()
                await conn.wait_closed()
            finally:
                self.loop.stop()

        if not self.loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(_close(), self.loop)
            except RuntimeError:  # closed meanwhile
                pass

    def close(self, conn: SiriDBAsyncConnection) -> None:
        """Close ``conn``, stop the loop and wait for the thread."""
        self.close_soon(conn)
        if threading.current_thread() is not self._thread:
            self._thread.join()


class SiriDBConnection:
    """A blocking connection for plain synchronous code.

    It owns a private event loop in a background thread, so it works in any
    thread (with or without an event loop of its own); ``close()`` stops it.
    """

    def __init__(self, username: str, password: str, dbname: str,
                 host: str = '127.0.0.1', port: int = DEFAULT_CLIENT_PORT,
                 loop: Any = None, timeout: Optional[float] = 10,
                 protocol: Callable[..., SiriDBProtocol] = SiriDBProtocol, *,
                 ssl: Optional[_ssl.SSLContext] = None,
                 unix_path: Optional[str] = None) -> None:
        self._runner: Optional[_LoopThread] = _LoopThread()
        self._conn = SiriDBAsyncConnection()
        try:
            self._runner.run(self._conn.connect(
                username, password, dbname, host, port, timeout=timeout,
                protocol=protocol, ssl=ssl, unix_path=unix_path))
        except BaseException:
            self._runner.close(self._conn)
            self._runner = None
            raise

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        runner = self._runner
        if runner is None:
            coro.close()
            raise ClientClosedError('connection is closed')
        return runner.run(coro)

    def query(self, query: Any, time_precision: Any = None,
              timeout: Optional[float] = 30) -> QueryResult:
        return self._run(self._conn.query(query, time_precision, timeout))

    def insert(self, data: Any, timeout: Optional[float] = 600) -> InsertReply:
        return self._run(self._conn.insert(data, timeout))

    def send_request(self, tp: int, data: Any = None,
                     timeout: Optional[float] = 30) -> Any:
        return self._run(self._conn.send_request(tp, data, timeout))

    @property
    def connected(self) -> bool:
        return self._runner is not None and self._conn.connected

    def close(self) -> None:
        """Close the connection and stop the private loop (idempotent)."""
        runner = self._runner
        if runner is None:
            return
        self._runner = None
        runner.close(self._conn)

    def __enter__(self) -> SiriDBConnection:
        return self

    def __exit__(self, et: Optional[Type[BaseException]],
                 ev: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.close()

    def __del__(self) -> None:
        runner = getattr(self, '_runner', None)
        if runner is not None:
            warnings.warn(f'unclosed {self!r}', ResourceWarning, stacklevel=1)
            self._runner = None
            runner.close_soon(self._conn)

    def __repr__(self) -> str:
        return f'<SiriDBConnection {self._conn!r}>'


def connect(username: str, password: str, dbname: str, host: str = '127.0.0.1',
            port: int = DEFAULT_CLIENT_PORT, loop: Any = None,
            timeout: Optional[float] = 10,
            protocol: Callable[..., SiriDBProtocol] = SiriDBProtocol, *,
            ssl: Optional[_ssl.SSLContext] = None,
            unix_path: Optional[str] = None) -> SiriDBConnection:
    """A blocking ``SiriDBConnection`` (``loop`` is accepted and ignored)."""
    return SiriDBConnection(username, password, dbname, host, port,
                            timeout=timeout, protocol=protocol, ssl=ssl,
                            unix_path=unix_path)
