"""``SiriDBClient``: a pool of connections with weighted choice, failover,
reconnect (exponential backoff with jitter) and keepalive.

Host state lives in ``hosts.HostState``; the choice is ``hosts.choose_host``.
``send_request`` is the lower-level entry that sends any package type with the
same failover rules as ``insert``/``query`` (used by the service API).
"""
from __future__ import annotations

import asyncio
import logging
import random
import ssl as _ssl
import time
import warnings
import weakref
from typing import Any, List, Optional

from . import protomap as pm
from .backoff import Backoff
from .builder import QueryBuilder
from .closing import AsyncClosing
from .codec import packb
from .constants import NO_CONNECTIONS
from .dbprecision import database_precision
from .exceptions import (
    AuthenticationError,
    ClientClosedError,
    ConnectionLostError,
    Failover,
    PoolError,
    RequestTimeoutError,
    failover_of,
)
from .features import ClientFeatures
from .hosts import HostState, choose_host, parse_hostlist
from .protocol import SiriDBProtocol, open_protocol
from .results import InsertReply, QueryResult
from .stats import Counters, ServerStats, StatsRecorder
from .validate import check_packed_insert, pack_insert, pack_query

__all__ = ['SiriDBClient']

logger = logging.getLogger('siridb.connector')

_BASE_TIME = asyncio.BaseEventLoop.time
_monotonic = time.monotonic


class SiriDBClient(ClientFeatures, AsyncClosing):
    """A pool of connections to the servers of one SiriDB database.

    ``hostlist``: ``[(host, port), (host, port, {'weight': 1..9, 'backup':
    bool}), ...]``. ``timeout`` is the connect (and AUTH) timeout per server.
    May be constructed outside a running loop; ``loop`` is accepted and
    ignored. Keyword-only extras: ``ssl`` (an ``ssl.SSLContext``),
    ``backoff_base`` and ``backoff_jitter`` (reconnect delays),
    ``pool_retry_interval`` (wait between retries after a server PoolError),
    ``keepalive_idle``/``keepalive_timeout`` and ``rng`` (a ``random.Random``
    for the host choice).
    """

    def __init__(self, username: str, password: str, dbname: str, hostlist: Any,
                 loop: Any = None, keepalive: bool = True, timeout: float = 10,
                 inactive_time: float = 30, max_wait_retry: float = 90, *,
                 ssl: Optional[_ssl.SSLContext] = None,
                 backoff_base: float = 1.0, backoff_jitter: float = 0.2,
                 pool_retry_interval: float = 2.0,
                 keepalive_idle: float = 45.0, keepalive_timeout: float = 15.0,
                 rng: Optional[random.Random] = None) -> None:
        self._username = username
        self._password = password
        self._dbname = dbname
        self._hosts: List[HostState] = parse_hostlist(hostlist)
        self._keepalive = keepalive
        self._timeout = timeout
        self._inactive_time = inactive_time
        self._ssl = ssl
        self._backoff = Backoff(min(backoff_base, max_wait_retry), max_wait_retry,
                                backoff_jitter)
        self._pool_retry_interval = pool_retry_interval
        self._keepalive_idle = keepalive_idle
        self._keepalive_timeout = keepalive_timeout
        self._rng = rng or random.Random()
        self._closed = True
        self._opened = False  # connect() was called at least once
        self._reconnect_task: Optional[asyncio.Task[None]] = None
        self._stopping: List[asyncio.Task[None]] = []
        self._waiters: List[asyncio.Future[None]] = []
        self._stats = StatsRecorder()

    def __repr__(self) -> str:
        servers = ', '.join(f'{h.host}:{h.port}' for h in self._hosts)
        return (f'<SiriDBClient user={self._username!r} db={self._dbname!r} '
                f'servers=[{servers}] closed={self._closed}>')

    # ------------------------------------------------------------ state
    @property
    def is_closed(self) -> bool:
        """True before the first ``connect()`` and after ``close()``."""
        return self._closed

    @property
    def connected(self) -> bool:
        """True when any connection of the pool is open."""
        return any(h.protocol is not None and h.protocol.is_connected()
                   for h in self._hosts)

    @property
    def connect_timeout(self) -> float:
        """The connect (and AUTH) timeout per server (``timeout`` argument)."""
        return self._timeout

    @property
    def hosts(self) -> List[HostState]:
        """The per-server states (read-only use, e.g. for monitoring)."""
        return list(self._hosts)

    # ---------------------------------------------------------- connect
    async def connect(self, timeout: Optional[float] = None) -> List[Optional[BaseException]]:
        """Open the client and connect every server in parallel.

        Never raises for a server that fails: returns, in hostlist order,
        None per success and the exception per failure. Any failure starts the
        reconnect loop. ``timeout`` overrides the per-server connect timeout.
        """
        self._closed = False
        self._opened = True
        results = await asyncio.gather(
            *(self._connect_host(h, timeout) for h in self._hosts),
            return_exceptions=True)
        out: List[Optional[BaseException]] = []
        for r in results:
            if isinstance(r, BaseException):
                if isinstance(r, asyncio.CancelledError):
                    raise r
                out.append(r)
            else:
                out.append(None)
        if any(r is not None for r in out):
            self._start_reconnect()
        return out

    async def _connect_host(self, h: HostState, timeout: Optional[float] = None) -> None:
        if h.up:
            return
        if h.connecting is not None:
            await asyncio.shield(h.connecting)
            if not h.up:
                raise h.last_error or ConnectionError(f'{h.host}:{h.port}: not connected')
            return
        loop = asyncio.get_running_loop()
        h.connecting = loop.create_future()
        try:
            await self._open(h, self._timeout if timeout is None else timeout)
        except Exception as exc:
            h.last_error = exc
            raise
        finally:
            fut, h.connecting = h.connecting, None
            if not fut.done():
                fut.set_result(None)

    async def _open(self, h: HostState, timeout: float) -> None:
        # the connection refers to the client weakly: an unclosed client can
        # still be collected (and warn) while its sockets are open
        lost_ref = weakref.WeakMethod(self._on_lost)

        def on_lost(p: SiriDBProtocol, exc: Optional[BaseException]) -> None:
            handler = lost_ref()
            if handler is not None:
                handler(h, p, exc)

        def factory() -> SiriDBProtocol:
            protocol = SiriDBProtocol(self._username, self._password, self._dbname)
            protocol.add_lost_callback(on_lost)
            return protocol

        try:
            protocol = await open_protocol(
                factory, h.host, h.port, timeout=timeout, ssl=self._ssl,
                unix_path=h.host if h.host.startswith('/') else None)
        except AuthenticationError as exc:
            h.auth_failed = True
            logger.error('authentication failed on %s:%s (database %r, user %r): %s',
                         h.host, h.port, self._dbname, self._username, exc)
            raise
        except (OSError, RequestTimeoutError) as exc:
            logger.info('cannot connect to %s:%s: %s', h.host, h.port, exc)
            raise
        if self._closed:
            protocol.close()
            raise ClientClosedError('client closed while connecting')
        if not protocol.is_connected():
            raise ConnectionError(f'{h.host}:{h.port}: connection lost after AUTH')
        h.protocol = protocol
        h.up = True
        self._stats.connected(h.host, h.port)
        h.auth_failed = False
        h.last_error = None
        h.inactive_until = 0.0
        if self._keepalive:
            protocol.start_keepalive(self._keepalive_idle, self._keepalive_timeout)
        logger.info('connected to %s:%s', h.host, h.port)
        self._wake_waiters()

    def _on_lost(self, h: HostState, protocol: SiriDBProtocol,
                 exc: Optional[BaseException]) -> None:
        if h.protocol is not protocol:
            return
        h.up = False
        h.protocol = None
        if self._closed:
            return
        h.last_error = ConnectionLostError(
            f'connection to {h.host}:{h.port} lost' + (f': {exc}' if exc else ''))
        logger.warning('connection to %s:%s lost%s', h.host, h.port,
                       f': {exc}' if exc else '')
        self._start_reconnect()

    def _start_reconnect(self) -> None:
        if self._closed:
            return
        task = self._reconnect_task
        if task is not None and not task.done():
            return
        self._reconnect_task = asyncio.get_running_loop().create_task(
            self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        backoff = self._backoff
        backoff.reset()
        while not self._closed:
            down = [h for h in self._hosts if not h.up]
            if not down:
                return
            if all(h.auth_failed for h in down):
                delay = backoff.max_delay()
            else:
                delay = backoff.next_delay()
            logger.info('reconnecting %d server(s) in %.2f s', len(down), delay)
            await asyncio.sleep(delay)
            if self._closed:
                return
            await asyncio.gather(*(self._connect_host(h) for h in down),
                                 return_exceptions=True)

    async def wait_connected(self, timeout: Optional[float] = None) -> None:
        """Wait until at least one server is connected (``RequestTimeoutError``
        after ``timeout``; ``ClientClosedError`` if the client is closed)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not any(h.up for h in self._hosts):
            if self._closed:
                raise ClientClosedError('client is closed')
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append(fut)
            remaining = None if deadline is None else deadline - loop.time()
            try:
                if remaining is not None and remaining <= 0:
                    raise asyncio.TimeoutError
                await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                raise RequestTimeoutError(
                    f'no server connected within {timeout:g} s') from None
            finally:
                if fut in self._waiters:
                    self._waiters.remove(fut)

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # --------------------------------------------------------- requests
    async def insert(self, data: Any, timeout: Optional[float] = 300) -> InsertReply:
        """Insert points; returns the server's reply
        (``{'success_msg': 'Successfully inserted N point(s).'}``)."""
        reply: InsertReply = await self._request(pm.CPROTO_REQ_INSERT, pack_insert(data),
                                                 timeout, allow_any_open=False)
        return reply

    async def insert_packed(self, body: bytes,
                            timeout: Optional[float] = 300) -> InsertReply:
        """Insert a payload packed before (``validate.pack_insert``): sent as
        it is, with the failover and reply of ``insert``. A write session packs
        each package once, while its points are fresh in memory, and sends
        the same bytes again on a retry."""
        reply: InsertReply = await self._request(
            pm.CPROTO_REQ_INSERT, check_packed_insert(body), timeout, allow_any_open=False)
        return reply

    async def insert_once(self, body: bytes, timeout: Optional[float] = 300) -> HostState:
        """Send a packed insert to one server, with no failover: any failure
        is raised (after the body was sent its outcome is unknown; the
        server is marked inactive as ``insert`` does). Returns the server
        that confirmed it (a verified write session keeps it)."""
        if self._closed:
            raise ClientClosedError('client is closed') if self._opened \
                else PoolError(NO_CONNECTIONS)
        body = check_packed_insert(body)
        loop = asyncio.get_running_loop()
        now = loop.time()
        h = choose_host(self._hosts, self._rng, now, False)
        if h is None or h.protocol is None:
            raise PoolError(NO_CONNECTIONS) from self._down_reason()
        counters = h.counters or self._counters_of(h)
        fut = h.protocol.send_body(pm.CPROTO_REQ_INSERT, body,
                                   now + (float('inf') if timeout is None else timeout),
                                   timeout)
        counters.requests += 1
        try:
            await fut
        except Exception as exc:
            counters.failed(exc)
            if failover_of(exc) is Failover.OTHER_SERVER and not self._closed:
                h.inactive_until = loop.time() + self._inactive_time
                logger.warning('%s:%s: %s; inactive for %g s', h.host, h.port, str(exc),
                               self._inactive_time)
            raise
        return h

    async def query_each(self, query: str,
                         timeout: Optional[float] = 60) -> List[QueryResult]:
        """Run ``query`` on every connected server at once (no failover);
        the replies of those that answered, in hostlist order. Raises the
        first error when none answered. (A SiriDB server answers for its own
        pool from what it holds: a verified write session compares them.)"""
        body = pack_query(query, None)
        hosts = [h for h in self._hosts if h.up and h.protocol is not None]
        if not hosts:
            raise PoolError(NO_CONNECTIONS) from self._down_reason()
        deadline = asyncio.get_running_loop().time() + (
            float('inf') if timeout is None else timeout)
        futs = []
        for h in hosts:
            assert h.protocol is not None
            futs.append(h.protocol.send_body(pm.CPROTO_REQ_QUERY, body, deadline, timeout))
            (h.counters or self._counters_of(h)).requests += 1
        results = await asyncio.gather(*futs, return_exceptions=True)
        replies: List[QueryResult] = []
        errors: List[BaseException] = []
        for h, r in zip(hosts, results):
            if isinstance(r, BaseException):
                if not isinstance(r, Exception):
                    raise r
                (h.counters or self._counters_of(h)).failed(r)
                errors.append(r)
            else:
                replies.append(r)
        if not replies:
            raise errors[0]
        return replies

    async def query(self, query: Any, time_precision: Any = None,
                    timeout: Optional[float] = 60) -> QueryResult:
        """Run a query; returns the server's reply (a dict)."""
        if isinstance(query, QueryBuilder):
            query = query.build(await database_precision(self))
        reply: QueryResult = await self._request(pm.CPROTO_REQ_QUERY,
                                                 pack_query(query, time_precision),
                                                 timeout, allow_any_open=True)
        return reply

    async def send_request(self, tp: int, data: Any = None,
                           timeout: Optional[float] = 60, *,
                           is_binary: bool = False, allow_any_open: bool = False) -> Any:
        """Send any package type with the pool's failover rules.

        ``data`` is qpack-packed unless ``is_binary``; the reply is decoded as
        for queries (success types return the payload, errors raise).
        ``timeout`` is the overall deadline, retries included.
        ``allow_any_open``: on the first attempt, fall back to a connection
        marked inactive (as queries do).
        """
        if is_binary or data is None:
            body = data
        else:
            body = packb(data)
        return await self._request(tp, body, timeout, allow_any_open)

    async def _request(self, tp: int, body: Optional[bytes], timeout: Optional[float],
                       allow_any_open: bool) -> Any:
        if self._closed:
            if not self._opened:  # as 2.1.6: no connections yet
                raise PoolError(NO_CONNECTIONS)
            raise ClientClosedError('client is closed')
        if type(body) is not bytes:
            body = b'' if body is None else bytes(body)
        loop = asyncio.get_running_loop()
        # the standard loops' time() is time.monotonic(): call it directly
        now = _monotonic() if type(loop).time is _BASE_TIME else loop.time()
        deadline = now + (float('inf') if timeout is None else timeout)
        attempt = 0
        while True:
            if attempt:
                now = loop.time()
            h = choose_host(self._hosts, self._rng, now, allow_any_open and attempt == 0)
            if h is None or h.protocol is None:
                raise PoolError(NO_CONNECTIONS) from self._down_reason()
            remaining = deadline - now
            if remaining <= 0:
                raise RequestTimeoutError(
                    f'no reply within {timeout:g} s (retries included)')
            attempt += 1
            # stats are counted inline (no extra coroutine per request): a
            # request counts once sent, an error when its reply/failure comes
            counters = None
            try:
                fut = h.protocol.send_body(
                    tp, body, deadline, None if timeout is None else remaining)
                counters = h.counters or self._counters_of(h)
                counters.requests += 1
                return await fut
            except Exception as exc:
                if counters is not None:
                    counters.failed(exc)
                action = failover_of(exc)
                if action is Failover.WAIT:
                    if loop.time() + self._pool_retry_interval >= deadline:
                        raise
                    # the text, not the exception: a handler that keeps records
                    # would keep its traceback and so the request body alive
                    logger.info('%s:%s: %s; retrying in %g s', h.host, h.port, str(exc),
                                self._pool_retry_interval)
                    await asyncio.sleep(self._pool_retry_interval)
                elif action is Failover.OTHER_SERVER:
                    if self._closed:
                        raise
                    h.inactive_until = loop.time() + self._inactive_time
                    logger.warning('%s:%s: %s; inactive for %g s, trying another server',
                                   h.host, h.port, str(exc), self._inactive_time)
                else:
                    raise

    def _counters_of(self, h: HostState) -> Counters:
        """The stats counters of ``h``, kept on it for the request path."""
        counters = h.counters = self._stats.get(h.host, h.port)
        return counters

    def stats(self) -> List[ServerStats]:
        """Per-server counters: requests, errors, reconnects, in flight, last
        error, plus up/backup/weight; in hostlist order."""
        return [self._stats.snapshot(h) for h in self._hosts]

    def _down_reason(self) -> Optional[BaseException]:
        """Why servers are down (an authentication failure first), shown as
        the cause of 'No available connections found'."""
        errors = [h.last_error for h in self._hosts if h.last_error is not None]
        for exc in errors:
            if isinstance(exc, AuthenticationError):
                return exc
        return errors[0] if errors else None

    # ------------------------------------------------------------ close
    def close(self) -> None:
        """Close every connection and stop reconnecting (returns at once)."""
        self._closed = True
        task = self._reconnect_task
        self._reconnect_task = None
        if task is not None and not task.done():
            task.cancel()
            self._stopping.append(task)
        for h in self._hosts:
            h.up = False
            if h.protocol is not None:
                h.protocol.close(ClientClosedError('client closed'))
        self._wake_waiters()

    async def wait_closed(self) -> None:
        """Wait until ``close()`` has finished closing everything."""
        while self._stopping:
            task = self._stopping.pop()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
        for h in self._hosts:
            protocol = h.protocol
            if protocol is not None:
                await protocol.wait_closed()
                if h.protocol is protocol:
                    h.protocol = None

    async def __aenter__(self) -> SiriDBClient:
        await self.connect()
        return self

    def __del__(self) -> None:
        if getattr(self, '_closed', True):
            return
        hosts = getattr(self, '_hosts', ())
        if any(h.protocol is not None and h.protocol.is_connected() for h in hosts):
            warnings.warn(f'unclosed {self!r}', ResourceWarning, stacklevel=1)
