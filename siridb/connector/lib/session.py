"""Writes: validated single writes and buffered write sessions for daemons.

``WriteSession`` buffers points and sends them from one background task in
packages well under the server's size limit. A package that fails for a
reason that may pass (connection lost, server stopped or restarting, pool
offline, timeout) is kept and sent again with backoff; a package the server
rejects (``InsertError``) is split per series so that only the bad series are
reported (``on_error`` or ``RejectedPointsError``) while the rest is written.

Delivery is at-least-once: when a reply is lost after the server stored a
package, the retry stores those points a second time.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import numbers
import random
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Set,
    Tuple,
    Type,
    Union,
)

from .exceptions import (
    BufferFullError,
    ClientClosedError,
    FlushTimeoutError,
    InsertError,
    LoadingDatabaseError,
    PoolError,
    RejectedPointsError,
    ServerError,
    SessionClosedError,
    SessionError,
    TooManyRequestsError,
)
from .timestamps import TimeValue, precision_name, to_timestamp

__all__ = [
    'Point', 'Rejected', 'SessionStats', 'WriteSession', 'SessionError',
    'BufferFullError', 'RejectedPointsError', 'SessionClosedError',
    'FlushTimeoutError', 'make_point', 'database_precision', 'write', 'write_many',
    'RETRIABLE',
]

logger = logging.getLogger('siridb.connector')

_INT64_MIN = -2 ** 63
_INT64_MAX = 2 ** 63 - 1

#: errors after which the same package may succeed later (sent again)
RETRIABLE: Tuple[Type[BaseException], ...] = (
    ConnectionError, OSError, TimeoutError, asyncio.TimeoutError, ServerError,
    PoolError, LoadingDatabaseError, TooManyRequestsError)

Value = Union[int, float, str]


class Point(NamedTuple):
    """One point: ``(series, timestamp, value)``; timestamp None means now."""

    series: str
    timestamp: TimeValue
    value: Value


class _P(NamedTuple):  # a validated point, timestamp in database precision
    series: str
    ts: int
    value: Value


@dataclass(frozen=True)
class Rejected:
    """Points the server refused, with its error (``points`` are ``Point``s
    with integer timestamps in the database precision)."""

    points: List[Point]
    error: BaseException

    def __str__(self) -> str:
        names = sorted({p.series for p in self.points})
        return f'{len(self.points)} point(s) of {names!r}: {self.error}'


# ------------------------------------------------------------------ validation

def _check_value(value: Any) -> Value:
    if isinstance(value, bool) or value is None:
        raise TypeError(f'a value must be int, float or str, not {value!r}')
    if isinstance(value, (int, numbers.Integral)):  # numpy.int64 too
        number = int(value)
        if not _INT64_MIN <= number <= _INT64_MAX:
            raise ValueError(f'integer value {number} is outside the signed 64-bit range')
        return number
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    raise TypeError(f'a value must be int, float or str, not {type(value).__name__}')


def make_point(series: Any, value: Any, timestamp: TimeValue, precision: str) -> _P:
    """Validate one point and convert its timestamp to ``precision``."""
    if not isinstance(series, str):
        raise TypeError(f'a series name must be a str, not {type(series).__name__}')
    if not series:
        raise ValueError('a series name cannot be empty')
    return _P(series, to_timestamp(timestamp, precision), _check_value(value))


def _coerce(item: Any, precision: str) -> _P:
    # a plain tuple/list is positional; an object (a named tuple too, whatever
    # the order of its fields) is read by attribute name
    if type(item) in (tuple, list) and len(item) == 3:
        series, ts, value = item
    elif hasattr(item, 'series') and hasattr(item, 'value'):
        series, value = item.series, item.value
        ts = getattr(item, 'timestamp', getattr(item, 'ts', None))
    elif isinstance(item, (tuple, list)) and len(item) == 3:
        series, ts, value = item
    else:
        raise TypeError('a point must be a (series, timestamp, value) tuple/list or an object '
                        'with series, timestamp and value attributes')
    return make_point(series, value, ts, precision)


def _points(items: Iterable[Any], precision: str) -> List[_P]:
    if isinstance(items, (str, bytes, dict)):
        raise TypeError('write_many expects an iterable of points')
    return [_coerce(item, precision) for item in items]


async def database_precision(client: Any, timeout: float = 60) -> str:
    """The database's time precision ('s', 'ms', 'us' or 'ns'), asked once
    (``show time_precision``) and remembered on the client."""
    cached = getattr(client, '_siridb_precision', None)
    if cached is not None:
        return str(cached)
    res = await client.query('show time_precision', timeout=timeout)
    value = {d['name']: d['value'] for d in res['data']}['time_precision']
    name = precision_name(value)
    try:
        client._siridb_precision = name
    except AttributeError:  # pragma: no cover - slotted client
        pass
    return name


def _package(points: Iterable[_P]) -> Dict[str, List[List[Any]]]:
    data: Dict[str, List[List[Any]]] = {}
    for p in points:
        lst = data.get(p.series)
        if lst is None:
            lst = data[p.series] = []
        lst.append([p.ts, p.value])
    return data


def _take(source: Deque[_P], max_points: int, max_bytes: int) -> List[_P]:
    """Pop one package worth of points from the front of ``source``: at most
    ``max_points``, and at most ``max_bytes`` by a conservative estimate of the
    packed size (one point is always taken, however large)."""
    take: List[_P] = []
    seen: Set[str] = set()
    size = 0
    while source and len(take) < max_points:
        p = source[0]
        est = 20
        if isinstance(p.value, str):
            est += len(p.value) * 4
        if p.series not in seen:
            est += len(p.series) * 4 + 10
        if take and size + est > max_bytes:
            break
        seen.add(p.series)
        size += est
        take.append(source.popleft())
    return take


def _split(points: List[_P], max_points: int, max_bytes: int) -> List[List[_P]]:
    queue = deque(points)
    out: List[List[_P]] = []
    while queue:
        out.append(_take(queue, max_points, max_bytes))
    return out


async def write(client: Any, series: str, value: Value, timestamp: TimeValue = None,
                timeout: float = 300) -> int:
    """Insert one point now (no buffering); returns 1, the count as
    ``write_many`` returns it. See ``WriteSession`` for daemons."""
    precision = await database_precision(client)
    p = make_point(series, value, timestamp, precision)
    await client.insert({p.series: [[p.ts, p.value]]}, timeout=timeout)
    return 1


async def write_many(client: Any, points: Iterable[Any], timeout: float = 300,
                     max_package_points: int = 10_000,
                     max_package_bytes: int = 1 << 20) -> int:
    """Insert ``(series, timestamp, value)`` tuples or ``Point``-like objects,
    in packages well under the server's limit; returns the number written.
    Every point is validated before anything is sent."""
    precision = await database_precision(client)
    pts = _points(points, precision)
    for batch in _split(pts, max_package_points, max_package_bytes):
        await client.insert(_package(batch), timeout=timeout)
    return len(pts)


# --------------------------------------------------------------------- session

@dataclass(frozen=True)
class SessionStats:
    """Counters of a write session (points)."""

    written: int      #: confirmed by the server
    retried: int      #: sent again after a failed attempt
    pending: int      #: taken but not yet confirmed (buffered + in flight)
    rejected: int     #: refused by the server and reported
    packages: int     #: packages confirmed
    last_error: Optional[str]


OnError = Callable[[Rejected], Any]


class WriteSession:
    """Buffered writes with autocommit, retry and backpressure.

    Use as ``async with client.session(...) as s: await s.write(...)``.

    - ``autocommit_every``: send when this many points are buffered;
      ``flush_interval``: send points at most this many seconds after the
      first of them was taken.
    - ``max_buffer_points``: bound on taken-but-unconfirmed points; when it is
      reached ``write`` waits (``on_full='wait'``) or raises
      ``BufferFullError`` (``on_full='error'``, the points are not taken).
    - ``on_error(rejected)``: called (sync or async) with points the server
      rejected; without it they are raised as ``RejectedPointsError`` by the
      next ``commit()``/``flush()``/``close()``.
    - ``retry_delay``/``retry_max_delay``: backoff between attempts of a
      failed package (with jitter); ``insert_timeout`` per attempt.
    - ``time_precision``: the database's precision ('s', 'ms', 'us', 'ns').
      When None it is asked from the server once per client; while no server
      answers, the first ``write`` waits (retrying) instead of failing.
    - ``close_timeout``: the timeout ``async with`` passes to ``close()``
      (None: wait until everything is written).
    """

    def __init__(self, client: Any, *, autocommit_every: int = 1000,
                 flush_interval: float = 1.0, max_buffer_points: int = 100_000,
                 on_full: str = 'wait', on_error: Optional[OnError] = None,
                 max_package_points: int = 10_000, max_package_bytes: int = 1 << 20,
                 retry_delay: float = 0.1, retry_max_delay: float = 10.0,
                 insert_timeout: float = 60.0,
                 time_precision: Optional[str] = None,
                 close_timeout: Optional[float] = None) -> None:
        if on_full not in ('wait', 'error'):
            raise ValueError("on_full must be 'wait' or 'error'")
        for name, v in (('autocommit_every', autocommit_every),
                        ('max_buffer_points', max_buffer_points),
                        ('max_package_points', max_package_points),
                        ('max_package_bytes', max_package_bytes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f'{name} must be a positive int')
        if not flush_interval > 0 or not retry_delay > 0 or not retry_max_delay > 0:
            raise ValueError('flush_interval and retry delays must be positive')
        self._client = client
        self.close_timeout = close_timeout
        self._precision_name = (None if time_precision is None
                                else precision_name(time_precision))
        self.autocommit_every = autocommit_every
        self.flush_interval = float(flush_interval)
        self.max_buffer_points = max_buffer_points
        self.on_full = on_full
        self.on_error = on_error
        self.max_package_points = max_package_points
        self.max_package_bytes = max_package_bytes
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.insert_timeout = insert_timeout
        self._buffer: Deque[_P] = deque()
        self._inflight: List[_P] = []
        self._first_at: Optional[float] = None
        self._accepted = 0
        self._completed = 0
        self._flush_target = 0
        self._written = 0
        self._retried = 0
        self._rejected = 0
        self._packages = 0
        self._last_error: Optional[BaseException] = None
        self._unreported: List[Rejected] = []
        self._closing = False
        self._closed = False
        self._task: Optional[asyncio.Task[None]] = None
        self._kick: Optional[asyncio.Event] = None
        self._progress: Optional[asyncio.Event] = None
        self._failure: Optional[BaseException] = None
        self._rng = random.Random()

    def __repr__(self) -> str:
        return (f'<WriteSession pending={self.pending} written={self._written} '
                f'closed={self._closed}>')

    # --------------------------------------------------------------- counters
    @property
    def pending(self) -> int:
        """Points taken and not yet written or rejected."""
        return len(self._buffer) + len(self._inflight)

    @property
    def written(self) -> int:
        return self._written

    @property
    def retried(self) -> int:
        return self._retried

    @property
    def rejected(self) -> int:
        return self._rejected

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> SessionStats:
        err = self._last_error
        return SessionStats(self._written, self._retried, self.pending, self._rejected,
                            self._packages, None if err is None else
                            f'{type(err).__name__}: {err}')

    # ----------------------------------------------------------------- writes
    async def write(self, series: str, value: Value, timestamp: TimeValue = None) -> int:
        """Take one point (timestamp None = now); returns 1, the count as
        ``write_many`` returns it."""
        self._check_open()
        precision = self._precision_name or await self._precision()
        await self._accept([make_point(series, value, timestamp, precision)])
        return 1

    async def write_many(self, points: Iterable[Any]) -> int:
        """Take ``(series, timestamp, value)`` tuples or ``Point``-like
        objects; all are validated before any is taken. Returns the count."""
        self._check_open()
        precision = await self._precision()
        pts = _points(points, precision)
        await self._accept(pts)
        return len(pts)

    async def _precision(self) -> str:
        if self._precision_name is not None:
            return self._precision_name
        delay = self.retry_delay
        while True:
            try:
                name = await database_precision(self._client, self.insert_timeout)
            except ClientClosedError:
                raise
            except RETRIABLE as exc:
                self._last_error = exc
                logger.warning('write session: cannot learn the time precision yet '
                               '(%s: %s); retrying in %.2f s', type(exc).__name__, str(exc),
                               delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_delay)
                self._check_open()
                continue
            self._precision_name = name
            return name

    def _check_open(self) -> None:
        if self._closing or self._closed:
            raise SessionClosedError('write session is closed')
        if self._failure is not None:
            raise SessionError(f'write session failed: {self._failure!r}')

    def _start(self) -> None:
        if self._task is None:
            self._kick = asyncio.Event()
            self._progress = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _accept(self, pts: List[_P]) -> None:
        self._start()
        if not pts:
            return
        if self.on_full == 'error' and self.pending + len(pts) > self.max_buffer_points:
            raise BufferFullError(
                f'write session buffer full: {self.pending} pending + {len(pts)} new > '
                f'max_buffer_points={self.max_buffer_points}; nothing was taken')
        i = 0
        while i < len(pts):
            self._check_open()
            space = self.max_buffer_points - self.pending
            if space <= 0:
                self._flush_target = max(self._flush_target, self._accepted)
                self._wake()
                await self._wait_progress()
                continue
            chunk = pts[i:i + space]
            i += len(chunk)
            if not self._buffer:
                self._first_at = asyncio.get_running_loop().time()
                self._wake()
            self._buffer.extend(chunk)
            self._accepted += len(chunk)
            if len(self._buffer) >= self.autocommit_every:
                self._wake()

    def _wake(self) -> None:
        if self._kick is not None:
            self._kick.set()

    def _notify(self) -> None:
        ev = self._progress
        if ev is not None:
            self._progress = asyncio.Event()
            ev.set()

    async def _wait_progress(self) -> None:
        ev = self._progress
        task = self._task
        if ev is None or task is None:
            return
        if task.done():
            self._raise_failure()
        waiter = asyncio.ensure_future(ev.wait())
        try:
            await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not waiter.done():
                waiter.cancel()
                await asyncio.gather(waiter, return_exceptions=True)
        if task.done() and not ev.is_set():
            self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise SessionError(f'write session failed: {self._failure!r}')
        raise SessionClosedError('write session is closed')

    # ----------------------------------------------------------------- commit
    async def commit(self) -> None:
        """Send everything taken so far and wait until it is written or
        rejected; raises ``RejectedPointsError`` for unreported rejections."""
        self._start()
        target = self._accepted
        self._flush_target = max(self._flush_target, target)
        self._wake()
        while self._completed < target:
            await self._wait_progress()
        self._report()

    flush = commit

    def _report(self) -> None:
        if self._unreported:
            rejected, self._unreported = self._unreported, []
            raise RejectedPointsError(rejected)

    async def close(self, timeout: Optional[float] = None) -> None:
        """Stop taking points, send what is pending, stop the background task.

        With ``timeout`` (seconds), points still unconfirmed then are raised
        in ``FlushTimeoutError.points`` (never dropped silently). Raises
        ``RejectedPointsError`` for unreported rejections. Idempotent.
        """
        if self._closed:
            self._report()
            return
        self._closing = True
        task = self._task
        if task is not None:
            self._wake()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except asyncio.TimeoutError:
                self._closed = True  # the points are handed back below
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                left = [Point(*p) for p in self._inflight] + [Point(*p) for p in self._buffer]
                self._inflight = []
                self._buffer.clear()
                self._notify()
                raise FlushTimeoutError(left, self._last_error) from None
            except asyncio.CancelledError:
                raise
            except BaseException:  # the flusher failed: report below
                pass
        self._closed = True
        self._notify()
        if self._failure is not None:
            raise SessionError(f'write session failed: {self._failure!r}')
        self._report()

    async def aclose(self) -> None:
        """``close(self.close_timeout)``: what leaving ``async with`` does
        (``contextlib.aclosing`` works)."""
        await self.close(self.close_timeout)

    async def __aenter__(self) -> WriteSession:
        self._start()
        return self

    async def __aexit__(self, et: Optional[Type[BaseException]],
                        ev: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.aclose()

    # ---------------------------------------------------------------- flusher
    def _due(self, now: float) -> bool:
        return bool(
            self._closing or self._completed < self._flush_target
            or len(self._buffer) >= self.autocommit_every
            or (self._first_at is not None and now >= self._first_at + self.flush_interval))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        kick = self._kick
        assert kick is not None
        try:
            while True:
                if not self._buffer:
                    self._first_at = None
                    if self._closing:
                        return
                    kick.clear()
                    if not self._buffer and not self._closing:
                        await kick.wait()
                    continue
                now = loop.time()
                if not self._due(now):
                    kick.clear()
                    first = self._first_at if self._first_at is not None else now
                    try:
                        await asyncio.wait_for(kick.wait(),
                                               first + self.flush_interval - now)
                    except asyncio.TimeoutError:
                        pass
                    continue
                started = loop.time()
                await self._send_next()
                if self._buffer:
                    self._first_at = started
        except asyncio.CancelledError:
            if not self._closed and self.pending:
                # e.g. the loop shut down with the session never closed
                logger.error('write session cancelled with %d point(s) not confirmed '
                             'written (close() was not awaited)', self.pending)
            raise
        except BaseException as exc:
            logger.exception('write session flusher failed')
            self._failure = exc
        finally:
            self._notify()

    async def _send_next(self) -> None:
        take = _take(self._buffer, self.max_package_points, self.max_package_bytes)
        self._inflight = take  # kept when cancelled: close() hands them back
        await self._deliver(take)
        self._inflight = []
        self._completed += len(take)
        self._notify()

    async def _deliver(self, batch: List[_P]) -> None:
        """Send ``batch`` until written; rejected series are reported."""
        err = await self._send_with_retry(batch)
        if err is None:
            return
        if isinstance(err, InsertError) and len({p.series for p in batch}) > 1:
            # the server refuses a whole request: find the bad series
            by_series: Dict[str, List[_P]] = {}
            for p in batch:
                by_series.setdefault(p.series, []).append(p)
            for pts in by_series.values():
                sub_err = await self._send_with_retry(pts)
                if sub_err is not None:
                    await self._reject(pts, sub_err)
            return
        await self._reject(batch, err)

    async def _send_with_retry(self, batch: List[_P]) -> Optional[BaseException]:
        """None when written; the error when the server refused it for good."""
        delay = self.retry_delay
        while True:
            try:
                await self._client.insert(_package(batch), timeout=self.insert_timeout)
            except asyncio.CancelledError:
                raise
            except ClientClosedError as exc:  # closed by its owner: never comes back
                self._last_error = exc
                return exc
            except RETRIABLE as exc:
                self._last_error = exc
                self._retried += len(batch)
                sleep = delay * (0.5 + self._rng.random() / 2)
                logger.warning('write session: sending %d point(s) failed (%s: %s); '
                               'retrying in %.2f s', len(batch), type(exc).__name__,
                               str(exc), sleep)  # a text: a kept record pins no traceback
                await asyncio.sleep(sleep)
                delay = min(delay * 2, self.retry_max_delay)
            except Exception as exc:
                self._last_error = exc
                return exc
            else:
                self._written += len(batch)
                self._packages += 1
                return None

    async def _reject(self, batch: List[_P], exc: BaseException) -> None:
        self._rejected += len(batch)
        rejected = Rejected([Point(*p) for p in batch], exc)
        logger.error('write session: server rejected %s', str(rejected))
        if self.on_error is None:
            self._unreported.append(rejected)
            return
        try:
            res = self.on_error(rejected)
            if inspect.isawaitable(res):
                await res
        except Exception:
            logger.exception('write session on_error callback failed')
            self._unreported.append(rejected)
