"""An in-process TCP fault proxy for testing clients against a bad network.

``FaultProxy`` listens on 127.0.0.1 (port 0 by default) and forwards every
accepted connection to a target server. Faults can be switched on and off
while connections are live: added latency per direction, stall (half-open:
bytes are accepted and dropped, nothing is forwarded), abrupt reset (RST on
both sides), close in the middle of a package, truncation (bytes dropped from
the stream), one corrupted byte at an offset, and writes split into small
chunks. Directions are ``'up'`` (client to server, requests), ``'down'``
(server to client, replies) or ``'both'``.

Stream offsets given to ``corrupt``, ``truncate`` and ``close_after`` count
bytes from the moment the fault is armed, in every connection open then; with
no connection open, the fault waits for the next connection accepted and
counts from its first byte. Either way it fires once, on a predictable byte,
however TCP happens to chunk the data.

Example::

    async with FaultProxy(server.host, server.port) as proxy:
        client = SiriDBClient('iris', 'siri', 'dbtest', [proxy.address])
        proxy.set_latency(0.2, direction='down')
        proxy.corrupt(offset=4, direction='down')   # next reply's pid byte
        proxy.reset()                               # RST every live connection
"""
from __future__ import annotations

import asyncio
import logging
import socket
import struct
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

__all__ = ['FaultProxy', 'DIRECTIONS']

logger = logging.getLogger('siridb.testing')

DIRECTIONS = ('up', 'down', 'both')

_READ_SIZE = 65536
_LINGER_RST = struct.pack('ii', 1, 0)


@dataclass
class _Edit:
    """A fault at a stream position: corrupt, drop (truncate) or close."""

    kind: str  # 'corrupt' | 'drop' | 'close'
    offset: int  # bytes from the moment it was armed
    count: int = 1  # bytes dropped for 'drop'
    xor: int = 0xFF  # for 'corrupt'


@dataclass
class _DirectionFaults:
    """Fault settings for one direction; read by every link at each chunk."""

    latency: float = 0.0
    stall: bool = False
    chunk: int = 0  # 0: forward as read; n: split writes into n-byte chunks
    edits: List[_Edit] = field(default_factory=list)  # for the next new link


class _Stream:
    """One direction of one link: position counter and the edits it owes."""

    __slots__ = ('pos', 'edits')

    def __init__(self, edits: List[_Edit]) -> None:
        self.pos = 0
        #: (absolute start, edit)
        self.edits: List[Tuple[int, _Edit]] = [(e.offset, e) for e in edits]

    def arm(self, edit: _Edit) -> None:
        self.edits.append((self.pos + edit.offset, edit))

    def skip(self, n: int) -> None:
        """Count ``n`` bytes that were dropped (stall); edits there are void."""
        self.pos += n
        self.edits = [(at, e) for at, e in self.edits if at >= self.pos]

    def apply(self, data: bytes) -> Tuple[bytes, bool]:
        """Apply the edits that fall in ``data``; True when the link must
        close after the (possibly shortened) data is written."""
        start = self.pos
        end = start + len(data)
        self.pos = end
        if not self.edits:
            return data, False
        buf = bytearray(data)
        keep: List[Tuple[int, _Edit]] = []
        drops: List[Tuple[int, int]] = []
        close_at: Optional[int] = None
        for at, edit in self.edits:
            if at >= end:
                keep.append((at, edit))
                continue
            if edit.kind == 'corrupt':
                buf[at - start] ^= edit.xor
            elif edit.kind == 'drop':
                lo = at - start
                hi = min(lo + edit.count, len(buf))
                drops.append((lo, hi))
                rest = edit.count - (hi - lo)
                if rest > 0:  # continues into the next chunk
                    keep.append((end, _Edit('drop', 0, rest)))
            else:
                close_at = at - start if close_at is None else min(close_at, at - start)
        self.edits = keep
        if close_at is not None:
            del buf[close_at:]
            drops = [(lo, min(hi, close_at)) for lo, hi in drops if lo < close_at]
        for lo, hi in sorted(drops, reverse=True):
            del buf[lo:hi]
        return bytes(buf), close_at is not None


class _Link:
    """One accepted client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, num: int,
                 c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.num = num
        self.c_reader = c_reader
        self.c_writer = c_writer
        self.s_reader: Optional[asyncio.StreamReader] = None
        self.s_writer: Optional[asyncio.StreamWriter] = None
        self.streams: Dict[str, _Stream] = {}
        for d in ('up', 'down'):
            pending = proxy._faults[d].edits
            self.streams[d] = _Stream(pending)
            pending.clear()  # a pending fault fires on one connection only
        self.tasks: List[asyncio.Task[None]] = []
        self.closed = False

    async def run(self) -> None:
        try:
            s_reader, s_writer = await asyncio.wait_for(
                asyncio.open_connection(self.proxy.target_host, self.proxy.target_port),
                self.proxy.connect_timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            logger.debug('proxy link %s: upstream connect failed: %s', self.num, exc)
            self.abort()
            return
        self.s_reader, self.s_writer = s_reader, s_writer
        if self.closed:  # reset while connecting
            self.abort()
            return
        for direction, reader, writer in (
                ('up', self.c_reader, s_writer),
                ('down', s_reader, self.c_writer)):
            queue: asyncio.Queue[Tuple[float, bytes, bool]] = asyncio.Queue()
            self.tasks.append(asyncio.ensure_future(self._read(direction, reader, queue)))
            self.tasks.append(asyncio.ensure_future(self._write(direction, writer, queue)))
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _read(self, direction: str, reader: asyncio.StreamReader,
                    queue: asyncio.Queue[Tuple[float, bytes, bool]]) -> None:
        loop = asyncio.get_running_loop()
        faults = self.proxy._faults[direction]
        stream = self.streams[direction]
        try:
            while True:
                data = await reader.read(_READ_SIZE)
                if not data:
                    break
                self.proxy.bytes_in[direction] += len(data)
                if faults.stall:
                    stream.skip(len(data))
                    continue
                data, close = stream.apply(data)
                queue.put_nowait((loop.time() + faults.latency, data, close))
                if close:
                    return
        except OSError:
            pass
        # EOF or error: let the writer flush what is queued, then close
        queue.put_nowait((loop.time() + faults.latency, b'', True))

    async def _write(self, direction: str, writer: asyncio.StreamWriter,
                     queue: asyncio.Queue[Tuple[float, bytes, bool]]) -> None:
        loop = asyncio.get_running_loop()
        faults = self.proxy._faults[direction]
        try:
            while True:
                due, data, close = await queue.get()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if data:
                    size = faults.chunk
                    if size and len(data) > size:
                        for i in range(0, len(data), size):
                            writer.write(data[i:i + size])
                            self.proxy.writes[direction] += 1
                            await writer.drain()
                            await asyncio.sleep(0)
                    else:
                        writer.write(data)
                        self.proxy.writes[direction] += 1
                        await writer.drain()
                    self.proxy.bytes_out[direction] += len(data)
                if close:
                    break
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        """Close both sides gracefully (FIN) after flushing."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.c_writer, self.s_writer):
            if writer is not None:
                writer.close()
        self._cancel()

    def abort(self) -> None:
        """Reset both sides at once (RST, nothing flushed)."""
        self.closed = True
        for writer in (self.c_writer, self.s_writer):
            if writer is not None:
                _rst(writer)
        self._cancel()

    def _cancel(self) -> None:
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close a connection with a TCP reset instead of a FIN."""
    transport = writer.transport
    sock = transport.get_extra_info('socket')
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        except OSError:
            pass
    transport.abort()


class FaultProxy:
    """A TCP proxy from ``host:port`` (default 127.0.0.1, free port) to
    ``target_host:target_port`` whose faults can be switched at run time.

    Use ``async with FaultProxy(...) as proxy`` or ``await start()`` /
    ``await close()``; ``address`` is the ``(host, port)`` to connect to.
    """

    def __init__(self, target_host: str, target_port: int, *,
                 host: str = '127.0.0.1', port: int = 0,
                 connect_timeout: float = 5.0) -> None:
        self.target_host = target_host
        self.target_port = target_port
        #: seconds to reach the target before the client side is reset
        self.connect_timeout = connect_timeout
        self.host = host
        self.port = port
        self._server: Optional[asyncio.AbstractServer] = None
        self._links: Set[_Link] = set()
        self._link_tasks: Set[asyncio.Task[None]] = set()
        self._faults: Dict[str, _DirectionFaults] = {
            'up': _DirectionFaults(), 'down': _DirectionFaults()}
        self._refuse = False
        #: connections accepted so far
        self.accepted = 0
        #: bytes read from the sender / written to the receiver, per direction
        self.bytes_in: Dict[str, int] = {'up': 0, 'down': 0}
        self.bytes_out: Dict[str, int] = {'up': 0, 'down': 0}
        #: write calls made to the receiver, per direction
        self.writes: Dict[str, int] = {'up': 0, 'down': 0}

    def __repr__(self) -> str:
        return (f'<FaultProxy {self.host}:{self.port} -> '
                f'{self.target_host}:{self.target_port}>')

    # life cycle ---------------------------------------------------------

    @property
    def address(self) -> Tuple[str, int]:
        """``(host, port)`` the proxy listens on."""
        return self.host, self.port

    @property
    def connections(self) -> int:
        """Number of client connections currently open through the proxy."""
        return sum(1 for link in self._links if not link.closed)

    async def start(self) -> FaultProxy:
        """Start listening (again, on the same port after ``close``)."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, self.host, self.port)
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Stop listening, reset every link and wait for its tasks."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.reset()
        for task in self._link_tasks:  # e.g. still connecting upstream
            task.cancel()
        await self._settle()
        if server is not None:
            await server.wait_closed()

    stop = close

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _settle(self) -> None:
        while self._link_tasks:
            tasks = list(self._link_tasks)
            await asyncio.gather(*tasks, return_exceptions=True)
            # not left to the tasks' done callbacks: awaiting tasks that are
            # all done does not yield (Python 3.12+), so they would never run
            self._link_tasks.difference_update(tasks)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self._refuse:
            _rst(writer)
            return
        link = _Link(self, self.accepted, reader, writer)
        self._links.add(link)
        task = asyncio.ensure_future(link.run())
        self._link_tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._link_tasks.discard(t)
            self._links.discard(link)
            if not link.closed:
                link.close()

        task.add_done_callback(done)

    async def wait_connections(self, n: int, timeout: float = 5.0) -> None:
        """Wait until at least ``n`` connections are open through the proxy."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections < n:
            if loop.time() > deadline:
                raise TimeoutError(f'{self.connections} connections, expected {n}')
            await asyncio.sleep(0.005)

    # faults -------------------------------------------------------------

    def _dirs(self, direction: str) -> Tuple[str, ...]:
        if direction == 'both':
            return ('up', 'down')
        if direction in ('up', 'down'):
            return (direction,)
        raise ValueError(f'direction must be one of {DIRECTIONS}, not {direction!r}')

    def set_latency(self, seconds: float, direction: str = 'both') -> None:
        """Delay every chunk by ``seconds`` in ``direction`` (order is kept)."""
        if seconds < 0:
            raise ValueError('latency must be >= 0')
        for d in self._dirs(direction):
            self._faults[d].latency = seconds

    def stall(self, direction: str = 'both') -> None:
        """Half-open: keep accepting bytes but drop them instead of forwarding.

        Bytes dropped while stalled are lost: after ``unstall`` the stream of
        an existing connection is out of step, so it is meant for "the peer
        went silent" scenarios; new connections work normally after it.
        """
        for d in self._dirs(direction):
            self._faults[d].stall = True

    def unstall(self, direction: str = 'both') -> None:
        """Forward again (see ``stall``)."""
        for d in self._dirs(direction):
            self._faults[d].stall = False

    def split(self, size: int = 1, direction: str = 'both') -> None:
        """Forward in writes of ``size`` bytes (0 turns splitting off)."""
        if size < 0:
            raise ValueError('size must be >= 0')
        for d in self._dirs(direction):
            self._faults[d].chunk = size

    def corrupt(self, offset: int = 0, direction: str = 'down', xor: int = 0xFF) -> None:
        """XOR the byte ``offset`` bytes ahead in the stream with ``xor``."""
        if not 0 < xor <= 0xFF:
            raise ValueError('xor must be in 1..255')
        self._arm(_Edit('corrupt', self._offset(offset), xor=xor), direction)

    def truncate(self, offset: int = 0, count: int = 1, direction: str = 'down') -> None:
        """Drop ``count`` bytes starting ``offset`` bytes ahead; the stream
        goes on after the gap (the package there arrives cut short)."""
        if count < 1:
            raise ValueError('count must be >= 1')
        self._arm(_Edit('drop', self._offset(offset), count=count), direction)

    def close_after(self, offset: int = 0, direction: str = 'down') -> None:
        """Forward ``offset`` more bytes, then close both sides (FIN): with an
        offset inside a package, the connection closes mid-package."""
        self._arm(_Edit('close', self._offset(offset)), direction)

    def reset(self) -> None:
        """Abort every open connection at once with a TCP reset, both sides."""
        for link in list(self._links):
            link.abort()

    def refuse(self, on: bool = True) -> None:
        """While on, reset every new connection as soon as it is accepted."""
        self._refuse = on

    def clear(self) -> None:
        """Switch every fault off (latency, stall, split, armed edits, refuse)."""
        for faults in self._faults.values():
            faults.latency = 0.0
            faults.stall = False
            faults.chunk = 0
            faults.edits.clear()
        for link in self._links:
            for stream in link.streams.values():
                stream.edits.clear()
        self._refuse = False

    @staticmethod
    def _offset(offset: int) -> int:
        if offset < 0:
            raise ValueError('offset must be >= 0')
        return offset

    def _arm(self, edit: _Edit, direction: str) -> None:
        for d in self._dirs(direction):
            live = [link for link in self._links if not link.closed]
            for link in live:
                link.streams[d].arm(edit)
            if not live:
                self._faults[d].edits.append(edit)
