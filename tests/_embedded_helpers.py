"""A raw package-level client for tests of the embedded server: sends any
bytes, reads replies with the shared codec, and notices a closed connection."""
from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
from collections import Counter
from typing import Any, Callable, List, Optional, Tuple

from siridb.connector.lib.codec import HEADER_SIZE, Decoder, encode, packb

Reply = Tuple[int, int, Any]  # pid, tp, decoded payload


class RawConn:
    def __init__(self, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = Decoder()
        self.pid = 0
        self.pending: list = []

    @classmethod
    async def open(cls, host: str, port: int,
                   ssl: Optional[_ssl.SSLContext] = None,
                   rcvbuf: Optional[int] = None) -> RawConn:
        """``rcvbuf``: a small receive buffer for a client that does not read,
        so that what the server cannot send stays in the server, not in the
        kernel's socket buffers."""
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection(host, port, ssl=ssl)
            return cls(reader, writer)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, ssl=ssl,
                                                       limit=rcvbuf)
        return cls(reader, writer)

    @classmethod
    async def open_unix(cls, path: str) -> RawConn:
        reader, writer = await asyncio.open_unix_connection(path)
        return cls(reader, writer)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def send(self, tp: int, payload: Any = None, *, body: Optional[bytes] = None,
             pid: Optional[int] = None) -> int:
        if pid is None:
            self.pid = (self.pid + 1) % 65536
            pid = self.pid
        if body is None:
            body = b'' if payload is None else packb(payload)
        self.writer.write(encode(pid, tp, body))
        return pid

    async def recv(self, timeout: float = 5.0) -> Optional[Reply]:
        """The next reply, or None when none came within ``timeout`` or the
        connection was closed."""
        while not self.pending:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
            except asyncio.TimeoutError:
                return None
            if not chunk:
                return None
            self.pending.extend(self.decoder.feed(chunk))
        pkg = self.pending.pop(0)
        return pkg.pid, pkg.tp, pkg.data()

    async def request(self, tp: int, payload: Any = None,
                      timeout: float = 5.0) -> Tuple[int, Any]:
        pid = self.send(tp, payload)
        reply = await self.recv(timeout)
        assert reply is not None, f'no reply to type {tp}'
        assert reply[0] == pid
        return reply[1], reply[2]

    async def auth(self, db: str = 'dbtest', user: str = 'iris',
                   password: str = 'siri') -> None:
        tp, _ = await self.request(2, [user, password, db])
        assert tp == 2

    async def is_closed_by_peer(self, timeout: float = 5.0) -> bool:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except (asyncio.TimeoutError, ConnectionError):
            return isinstance(self.reader.exception(), ConnectionError)
        return data == b''

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except (ConnectionError, _ssl.SSLError):
            pass


__all__ = ['RawConn', 'HEADER_SIZE']


def stored(srv: Any, name: str, db: str = 'dbtest') -> List[Tuple[int, Any]]:
    """The points of series ``name`` in an embedded server's store, in time order."""
    series = srv.store.databases[db].series.get(name)
    if series is None:
        return []
    ts, values = series.points()
    return list(zip(ts, values))


def held(srv: Any, names: List[str], db: str = 'dbtest') -> Counter[Tuple[str, int, Any]]:
    """Every stored ``(series, ts, value)`` of ``names`` in an embedded
    server's store, with its number of copies."""
    out: Counter[Tuple[str, int, Any]] = Counter()
    for name in names:
        out.update((name, ts, value) for ts, value in stored(srv, name, db))
    return out


async def poll(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``cond()`` holds (checked every 5 ms), failing after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        assert loop.time() < deadline, 'condition not reached in time'
        await asyncio.sleep(0.005)
