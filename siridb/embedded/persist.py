"""Append-only logs of the embedded server's data directory.

A log is a sequence of records, each ``<II`` (payload length, CRC-32 of the
payload) followed by the payload: one kind byte and the record body. Reading
stops at the first record that is incomplete or fails its checksum: after a
crash that is a torn final write, which is cut off (a copy of the cut bytes is
kept next to the log as ``<name>.torn``) so that the server always starts and
later records append to a clean end.

Layout of a data directory::

    server.log          databases created/dropped, service accounts
    db/<name>.log       one per database: inserts (the request body as
                        received), dropped series, metadata snapshots
    db/<name>.snap      the database as of a compaction (see snapshot.py);
                        a log bigger than 32 MiB is compacted on start

Fsync policy (``fsync=`` of ``EmbeddedServer``):

- ``'always'`` (default): every acknowledgement of a change (insert, service
  request, mutating query) is sent only after the records it depends on are
  written and ``fsync``-ed. Replies of requests that arrive together are
  answered after one shared fsync (group commit).
- ``'never'``: records are written (``write(2)``) before the acknowledgement
  but not fsync-ed: an acknowledged change survives a crash of the process
  (even SIGKILL), not a crash of the machine.
"""
from __future__ import annotations

import logging
import os
import struct
import zlib
from typing import List, Optional, Tuple

__all__ = ['RECORD_HEADER', 'LogFile', 'DirLock', 'DataDirInUse',
           'read_records', 'encode_record', 'sync_all', 'sync_dir']

log = logging.getLogger('siridb.embedded')

RECORD_HEADER = struct.Struct('<II')
_crc32 = zlib.crc32


def encode_record(kind: bytes, body: bytes) -> bytes:
    payload = kind + body
    return RECORD_HEADER.pack(len(payload), _crc32(payload)) + payload


def read_records(path: str) -> List[Tuple[bytes, bytes]]:
    """(kind, body) of every intact record of ``path``, in order.

    A torn or corrupt tail is moved out of the log (see module docstring).
    """
    try:
        with open(path, 'rb') as fh:
            data = fh.read()
    except FileNotFoundError:
        return []
    out: List[Tuple[bytes, bytes]] = []
    pos = 0
    n = len(data)
    hsize = RECORD_HEADER.size
    good = 0
    while n - pos >= hsize:
        length, crc = RECORD_HEADER.unpack_from(data, pos)
        end = pos + hsize + length
        if length == 0 or end > n:
            break
        payload = data[pos + hsize:end]
        if _crc32(payload) != crc:
            break
        out.append((payload[:1], payload[1:]))
        pos = good = end
    if good < n:
        _cut_tail(path, data, good)
    return out


def _cut_tail(path: str, data: bytes, good: int) -> None:
    log.warning('data log %s: ignoring %d bytes of a torn or corrupt record '
                'at offset %d (kept in %s.torn)', path, len(data) - good, good,
                path)
    with open(path + '.torn', 'ab') as fh:
        fh.write(data[good:])
    with open(path, 'r+b') as fh:
        fh.truncate(good)
        fh.flush()
        os.fsync(fh.fileno())


class LogFile:
    """One append-only log, opened lazily, written with ``write(2)`` at once
    (no user-space buffer) and fsync-ed on ``sync()``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: Optional[int] = None
        self.dirty = False

    def _open(self) -> int:
        if self._fd is None:
            new = not os.path.exists(self.path)
            self._fd = os.open(self.path,
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if new:
                sync_dir(os.path.dirname(self.path))
        return self._fd

    def append(self, kind: bytes, body: bytes) -> None:
        fd = self._open()
        buf = memoryview(encode_record(kind, body))
        while buf:
            written = os.write(fd, buf)
            buf = buf[written:]
        self.dirty = True

    def sync(self) -> None:
        if self.dirty and self._fd is not None:
            os.fsync(self._fd)
        self.dirty = False

    def close(self) -> None:
        if self._fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = None

    def remove(self) -> None:
        """Close and delete the log (for a dropped database)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.dirty = False
        for path in (self.path, self.path + '.torn'):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        sync_dir(os.path.dirname(self.path))


def sync_dir(path: str) -> None:
    """fsync a directory (makes a created, renamed or deleted file durable)."""
    try:
        fd = os.open(path or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sync_all(files: List[LogFile]) -> None:
    for f in files:
        f.sync()


class DataDirInUse(RuntimeError):
    """Another server (process or engine) holds the data directory."""


class DirLock:
    """An exclusive ``flock`` on a file of the data directory, so that two
    servers never write the same logs (POSIX only; elsewhere a no-op).
    Released by ``release()`` or when the process dies (even by SIGKILL)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise DataDirInUse(
                f'data directory {os.path.dirname(self.path)!r} is in use by '
                f'another embedded server') from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
