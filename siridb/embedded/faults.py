"""Test-only fault modes of the embedded server's inserts (what real SiriDB
clusters do to writers), for testing a writer's delivery guarantees.

Attach to a server with ``faults = InsertFaults.attach(server)`` and arm:

- ``partial_then_drop(fraction=0.5, times=1)``: the next insert stores the
  first ``fraction`` of its series (at least one when it has several) and the
  connection is then aborted without a reply (a server killed while applying
  an insert: SiriDB applies one in slices of series).
- ``forward_error(fraction=0.5, times=1)``: the next insert stores the
  first ``fraction`` of its series and is answered 66 "Error occurred while
  sending points to at least '<this server's name>'" (a SiriDB server that
  stored its own pool's part and failed to forward the rest to another
  pool; ``InsertForwardError`` in the driver).
- ``never_answer(times=1, store=True)``: the next insert is stored (or not)
  and never answered (a receiving server whose forward to another pool died).
- ``lose_last_acked``: ``await crash()`` stops the server like a SIGKILL and
  drops the last point it acknowledged (SiriDB 2.0.55 writes its buffer file
  through a stdio buffer that is not flushed before the acknowledgement);
  ``await server.start()`` brings it back.

Counters (``partial``, ``forward``, ``silent``, ``lost``) say how often each fired. A
lost point is removed from the in-memory store only: a server with a
``data_dir`` replays it when started again.
"""
from __future__ import annotations

import logging
from bisect import bisect_left
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Tuple

from ..wire import types as pm
from ..wire.framing import pack, packb
from .context import QueryFailure
from .insert import success_msg

if TYPE_CHECKING:  # pragma: no cover
    from .server import EmbeddedServer
    from .store import Database

__all__ = ['InsertFaults', 'InsertRequest']

log = logging.getLogger('siridb.embedded')


@dataclass
class InsertRequest:
    """One authorized insert as the connection hands it over."""

    engine: Any
    db: Database
    data: Any
    body: bytes
    pid: int
    #: send the reply (after the engine's fsync when it defers acks)
    reply: Callable[[bytes], None]
    #: abort the connection
    drop: Callable[[], None]


def _split(data: Any, fraction: float) -> Any:
    """The first ``fraction`` of the series of an insert payload (at least
    one, and fewer than all when it has several)."""
    items: List[Any] = list(data.items()) if isinstance(data, dict) else list(data)
    if len(items) <= 1:
        return data
    k = min(len(items) - 1, max(1, int(len(items) * fraction)))
    return dict(items[:k]) if isinstance(data, dict) else items[:k]


def _last_point(data: Any) -> Optional[Tuple[str, int, Any]]:
    """``(series, ts, value)`` of the last point of a payload, as stored."""
    if isinstance(data, dict):
        if not data:
            return None
        name, points = list(data.items())[-1]
    else:
        if not data:
            return None
        name, points = data[-1].get('name'), data[-1].get('points')
    if not points:
        return None
    ts, value = points[-1]
    return name, ts, value


class InsertFaults:
    """Fault modes for the inserts of one ``EmbeddedServer`` (see the module)."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self._partial: List[float] = []
        self._forward: List[float] = []
        self._silent: List[bool] = []
        self.lose_last_acked = False
        self._last: Optional[Tuple[Database, str, int, Any]] = None
        #: how often each fault fired
        self.partial = 0
        self.forward = 0
        self.silent = 0
        self.lost = 0

    @classmethod
    def attach(cls, server: EmbeddedServer) -> InsertFaults:
        """Faults for ``server`` (installed on it; ``detach`` removes them)."""
        faults = cls(server)
        server.faults = faults
        return faults

    def detach(self) -> None:
        if self.server.faults is self:
            self.server.faults = None

    def partial_then_drop(self, fraction: float = 0.5, times: int = 1) -> None:
        if not 0 <= fraction < 1:
            raise ValueError('fraction must be in [0, 1)')
        self._partial.extend([fraction] * times)

    def forward_error(self, fraction: float = 0.5, times: int = 1) -> None:
        if not 0 <= fraction < 1:
            raise ValueError('fraction must be in [0, 1)')
        self._forward.extend([fraction] * times)

    def never_answer(self, times: int = 1, store: bool = True) -> None:
        self._silent.extend([store] * times)

    def clear(self) -> None:
        """Disarm every fault."""
        self._partial.clear()
        self._forward.clear()
        self._silent.clear()
        self.lose_last_acked = False

    # -- called by the connection for each authorized insert -------------

    def insert(self, req: InsertRequest) -> None:
        if self._partial:
            fraction = self._partial.pop(0)
            part = _split(req.data, fraction)
            if part is not req.data:
                self._store(req, part)
            self.partial += 1
            log.info('%s: fault: stored part of an insert, dropping the connection',
                     self.server.name)
            req.drop()
            return
        if self._forward:
            part = _split(req.data, self._forward.pop(0))
            if part is not req.data:
                self._store(req, part)
            self.forward += 1
            log.info('%s: fault: stored part of an insert, answering a failed forward',
                     self.server.name)
            msg = f"Error occurred while sending points to at least '{self.server.name}'"
            req.reply(pack(req.pid, pm.CPROTO_ERR_INSERT, {'error_msg': msg}))
            return
        if self._silent:
            store = self._silent.pop(0)
            if store:
                self._store(req, req.data)
            self.silent += 1
            log.info('%s: fault: insert %s and never answered', self.server.name,
                     'stored' if store else 'dropped')
            return
        try:
            n = self._store(req, req.data)
        except QueryFailure as exc:
            req.reply(pack(req.pid, exc.tp, {'error_msg': exc.msg}))
            return
        last = _last_point(req.data)
        if last is not None:
            self._last = (req.db, *last)
        req.reply(pack(req.pid, pm.CPROTO_RES_INSERT, {'success_msg': success_msg(n)}))

    @staticmethod
    def _store(req: InsertRequest, data: Any) -> int:
        body = req.body if data is req.data else packb(data)
        return int(req.engine.insert(req.db, data, body))

    # -- crash -----------------------------------------------------------

    async def crash(self) -> Optional[Tuple[str, int, Any]]:
        """Stop the server (connections aborted); with ``lose_last_acked``,
        drop the last point it acknowledged. Returns that point, or None."""
        lost = self._lose_last()  # at the moment of the kill, before anyone notices
        await self.server.stop()
        return lost

    def _lose_last(self) -> Optional[Tuple[str, int, Any]]:
        last, self._last = self._last, None
        if not self.lose_last_acked or last is None:
            return None
        db, name, ts, value = last
        series = db.series.get(name)
        if series is None:
            return None
        stamps, values = series.points()  # sorted
        i = bisect_left(stamps, ts)
        while i < len(stamps) and stamps[i] == ts:
            if values[i] == value or values[i] != values[i]:  # NaN too
                del series.ts[i]
                del series.values[i]
                self.lost += 1
                log.info('%s: fault: lost the last acknowledged point %s @ %d',
                         self.server.name, name, ts)
                return name, ts, value
            i += 1
        return None
