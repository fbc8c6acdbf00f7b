"""``ClientFeatures``: what ``SiriDBClient`` adds to the 2.1.6 API.

A mixin (SiriDBClient derives from it) that wires the sessions, typed
results, service API, URL configuration and ping into the pool client, so
that each feature keeps its own module. What the mixin needs of the client
is spelled out by ``PoolRequests``: its methods declare ``self`` as one, so
mypy checks that the class mixing them in provides it.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, Iterable, Optional, Protocol, Type, TypeVar

from . import protomap as pm
from .dbprecision import Queryable, database_precision
from .results import InsertReply, SeriesResult, parse_select
from .service import ServiceAPI
from .session import Value, WriteSession
from .session import write as write_point
from .session import write_many as write_points
from .timestamps import TimeValue
from .url import parse_url

__all__ = ['ClientFeatures', 'PoolRequests']

_C = TypeVar('_C', bound='ClientFeatures')


class PoolRequests(Queryable, Protocol):
    """The pool's request entries the features are built on
    (``SiriDBClient.query``, ``insert`` and ``send_request``)."""

    async def insert(self, data: Any, timeout: float = 300) -> InsertReply: ...

    async def send_request(self, tp: int, data: Any = None, timeout: Optional[float] = 60,
                           *, is_binary: bool = False,
                           allow_any_open: bool = False) -> Any: ...


class ClientFeatures:
    """Sessions, typed results, service API, from_url and ping."""

    @classmethod
    def from_url(cls: Type[_C], url: str, **kwargs: Any) -> _C:
        """A client configured by ``siridb://user:password@host:port,.../db?...``
        (grammar: ``siridb.connector.lib.url``); ``kwargs`` override."""
        cfg = parse_url(url).client_kwargs()
        cfg.update(kwargs)
        return cls(**cfg)

    # ------------------------------------------------------------ writes
    async def time_precision(self: PoolRequests, timeout: float = 60) -> str:
        """The database's time precision ('s', 'ms', 'us', 'ns'), asked once."""
        return await database_precision(self, timeout)

    async def write(self: PoolRequests, series: str, value: Value,
                    timestamp: TimeValue = None, timeout: float = 300) -> int:
        """Insert one point; ``timestamp``: int in the database precision,
        datetime (naive = UTC), float seconds, or None for now. Returns the
        number of points written (1), as ``write_many`` returns its count."""
        return await write_point(self, series, value, timestamp, timeout)

    async def write_many(self: PoolRequests, points: Iterable[Any],
                         timeout: float = 300) -> int:
        """Insert ``(series, timestamp, value)`` tuples or ``Point``s; returns
        how many. Large inputs are split into several packages."""
        return await write_points(self, points, timeout)

    def session(self: PoolRequests, **kwargs: Any) -> WriteSession:
        """A buffered ``WriteSession`` (see its docstring for the options)."""
        return WriteSession(self, **kwargs)

    # ----------------------------------------------------------- queries
    async def select(self: PoolRequests, query: Any, time_precision: Any = None,
                     timeout: float = 60) -> Dict[str, SeriesResult]:
        """Run a select (text or ``Select`` builder) and return typed series
        (timestamps in ``time_precision``, default the database's)."""
        precision = await database_precision(self)
        result = await self.query(query, time_precision=time_precision, timeout=timeout)
        return parse_select(result, precision if time_precision is None else time_precision)

    async def server_version(self: PoolRequests, timeout: float = 60) -> str:
        """The version a server of the pool reports (``show version``)."""
        res = await self.query('show version', timeout=timeout)
        return str({d['name']: d['value'] for d in res['data']}['version'])

    # ---------------------------------------------------------- service
    def service(self: PoolRequests, username: str = 'sa', password: str = 'siri',
                timeout: float = 60) -> ServiceAPI:
        """The service API (type 32) sent through this pool's connections.

        The pool picks the server: for calls that concern one server (new
        database, new pool) use ``SiriDBService`` with that server instead.
        """
        send_request = self.send_request

        async def send(tp: int, data: Any, timeout: float) -> Any:
            return await send_request(tp, data, timeout, allow_any_open=True)

        return ServiceAPI(send, username, password, timeout)

    # -------------------------------------------------------- monitoring
    async def ping(self: PoolRequests, timeout: float = 10) -> float:
        """Round trip of a PING through the pool, in seconds."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self.send_request(pm.CPROTO_REQ_PING, None, timeout, allow_any_open=True)
        return loop.time() - start
