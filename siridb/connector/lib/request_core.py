"""The sans-IO request core of one connection: pids, deadlines, reply routing.

No asyncio, no sockets, no timers (in the spirit of h11): the owner feeds it
what happens and acts on what it returns.

- ``start(tp, handle, deadline, timeout)`` reserves a pid for a request;
  ``handle`` is opaque to the core, anything with ``done()``,
  ``set_result(v)`` and ``set_exception(e)`` (an ``asyncio.Future`` in
  ``protocol.py``, a ``concurrent.futures.Future`` in the tests).
- ``receive(data)`` takes bytes from the server, completes handles with the
  decoded replies (or the server's errors) and returns a ``ProtocolError``
  when the connection must be closed (corrupt stream, a reply of the wrong
  type, a flood of replies for unknown pids), else None.
- ``expire(now)`` fails the requests whose deadline passed and returns when
  to call it next; ``fail_all(make_exc)`` ends every request.

A pid whose request timed out or was given up (its handle is done) stays
reserved until its reply arrives or the connection ends, so a late reply can
never complete another request.
"""
from __future__ import annotations

import logging
from heapq import heapify, heappop, heappush
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Protocol, Tuple

from ...wire import types as pm
from ...wire.decode import SAFE_BODY_SIZE, Decoder, unpack_body
from ...wire.errors import WireError
from ...wire.framing import PID_SPACE
from .exceptions import (
    ConnectionLostError,
    ProtocolError,
    RequestTimeoutError,
    SiriDBError,
    TooManyRequestsError,
    error_for_response,
)

__all__ = ['RequestCore', 'Handle', 'REPLY_TYPES', 'UNKNOWN_REPLY_LIMIT', 'timeout_error',
           'NO_DEADLINE']

logger = logging.getLogger('siridb.connector')


class Handle(Protocol):
    """What the core needs of a request's result holder."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


#: replies that resolve the request with the decoded payload
_SUCCESS = frozenset({
    pm.CPROTO_RES_QUERY, pm.CPROTO_RES_INSERT, pm.CPROTO_RES_AUTH_SUCCESS,
    pm.CPROTO_RES_ACK, pm.CPROTO_RES_INFO, pm.CPROTO_ACK_SERVICE,
    pm.CPROTO_ACK_SERVICE_DATA,
})

#: the reply types (besides errors, 64-191) that may answer each request
#: type, from the protocol (shared/siridb-protocol.md); any other known type
#: is a protocol violation (ProtocolError). Request types not listed (the
#: server-to-server ones, LOADDB) accept every success type.
_FILE = frozenset({pm.CPROTO_RES_FILE})
REPLY_TYPES: Dict[int, FrozenSet[int]] = {
    pm.CPROTO_REQ_QUERY: frozenset({pm.CPROTO_RES_QUERY}),
    pm.CPROTO_REQ_INSERT: frozenset({pm.CPROTO_RES_INSERT}),
    pm.CPROTO_REQ_AUTH: frozenset({pm.CPROTO_RES_AUTH_SUCCESS}),
    pm.CPROTO_REQ_PING: frozenset({pm.CPROTO_RES_ACK}),
    pm.CPROTO_REQ_INFO: frozenset({pm.CPROTO_RES_INFO}),
    pm.CPROTO_REQ_FILE_SERVERS: _FILE,
    pm.CPROTO_REQ_FILE_USERS: _FILE,
    pm.CPROTO_REQ_FILE_GROUPS: _FILE,
    pm.CPROTO_REQ_FILE_DATABASE: _FILE,
    pm.CPROTO_REQ_SERVICE: frozenset({pm.CPROTO_ACK_SERVICE, pm.CPROTO_ACK_SERVICE_DATA}),
}
#: every success type this driver knows; a reply of another non-error type
#: fails its request with UnknownResponseError
_KNOWN = _SUCCESS | _FILE
#: a connection is closed (ProtocolError) after more replies than this for
#: request ids that no request is waiting on: a correct server sends none
#: (the pid of a request that timed out or was cancelled stays reserved
#: until its late reply), so these are only tolerated as a rare glitch; the
#: first one is logged as a WARNING, the rest at DEBUG level
UNKNOWN_REPLY_LIMIT = 16
#: the deadline of a request that waits forever (or already timed out)
NO_DEADLINE = float('inf')
_INF = NO_DEADLINE
_RES_FILE = pm.CPROTO_RES_FILE
#: the deadline heap is rebuilt from the live entries when it holds more than
#: twice the pending requests plus this many (entries of answered requests)
_HEAP_SLACK = 1024

#: pid -> (handle, deadline (inf: none, or already timed out), timeout,
#: the reply types that may answer it (REPLY_TYPES))
Entry = Tuple[Handle, float, float, FrozenSet[int]]


def timeout_error(timeout: float) -> SiriDBError:
    """The error of a request that got no reply within ``timeout`` seconds."""
    return RequestTimeoutError(f'no reply from the server within {timeout:g} s')


def _never() -> float:
    return 0.0


class RequestCore:
    """The request state of one connection (see the module docstring).

    ``clock`` gives the current time on the deadlines' scale; it is read only
    around decoding a big reply, which may take long enough to pass its
    request's deadline.
    """

    __slots__ = ('pending', 'next_pid', 'deadlines', 'decoder', 'unknown_replies', 'clock',
                 '_closing')

    def __init__(self, clock: Callable[[], float] = _never) -> None:
        #: pid -> Entry, for every request waiting for a reply, reserved pids included
        self.pending: Dict[int, Entry] = {}
        #: the pid the next request gets unless it is reserved
        self.next_pid = 0
        #: a heap of (deadline, pid); entries of answered requests linger
        #: until they reach the top or the heap is compacted
        self.deadlines: List[Tuple[float, int]] = []
        self.decoder = Decoder(replies=True)
        #: replies for pids that no request holds (see UNKNOWN_REPLY_LIMIT)
        self.unknown_replies = 0
        self.clock = clock
        self._closing: Optional[ProtocolError] = None

    # ---------------------------------------------------------- requests
    def _allocate(self) -> int:
        pending = self.pending
        if len(pending) >= PID_SPACE:
            stale = sum(1 for entry in pending.values() if entry[0].done())
            if stale:
                # the bound of reserved pids: a connection that left this many
                # requests unanswered is dropped (the pool reconnects it)
                raise ConnectionLostError(
                    f'{stale} requests of this connection timed out or were '
                    f'cancelled without a reply; connection closed')
            raise TooManyRequestsError(
                'all 65536 request ids of this connection are waiting for a reply')
        pid = self.next_pid
        while pid in pending:
            pid = (pid + 1) & 0xFFFF
        self.next_pid = (pid + 1) & 0xFFFF
        return pid

    def check_free(self) -> None:
        """Raise what ``start`` would raise when no pid is free:
        ``TooManyRequestsError``, or ``ConnectionLostError`` when reserved
        pids of given-up requests fill the space (the connection must close)."""
        if len(self.pending) >= PID_SPACE:
            self._allocate()

    def start(self, tp: int, handle: Handle, deadline: float,
              timeout: Optional[float]) -> int:
        """Reserve and return the pid of a request of type ``tp``, answered
        through ``handle``; ``deadline`` is absolute (``NO_DEADLINE``: none),
        ``timeout`` is what its ``RequestTimeoutError`` reports. Raises as
        ``check_free`` does. The owner must make sure ``expire`` is called
        by ``deadline``."""
        pending = self.pending
        pid = self.next_pid
        if pid in pending or len(pending) >= PID_SPACE:
            pid = self._allocate()
        else:
            self.next_pid = (pid + 1) & 0xFFFF
        accept = REPLY_TYPES.get(tp, _KNOWN)
        if deadline == _INF:
            pending[pid] = (handle, _INF, 0.0, accept)
        else:
            pending[pid] = (handle, deadline, 0.0 if timeout is None else timeout, accept)
            heap = self.deadlines
            heappush(heap, (deadline, pid))
            if len(heap) > 2 * len(pending) + _HEAP_SLACK:
                self._compact()
        return pid

    def _compact(self) -> None:
        heap = [(entry[1], pid) for pid, entry in self.pending.items() if entry[1] != _INF]
        heapify(heap)
        self.deadlines = heap

    # --------------------------------------------------------- timeouts
    def expire(self, now: float) -> float:
        """Fail the requests whose deadline is ``now`` or earlier (their pids
        stay reserved for a late reply); return the next live deadline
        (``NO_DEADLINE``: none)."""
        heap = self.deadlines
        pending = self.pending
        while heap:
            deadline, pid = heap[0]
            entry = pending.get(pid)
            if entry is None or entry[1] != deadline:
                heappop(heap)  # answered, or the pid serves a newer request
                continue
            if deadline > now:
                return deadline
            heappop(heap)
            handle, _, timeout, accept = entry
            pending[pid] = (handle, _INF, timeout, accept)
            _fail(handle, timeout_error(timeout))
        return _INF

    def fail_all(self, make_exc: Callable[[], BaseException]) -> None:
        """End every request with a fresh ``make_exc()`` and free all pids
        (the connection is gone)."""
        pending = self.pending
        self.pending = {}
        self.deadlines = []
        for entry in pending.values():
            _fail(entry[0], make_exc())

    # ---------------------------------------------------------- replies
    def receive(self, data: bytes) -> Optional[ProtocolError]:
        """Route the replies completed by ``data``; a returned error means
        the connection must be closed (the request it concerns has failed
        already; the rest are the owner's to fail, e.g. with ``fail_all``).
        After that, further input is refused with the same error."""
        if self._closing is not None:
            return self._closing
        try:
            packages = self.decoder.feed(data)
        except WireError as exc:
            for package in exc.packages:  # intact replies before the fault
                if self._route(*package) is not None:
                    return self._closing
            return self._close(ProtocolError(str(exc)))
        pending = self.pending
        for pid, tp, body, bound in packages:
            # fast path: a small success reply to a waiting request
            entry = pending.get(pid)
            if (entry is not None and tp in entry[3] and tp != _RES_FILE
                    and len(body) <= SAFE_BODY_SIZE):
                handle = entry[0]
                if not handle.done():
                    try:
                        result = unpack_body(body)
                    except WireError:
                        pass  # _route reports it
                    else:
                        del pending[pid]
                        handle.set_result(result)
                        continue
            if self._route(pid, tp, body, bound) is not None:
                return self._closing
        return None

    def _close(self, exc: ProtocolError) -> ProtocolError:
        self._closing = exc
        return exc

    def _route(self, pid: int, tp: int, body: bytes, bound: int) -> Optional[ProtocolError]:
        """Complete the request of one reply; an error closes the connection."""
        entry = self.pending.pop(pid, None)
        if entry is None:
            return self._unknown(pid, tp)
        handle, deadline, timeout, accept = entry
        if handle.done():
            logger.debug('late reply of type %s for pid %s dropped', tp, pid)
            return None
        if tp in accept:
            if tp == _RES_FILE:
                handle.set_result(body)
                return None
        elif not pm.is_error(tp):
            if tp in _KNOWN:
                due = ' or '.join(str(t) for t in sorted(accept))
                exc = ProtocolError(f'the server sent a reply of type {tp} where type '
                                    f'{due} (or an error) was due; connection closed')
                handle.set_exception(exc)
                return self._close(exc)
            handle.set_exception(error_for_response(tp, None))
            return None
        try:
            if len(body) > SAFE_BODY_SIZE and deadline != _INF:
                # a big reply may take a while to decode (holding the GIL):
                # one whose deadline passed fails by its timeout, decoded or not
                if self.clock() >= deadline:
                    _fail(handle, timeout_error(timeout))
                    return None
                data = unpack_body(body, depth_bound=bound, reply=True)
                if self.clock() >= deadline:
                    _fail(handle, timeout_error(timeout))
                    return None
            else:
                data = unpack_body(body, depth_bound=bound, reply=True)
        except WireError as exc:
            handle.set_exception(ProtocolError(str(exc)))
            return self._close(ProtocolError(str(exc)))
        if tp in accept:
            handle.set_result(data)
        else:
            handle.set_exception(error_for_response(tp, data))
        return None

    def _unknown(self, pid: int, tp: int) -> Optional[ProtocolError]:
        """A reply for a pid no request holds: logged once, tolerated up to
        ``UNKNOWN_REPLY_LIMIT`` per connection, then the connection closes."""
        self.unknown_replies += 1
        count = self.unknown_replies
        if count == 1:
            logger.warning('reply of type %s for unknown pid %s dropped '
                           '(more are logged at DEBUG level)', tp, pid)
        else:
            logger.debug('reply of type %s for unknown pid %s dropped', tp, pid)
        if count > UNKNOWN_REPLY_LIMIT:
            return self._close(ProtocolError(
                f'{count} replies for request ids that no request is waiting on; '
                f'connection closed'))
        return None


def _fail(handle: Handle, exc: BaseException) -> None:
    """The one place a request fails (timeout, loss, corrupt data, close)."""
    if not handle.done():
        handle.set_exception(exc)
