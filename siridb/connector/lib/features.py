"""``ClientFeatures``: what ``SiriDBClient`` adds to the 2.1.6 API.

A mixin (SiriDBClient derives from it) that wires the sessions, query
builder, typed results, service API, URL configuration, ping and per-server
stats into the pool client, so that each feature keeps its own module.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, Iterable, List, Optional, Type, TypeVar

from . import protomap as pm
from .builder import QueryBuilder
from .dbprecision import database_precision
from .results import SeriesResult, parse_select
from .service import ServiceAPI
from .session import Value, WriteSession
from .session import write as _write
from .session import write_many as _write_many
from .stats import Counters, ServerStats, StatsRecorder
from .timestamps import TimeValue
from .url import parse_url

__all__ = ['ClientFeatures']

_C = TypeVar('_C', bound='ClientFeatures')


class ClientFeatures:
    """Sessions, builder, typed results, service API, from_url, ping, stats."""

    _siridb_stats: Optional[StatsRecorder] = None

    @classmethod
    def from_url(cls: Type[_C], url: str, **kwargs: Any) -> _C:
        """A client configured by ``siridb://user:password@host:port,.../db?...``
        (grammar: ``siridb.connector.lib.url``); ``kwargs`` override."""
        cfg = parse_url(url).client_kwargs()
        cfg.update(kwargs)
        return cls(**cfg)

    # ------------------------------------------------------------ writes
    async def time_precision(self, timeout: float = 60) -> str:
        """The database's time precision ('s', 'ms', 'us', 'ns'), asked once."""
        return await database_precision(self, timeout)

    async def write(self, series: str, value: Value, timestamp: TimeValue = None,
                    timeout: float = 300) -> int:
        """Insert one point; ``timestamp``: int in the database precision,
        datetime (naive = UTC), float seconds, or None for now. Returns the
        number of points written (1), as ``write_many`` returns its count."""
        return await _write(self, series, value, timestamp, timeout)

    async def write_many(self, points: Iterable[Any], timeout: float = 300) -> int:
        """Insert ``(series, timestamp, value)`` tuples or ``Point``s; returns
        how many. Large inputs are split into several packages."""
        return await _write_many(self, points, timeout)

    def session(self, **kwargs: Any) -> WriteSession:
        """A buffered ``WriteSession`` (see its docstring for the options)."""
        return WriteSession(self, **kwargs)

    # ----------------------------------------------------------- queries
    async def _build_query(self, query: Any) -> Any:
        if isinstance(query, QueryBuilder):
            return query.build(await database_precision(self))
        return query

    async def select(self, query: Any, time_precision: Any = None,
                     timeout: float = 60) -> Dict[str, SeriesResult]:
        """Run a select (text or ``Select`` builder) and return typed series
        (timestamps in ``time_precision``, default the database's)."""
        client: Any = self
        precision = await database_precision(self)
        result = await client.query(query, time_precision=time_precision, timeout=timeout)
        return parse_select(result, precision if time_precision is None else time_precision)

    # ---------------------------------------------------------- service
    def service(self, username: str = 'sa', password: str = 'siri',
                timeout: float = 60) -> ServiceAPI:
        """The service API (type 32) sent through this pool's connections.

        The pool picks the server: for calls that concern one server (new
        database, new pool) use ``SiriDBService`` with that server instead.
        """
        client: Any = self

        async def send(tp: int, data: Any, timeout: float) -> Any:
            return await client.send_request(tp, data, timeout, allow_any_open=True)

        return ServiceAPI(send, username, password, timeout)

    # -------------------------------------------------------- monitoring
    async def ping(self, timeout: float = 10) -> float:
        """Round trip of a PING through the pool, in seconds."""
        client: Any = self
        loop = asyncio.get_running_loop()
        start = loop.time()
        await client.send_request(pm.CPROTO_REQ_PING, None, timeout, allow_any_open=True)
        return loop.time() - start

    async def server_version(self, timeout: float = 60) -> str:
        """The version a server of the pool reports (``show version``)."""
        client: Any = self
        res = await client.query('show version', timeout=timeout)
        return str({d['name']: d['value'] for d in res['data']}['version'])

    def _stats_recorder(self) -> StatsRecorder:
        rec = self._siridb_stats
        if rec is None:
            rec = self._siridb_stats = StatsRecorder()
        return rec

    def stats(self) -> List[ServerStats]:
        """Per-server counters: requests, errors, reconnects, in flight, last
        error, plus up/backup/weight; in hostlist order."""
        client: Any = self
        rec = self._stats_recorder()
        return [rec.snapshot(h) for h in client.hosts]

    def _counters(self, h: Any) -> Counters:
        """The counters of host state ``h``, kept on it for the request path."""
        counters = h.counters = self._stats_recorder().get(h.host, h.port)
        return counters

    def _count_connect(self, h: Any) -> None:
        self._stats_recorder().connected(h.host, h.port)
