"""``SiriDBConn``: one server with automatic reconnect (a one-server pool).

Unlike 2.1.6 it does not retry forever on bad credentials: ``connect()``
raises the ``AuthenticationError`` at once.
"""
from __future__ import annotations

import asyncio
import ssl as _ssl
from types import TracebackType
from typing import Any, Optional, Type

from .client import SiriDBClient
from .constants import DEFAULT_CLIENT_PORT
from .exceptions import AuthenticationError
from .results import InsertReply, QueryResult

__all__ = ['SiriDBConn']


class SiriDBConn:
    """A connection to one server that reconnects by itself.

    Extra keyword arguments (``ssl``, ``keepalive``, ``backoff_base``, ...)
    are passed to the underlying ``SiriDBClient``.
    """

    def __init__(self, username: str, password: str, dbname: str, server: str,
                 port: int = DEFAULT_CLIENT_PORT, loop: Any = None, *,
                 ssl: Optional[_ssl.SSLContext] = None, **options: Any) -> None:
        self._client = SiriDBClient(username, password, dbname, [(server, port)],
                                    ssl=ssl, **options)

    def __repr__(self) -> str:
        return f'<SiriDBConn {self._client!r}>'

    async def connect(self, timeout: float = 120) -> None:
        """Connect, retrying (with backoff) until connected or ``timeout``.

        Raises ``AuthenticationError`` at once on bad credentials or an
        unknown database, and ``RequestTimeoutError`` when the server is not
        reachable within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        client = self._client
        result = (await client.connect(timeout=min(timeout, client.connect_timeout)))[0]
        if result is None:
            return
        if isinstance(result, AuthenticationError):
            await self._shutdown()
            raise result
        try:
            await self._client.wait_connected(max(0.0, deadline - loop.time()))
        except BaseException:
            await self._shutdown()
            raise

    async def _shutdown(self) -> None:
        self._client.close()
        await self._client.wait_closed()

    async def query(self, query: Any, time_precision: Any = None,
                    timeout: float = 60) -> QueryResult:
        return await self._client.query(query, time_precision, timeout)

    async def insert(self, data: Any, timeout: float = 300) -> InsertReply:
        return await self._client.insert(data, timeout)

    async def insert_packed(self, body: bytes, timeout: float = 300) -> InsertReply:
        return await self._client.insert_packed(body, timeout)

    async def send_request(self, tp: int, data: Any = None, timeout: float = 60) -> Any:
        return await self._client.send_request(tp, data, timeout)

    def is_connected(self) -> bool:
        return self._client.connected

    @property
    def is_closed(self) -> bool:
        return self._client.is_closed

    def close(self) -> None:
        self._client.close()

    async def wait_closed(self) -> None:
        await self._client.wait_closed()

    async def aclose(self) -> None:
        """Close and wait until closed (``contextlib.aclosing`` works)."""
        await self._shutdown()

    async def __aenter__(self) -> SiriDBConn:
        await self.connect()
        return self

    async def __aexit__(self, et: Optional[Type[BaseException]],
                        ev: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self._shutdown()
