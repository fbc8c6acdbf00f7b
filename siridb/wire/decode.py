"""Payload decoding with the qpack crash guards: bytes in, packages and values out.

``Decoder.feed`` cuts a byte stream into ``Package`` s; ``unpack_body`` is
the one entry point that turns a payload into Python values, for the client
and the embedded server alike. qpack 0.0.21 decodes in C, recursing once per
nesting level without a limit, and crashes on a bare close marker: bodies
that could nest deep are decoded on a big-stack thread, ones that could nest
deeper than even that (or that hold more containers than a reply may) are
refused, and every failure is a ``WireError``. No asyncio, no sockets.
"""
from __future__ import annotations

import gc
import os
import queue
import struct
import threading
from typing import Any, Callable, List, NamedTuple, Optional, Tuple, Type, TypeVar

import qpack

from .errors import WireError
from .framing import HEADER, HEADER_SIZE, MAX_PAYLOAD

__all__ = [
    'Package', 'Decoder', 'unpack_body', 'DECODE_ERRORS', 'SAFE_BODY_SIZE',
    'DEEP_STACK_SIZE', 'MAX_DEPTH', 'FRESH_THREAD_BODY', 'REPLY_BYTES_PER_CONTAINER',
    'container_limit', 'tighten_depth_bound', 'run_deep',
]

_T = TypeVar('_T')

#: what qpack.unpackb may raise on a malformed body
DECODE_ERRORS = (ValueError, TypeError, UnicodeDecodeError, SystemError,
                 IndexError, KeyError, OverflowError, RecursionError,
                 MemoryError, struct.error)

_unpack_header_from = HEADER.unpack_from
_unpackb = qpack.unpackb


class Package(NamedTuple):
    """One received package: ``pid``, type ``tp`` and the raw payload ``body``.

    ``depth_bound`` is an upper bound of the body's nesting depth that the
    decoder established while the body arrived in pieces (-1: none), so that
    decoding need not scan the body again.
    """

    pid: int
    tp: int
    body: bytes
    depth_bound: int = -1

    def data(self) -> Any:
        """The payload decoded as qpack with utf-8 strings (None when empty)."""
        return unpack_body(self.body, depth_bound=self.depth_bound)


_new_package: Callable[[type, Any], Package] = tuple.__new__


#: qpack's C decoder recurses once per nesting level without a limit; a body
#: this small cannot nest deep enough to overflow a normal (8 MiB) C stack
SAFE_BODY_SIZE = 32_768
#: bigger bodies are decoded in a worker thread with this stack size
DEEP_STACK_SIZE = 1 << 30
#: a generous bound of C stack bytes per nesting level (measured: 70-140)
_STACK_PER_LEVEL = 160
MAX_DEPTH = DEEP_STACK_SIZE // _STACK_PER_LEVEL
#: every byte that is not a qpack container marker (arrays and maps of 0-5
#: items, 0xED-0xF8, and the open forms 0xFC, 0xFD): counting the markers
#: bounds both how deep a body nests and how many containers it makes (an
#: empty one nests nothing but costs a 56-64 byte object for one byte)
_NOT_CONTAINER = bytes(b for b in range(256) if not (0xED <= b <= 0xF8 or b in (0xFC, 0xFD)))
#: a server's reply is refused when more than one byte in this many is a
#: container marker. A SiriDB reply holds at most one container per 3 bytes
#: (a point ``[ts, value]``, a row ``[name]``, an empty series ``name: []``
#: each take 3 or more); payload bytes that happen to carry a marker value
#: add to the count (5.5 % of random bytes; at most one byte in 3 of utf-8
#: text, its lead bytes), so the limit leaves room above 1/3. A body of empty
#: arrays (one per byte, 64 bytes of Python objects per body byte) is over it.
REPLY_BYTES_PER_CONTAINER = 2


def container_limit(length: int) -> int:
    """The most container markers a reply body of ``length`` bytes may hold:
    ``length / REPLY_BYTES_PER_CONTAINER``, and never more than the big stack
    can nest (``MAX_DEPTH``)."""
    return min(MAX_DEPTH, length // REPLY_BYTES_PER_CONTAINER)


class _DeepStackWorker:
    """One daemon thread with a big C stack. qpack packs and unpacks in C,
    recursing once per nesting level without a limit: run there, a deeply
    nested value cannot overflow the caller's stack and crash the interpreter."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        old = threading.stack_size()
        threading.stack_size(DEEP_STACK_SIZE)
        try:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name='siridb-qpack-deep')
            self._thread.start()
        finally:
            threading.stack_size(old)

    def _run(self) -> None:
        while True:
            fn, args, box, done = self._jobs.get()
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # handed back to the caller
                box.append((False, exc))
            done.release()

    def call(self, fn: Callable[..., _T], *args: Any) -> _T:
        box: List[Any] = []
        done = threading.Lock()
        done.acquire()
        self._jobs.put((fn, args, box, done))
        done.acquire()
        ok, value = box[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]


_worker: Optional[_DeepStackWorker] = None
_worker_failed = False
_worker_lock = threading.Lock()


def _forget_worker() -> None:
    # a forked child has no worker thread: start a new one when needed
    global _worker, _worker_failed, _worker_lock
    _worker = None
    _worker_failed = False
    _worker_lock = threading.Lock()


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_forget_worker)


def run_deep(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` on the big-stack thread (in the caller's thread if that
    thread could not be started)."""
    global _worker, _worker_failed
    if _worker is None and not _worker_failed:
        with _worker_lock:
            if _worker is None and not _worker_failed:
                try:
                    _worker = _DeepStackWorker()
                except (RuntimeError, MemoryError, ValueError, OSError):
                    _worker_failed = True
    if _worker is None:
        return fn(*args)
    return _worker.call(fn, *args)


#: bodies above this are decoded on a thread of their own (measured: the
#: long-lived worker decodes a 19 MB reply ~30 % slower than a fresh thread,
#: whose ~0.15 ms start-up is noise at this size)
FRESH_THREAD_BODY = 1_048_576


def _run_fresh(fn: Callable[..., _T], *args: Any) -> Tuple[bool, Any]:
    """``(True, fn(*args))`` run on a new thread with the big stack;
    ``(False, None)`` if no such thread could be started."""
    box: List[Any] = []

    def target() -> None:
        try:
            box.append((True, fn(*args)))
        except BaseException as exc:  # handed back to the caller
            box.append((False, exc))

    with _worker_lock:  # threading.stack_size is process-wide
        old = threading.stack_size()
        try:
            threading.stack_size(DEEP_STACK_SIZE)
            thread = threading.Thread(target=target, daemon=True,
                                      name='siridb-qpack-deep')
            thread.start()
        except (RuntimeError, MemoryError, ValueError, OverflowError, OSError):
            thread = None
        finally:
            threading.stack_size(old)
    if thread is None:
        return False, None
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return True, value


#: the nesting scan reads a body in slices of this size, so that it can stop
#: as soon as the rest could no longer hold too many container markers
_SCAN_SLICE = 1 << 20


def _containers(body: bytes, limit: int) -> int:
    """How many container markers ``body`` holds (a bound on its nesting),
    counted until the count is known not to exceed ``limit``: then a number
    no larger than ``limit`` is returned (a 16 MB reply of points is done
    after about 10 MB)."""
    size = len(body)
    found = 0
    for start in range(0, size, _SCAN_SLICE):
        found += len(body[start:start + _SCAN_SLICE].translate(None, _NOT_CONTAINER))
        if found > limit or found + size - start - _SCAN_SLICE <= limit:
            return found
    return found


def tighten_depth_bound(bound: int, part: bytes, limit: Optional[int] = None) -> int:
    """``bound``, an upper bound of a body's container markers (so of its
    nesting depth), once ``part`` of the body has been read: its bytes that
    are no marker do not count. Start from the body's length; parts are only
    read while it matters (the bound is above ``limit``, by default
    ``MAX_DEPTH``; the decoder uses ``container_limit`` of the body)."""
    if bound <= (MAX_DEPTH if limit is None else limit):
        return bound
    return bound - len(part) + len(part.translate(None, _NOT_CONTAINER))


def _unpack_big(body: bytes, decode: Optional[str], depth_bound: int, limit: int) -> Any:
    # nesting is bounded by the number of container markers: a body that
    # could nest deeper than the big stack holds is refused. (A stack sized
    # to the body instead was tried: a hostile 26 MB body then cost 4.5 GB
    # and 15 s instead of a refusal in milliseconds.) A reply is also held
    # to ``container_limit``: more containers than that make it refused.
    if depth_bound > limit:
        found = _containers(body, limit)
        if found > MAX_DEPTH:
            raise WireError('corrupt payload: nested too deep to decode safely')
        if found > limit:
            raise WireError(
                f'corrupt payload: too many containers for a reply of {len(body)} bytes '
                f'(more than {limit}) to decode safely')
    if len(body) > FRESH_THREAD_BODY:
        started, value = _run_fresh(_unpack_kw, body, decode)
        if started:
            return value
    return run_deep(_unpack_kw, body, decode)


def _unpack_kw(body: bytes, decode: Optional[str]) -> Any:
    return _unpackb(body, decode=decode)


def unpack_body(body: bytes, decode: Optional[str] = 'utf-8',
                depth_bound: int = -1, reply: bool = False) -> Any:
    """Decode a qpack payload, turning every failure into ``WireError``.

    A body that starts with 0xFE or 0xFF (a bare close marker) is refused
    without calling qpack: qpack 0.0.21 returns an object for it that crashes
    the interpreter when used. qpack also recurses in C once per nesting
    level: bodies above ``SAFE_BODY_SIZE`` are decoded on a thread with a
    1 GiB stack, and one that might nest deeper than even that is refused.
    ``reply``: the body is a server's reply; above ``SAFE_BODY_SIZE`` it is
    also refused with more container markers than ``container_limit``
    allows (so that a reply of empty arrays cannot cost 64x its size).
    ``depth_bound`` (``Package.depth_bound``) spares the marker scan when
    the decoder already bounded the body's markers.
    """
    if not body:
        return None
    if body[0] >= 0xFE:
        raise WireError('corrupt payload: starts with a close marker')
    if len(body) <= SAFE_BODY_SIZE:
        try:
            return _unpackb(body, decode=decode)
        except DECODE_ERRORS as exc:
            raise WireError(f'corrupt payload: {exc.__class__.__name__}') from None
    # a big body becomes millions of small lists: the cyclic GC would scan
    # them over and over (about 3x the decode time), so pause it meanwhile
    pause_gc = len(body) > 1_048_576 and gc.isenabled()
    if pause_gc:
        gc.disable()
    try:
        return _unpack_big(body, decode,
                           len(body) if depth_bound < 0 else min(depth_bound, len(body)),
                           container_limit(len(body)) if reply else MAX_DEPTH)
    except DECODE_ERRORS as exc:
        raise WireError(f'corrupt payload: {exc.__class__.__name__}') from None
    finally:
        if pause_gc:
            gc.enable()


class Decoder:
    """Incremental package decoder.

    ``feed(chunk)`` returns the packages completed by ``chunk`` (any split or
    coalescing of packages across chunks is fine). A bad check byte or a
    length above ``max_payload`` raises ``WireError``; after that the
    decoder refuses all further input, as the stream can no longer be trusted.
    Packages that the same chunk completed before the fault are not lost: they
    travel on the exception as ``exc.packages``, for the caller to handle
    before it closes the connection. ``replies``: the packages are a server's
    replies, decoded with ``unpack_body(..., reply=True)``; their bound of
    container markers is tightened down to ``container_limit`` (else to
    ``MAX_DEPTH``), so that decoding need not count them again.
    """

    __slots__ = ('_buf', '_failed', 'max_payload', '_big', '_chunks', '_have', '_bound',
                 '_limit', '_tail', '_replies')

    #: the class of the errors ``feed`` raises (the client's codec module
    #: raises its ``ProtocolError``, a subclass)
    error: Type[WireError] = WireError

    #: a body at least this big that arrives over several chunks is collected
    #: as a list of chunks and joined once, instead of being copied into the
    #: growing buffer chunk by chunk and sliced out again; on the way, the
    #: chunks tighten the body's bound of container markers
    #: (``Package.depth_bound``)
    BIG_BODY = 262_144
    #: chunks smaller than this are gathered in one bytearray and join the
    #: list at this size: a body trickled a byte per segment would otherwise
    #: keep one bytes object (~34 bytes) and one list slot per byte
    SMALL_CHUNK = 16_384

    def __init__(self, max_payload: int = MAX_PAYLOAD, replies: bool = False) -> None:
        self._buf = bytearray()
        self._replies = replies
        self._failed: Optional[WireError] = None
        self.max_payload = max_payload
        self._big: Optional[Tuple[int, int, int]] = None  # pid, tp, length
        self._chunks: List[bytes] = []
        self._have = 0
        self._bound = 0
        self._limit = 0
        self._tail = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete package."""
        return len(self._buf) + self._have

    def _push(self, part: bytes) -> None:
        """Add ``part`` of the big body being gathered (after the tail)."""
        tail = self._tail
        if tail:
            self._push_tail()
        self._chunks.append(part)
        self._bound = tighten_depth_bound(self._bound, part, self._limit)

    def _push_tail(self) -> None:
        tail = self._tail
        part = bytes(tail)
        tail.clear()
        self._chunks.append(part)
        self._bound = tighten_depth_bound(self._bound, part, self._limit)

    def feed(self, data: bytes) -> List[Package]:
        if self._failed is not None:
            raise self._failed
        if self._big is None:
            return self._feed(data)
        pid, tp, length = self._big
        missing = length - self._have
        size = len(data)
        if size < missing:
            self._have += size
            if size < self.SMALL_CHUNK:
                tail = self._tail
                tail += data
                if len(tail) >= self.SMALL_CHUNK:
                    self._push_tail()
            else:
                self._push(data)
            return []
        self._push(data[:missing] if size > missing else data)
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b''.join(chunks)
        bound = self._bound
        self._big = None
        self._chunks = []
        self._have = 0
        out = [_new_package(Package, (pid, tp, body, bound))]
        if size > missing:
            try:
                out += self._feed(data[missing:])
            except WireError as exc:
                exc.packages[:0] = out
                raise
        return out

    def _feed(self, data: bytes) -> List[Package]:
        buf = self._buf
        buf += data
        n = len(buf)
        out: List[Package] = []
        pos = 0
        while n - pos >= HEADER_SIZE:
            length, pid, tp, check = _unpack_header_from(buf, pos)
            if check != tp ^ 0xFF:
                self._fail(f'invalid check byte in package header '
                           f'(type {tp}, check {check})', out)
            if length > self.max_payload:
                self._fail(f'package too large: {length} bytes '
                           f'(limit {self.max_payload})', out)
            end = pos + HEADER_SIZE + length
            if end > n:
                if length >= self.BIG_BODY:  # collect the rest chunk by chunk
                    first = bytes(buf[pos + HEADER_SIZE:])
                    self._big = (pid, tp, length)
                    self._chunks = [first]
                    self._have = len(first)
                    self._limit = limit = (container_limit(length) if self._replies
                                           else MAX_DEPTH)
                    self._bound = tighten_depth_bound(length, first, limit)
                    buf.clear()
                    return out
                break
            # tuple.__new__: a NamedTuple's own __new__ is a Python call
            out.append(_new_package(
                Package, (pid, tp, bytes(buf[pos + HEADER_SIZE:end]), -1)))
            pos = end
        if pos:
            del buf[:pos]
        return out

    def _fail(self, msg: str, completed: List[Package]) -> None:
        self._buf.clear()
        self._failed = self.error(msg)
        exc = self.error(msg)
        exc.packages = completed
        raise exc
