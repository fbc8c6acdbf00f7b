"""The client ``asyncio.Protocol``: asyncio glue around the sans-IO request core.

``request_core.RequestCore`` holds the pid table, the deadline heap and
reply routing; this module adds the transport (write batching), one
``loop.call_at`` timer for the earliest live deadline (no timer object to
create and cancel per request), AUTH on connect and the keepalive ping.
"""
from __future__ import annotations

import asyncio
import logging
import ssl as _ssl
from typing import Any, Callable, List, Optional

from ...wire import types as pm
from ...wire.framing import HEADER, MAX_PAYLOAD, PID_SPACE, packb
from .constants import DEFAULT_CLIENT_PORT
from .exceptions import (
    ClientClosedError,
    ConnectionLostError,
    RequestTimeoutError,
    RequestTooLargeError,
    SiriDBError,
)
from .request_core import (
    NO_DEADLINE,
    REPLY_TYPES,
    UNKNOWN_REPLY_LIMIT,
    RequestCore,
    timeout_error,
)

__all__ = ['SiriDBProtocol', 'open_protocol', 'PID_SPACE', 'DEFAULT_AUTH_TIMEOUT', 'WRITE_BATCH',
           'REPLY_TYPES', 'UNKNOWN_REPLY_LIMIT', 'timeout_error']

logger = logging.getLogger('siridb.connector')

#: this many requests queued in one loop iteration are written at once: the
#: server works on them while the client makes the next ones (one write per
#: iteration made client and server take turns: 256 in flight ran ~40% slower)
WRITE_BATCH = 64
#: bodies at least this big are written on their own, never copied behind
#: their header or joined with other requests
BIG_WRITE = 65_536
DEFAULT_AUTH_TIMEOUT = 10.0

_INF = NO_DEADLINE
_pack_header = HEADER.pack
#: the standard loops' create_future, skipped for a direct Future() call
_BASE_CREATE_FUTURE = asyncio.BaseEventLoop.create_future
_Future = asyncio.Future
LostCallback = Callable[['SiriDBProtocol', Optional[BaseException]], None]


def _mark_retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


class SiriDBProtocol(asyncio.Protocol):
    """One connection to a SiriDB server.

    With a ``username`` it sends AUTH as soon as the connection is made;
    ``auth_future`` resolves to True, or fails with the server's error.
    Subclasses may override the hooks ``on_connection_made()``,
    ``on_authenticated()`` and ``on_connection_lost(exc)``.
    """

    auth_timeout: Optional[float] = DEFAULT_AUTH_TIMEOUT
    _std_futures = False
    _flush_scheduled = False

    def __init__(self, username: Optional[str] = None,
                 password: Optional[str] = None,
                 dbname: Optional[str] = None) -> None:
        self._username = username
        self._password = password
        self._dbname = dbname
        #: the sans-IO request state: pids, deadlines, reply routing
        self.core = RequestCore()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = _INF
        self._std_futures = False
        self._transport: Optional[asyncio.Transport] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._authenticated = False
        self._lost_callbacks: List[LostCallback] = []
        self._closed_future: Optional[asyncio.Future[None]] = None
        self._wbuf: List[bytes] = []
        self._ka_handle: Optional[asyncio.TimerHandle] = None
        self._ka_idle = 45.0
        self._ka_timeout = 15.0
        self.last_reply = 0.0
        try:
            loop: Optional[asyncio.AbstractEventLoop] = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._init_futures(loop)

    def _init_futures(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.core.clock = loop.time
        self._std_futures = type(loop).create_future is _BASE_CREATE_FUTURE
        self.auth_future: asyncio.Future[Any] = loop.create_future()
        self._closed_future = loop.create_future()

    def __repr__(self) -> str:
        state = 'connected' if self.is_connected() else 'closed'
        return (f'<{type(self).__name__} user={self._username!r} '
                f'db={self._dbname!r} {state} pending={len(self.core.pending)}>')

    # ----------------------------------------------------------- hooks
    def on_connection_made(self) -> None:
        """Called when the transport is up (before AUTH is answered)."""

    def on_authenticated(self) -> None:
        """Called when the server accepted the AUTH request."""

    def on_connection_lost(self, exc: Optional[BaseException]) -> None:
        """Called when the connection closed; pending requests already failed."""

    # -------------------------------------------------------- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is None or self._closed_future is None:
            self._init_futures(loop)
        self._loop = loop
        self.core.clock = loop.time
        self._std_futures = type(loop).create_future is _BASE_CREATE_FUTURE
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self.last_reply = loop.time()
        logger.debug('connection made: %r', self)
        self.on_connection_made()
        if self._username is None:
            if not self.auth_future.done():
                self.auth_future.set_result(True)
            return
        fut = self.send_package(
            pm.CPROTO_REQ_AUTH, [self._username, self._password, self._dbname],
            timeout=self.auth_timeout)
        fut.add_done_callback(self._on_auth_reply)

    def _on_auth_reply(self, fut: asyncio.Future[Any]) -> None:
        auth = self.auth_future
        if fut.cancelled():
            if not auth.done():
                auth.cancel()
            return
        exc = fut.exception()
        if auth.done():
            return
        if exc is not None:
            auth.set_exception(exc)
            logger.debug('authentication failed: %s', exc)
            return
        self._authenticated = True
        auth.set_result(True)
        self.on_authenticated()

    def data_received(self, data: bytes) -> None:
        if self._loop is not None:
            self.last_reply = self._loop.time()
        exc = self.core.receive(data)
        if exc is not None:
            self.abort(exc)

    def eof_received(self) -> Optional[bool]:
        return False  # close the transport

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        reason = f': {exc}' if exc is not None else ''
        self._fail_all(lambda: ConnectionLostError(f'connection lost{reason}'))
        if self._transport is not None:
            # marks a TLS app transport closed too (Python < 3.11 warns otherwise)
            self._transport.close()
        self._transport = None
        self._wbuf = []
        self._authenticated = False
        if self._ka_handle is not None:
            self._ka_handle.cancel()
            self._ka_handle = None
        logger.debug('connection lost: %r%s', self, reason)
        try:
            self.on_connection_lost(exc)
        finally:
            for cb in self._lost_callbacks:
                try:
                    cb(self, exc)
                except Exception:  # a listener must not break the others
                    logger.exception('connection-lost callback failed')
            if self._closed_future is not None and not self._closed_future.done():
                self._closed_future.set_result(None)

    # --------------------------------------------------------- requests
    def send_package(self, tipe: int, data: Any = None, is_binary: bool = False,
                     timeout: Optional[float] = 3600) -> asyncio.Future[Any]:
        """Send one request; the future resolves with the decoded reply.

        Raises ``ConnectionLostError`` at once when the connection is closed.
        ``timeout`` None waits forever; else the future fails with
        ``RequestTimeoutError`` (also a ``TimeoutError``).
        """
        loop = self._loop
        if loop is None or not self.is_connected():
            raise ConnectionLostError('connection is closed')
        if len(self.core.pending) >= PID_SPACE:
            self._check_free()  # raises: no request id is free
        if data is None:
            body = b''
        elif is_binary:
            body = data if type(data) is bytes else bytes(data)
        else:
            body = packb(data)
        return self.send_body(tipe, body,
                              _INF if timeout is None else loop.time() + timeout,
                              timeout)

    def send_body(self, tipe: int, body: bytes, deadline: float,
                  timeout: Optional[float]) -> asyncio.Future[Any]:
        """``send_package`` for an already packed ``body`` with an absolute
        ``deadline`` (loop time, inf for none); ``timeout`` is what a
        ``RequestTimeoutError`` message reports. The pool's request path."""
        transport = self._transport
        loop = self._loop
        if transport is None or loop is None or transport.is_closing():
            raise ConnectionLostError('connection is closed')
        if len(body) > MAX_PAYLOAD:
            raise RequestTooLargeError(
                f'request payload is {len(body)} bytes, more than '
                f'the server accepts ({MAX_PAYLOAD}); nothing was sent')
        fut: asyncio.Future[Any] = (_Future(loop=loop) if self._std_futures
                                    else loop.create_future())
        try:
            pid = self.core.start(tipe, fut, deadline, timeout)
        except ConnectionLostError as exc:
            self.abort(exc)  # reserved pids fill the space: drop the connection
            raise
        if deadline < self._timer_at:
            self._arm_timer(loop, deadline)
        header = _pack_header(len(body), pid, tipe, tipe ^ 0xFF)
        # writes made in one loop iteration go out in one system call, or in
        # one per WRITE_BATCH requests, so the server can start on the first
        # ones while the rest are being made
        if len(body) >= BIG_WRITE:
            # a big body goes out as it is, after what is queued, instead of
            # being copied behind its header (one more buffer of its size
            # per request, which malloc may take fresh from the OS each time)
            self._wbuf.append(header)  # leaves with what is queued
            self._write_now()
            transport.write(body)
            return fut
        wbuf = self._wbuf
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        wbuf.append(header + body)
        if len(wbuf) >= WRITE_BATCH:
            self._write_now()
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._write_now()

    def _write_now(self) -> None:
        wbuf = self._wbuf
        if not wbuf:
            return
        self._wbuf = []
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(wbuf[0] if len(wbuf) == 1 else b''.join(wbuf))

    # --------------------------------------------------------- timeouts
    def _arm_timer(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._on_deadline)
        self._timer_at = when

    def _check_free(self) -> None:
        try:
            self.core.check_free()
        except ConnectionLostError as exc:
            self.abort(exc)
            raise

    def _on_deadline(self) -> None:
        """Fail the requests whose deadline passed; arm for the next live one."""
        loop = self._loop
        limit = self._timer_at
        self._timer = None
        self._timer_at = _INF
        if loop is None:
            return
        when = self.core.expire(max(limit, loop.time()))
        if when != _INF:
            self._arm_timer(loop, when)

    def _fail_all(self, make_exc: Callable[[], BaseException]) -> None:
        self.core.fail_all(make_exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = _INF

    # ----------------------------------------------------------- state
    def is_connected(self) -> bool:
        """The transport is open (authenticated or not)."""
        t = self._transport
        return t is not None and not t.is_closing()

    @property
    def connected(self) -> bool:
        return self.is_connected()

    @property
    def is_authenticated(self) -> bool:
        return self._authenticated and self.is_connected()

    @property
    def pending(self) -> int:
        """Requests waiting for a reply, reserved pids included."""
        return len(self.core.pending)

    @property
    def transport(self) -> Optional[asyncio.Transport]:
        return self._transport

    def add_lost_callback(self, cb: LostCallback) -> None:
        """``cb(protocol, exc)`` is called once when the connection closes."""
        self._lost_callbacks.append(cb)

    def close(self, exc: Optional[SiriDBError] = None) -> None:
        """Close the connection; pending requests fail at once."""
        transport = self._transport
        if exc is None:
            exc = ClientClosedError('connection closed by the client')
        err = exc
        self._fail_all(lambda: type(err)(str(err), err.tp))
        if transport is not None and not transport.is_closing():
            transport.close()

    def abort(self, exc: SiriDBError) -> None:
        """Drop the connection after a protocol error; pending requests fail."""
        logger.error('closing connection: %s', exc)
        err = exc
        self._fail_all(lambda: type(err)(str(err), err.tp))
        transport = self._transport
        if transport is not None:
            transport.abort()

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (``connection_lost`` ran)."""
        if self._closed_future is not None and self._transport is not None:
            await asyncio.shield(self._closed_future)

    # -------------------------------------------------------- keepalive
    def start_keepalive(self, idle: float = 45.0, timeout: float = 15.0) -> None:
        """PING after ``idle`` seconds without any reply; a ping failing (no
        ACK within ``timeout``) closes the connection."""
        self._ka_idle = idle
        self._ka_timeout = timeout
        self._schedule_keepalive()

    def _schedule_keepalive(self) -> None:
        loop = self._loop
        if loop is None or not self.is_connected():
            return
        if self._ka_handle is not None:
            self._ka_handle.cancel()
        self._ka_handle = loop.call_at(self.last_reply + self._ka_idle,
                                       self._keepalive_check)

    def _keepalive_check(self) -> None:
        self._ka_handle = None
        loop = self._loop
        if loop is None or not self.is_connected():
            return
        if loop.time() < self.last_reply + self._ka_idle:
            self._schedule_keepalive()
            return
        try:
            fut = self.send_package(pm.CPROTO_REQ_PING, timeout=self._ka_timeout)
        except SiriDBError:
            return
        fut.add_done_callback(self._keepalive_done)

    def _keepalive_done(self, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is None:
            self._schedule_keepalive()
            return
        if self.is_connected():
            # a failed ping (no ACK in time, or an error such as a server
            # shutting down) closes the connection; the pool reconnects
            logger.warning('keepalive ping failed (%s); closing %r', exc, self)
            assert self._transport is not None
            self._transport.abort()


async def open_protocol(factory: Callable[[], SiriDBProtocol], host: str = '127.0.0.1',
                        port: int = DEFAULT_CLIENT_PORT, *, timeout: Optional[float] = 10,
                        ssl: Optional[_ssl.SSLContext] = None,
                        unix_path: Optional[str] = None,
                        server_hostname: Optional[str] = None) -> SiriDBProtocol:
    """Connect (TCP, or a unix socket when ``unix_path`` is given) and wait for
    AUTH, all within ``timeout``; on any failure the transport is closed."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout

    def make() -> SiriDBProtocol:
        protocol = factory()
        protocol.auth_timeout = timeout  # the AUTH reply shares the deadline
        return protocol

    try:
        if unix_path is not None:
            coro = loop.create_unix_connection(make, unix_path, ssl=ssl,
                                               server_hostname=server_hostname)
        else:
            coro = loop.create_connection(
                make, host, port, ssl=ssl,
                server_hostname=(server_hostname or host) if ssl is not None else None)
        _transport, protocol = await asyncio.wait_for(coro, timeout)
    except asyncio.TimeoutError:
        where = unix_path or f'{host}:{port}'
        raise RequestTimeoutError(
            f'could not connect to {where} within {timeout:g} s') from None
    remaining = None if deadline is None else max(0.0, deadline - loop.time())
    try:
        await asyncio.wait_for(asyncio.shield(protocol.auth_future), remaining)
    except asyncio.TimeoutError:
        protocol.auth_future.add_done_callback(_mark_retrieved)
        protocol.close()
        raise RequestTimeoutError(
            f'no authentication reply within {timeout:g} s') from None
    except BaseException:
        protocol.auth_future.add_done_callback(_mark_retrieved)
        protocol.close()
        raise
    return protocol
