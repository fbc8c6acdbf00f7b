"""The wire side of the embedded server: one asyncio protocol per connection.

Decodes packages with the shared codec and answers each the way SiriDB 2.0.55
does: PING, AUTH (again later to switch database/user), QUERY, INSERT and
SERVICE; no reply to unknown types or malformed AUTH/QUERY bodies; a bad
header (check byte, size over 40 MiB) closes the connection.
"""
from __future__ import annotations

import asyncio
import gc
import logging
from typing import TYPE_CHECKING, Any, List, Optional

from ..connector.lib import protomap as pm
from ..connector.lib.codec import MAX_QUERY, Decoder, Package, pack, unpack_body
from ..connector.lib.exceptions import ProtocolError
from .context import QueryFailure
from .engine import Session
from .faults import InsertRequest
from .insert import ERR_MAP_OR_ARRAY, success_msg
from .service import handle_service

if TYPE_CHECKING:  # pragma: no cover
    from .server import EmbeddedServer

__all__ = ['ServerProtocol', 'LARGE_PACKAGE', 'POOL_DOWN_INSERT']

log = logging.getLogger('siridb.embedded')

#: packages larger than this draw a warning in the log, like the real server
LARGE_PACKAGE = 2 * 1024 * 1024

POOL_DOWN_INSERT = \
    'At least one pool has no server available to process the request'
QUERY_TOO_LONG = 'Query too long.'
INTERNAL_ERROR = 'Query failed: internal error of the embedded server.'
REQUEST_FAILED = 'Request failed: internal error of the embedded server.'

_CLIENT_TYPES = frozenset((
    pm.CPROTO_REQ_QUERY, pm.CPROTO_REQ_INSERT, pm.CPROTO_REQ_AUTH,
    pm.CPROTO_REQ_PING, pm.CPROTO_REQ_SERVICE))


class ServerProtocol(asyncio.Protocol):
    """One client connection of an ``EmbeddedServer``."""

    def __init__(self, server: EmbeddedServer) -> None:
        self._server = server
        self._engine = server.engine
        self._decoder = Decoder()
        self._session = Session()
        self._transport: Optional[asyncio.Transport] = None
        #: replies of the packages being handled, written together (one
        #: send per batch of requests instead of one per reply)
        self._out: Optional[List[bytes]] = None
        #: replies to changes waiting for the engine's next fsync
        self._acks: List[bytes] = []
        self.peer = '?'

    # -- asyncio.Protocol ----------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info('peername')
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f'{peer[0]}:{peer[1]}'
        elif peer:
            self.peer = str(peer)
        self._server.connections.add(self)
        log.debug('%s: connection from %s', self._server.name, self.peer)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._server.connections.discard(self)
        if self._transport is not None:
            self._transport.close()  # a TLS transport warns on Python < 3.11 otherwise
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            packages = self._decoder.feed(data)
        except ProtocolError as exc:
            self._handle_all(exc.packages)  # intact requests before the fault
            log.warning('%s: closing connection from %s: %s',
                        self._server.name, self.peer, exc)
            self.abort()
            return
        self._handle_all(packages)

    def _handle_all(self, packages: List[Package]) -> None:
        if not packages:
            return
        # Requests build and decode millions of small lists (points); the
        # cyclic GC would scan them again and again (3x the time of a big
        # select), so it is paused while requests run and resumed after.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        out: List[bytes] = []
        self._out = out
        try:
            for pkg in packages:
                if self._transport is None or self._transport.is_closing():
                    return
                try:
                    self._handle(pkg)
                except Exception:  # never let one request kill the server
                    log.exception('%s: error handling a package of type %d '
                                  'from %s', self._server.name, pkg.tp,
                                  self.peer)
                    self._send(pkg.pid, pm.CPROTO_ERR_MSG,
                               {'error_msg': REQUEST_FAILED})
        finally:
            self._out = None
            if out:
                self._write(out[0] if len(out) == 1 else b''.join(out))
            if gc_was_enabled:
                gc.enable()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

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
        if len(pkg.body) > LARGE_PACKAGE:
            log.warning('%s: large package from %s: %d bytes',
                        self._server.name, self.peer, len(pkg.body))
        server = self._server
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
        try:
            data = unpack_body(pkg.body)
        except ProtocolError:
            return
        tp = self._engine.authenticate(self._session, data)
        if tp is not None:
            self._send(pkg.pid, tp)

    def _query(self, pkg: Package) -> None:
        pid = pkg.pid
        resolved = self._engine.resolve(self._session)
        if resolved is None:
            self._send(pid, pm.CPROTO_ERR_NOT_AUTHENTICATED)
            return
        if len(pkg.body) > MAX_QUERY:
            self._error(pid, pm.CPROTO_ERR_QUERY, QUERY_TOO_LONG)
            return
        try:
            data = unpack_body(pkg.body)
        except ProtocolError:
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
        if precision is not None and not 0 <= precision <= 3:
            self._error(pid, pm.CPROTO_ERR_QUERY,
                        f'Invalid time precision: {precision} (expecting '
                        f'0=s, 1=ms, 2=us, 3=ns or None)')
            return
        db, user = resolved
        ctx = self._server.query_context(db, user)
        try:
            result, changed = self._engine.query(ctx, query, precision)
            body = pack(pid, pm.CPROTO_RES_QUERY, result)
        except QueryFailure as exc:
            self._error(pid, exc.tp, exc.msg)
            return
        except Exception:
            log.exception('%s: query failed: %.200r', self._server.name, query)
            self._error(pid, pm.CPROTO_ERR_QUERY, INTERNAL_ERROR)
            return
        if changed:
            self._ack(body)
        else:
            self._write(body)

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
        out = self._out
        if out is not None:  # inside _handle_all: sent once it is done
            out.append(data)
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _insert(self, pkg: Package) -> None:
        pid = pkg.pid
        resolved = self._engine.resolve(self._session)
        if resolved is None:
            self._send(pid, pm.CPROTO_ERR_NOT_AUTHENTICATED)
            return
        db, user = resolved
        if not user.has('insert'):
            self._error(pid, pm.CPROTO_ERR_USER_ACCESS,
                        f"Access denied. User '{user.name}' has no 'insert' "
                        f"privileges.")
            return
        server = self._server
        if server.paused:
            self._error(pid, pm.CPROTO_ERR_SERVER, server.paused_msg)
            return
        if server.pool_down:
            self._error(pid, pm.CPROTO_ERR_POOL, POOL_DOWN_INSERT)
            return
        try:
            data = unpack_body(pkg.body, depth_bound=pkg.depth_bound)
        except ProtocolError:
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
        reply = pack(pid, pm.CPROTO_RES_INSERT, {'success_msg': success_msg(n)})
        self._ack(reply)

    def _service(self, pkg: Package) -> None:
        try:
            data = unpack_body(pkg.body)
        except ProtocolError:
            data = None
        tp, payload = handle_service(self._engine, data)
        reply = pack(pkg.pid, tp, payload)
        self._ack(reply)
