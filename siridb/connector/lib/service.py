"""Service API (request type 32): databases, service accounts, pools, replicas.

Service requests need no database login: each carries the service account
(default ``sa`` / ``siri``). ``ServiceAPI`` holds the calls and sends them
through any ``send(tp, data, timeout)``; ``client.service()`` sends them
through a pool client, ``SiriDBService`` over its own connection to one
server. Server errors arrive as ``ServiceError`` (type 96, the server's
text) and ``ServiceInvalidRequestError`` (type 97, a wrong option shape).
"""
from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from typing import Any, Awaitable, Callable, Dict, List, Optional

from . import protomap as pm
from .closing import AsyncClosing
from .constants import DEFAULT_CLIENT_PORT
from .exceptions import ClientClosedError
from .protocol import SiriDBProtocol, open_protocol
from .url import URLError, parse_url

__all__ = ['ServiceAPI', 'SiriDBService', 'Sender']

logger = logging.getLogger('siridb.connector')

#: ``send(tp, data, timeout)`` -> decoded reply (raises on an error reply)
Sender = Callable[[int, Any, float], Awaitable[Any]]


class ServiceAPI:
    """The service calls, sent through ``send``.

    Every call takes ``timeout`` (seconds, default the API's ``timeout``).
    """

    def __init__(self, send: Sender, username: str = 'sa', password: str = 'siri',
                 timeout: float = 60) -> None:
        self._send = send
        self._username = username
        self._password = password
        self.timeout = timeout

    def __repr__(self) -> str:
        return f'<{type(self).__name__} account={self._username!r}>'

    async def request(self, request: int, options: Optional[Dict[str, Any]] = None,
                      timeout: Optional[float] = None) -> Any:
        """Send service request number ``request`` (see ``protomap.SERVICE_*``)
        with ``options``; returns the reply data (None for a plain ACK)."""
        payload = [self._username, self._password, request, options or {}]
        return await self._send(pm.CPROTO_REQ_SERVICE, payload,
                                self.timeout if timeout is None else timeout)

    # ----------------------------------------------------------- queries
    async def get_version(self, timeout: Optional[float] = None) -> str:
        """The server's version, e.g. ``'2.0.55'``."""
        data = await self.request(pm.SERVICE_GET_VERSION, timeout=timeout)
        return str(data[0])

    async def get_databases(self, timeout: Optional[float] = None) -> List[str]:
        """Names of the databases on the server."""
        return list(await self.request(pm.SERVICE_GET_DATABASES, timeout=timeout))

    async def get_accounts(self, timeout: Optional[float] = None) -> List[str]:
        """Names of the service accounts."""
        return list(await self.request(pm.SERVICE_GET_ACCOUNTS, timeout=timeout))

    # ---------------------------------------------------------- accounts
    async def new_account(self, account: str, password: str,
                          timeout: Optional[float] = None) -> None:
        await self.request(pm.SERVICE_NEW_ACCOUNT,
                           {'account': account, 'password': password}, timeout)

    async def change_password(self, account: str, password: str,
                              timeout: Optional[float] = None) -> None:
        await self.request(pm.SERVICE_CHANGE_PASSWORD,
                           {'account': account, 'password': password}, timeout)

    async def drop_account(self, account: str, timeout: Optional[float] = None) -> None:
        await self.request(pm.SERVICE_DROP_ACCOUNT, {'account': account}, timeout)

    # --------------------------------------------------------- databases
    async def new_database(self, dbname: str, time_precision: Optional[str] = None,
                           buffer_size: Optional[int] = None,
                           duration_num: Optional[str] = None,
                           duration_log: Optional[str] = None,
                           timeout: Optional[float] = None) -> None:
        """Create a database; options left None take the server defaults
        (ms, 1024, '1w', '1d'). It gets one user, ``iris`` / ``siri``."""
        opts: Dict[str, Any] = {'dbname': dbname}
        for key, value in (('time_precision', time_precision),
                           ('buffer_size', buffer_size),
                           ('duration_num', duration_num),
                           ('duration_log', duration_log)):
            if value is not None:
                opts[key] = value
        await self.request(pm.SERVICE_NEW_DATABASE, opts, timeout)

    async def drop_database(self, dbname: str, ignore_offline: bool = False,
                            timeout: Optional[float] = None) -> None:
        opts: Dict[str, Any] = {'database': dbname}
        if ignore_offline:
            opts['ignore_offline'] = True
        await self.request(pm.SERVICE_DROP_DATABASE, opts, timeout)

    async def new_pool(self, dbname: str, host: str, port: int, username: str,
                       password: str, timeout: Optional[float] = None) -> None:
        """Add this server as a new pool of ``dbname``, joining the database
        on ``host:port`` with a database user; the reply waits until joined."""
        await self.request(pm.SERVICE_NEW_POOL, {
            'dbname': dbname, 'host': host, 'port': port,
            'username': username, 'password': password}, timeout)

    async def new_replica(self, dbname: str, host: str, port: int, username: str,
                          password: str, pool: int,
                          timeout: Optional[float] = None) -> None:
        """Add this server as a replica of pool ``pool`` of ``dbname``."""
        await self.request(pm.SERVICE_NEW_REPLICA, {
            'dbname': dbname, 'host': host, 'port': port,
            'username': username, 'password': password, 'pool': pool}, timeout)


class SiriDBService(ServiceAPI, AsyncClosing):
    """The service API over its own connection to one server.

    ``async with SiriDBService('sa', 'siri', 'localhost', 9000) as svc:
    await svc.get_databases()``. Connects on first use and again after a
    lost connection; ``close()`` then ``await wait_closed()`` when done.
    """

    def __init__(self, username: str = 'sa', password: str = 'siri',
                 host: str = '127.0.0.1', port: int = DEFAULT_CLIENT_PORT, *,
                 timeout: float = 60, connect_timeout: float = 10,
                 ssl: Optional[_ssl.SSLContext] = None) -> None:
        super().__init__(self._send_own, username, password, timeout)
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._ssl = ssl
        self._protocol: Optional[SiriDBProtocol] = None
        self._lock: Optional[asyncio.Lock] = None
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> SiriDBService:
        """From ``siridb://sa:siri@host:port`` (the path is ignored; the one
        option taken is ``timeout``, the connect timeout). A URL naming more
        than one server or other options raises ``URLError``."""
        u = parse_url(url, need_dbname=False)
        if len(u.hostlist) != 1:
            raise URLError('a service URL names exactly one server '
                           f'(got {len(u.hostlist)})')
        extra = sorted(set(u.options) - {'timeout'})
        if extra:
            raise URLError(f'option(s) {", ".join(extra)} do not apply to a service URL '
                           '(only timeout)')
        if 'timeout' in u.options:
            kwargs.setdefault('connect_timeout', u.options['timeout'])
        host, port = u.hostlist[0][0], u.hostlist[0][1]
        return cls(u.username, u.password, host, port, **kwargs)

    def __repr__(self) -> str:
        return (f'<SiriDBService account={self._username!r} '
                f'server={self.host}:{self.port}>')

    async def connect(self) -> None:
        """Open the connection now (otherwise the first call opens it)."""
        self._closed = False
        await self._ensure()

    async def _ensure(self) -> SiriDBProtocol:
        if self._closed:
            raise ClientClosedError('service client is closed')
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            p = self._protocol
            if p is None or not p.is_connected():
                p = await open_protocol(SiriDBProtocol, self.host, self.port,
                                        timeout=self._connect_timeout, ssl=self._ssl)
                if self._closed:
                    p.close()
                    raise ClientClosedError('service client is closed')
                self._protocol = p
                logger.debug('service connection to %s:%s open', self.host, self.port)
            return p

    async def _send_own(self, tp: int, data: Any, timeout: float) -> Any:
        protocol = await self._ensure()
        return await protocol.send_package(tp, data, timeout=timeout)

    def close(self) -> None:
        """Close the connection (returns at once)."""
        self._closed = True
        if self._protocol is not None:
            self._protocol.close()

    async def wait_closed(self) -> None:
        p, self._protocol = self._protocol, None
        if p is not None:
            await p.wait_closed()

    async def __aenter__(self) -> SiriDBService:
        await self.connect()
        return self

