"""Append-only logs of the embedded server's data directory.

A log is a sequence of records, each ``<II`` (payload length, CRC-32 of the
payload) followed by the payload: one kind byte (an ASCII capital letter)
and the record body.

Reading a log (``read_records``) tells two kinds of damage apart:

- a torn final record (a crash in the middle of an append: the last record
  ends past the end of the file, or the file ends in zero bytes, and no
  intact record follows it) was never acknowledged; it is cut off with a
  WARNING, a copy of the cut bytes kept next to the log as ``<name>.torn``,
  so that later records append to a clean end;
- any other record that fails its check (a flipped byte, a zeroed page, a
  damaged length field) raises ``CorruptLog`` naming the file and the offset:
  the server does not start rather than lose what follows. With
  ``recover=True`` the original is kept as ``<name>.corrupt`` (``.corrupt.1``,
  ... if that exists), the damaged spans are skipped (each logged as an
  ERROR) and the log is rewritten with every intact record.

A failed append (a full disk, an I/O error) is cut back to the last whole
record before the error is raised (``LogWriteError``); if even that fails the
log refuses further appends until it succeeds, so no partial record is ever
followed by later ones.

Layout of a data directory::

    server.log          databases created/dropped, service accounts
    db/<name>.log       one per database: inserts (the request body as
                        received), dropped series, metadata snapshots
    db/<name>.snap      the database as of a compaction (see snapshot.py);
                        a log bigger than 32 MiB is compacted on start
    orphans/            files of db/ that belong to no database of
                        server.log, moved there (never deleted) on start

Fsync policy (``fsync=`` of ``EmbeddedServer``):

- ``'always'`` (default): every acknowledgement of a change (insert, service
  request, mutating query) is sent only after the records it depends on are
  written and ``fsync``-ed. Replies of requests that arrive together are
  answered after one shared fsync (group commit).
- ``'never'``: records are written (``write(2)``) before the acknowledgement
  but not fsync-ed: an acknowledged change survives a crash of the process
  (even SIGKILL), not a crash of the machine.

Test hook: every log and snapshot write goes through ``persist.os_write``
(``os.write`` by default); tests replace it to simulate a full disk.
"""
from __future__ import annotations

import logging
import os
import re
import struct
import zlib
from typing import Iterable, List, Optional, Tuple

__all__ = ['RECORD_HEADER', 'Records', 'LogFile', 'DirLock', 'DataDirInUse',
           'DataDirError', 'CorruptLog', 'LogWriteError', 'read_records',
           'encode_record', 'sync_all', 'sync_dir', 'write_all', 'keep_copy',
           'os_write']

log = logging.getLogger('siridb.embedded')

RECORD_HEADER = struct.Struct('<II')
_crc32 = zlib.crc32

#: the write(2) of every log and snapshot write (a test hook, see above)
os_write = os.write

Record = Tuple[bytes, bytes]


class Records(List[Record]):
    """The records of a log; ``salvaged``: recovery skipped damaged spans."""

    salvaged = False


class DataDirError(RuntimeError):
    """The data directory cannot be loaded as it is: the server does not
    start (nothing is changed on disk)."""


class CorruptLog(DataDirError):
    """A record in the middle of a log (or a snapshot) fails its check."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(
            f'{path}: damaged record at offset {offset} ({reason}); not '
            f'starting so that nothing after it is lost. Restore the file '
            f'from a backup, or start with recover=True (--recover) to keep '
            f'a copy of it and load every intact record')
        self.path = path
        self.offset = offset


class LogWriteError(OSError):
    """An append to a log failed; the log is as it was before it."""


def encode_record(kind: bytes, body: bytes) -> bytes:
    payload = kind + body
    return RECORD_HEADER.pack(len(payload), _crc32(payload)) + payload


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (through the ``os_write`` hook)."""
    buf = memoryview(data)
    while buf:
        buf = buf[os_write(fd, buf):]


def _record_at(data: bytes, pos: int) -> Optional[int]:
    """End of the intact record starting at ``pos``, or None."""
    hsize = RECORD_HEADER.size
    if len(data) - pos < hsize:
        return None
    length, crc = RECORD_HEADER.unpack_from(data, pos)
    end: int = pos + hsize + length
    if length == 0 or end > len(data):
        return None
    if _crc32(memoryview(data)[pos + hsize:end]) != crc:
        return None
    return end


def _is_torn_tail(data: bytes, pos: int) -> bool:
    """Whether the bad record at ``pos`` is what a crash in the middle of
    the last append leaves: a record that ends past the end of the file, or
    one ending in a run of zero bytes of at least a disk sector (a machine
    crash), or only zero bytes; and no intact record after it. A header
    whose length field was damaged (its payload is intact up to the end of
    the file, or under a length one byte away) is not torn."""
    n = len(data)
    hsize = RECORD_HEADER.size
    tail = data[pos:]
    kept = len(tail.rstrip(b'\0'))
    if not kept:
        return True
    if n - pos - kept < 512:  # no zero run: the record must end past EOF
        if n - pos < hsize:
            return True
        length, crc = RECORD_HEADER.unpack_from(data, pos)
        if length == 0 or pos + hsize + length <= n:
            return False
        room = n - pos - hsize
        view = memoryview(data)[pos + hsize:]
        if _crc32(view) == crc:
            return False
        for shift in (0, 8, 16, 24):
            for x in range(1, 256):
                other = length ^ (x << shift)
                if 0 < other <= room and _crc32(view[:other]) == crc:
                    return False
    return not _record_after(data, pos + 1, pos + kept)


#: bytes of checksums ``_record_after`` may compute before it gives up
_SCAN_BUDGET = 64 * 1024 * 1024
_CAPITAL = frozenset(range(ord('A'), ord('Z') + 1))


def _record_after(data: bytes, start: int, stop: int) -> bool:
    """Whether an intact record starts at an offset in [start, stop) whose
    end is the end of the file, a zero run from ``stop`` on, or the header
    of a next record (then the bad record before it is damage, not a torn
    append). Candidates are headers whose payload starts with a capital
    letter (every record kind) and whose length fits; checksums are
    computed up to ``_SCAN_BUDGET`` bytes, after which the answer is no."""
    n = len(data)
    hsize = RECORD_HEADER.size
    if stop - start < 1 or n - start < hsize + 1:
        return False
    top = min(255, n >> 24)  # the highest byte of any length that fits
    candidates = re.compile(rb'(?=.{3}[\x00-\x%02x].{4}[A-Z])' % top,
                            re.DOTALL)
    budget = _SCAN_BUDGET
    for m in candidates.finditer(data, start):
        q = m.start()
        if q >= stop:
            break
        length, crc = RECORD_HEADER.unpack_from(data, q)
        end = q + hsize + length
        if length == 0 or end > n:
            continue
        if end < stop and (n - end < hsize + 1 or
                           data[end + hsize] not in _CAPITAL):
            continue
        budget -= length
        if budget < 0:
            return False
        if _crc32(memoryview(data)[q + hsize:end]) == crc:
            return True
    return False


def _next_record(data: bytes, start: int) -> Optional[int]:
    """Offset of the first intact record at or after ``start`` (a slow scan,
    for recovery only)."""
    for pos in range(start, len(data) - RECORD_HEADER.size):
        if _record_at(data, pos) is not None:
            return pos
    return None


def read_records(path: str, *, recover: bool = False,
                 strict: bool = False) -> Records:
    """(kind, body) of every intact record of ``path``, in order (see the
    module docstring for damaged records). ``strict``: the file is written
    whole and never torn (a snapshot), so any damage is corruption."""
    try:
        with open(path, 'rb') as fh:
            data = fh.read()
    except FileNotFoundError:
        return Records()
    out = Records()
    pos = 0
    n = len(data)
    skipped: List[Tuple[int, int]] = []
    while pos < n:
        end = _record_at(data, pos)
        if end is not None:
            payload = data[pos + RECORD_HEADER.size:end]
            out.append((payload[:1], payload[1:]))
            pos = end
            continue
        if not strict and _is_torn_tail(data, pos):
            _cut_tail(path, data, pos)
            break
        if not recover:
            raise CorruptLog(path, pos, _reason(data, pos))
        nxt = _next_record(data, pos + 1)
        stop = n if nxt is None else nxt
        skipped.append((pos, stop))
        pos = stop
    if skipped:
        _salvage(path, data, out, skipped)
        out.salvaged = True
    return out


def _reason(data: bytes, pos: int) -> str:
    n = len(data)
    if n - pos < RECORD_HEADER.size:
        return 'a record header cut short'
    length, _ = RECORD_HEADER.unpack_from(data, pos)
    if length == 0:
        return 'a record of length 0'
    if pos + RECORD_HEADER.size + length > n:
        return f'a record length of {length} bytes past the end of the file'
    return 'checksum mismatch'


def keep_copy(path: str, suffix: str) -> str:
    """Copy ``path`` to a free name ``<path><suffix>[.N]``; returns it."""
    target = path + suffix
    i = 0
    while os.path.exists(target):
        i += 1
        target = f'{path}{suffix}.{i}'
    with open(path, 'rb') as src, open(target, 'xb') as dst:
        while True:
            chunk = src.read(1 << 20)
            if not chunk:
                break
            dst.write(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    sync_dir(os.path.dirname(path))
    return target


def _salvage(path: str, data: bytes, records: List[Record],
             skipped: List[Tuple[int, int]]) -> None:
    """Recovery: keep the original, rewrite ``path`` with ``records``."""
    copy = keep_copy(path, '.corrupt')
    for start, stop in skipped:
        log.error('recover: %s: skipped %d damaged byte(s) at offset %d '
                  '(the original file is kept as %s)', path, stop - start,
                  start, copy)
    write_file(path, (encode_record(kind, body) for kind, body in records))


def write_file(path: str, chunks: Iterable[bytes]) -> None:
    """Replace ``path`` by ``chunks`` at once (temporary file, fsync,
    rename): after a crash the file is either the old or the new one."""
    tmp = path + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        try:
            for chunk in chunks:
                write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    sync_dir(os.path.dirname(path))


def _cut_tail(path: str, data: bytes, good: int) -> None:
    log.warning('data log %s: cutting off %d bytes of a torn final record '
                'at offset %d (a crash during an append; kept in %s.torn)',
                path, len(data) - good, good, path)
    with open(path + '.torn', 'ab') as fh:
        fh.write(data[good:])
    with open(path, 'r+b') as fh:
        fh.truncate(good)
        fh.flush()
        os.fsync(fh.fileno())


class LogFile:
    """One append-only log, opened lazily, written with ``write(2)`` at once
    (no user-space buffer) and fsync-ed on ``sync()``. A failed append is cut
    back (see the module docstring)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: Optional[int] = None
        self.dirty = False
        #: size of the file up to its last whole record
        self._size = 0
        #: a failed append could not be cut back: appends are refused
        self._broken = False

    def _open(self) -> int:
        if self._fd is None:
            new = not os.path.exists(self.path)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                         0o600)
            self._size = os.fstat(fd).st_size
            self._fd = fd
            if new:
                sync_dir(os.path.dirname(self.path))
        return self._fd

    def append(self, kind: bytes, body: bytes) -> None:
        self.append_many(((kind, body),))

    def append_many(self, records: Iterable[Record]) -> None:
        """Append records in one write: all of them or, on LogWriteError,
        none."""
        data = b''.join(encode_record(kind, body) for kind, body in records)
        try:
            fd = self._open()
            if self._broken:
                self._cut_back(fd)
            write_all(fd, data)
        except OSError as exc:
            if self._fd is not None and not self._broken:
                try:
                    self._cut_back(self._fd, exc)
                except OSError:
                    pass  # now broken: the next append tries again
            raise LogWriteError(exc.errno, f'cannot write {self.path}: '
                                f'{exc.strerror or exc}') from exc
        self._size += len(data)
        self.dirty = True

    def _cut_back(self, fd: int, exc: Optional[OSError] = None) -> None:
        """Truncate the file to its last whole record."""
        try:
            os.ftruncate(fd, self._size)
        except OSError:
            if not self._broken:
                log.error('data log %s: cannot cut a failed append back to '
                          '%d bytes; refusing appends until it can',
                          self.path, self._size)
            self._broken = True
            raise
        if self._broken:
            log.warning('data log %s: cut back to %d bytes; appending again',
                        self.path, self._size)
        elif exc is not None:
            log.error('data log %s: an append failed (%s); the log is kept '
                      'as it was (%d bytes)', self.path, exc, self._size)
        self._broken = False

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
