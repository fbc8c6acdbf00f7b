"""The wire side of the embedded server: one asyncio protocol per connection.

Decodes packages with the shared codec and answers each the way SiriDB 2.0.55
does: PING, AUTH (again later to switch database/user), QUERY, INSERT and
SERVICE; no reply to unknown types or malformed AUTH/QUERY bodies; a bad
header (check byte, size over 40 MiB, or over ``Limits.pre_auth_max_body``
before authentication) closes the connection.

Checks, one layer each: this wire layer owns authentication, a paused
server and each request's shape and size; rights and pool checks are
``access.py``'s (the executor applies them to statements, ``_insert`` to
inserts); the time precision's meaning is the executor's.

Requests wait in a queue and are handled for about ``Limits.time_slice`` at
a time before other connections get their turn (a big insert is a job that
goes on over several turns, see ``bulk.py``, and so is the reply to a select
with a big answer, see ``reply.py``); a connection whose client does not read
its replies is not read from (see ``limits.py``). The process-wide state of
the cyclic GC is left alone: the server often runs inside a user's process.
"""
from __future__ import annotations

import asyncio
import logging
import math
import re
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, Dict, Iterator, List, Optional, Tuple

from ..wire import types as pm
from ..wire.decode import Decoder, Package, unpack_body
from ..wire.errors import WireError
from ..wire.framing import HEADER, MAX_PAYLOAD, MAX_QUERY, pack
from .access import POOL_DOWN_INSERT, check_pools, check_right
from .bulk import BULK_BODY, apply_steps, decode_steps, insert_steps
from .context import QueryFailure
from .engine import Login
from .faults import InsertRequest
from .insert import ERR_MAP_OR_ARRAY, success_msg
from .query import changes, prepare
from .query.select import deferred_rows
from .reply import has_rows, pack_steps
from .service import serve_request
from .store import Database, User

if TYPE_CHECKING:  # pragma: no cover
    from .server import EmbeddedServer

__all__ = ['ServerProtocol', 'LARGE_PACKAGE', 'POOL_DOWN_INSERT',
           'redact_query', 'INT_OUT_OF_RANGE']

log = logging.getLogger('siridb.embedded')

#: packages larger than this draw a warning in the log, like the real server
#: (here at most one per 10 s)
LARGE_PACKAGE = 2 * 1024 * 1024

QUERY_TOO_LONG = 'Query too long.'
INTERNAL_ERROR = 'Query failed: internal error of the embedded server.'
REQUEST_FAILED = 'Request failed: internal error of the embedded server.'
#: a result holding an integer qpack cannot carry (e.g. the largest
#: time-stamp of a database read back in a finer time precision)
INT_OUT_OF_RANGE = ('Query failed: the result holds an integer out of the '
                    'signed 64-bit range (a time-stamp converted to a finer '
                    'time precision, or an aggregate); ask for a coarser time '
                    'precision.')

#: the word ``password`` and everything after it (a query's text in the log)
_PASSWORD = re.compile(r'password.*', re.IGNORECASE | re.DOTALL)


def redact_query(query: str, limit: int = 200) -> str:
    """A query's text fit for the log: at most ``limit`` characters, and
    nothing after the word ``password`` (``create user .. set password``)."""
    return _PASSWORD.sub('password <redacted>', query[:limit])

#: replies gathered while requests are handled leave in one write once they
#: reach this size (or the slice ends)
_FLUSH_BYTES = 65_536
#: bytes of a big reply written per step (see ``_reply_steps``)
_WRITE_STEP = 1_048_576
#: how often a connection waiting for the total reply budget looks again
_BUDGET_POLL = 0.02
#: wait for an event (resume_writing), not for a timer
_EVENT = math.inf
#: how often a change waits for another connection's big insert to be stored
_WRITER_POLL = 0.005
#: login answers (reply types) that count as failed logins
_LOGIN_FAILED = frozenset((pm.CPROTO_ERR_AUTH_CREDENTIALS,
                           pm.CPROTO_ERR_AUTH_UNKNOWN_DB))

_CLIENT_TYPES = frozenset((
    pm.CPROTO_REQ_QUERY, pm.CPROTO_REQ_INSERT, pm.CPROTO_REQ_AUTH,
    pm.CPROTO_REQ_PING, pm.CPROTO_REQ_SERVICE))


class ServerProtocol(asyncio.Protocol):
    """One client connection of an ``EmbeddedServer``."""

    def __init__(self, server: EmbeddedServer) -> None:
        self._server = server
        self._engine = server.engine
        self._limits = server.limits
        # bodies before authentication are capped from their header on
        self._decoder = Decoder(min(self._limits.pre_auth_max_body, MAX_PAYLOAD))
        self._login = Login()
        self._transport: Optional[asyncio.Transport] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        #: decoded requests not handled yet (reading pauses meanwhile)
        self._queue: Deque[Package] = deque()
        #: a request handled over several turns; yields how long to wait
        #: before it goes on (0: at the next turn)
        self._job: Optional[Iterator[float]] = None
        self._wake: Optional[asyncio.Handle] = None
        #: the stream broke after the queued requests: close once done
        self._fault: Optional[WireError] = None
        #: replies of the requests being handled, written together (one
        #: send per batch of requests instead of one per reply)
        self._out: Optional[List[bytes]] = None
        self._out_size = 0
        #: replies held while a big reply is written in parts (over turns)
        self._held: Optional[List[bytes]] = None
        #: replies to changes waiting for the engine's next fsync
        self._acks: List[bytes] = []
        self._authed = False
        #: this connection's share of the server's pre-auth buffer count
        self._pre_auth_counted = 0
        self._last_request = 0.0
        self._idle: Optional[asyncio.TimerHandle] = None
        self._write_paused = False
        self._read_paused = False
        self._accepted = False
        self.peer = '?'
        #: the peer's address without the port (per-peer login delay)
        self.peer_host = '?'

    # -- asyncio.Protocol ----------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._loop = loop = asyncio.get_running_loop()
        peer = transport.get_extra_info('peername')
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f'{peer[0]}:{peer[1]}'
            self.peer_host = str(peer[0])
        elif peer:
            self.peer = self.peer_host = str(peer)
        server = self._server
        limits = self._limits
        if limits.max_connections and \
                len(server.connections) >= limits.max_connections:
            server.log_limited(
                'connections', 'closing connection from %s: %d connections '
                'open (max_connections)', self.peer, len(server.connections))
            transport.abort()
            return
        self._accepted = True
        server.connections.add(self)
        transport.set_write_buffer_limits(
            high=limits.reply_high_water, low=limits.reply_low_water)
        if limits.pre_auth_idle_timeout > 0:
            self._last_request = loop.time()
            self._idle = loop.call_later(limits.pre_auth_idle_timeout,
                                         self._check_idle)
        log.debug('%s: connection from %s', server.name, self.peer)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._accepted:
            self._server.connections.discard(self)
        self._count_pre_auth(0)
        for handle in (self._idle, self._wake):
            if handle is not None:
                handle.cancel()
        self._idle = self._wake = None
        job, self._job = self._job, None
        if job is not None:
            if self._engine.bulk_writer is self and self._loop is not None:
                # an insert half stored (and logged): store the rest, so that
                # memory holds what a restart would replay
                self._loop.call_soon(self._finish, job)
            elif hasattr(job, 'close'):
                job.close()  # runs its clean-up
        self._queue.clear()
        if self._transport is not None:
            self._transport.close()  # a TLS transport warns on Python < 3.11 otherwise
        self._transport = None

    def _finish(self, job: Iterator[float]) -> None:
        """Run a job of a closed connection to its end, a time slice at a
        time (its replies go nowhere)."""
        assert self._loop is not None
        deadline = self._loop.time() + self._limits.time_slice
        for pause in job:
            if pause > 0 or self._loop.time() >= deadline:
                self._loop.call_later(max(pause, 0.0), self._finish, job)
                return

    def pause_writing(self) -> None:
        """The client does not read its replies fast enough: stop taking
        its requests until they drain (``resume_writing``)."""
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._schedule(0.0)
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if not self._accepted:
            return
        try:
            packages = self._decoder.feed(data)
        except WireError as exc:
            packages = exc.packages  # intact requests before the fault
            self._fault = exc
        if not self._authed:
            self._count_pre_auth(self._decoder.buffered)
            server = self._server
            if server.pre_auth_buffered > self._limits.pre_auth_buffer_budget:
                server.log_limited(
                    'pre-auth-budget', 'closing connection from %s: '
                    'unauthenticated connections buffer %d bytes '
                    '(pre_auth_buffer_budget)', self.peer,
                    server.pre_auth_buffered)
                self.abort()
                return
        self._queue.extend(packages)
        if self._wake is None and self._job is None:
            self._pump()
        else:
            self._update_reading()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    @property
    def unsent(self) -> int:
        """Bytes of replies written but not yet sent to the client."""
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    # -- the request queue ---------------------------------------------

    def _pump(self) -> None:
        """Handle queued requests until the queue is empty, the time slice
        is used up, or the replies wait for the client (see ``_blocked``)."""
        self._wake = None
        transport = self._transport
        loop = self._loop
        if transport is None or loop is None or transport.is_closing():
            return
        deadline = loop.time() + self._limits.time_slice
        wait: Optional[float] = None
        self._out = []
        self._out_size = 0
        try:
            while True:
                if self._job is not None:
                    try:
                        pause = next(self._job)
                    except StopIteration:
                        self._job = None
                        continue
                    except Exception:  # a bug: drop the connection, not the server
                        self._job = None
                        log.exception('%s: error in a request of %s',
                                      self._server.name, self.peer)
                        self.abort()
                        break
                    if pause > 0:
                        wait = pause
                        break
                elif self._queue:
                    blocked = self._blocked()
                    if blocked:
                        wait = blocked
                        break
                    self._handle_safe(self._queue.popleft())
                else:
                    if self._fault is not None:
                        self._flush()
                        self._server.log_limited(
                            'fault', 'closing connection from %s: %s',
                            self.peer, self._fault)
                        self.abort()
                    break
                if transport.is_closing():
                    break
                if loop.time() >= deadline:
                    wait = 0.0
                    break
        finally:
            self._flush()
            self._out = None
        if wait is not None:
            self._schedule(wait)
        self._update_reading()

    def _blocked(self) -> float:
        """0 when the next request may be handled; else how long to wait
        (``_EVENT``: until the client reads its replies)."""
        transport = self._transport
        assert transport is not None
        writer = self._engine.bulk_writer
        if writer is not None and writer is not self and \
                _changes_store(self._queue[0]):
            return _WRITER_POLL
        unsent = transport.get_write_buffer_size() + self._out_size
        if not unsent:
            return 0.0
        limits = self._limits
        if unsent > limits.reply_high_water:
            self._flush()  # the transport calls pause_writing
            if self._write_paused:
                return _EVENT
        if self._write_paused:
            return _EVENT
        if limits.reply_budget and \
                self._server.unsent_total() + self._out_size > limits.reply_budget:
            # others hold the budget: only a connection with nothing unsent
            # goes on, so a client that reads its replies is never starved
            self._flush()
            return _BUDGET_POLL
        return 0.0

    def _schedule(self, wait: float) -> None:
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        if self._transport is None or self._loop is None or wait == _EVENT:
            return
        if wait <= 0:
            self._wake = self._loop.call_soon(self._pump)
        else:
            self._wake = self._loop.call_later(wait, self._pump)

    def _update_reading(self) -> None:
        """Read from the client only while nothing of it waits: no queued
        request, no request in progress, no replies above the high water."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        pause = bool(self._queue) or self._job is not None or \
            self._write_paused
        if pause != self._read_paused:
            self._read_paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _handle_safe(self, pkg: Package) -> None:
        if not self._authed and self._loop is not None:
            self._last_request = self._loop.time()
        try:
            self._handle(pkg)
        except Exception:  # never let one request kill the server
            log.exception('%s: error handling a package of type %d from %s',
                          self._server.name, pkg.tp, self.peer)
            self._send(pkg.pid, pm.CPROTO_ERR_MSG,
                       {'error_msg': REQUEST_FAILED})

    # -- limits before authentication ----------------------------------

    def _count_pre_auth(self, buffered: int) -> None:
        self._server.pre_auth_buffered += buffered - self._pre_auth_counted
        self._pre_auth_counted = buffered

    def _set_authed(self) -> None:
        if self._authed:
            return
        self._authed = True
        self._decoder.max_payload = MAX_PAYLOAD
        self._count_pre_auth(0)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _check_idle(self) -> None:
        self._idle = None
        loop = self._loop
        if self._authed or self._transport is None or loop is None:
            return
        timeout = self._limits.pre_auth_idle_timeout
        left = self._last_request + timeout - loop.time()
        if left > 0:
            self._idle = loop.call_later(left, self._check_idle)
            return
        self._server.log_limited(
            'idle', 'closing connection from %s: no request for %g s '
            'before authentication (pre_auth_idle_timeout)', self.peer,
            timeout)
        self.abort()

    def _answer_login(self, reply: bytes, failed: bool, ack: bool) -> None:
        """Send the answer to a login (AUTH or SERVICE), after the peer's
        delay for failed logins, if any; this connection waits meanwhile."""
        assert self._loop is not None
        now = self._loop.time()
        at = self._server.throttle.answer_at(self.peer_host, failed, now)
        if failed:
            self._server.log_limited(
                'login', 'failed login from %s', self.peer, level=logging.INFO)
        if at <= now:
            self._ack(reply) if ack else self._write(reply)
        else:
            self._job = self._answer_later(at, reply, ack)

    def _answer_later(self, at: float, reply: bytes, ack: bool) -> Iterator[float]:
        loop = self._loop
        assert loop is not None
        while (left := at - loop.time()) > 0:
            yield left
        self._ack(reply) if ack else self._write(reply)

    # -- requests ------------------------------------------------------

    def _send(self, pid: int, tp: int, data: Any = None) -> None:
        self._write(pack(pid, tp, data))

    def _error(self, pid: int, tp: int, msg: str) -> None:
        self._send(pid, tp, {'error_msg': msg})

    def _handle(self, pkg: Package) -> None:
        tp = pkg.tp
        if tp not in _CLIENT_TYPES:
            log.debug('%s: no reply to package type %d from %s',
                      self._server.name, tp, self.peer)
            return
        server = self._server
        if len(pkg.body) > LARGE_PACKAGE:
            server.log_limited('large', 'large package from %s: %d bytes',
                               self.peer, len(pkg.body))
        if tp == pm.CPROTO_REQ_INSERT:
            self._insert(pkg)  # checks auth and the insert right first
        elif server.paused:
            self._error(pkg.pid, pm.CPROTO_ERR_SERVER, server.paused_msg)
        elif tp == pm.CPROTO_REQ_QUERY:
            self._query(pkg)
        elif tp == pm.CPROTO_REQ_PING:
            self._send(pkg.pid, pm.CPROTO_RES_ACK)
        elif tp == pm.CPROTO_REQ_AUTH:
            self._auth(pkg)
        else:
            self._service(pkg)

    def _auth(self, pkg: Package) -> None:
        if len(pkg.body) > self._limits.pre_auth_max_body:
            return  # no login is that big: not decoded, no reply (malformed)
        try:
            data = unpack_body(pkg.body)
        except WireError:
            return
        tp = self._engine.authenticate(self._login, data)
        if tp is None:
            return
        if tp == pm.CPROTO_RES_AUTH_SUCCESS:
            self._set_authed()
        self._answer_login(pack(pkg.pid, tp), tp in _LOGIN_FAILED, ack=False)

    def _logged_in(self, pid: int) -> Optional[Tuple[Database, User]]:
        """The connection's database and user; None (answered: not
        authenticated) unless its login still holds."""
        resolved = self._engine.resolve(self._login)
        if resolved is None:
            self._send(pid, pm.CPROTO_ERR_NOT_AUTHENTICATED)
        return resolved

    def _query(self, pkg: Package) -> None:
        pid = pkg.pid
        resolved = self._logged_in(pid)
        if resolved is None:
            return
        if len(pkg.body) > MAX_QUERY:
            self._error(pid, pm.CPROTO_ERR_QUERY, QUERY_TOO_LONG)
            return
        try:
            data = unpack_body(pkg.body)
        except WireError:
            return
        if type(data) is not list or not 1 <= len(data) <= 2:
            return
        query = data[0]
        precision = data[1] if len(data) == 2 else None
        if isinstance(query, bytes):
            try:
                query = query.decode('utf-8')
            except UnicodeDecodeError:
                return
        if type(query) is not str or not (
                precision is None or type(precision) is int):
            return
        db, user = resolved
        ctx = self._server.query_context(db, user)
        try:
            with deferred_rows():  # big answers are packed in steps (a job)
                result, changed = self._engine.query(ctx, query, precision)
            if has_rows(result):
                self._job = self._reply_steps(pid, result, query)
                return
            body = pack(pid, pm.CPROTO_RES_QUERY, result)
        except QueryFailure as exc:
            self._error(pid, exc.tp, exc.msg)
            return
        except Exception as exc:
            self._query_crashed(pid, query, exc)
            return
        if changed:
            self._ack(body)
        else:
            self._write(body)

    def _query_crashed(self, pid: int, query: str, exc: Exception) -> None:
        """Answer a query that raised something unexpected: an int outside
        int64 has a clear text; anything else is logged (without passwords)
        and answered as an internal error."""
        if isinstance(exc, OverflowError):
            self._error(pid, pm.CPROTO_ERR_QUERY, INT_OUT_OF_RANGE)
            return
        log.error('%s: query failed: %r', self._server.name, redact_query(query),
                  exc_info=exc)
        self._error(pid, pm.CPROTO_ERR_QUERY, INTERNAL_ERROR)

    def _reply_steps(self, pid: int, result: Dict[str, Any],
                     query: str) -> Iterator[float]:
        """The reply to a select with a big answer, made and packed a slice
        of rows at a time (see reply.py) while other connections go on."""
        tp = pm.CPROTO_RES_QUERY
        try:
            parts = yield from pack_steps(result)
        except Exception as exc:
            self._query_crashed(pid, query, exc)
            return
        del result
        # written a part at a time over several turns (no copy of the whole
        # in one go); other replies of this connection wait meanwhile
        held: List[bytes] = []
        self._held = held
        try:
            self._emit(HEADER.pack(sum(map(len, parts)), pid, tp, tp ^ 0xFF))
            step = 0
            for part in parts:
                self._emit(part)
                step += len(part)
                if step >= _WRITE_STEP:
                    step = 0
                    yield 0.0
        finally:
            self._held = None
            for data in held:
                self._write(data)

    def _ack(self, data: bytes) -> None:
        """Send the reply to a change once the change is durable. While the
        engine waits for its fsync, this connection's replies are gathered
        and leave in one write when it is done."""
        if not self._engine.defers_acks:
            self._write(data)
            return
        acks = self._acks
        if not acks:
            self._engine.commit(self._send_acks, self._acks_failed)
        acks.append(data)

    def _send_acks(self) -> None:
        acks, self._acks = self._acks, []
        if acks:
            self._write(acks[0] if len(acks) == 1 else b''.join(acks))

    def _acks_failed(self) -> None:
        self._acks = []
        self.abort()

    def _write(self, data: bytes) -> None:
        if self._held is not None:  # a reply is being written in parts
            self._held.append(data)
            return
        self._emit(data)

    def _emit(self, data: bytes) -> None:
        out = self._out
        if out is not None:  # inside _pump: sent in batches
            out.append(data)
            self._out_size += len(data)
            if self._out_size >= _FLUSH_BYTES:
                self._flush()
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b''.join(out)
        out.clear()
        self._out_size = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _insert(self, pkg: Package) -> None:
        pid = pkg.pid
        resolved = self._logged_in(pid)
        if resolved is None:
            return
        db, user = resolved
        server = self._server
        try:
            check_right(user, 'insert')
            if server.paused:
                raise QueryFailure(pm.CPROTO_ERR_SERVER, server.paused_msg)
            check_pools(server.pool_down, 'insert')
        except QueryFailure as exc:
            self._error(pid, exc.tp, exc.msg)
            return
        if len(pkg.body) > BULK_BODY and server.faults is None:  # faults: every insert
            self._job = self._bulk_insert(pkg, db)
            return
        try:
            data = unpack_body(pkg.body, depth_bound=pkg.depth_bound)
        except WireError:
            self._error(pid, pm.CPROTO_ERR_INSERT, ERR_MAP_OR_ARRAY)
            return
        faults = server.faults
        if faults is not None:  # test-only fault modes decide what happens
            faults.insert(InsertRequest(self._engine, db, data, pkg.body, pid,
                                        self._ack, self.abort))
            return
        try:
            n = self._engine.insert(db, data, pkg.body)
        except QueryFailure as exc:
            self._error(pid, exc.tp, exc.msg)
            return
        server.info.received_points += n  # as the real server counts them
        reply = pack(pid, pm.CPROTO_RES_INSERT, {'success_msg': success_msg(n)})
        self._ack(reply)

    def _bulk_insert(self, pkg: Package, db: Database) -> Iterator[float]:
        """A big insert in steps (see bulk.py): decode and validate while
        other connections go on, then store it while no other change runs."""
        pid = pkg.pid
        engine = self._engine
        try:
            data = yield from decode_steps(pkg.body, pkg.depth_bound)
        except WireError:
            self._error(pid, pm.CPROTO_ERR_INSERT, ERR_MAP_OR_ARRAY)
            return
        try:
            chunks = yield from insert_steps(db, data)
        except QueryFailure as exc:
            self._error(pid, exc.tp, exc.msg)
            return
        del data
        while engine.bulk_writer is not None:
            yield _WRITER_POLL
        engine.bulk_writer = self
        try:
            if chunks:
                engine.log_insert(db, pkg.body)
            n = yield from apply_steps(db, chunks)
        except QueryFailure as exc:  # its log write failed: nothing stored
            self._error(pid, exc.tp, exc.msg)
            return
        finally:
            engine.bulk_writer = None
        self._ack(pack(pid, pm.CPROTO_RES_INSERT, {'success_msg': success_msg(n)}))

    def _service(self, pkg: Package) -> None:
        data = None
        if len(pkg.body) <= self._limits.pre_auth_max_body:
            # no service request is bigger: one that is is invalid (97)
            # without being decoded
            try:
                data = unpack_body(pkg.body)
            except WireError:
                pass
        (tp, payload), failed = serve_request(self._engine, data)
        self._answer_login(pack(pkg.pid, tp, payload), failed, ack=True)


def _changes_store(pkg: Package) -> bool:
    """Whether a request may change the store (it then waits for a big
    insert of another connection to be stored completely)."""
    if pkg.tp in (pm.CPROTO_REQ_INSERT, pm.CPROTO_REQ_SERVICE):
        return True
    if pkg.tp != pm.CPROTO_REQ_QUERY or len(pkg.body) > MAX_QUERY:
        return False
    try:
        data = unpack_body(pkg.body)
    except WireError:
        return False
    query = data[0] if type(data) is list and data else None
    if isinstance(query, bytes):
        query = query.decode('utf-8', 'replace')
    if type(query) is not str:
        return False
    try:
        return changes(prepare(query))
    except QueryFailure:  # answered with an error: changes nothing
        return False
