"""Writes: validated single writes and buffered write sessions for daemons.

``WriteSession`` validates each point once as it is taken and appends it to
per-series buffers in the shape of an INSERT package (``writebuffer``); full
packages are sent by background tasks, up to ``max_in_flight`` at a time (the
pool spreads them over its servers). A package that fails for a reason that
may pass (``exceptions.is_retriable``: connection lost, server stopped or
restarting, pool offline, timeout, a forward to another pool failed) is kept
by its task and sent again with backoff until written, so it is confirmed
once and never dropped; a package the server rejects (``InsertError``) is
split per series so that only the bad series are reported (``on_error`` or
``RejectedPointsError``) while the rest is written.

Delivery (``delivery=``): a refusal that says nothing was stored
(``exceptions.outcome_known``: a server not running, a pool offline, no
connection) is sent again after the backoff in both modes. ``'verified'``
(the default) asks the server, before sending again a package whose outcome
is unknown (no reply, or ``InsertForwardError``), which of its points
it holds and sends only the missing ones (module ``delivery``), and checks the
recently confirmed packages again when the server that confirmed them lost
its connection; ``'at_least_once'`` resends the whole package, so a package
the server stored without its reply arriving is stored twice.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    List,
    NamedTuple,
    Optional,
    Tuple,
    Type,
    Union,
)

from .backoff import Backoff
from .constants import INT64_MAX, INT64_MIN
from .dbprecision import database_precision
from .delivery import DELIVERY_MODES, VERIFIED, Check, Confirmed, Window
from .exceptions import (  # the session errors are defined there; importable here too
    BufferFullError,
    Failover,
    FlushTimeoutError,
    InsertError,
    RejectedPointsError,
    SessionClosedError,
    SessionError,
    failover_of,
    is_retriable,
    outcome_known,
)
from .timestamps import TimeValue, max_timestamp, precision_name, to_timestamp
from .validate import (
    Pair,
    Value,
    check_series,
    check_value,
    column_pairs,
    group_points,
    pack_points,
)
from .writebuffer import Package, WriteBuffer

__all__ = [
    'Point', 'Rejected', 'SessionStats', 'WriteSession', 'SessionError',
    'BufferFullError', 'RejectedPointsError', 'SessionClosedError',
    'FlushTimeoutError', 'make_point', 'database_precision', 'write', 'write_many',
    'Value',
]

logger = logging.getLogger('siridb.connector')

#: jitter of the retry delays: each is shortened by up to this fraction
RETRY_JITTER = 0.5
#: seconds between checks for lost connections while a verified session idles
VERIFY_POLL = 1.0


class Point(NamedTuple):
    """One point: ``(series, timestamp, value)``; timestamp None means now."""

    series: str
    timestamp: TimeValue
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


def make_point(series: Any, value: Any, timestamp: TimeValue, precision: str) -> Point:
    """Validate one point and convert its timestamp to ``precision``."""
    return Point(check_series(series), to_timestamp(timestamp, precision),
                 check_value(value))


def _points_of(packages: Iterable[Package]) -> List[Point]:
    return [Point(*p) for pkg in packages for p in pkg.points()]


async def write(client: Any, series: str, value: Value, timestamp: TimeValue = None,
                timeout: float = 300) -> int:
    """Insert one point now (no buffering); returns 1, the count as
    ``write_many`` returns it. See ``WriteSession`` for daemons."""
    precision = await database_precision(client)
    p = make_point(series, value, timestamp, precision)
    await client.insert({p.series: [(p.timestamp, p.value)]}, timeout=timeout)
    return 1


async def write_many(client: Any, points: Iterable[Any], timeout: float = 300,
                     max_package_points: int = 10_000,
                     max_package_bytes: int = 1 << 20) -> int:
    """Insert ``(series, timestamp, value)`` tuples or ``Point``-like objects,
    in packages well under the server's limit; returns the number written.
    Every point is validated before anything is sent."""
    precision = await database_precision(client)
    groups, n, texts = group_points(points, precision)
    buf = WriteBuffer(max_package_points, max_package_bytes, max(n, 1))
    for series, pairs in groups.items():
        buf.put(series, pairs, series in texts)
    buf.seal()
    for pkg in buf.ready:
        await client.insert(pkg.data, timeout=timeout)
    return n


# --------------------------------------------------------------------- session

class Resend(Package):
    """Points sent again after a check; ``credit`` of them count as written
    when confirmed (the others were confirmed before and the server lost them)."""

    __slots__ = ('credit',)

    def __init__(self, data: Optional[Dict[str, List[Pair]]], body: Optional[bytes],
                 n: int, seq: int, credit: int) -> None:
        super().__init__(data, body, n, seq)
        self.credit = credit


def _same_owner(cls: type, a: str, b: str) -> bool:
    """True when methods ``a`` and ``b`` of ``cls`` are defined by one class."""
    owners = [next((k for k in cls.__mro__ if name in vars(k)), None) for name in (a, b)]
    return owners[0] is not None and owners[0] is owners[1]


@dataclass(frozen=True)
class SessionStats:
    """Counters of a write session (points)."""

    written: int      #: confirmed by the server
    retried: int      #: sent again after a failed attempt
    pending: int      #: taken but not yet confirmed (buffered + in flight)
    rejected: int     #: refused by the server and reported
    packages: int     #: packages confirmed
    last_error: Optional[str]
    unknown: int = 0          #: packages sent whose outcome was unknown (no reply)
    verifications: int = 0    #: checks of unknown or suspect packages against the server
    verify_queries: int = 0   #: select queries those checks sent
    verified: int = 0         #: points those checks covered
    missing: int = 0          #: points found missing (of unknown and of confirmed packages)
    lost_confirmed: int = 0   #: of those, points the server had confirmed
    resent: int = 0           #: points sent again after a check
    resent_packages: int = 0  #: packages those were sent in
    verify_time: float = 0.0  #: seconds spent in checks


OnError = Callable[[Rejected], Any]
#: what one insert request sends: a package packed once, or its dict
Payload = Union[bytes, Dict[str, List[Pair]]]


class WriteSession:
    """Buffered writes with autocommit, retry and backpressure.

    Use as ``async with client.session(...) as s: await s.write(...)``;
    ``write_many`` takes point tuples, ``write_series`` the columns of one
    series (sequences or numpy arrays).

    - ``autocommit_every``: a package is sent when it holds this many points
      (or ``max_package_points``/``max_package_bytes``, whichever is reached
      first); ``flush_interval``: points are sent at most this many seconds
      after the first of their package was taken.
    - ``max_in_flight``: packages sent at the same time (each on a request
      of its own; the pool chooses a server per request).
    - ``max_buffer_points``: bound on taken-but-unconfirmed points; when it is
      reached ``write`` waits (``on_full='wait'``) or raises
      ``BufferFullError`` (``on_full='error'``, the points are not taken).
    - ``on_error(rejected)``: called (sync or async) with points the server
      rejected; without it they are raised as ``RejectedPointsError`` by the
      next ``commit()``/``flush()``/``close()``.
    - ``retry_delay``/``retry_max_delay``: backoff between attempts of a
      failed package (``backoff.Backoff`` with jitter); ``insert_timeout``
      per attempt.
    - ``time_precision``: the database's precision ('s', 'ms', 'us', 'ns').
      When None it is asked from the server once per client; while no server
      answers, the first ``write`` waits (retrying) instead of failing.
    - ``close_timeout``: the timeout ``async with`` passes to ``close()``
      (None: wait until everything is written).
    - ``delivery``: ``'verified'`` or ``'at_least_once'`` (see the module);
      ``window_points``/``window_bytes`` bound the recently confirmed
      packages a verified session keeps to check again after a server lost
      its connection; before a check it waits up to ``verify_wait`` seconds
      for every server to be connected and, when one was down,
      ``verify_settle`` more (replicas catching up).
    """

    def __init__(self, client: Any, *, autocommit_every: int = 1000,
                 flush_interval: float = 1.0, max_buffer_points: int = 100_000,
                 on_full: str = 'wait', on_error: Optional[OnError] = None,
                 max_package_points: int = 10_000, max_package_bytes: int = 1 << 20,
                 max_in_flight: int = 4,
                 retry_delay: float = 0.1, retry_max_delay: float = 10.0,
                 insert_timeout: float = 60.0,
                 time_precision: Optional[str] = None,
                 close_timeout: Optional[float] = None,
                 delivery: str = VERIFIED, window_points: int = 20_000,
                 window_bytes: int = 2 << 20, verify_wait: float = 30.0,
                 verify_settle: float = 5.0) -> None:
        if on_full not in ('wait', 'error'):
            raise ValueError("on_full must be 'wait' or 'error'")
        if delivery not in DELIVERY_MODES:
            raise ValueError(f'delivery must be one of {DELIVERY_MODES!r}')
        for name, v in (('autocommit_every', autocommit_every),
                        ('max_buffer_points', max_buffer_points),
                        ('max_package_points', max_package_points),
                        ('max_package_bytes', max_package_bytes),
                        ('max_in_flight', max_in_flight),
                        ('window_points', window_points), ('window_bytes', window_bytes)):
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
        self.max_in_flight = max_in_flight
        self.retry_delay = retry_delay
        self.retry_max_delay = retry_max_delay
        self.insert_timeout = insert_timeout
        #: clients with ``insert_packed`` get each package packed once, when
        #: it is sealed; others are handed the dict (``insert(data)``)
        self._packed = callable(getattr(client, 'insert_packed', None))
        #: a pool client sends once per attempt and says which server confirmed
        #: (not when a subclass overrides ``insert_packed`` alone: it is used)
        self._once = self._packed and _same_owner(type(client), 'insert_once',
                                                  'insert_packed')
        self.delivery = delivery
        if not verify_wait >= 0 or not verify_settle >= 0:
            raise ValueError('verify_wait and verify_settle must be >= 0')
        self.verify_wait = float(verify_wait)
        self.verify_settle = float(verify_settle)
        self._verified = delivery == VERIFIED
        self._window = Window(window_points, window_bytes,
                              client.hosts if self._once else ())
        #: senders whose package's outcome is unknown, waiting for a check
        self._waiting: Dict[Package, asyncio.Future[None]] = {}
        #: a check is due (a lost connection) or running
        self._want_check = False
        self._checker: Optional[asyncio.Task[None]] = None
        self._unknown = 0
        self._verifications = 0
        self._verify_queries = 0
        self._verified_points = 0
        self._missing = 0
        self._lost_confirmed = 0
        self._resent = 0
        self._resent_packages = 0
        self._verify_time = 0.0
        self._buf = WriteBuffer(min(autocommit_every, max_package_points),
                                max_package_bytes, max_buffer_points,
                                pack_points if self._packed else None)
        #: the largest timestamp the per-point path takes; -1 sends every
        #: point through ``_write_checked`` (precision unknown, not started,
        #: closing or failed)
        self._max_ts = -1
        self._first_at: Optional[float] = None
        self._sending: Dict[asyncio.Task[None], Package] = {}
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
        #: no more senders are started (cancelled, or closed by a timeout)
        self._halted = False

    def __repr__(self) -> str:
        return (f'<WriteSession pending={self.pending} written={self._written} '
                f'closed={self._closed}>')

    # --------------------------------------------------------------- counters
    @property
    def pending(self) -> int:
        """Points taken and not yet written or rejected."""
        return self._buf.pending

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
                            f'{type(err).__name__}: {err}', self._unknown,
                            self._verifications, self._verify_queries,
                            self._verified_points, self._missing, self._lost_confirmed,
                            self._resent, self._resent_packages, self._verify_time)

    # ----------------------------------------------------------------- writes
    async def write(self, series: str, value: Value, timestamp: TimeValue = None) -> int:
        """Take one point (timestamp None = now); returns 1, the count as
        ``write_many`` returns it."""
        # the common case, checked inline: an int timestamp in range, a
        # float or int (64-bit) value and a series already in the open package
        buf = self._buf
        if type(timestamp) is int and 0 <= timestamp <= self._max_ts:
            tv = type(value)
            number: Any = value
            if tv is float or (tv is int and INT64_MIN <= number <= INT64_MAX):
                try:  # a key of the open package is a checked series name
                    pairs = buf.open.get(series)
                except TypeError:  # unhashable: the checks below say what is wrong
                    pairs = None
                if pairs is not None and buf.room:
                    pairs.append((timestamp, value))
                    buf.room -= 1
                    if not buf.room:
                        self._refill()
                        await asyncio.sleep(0)  # a sender may start now
                    return 1
                if type(series) is str and series and buf.free > 0:
                    # valid, the first of its series in this package
                    was_empty = not buf.open_n
                    seq = buf.seq
                    buf.put(series, [(timestamp, value)], False)
                    if self._taken(was_empty, seq):
                        await asyncio.sleep(0)
                    return 1
        await self._write_checked(series, value, timestamp)
        return 1

    async def _write_checked(self, series: Any, value: Any, timestamp: TimeValue) -> None:
        precision = await self._ready()
        name = check_series(series)
        pair = (to_timestamp(timestamp, precision), check_value(value))
        if self.on_full == 'error':
            self._check_room(1)
        await self._take(name, [pair], type(pair[1]) is str)

    async def write_many(self, points: Iterable[Any]) -> int:
        """Take ``(series, timestamp, value)`` tuples or ``Point``-like
        objects; all are validated before any is taken. Returns the count."""
        precision = await self._ready()
        groups, n, texts = group_points(points, precision)
        if self.on_full == 'error':
            self._check_room(n)
        buf = self._buf
        if n <= self.max_buffer_points:
            await self._wait_room(n)  # then all are taken in one step
            was_empty = not buf.open_n
            seq = buf.seq
            buf.put_groups(groups, texts)
            if self._taken(was_empty, seq):
                await asyncio.sleep(0)  # let the senders start on the new packages
            return n
        for series, pairs in groups.items():
            await self._take(series, pairs, series in texts)
        return n

    async def write_series(self, series: str, timestamps: Any, values: Any) -> int:
        """Take many points of one series from two columns of equal length:
        sequences, or numpy arrays (int64 timestamps in the database
        precision; read through ``tolist()``, numpy is not needed otherwise).
        All are validated before any is taken. Returns the count."""
        precision = await self._ready()
        name = check_series(series)
        pairs, texts = column_pairs(timestamps, values, precision)
        if self.on_full == 'error':
            self._check_room(len(pairs))
        if len(pairs) <= self.max_buffer_points:
            await self._wait_room(len(pairs))  # then all are taken at once
        await self._take(name, pairs, texts)
        return len(pairs)

    async def _wait_room(self, n: int) -> None:
        """Wait until ``n`` points may be taken (at most ``max_buffer_points``)."""
        while True:
            self._check_open()
            if n <= self._buf.free:
                return
            self._seal()  # send what waits, so that room is made
            await self._wait_progress()

    def _check_room(self, n: int) -> None:
        if n > self._buf.free:
            raise BufferFullError(
                f'write session buffer full: {self.pending} pending + {n} new > '
                f'max_buffer_points={self.max_buffer_points}; nothing was taken')

    async def _ready(self) -> str:
        """Check the session is open, start it, learn the precision; arm the
        per-point path."""
        self._check_open()
        precision = self._precision_name or await self._precision()
        self._start()
        if self._max_ts < 0 and not self._closing and self._failure is None:
            self._max_ts = max_timestamp(precision)
        return precision

    async def _precision(self) -> str:
        if self._precision_name is not None:
            return self._precision_name
        backoff = Backoff(self.retry_delay, self.retry_max_delay, RETRY_JITTER)
        while True:
            try:
                name = await database_precision(self._client, self.insert_timeout)
            except Exception as exc:
                if not is_retriable(exc):
                    raise
                self._last_error = exc
                delay = backoff.next_delay()
                logger.warning('write session: cannot learn the time precision yet '
                               '(%s: %s); retrying in %.2f s', type(exc).__name__, str(exc),
                               delay)
                await asyncio.sleep(delay)
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

    async def _take(self, series: str, pairs: List[Pair], texts: bool) -> None:
        """Take validated points of one series, waiting for room as needed."""
        buf = self._buf
        i = 0
        n = len(pairs)
        while i < n:
            self._check_open()
            free = buf.free
            if free <= 0:
                self._seal()  # send what waits, so that room is made
                await self._wait_progress()
                continue
            chunk = pairs if i == 0 and free >= n else pairs[i:i + free]
            i += len(chunk)
            was_empty = not buf.open_n
            seq = buf.seq
            buf.put(series, chunk, texts)
            if self._taken(was_empty, seq):
                await asyncio.sleep(0)  # let the senders start on the new packages

    def _taken(self, was_empty: bool, seq: int) -> bool:
        """After points were put: time a new open package (the flusher's
        timer), start senders for sealed packages; True when some were sealed."""
        buf = self._buf
        sealed = buf.seq != seq
        if buf.open_n and (was_empty or sealed):
            self._first_at = asyncio.get_running_loop().time()
            self._wake()
        if sealed:
            self._launch()
        return sealed

    def _refill(self) -> None:
        """The per-point path used up its room: send the open package when it
        is full, else learn how much more may be taken."""
        buf = self._buf
        if buf.full:
            self._seal()
        else:
            buf.refresh()

    def _seal(self) -> None:
        if self._buf.seal() is not None:
            self._first_at = None
            self._launch()

    def _launch(self) -> None:
        """Start a sender task per sealed package while fewer than
        ``max_in_flight`` are being sent (right away: not when the flusher
        next runs, which a producer that never waits would delay)."""
        buf = self._buf
        if not buf.ready or self._halted or self._waiting or self._want_check:
            return  # (a check needs no other package in flight)
        loop = asyncio.get_running_loop()
        sending = self._sending
        while buf.ready and len(sending) < self.max_in_flight:
            pkg = buf.ready.popleft()
            sender = loop.create_task(self._deliver(pkg))
            sending[sender] = pkg
            sender.add_done_callback(self._sent)

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
        self._seal()
        seq = self._buf.seq
        while not self._done_through(seq):
            await self._wait_progress()
        self._report()

    flush = commit

    def _done_through(self, seq: int) -> bool:
        """True when every package sealed up to ``seq`` is written or rejected."""
        ready = self._buf.ready
        if ready and ready[0].seq <= seq:
            return False
        return all(pkg.seq > seq for pkg in self._sending.values())

    def _report(self) -> None:
        if self._unreported:
            rejected, self._unreported = self._unreported, []
            raise RejectedPointsError(rejected)

    async def close(self, timeout: Optional[float] = None) -> None:
        """Stop taking points, send what is pending, stop the background tasks.

        With ``timeout`` (seconds), points still unconfirmed then are raised
        in ``FlushTimeoutError.points`` (never dropped silently). Raises
        ``RejectedPointsError`` for unreported rejections. Idempotent.
        """
        if self._closed:
            self._report()
            return
        self._closing = True
        self._max_ts = -1
        task = self._task
        if task is not None:
            self._seal()
            self._wake()
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout)
            except asyncio.TimeoutError:
                self._closed = True  # the points are handed back below
                self._halted = True
                left = _points_of(self._sending.values())
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                left.extend(Point(*p) for p in self._buf.clear())
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

    async def __aenter__(self) -> WriteSession:
        self._start()
        return self

    async def aclose(self) -> None:
        """``close(self.close_timeout)``: what leaving ``async with`` does
        (``contextlib.aclosing`` works)."""
        await self.close(self.close_timeout)

    async def __aexit__(self, et: Optional[Type[BaseException]],
                        ev: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.aclose()

    # ---------------------------------------------------------------- senders
    async def _run(self) -> None:
        """Seal the open package when it is due, start a task per sealed
        package (at most ``max_in_flight`` at once), end when closed and empty."""
        loop = asyncio.get_running_loop()
        kick = self._kick
        buf = self._buf
        assert kick is not None
        try:
            while True:
                first = self._first_at
                if buf.open_n and (self._closing or first is None
                                   or loop.time() >= first + self.flush_interval):
                    self._seal()
                if self._verified and not self._want_check and self._window.suspect():
                    self._want_check = True  # a server lost its connection since
                self._maybe_check()
                self._launch()
                if (self._closing and not buf.open_n and not buf.ready and not self._sending
                        and not self._want_check):
                    return
                kick.clear()
                first = self._first_at
                due = first + self.flush_interval if buf.open_n and first is not None else None
                if self._verified and self._window.items and self._window.hosts:
                    poll = loop.time() + VERIFY_POLL
                    due = poll if due is None else min(due, poll)
                timer = loop.call_at(due, kick.set) if due is not None else None
                try:
                    await kick.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
        except asyncio.CancelledError:
            self._halted = True
            checker = self._checker
            if checker is not None:
                checker.cancel()
                await asyncio.gather(checker, return_exceptions=True)
            senders = list(self._sending)
            for sender in senders:
                sender.cancel()
            await asyncio.gather(*senders, return_exceptions=True)
            if not self._closed and self.pending:
                # e.g. the loop shut down with the session never closed
                logger.error('write session cancelled with %d point(s) not confirmed '
                             'written (close() was not awaited)', self.pending)
            raise
        except BaseException as exc:
            logger.exception('write session flusher failed')
            self._fail(exc)
        finally:
            self._notify()

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        self._max_ts = -1

    def _sent(self, sender: asyncio.Task[None]) -> None:
        self._sending.pop(sender, None)
        if not sender.cancelled():
            exc = sender.exception()
            if exc is not None:
                logger.error('write session sender failed: %s: %s',
                             type(exc).__name__, str(exc))
                self._fail(exc)
        self._maybe_check()
        self._launch()
        self._wake()
        self._notify()  # commit() waits for the sender to leave ``_sending``

    async def _deliver(self, pkg: Package) -> None:
        """Send ``pkg`` until written; rejected series are reported. Its
        points count as completed once, here (not when cancelled), or by the
        check that settles it when its outcome is unknown (verified)."""
        payload: Payload = pkg.body if pkg.body is not None else pkg.groups()
        credit = pkg.credit if isinstance(pkg, Resend) else pkg.n
        if self._verified:
            err = await self._send_verified(payload, pkg, credit)
            if err is None:
                return  # confirmed, or settled by a check
        else:
            err = await self._send_with_retry(payload, pkg.n, credit)
        if err is not None:
            groups = pkg.groups()
            settled = 0
            if isinstance(err, InsertError) and len(groups) > 1:
                # the server refuses a whole request (storing none of it):
                # find the bad series
                for series, pairs in groups.items():
                    n = len(pairs)
                    payload = self._payload({series: pairs})
                    if self._verified:  # confirmed or checked: completed there
                        sub = Package({series: pairs}, None, n, pkg.seq)
                        sub_err = await self._send_verified(payload, sub, min(n, credit))
                        if sub_err is None:
                            settled += n
                    else:
                        sub_err = await self._send_with_retry(payload, n, min(n, credit))
                    if sub_err is None:
                        credit -= min(n, credit)
                    else:
                        await self._reject([Point(series, ts, v) for ts, v in pairs],
                                           sub_err)
            else:
                await self._reject(_points_of([pkg]), err)
            if settled:
                pkg = Package(None, None, pkg.n - settled, pkg.seq)
        self._buf.completed(pkg)
        self._notify()

    def _payload(self, data: Dict[str, List[Pair]]) -> Payload:
        if self._packed:
            try:
                return pack_points(data)
            except (OverflowError, TypeError, ValueError):
                pass
        return data

    async def _send(self, payload: Payload) -> Any:
        """One attempt; with a pool client, on one server without failover
        (the session decides what to send again), returning the server that
        confirmed (``HostState``; None for other clients)."""
        client = self._client
        if type(payload) is bytes:
            if self._once:
                host = await client.insert_once(payload, timeout=self.insert_timeout)
                return host
            await client.insert_packed(payload, timeout=self.insert_timeout)
        else:
            await client.insert(payload, timeout=self.insert_timeout)
        return None

    def _failed(self, exc: Exception, n: int) -> bool:
        """Count a failed attempt; True when its outcome is unknown (sent,
        with no answer saying what the server did: ``outcome_known``)."""
        self._last_error = exc
        self._retried += n
        unknown = not outcome_known(exc)
        if unknown:
            self._unknown += 1
        return unknown

    def _next_delay(self, exc: Exception,
                    backoff: Optional[Backoff]) -> Tuple[Backoff, float]:
        """The backoff of a package's retries (made at its first failure) and
        the seconds before its next attempt: none after the first failure on
        a lost or stopped server (another one right away, as the pool
        would), else the backoff's next delay."""
        if backoff is None:
            backoff = Backoff(self.retry_delay, self.retry_max_delay, RETRY_JITTER)
            if failover_of(exc) is Failover.OTHER_SERVER:
                return backoff, 0.0
        return backoff, backoff.next_delay()

    async def _send_with_retry(self, payload: Payload, n: int,
                               credit: int) -> Optional[BaseException]:
        """At-least-once: None when written; the error when the server
        refused it for good. ``credit``: points counted written on success."""
        backoff: Optional[Backoff] = None
        while True:
            try:
                await self._send(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_retriable(exc):  # refused, or the client closed by its owner
                    self._last_error = exc
                    return exc
                self._failed(exc, n)
                backoff, delay = self._next_delay(exc, backoff)
                logger.warning('write session: sending %d point(s) failed (%s: %s); '
                               'retrying in %.2f s', n, type(exc).__name__,
                               str(exc), delay)  # a text: a kept record pins no traceback
                await asyncio.sleep(delay)
            else:
                self._written += credit
                self._packages += 1
                return None

    async def _send_verified(self, payload: Payload, pkg: Package,
                             credit: int) -> Optional[BaseException]:
        """Verified: None when confirmed (kept in the window) or settled by a
        check after an unknown outcome; the error when refused for good."""
        backoff: Optional[Backoff] = None
        while True:
            try:
                who = await self._send(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_retriable(exc):
                    self._last_error = exc
                    return exc
                if self._failed(exc, pkg.n):
                    logger.warning('write session: %d point(s) sent, outcome unknown '
                                   '(%s: %s); checking what the server holds', pkg.n,
                                   type(exc).__name__, str(exc))
                    await self._settle(pkg)
                    return None
                # refused with nothing stored (or never sent): send it again
                backoff, delay = self._next_delay(exc, backoff)
                logger.warning('write session: sending %d point(s) failed (%s: %s); '
                               'retrying in %.2f s', pkg.n, type(exc).__name__,
                               str(exc), delay)
                await asyncio.sleep(delay)
            else:
                self._written += credit
                self._packages += 1
                self._window.add(Confirmed(pkg, who))
                self._buf.completed(pkg)
                self._notify()
                return None

    # ----------------------------------------------------------------- checks
    async def _settle(self, pkg: Package) -> None:
        """Wait until a check has settled ``pkg`` (outcome unknown)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[pkg] = fut
        self._maybe_check()
        await fut

    def _maybe_check(self) -> None:
        """Start a check when one is due and no package is in flight (every
        sender left waits for it): what the server holds then is final."""
        if not (self._waiting or self._want_check) or self._halted:
            return
        if self._checker is not None or len(self._waiting) != len(self._sending):
            return
        self._want_check = True
        self._checker = asyncio.get_running_loop().create_task(self._check())

    async def _check(self) -> None:
        """Ask the server which points of the unknown packages (and of the
        suspect confirmed ones) it holds; send the missing ones again."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiting = dict(self._waiting)
        unknown = list(waiting)
        try:
            whole = False
            chk: Optional[Check] = None
            backoff = Backoff(self.retry_delay, self.retry_max_delay, RETRY_JITTER)
            await self._await_servers(started)
            while True:
                if chk is None or self._window.suspect():
                    # the connections as they are when asked: a server still
                    # down is checked again when it is back
                    whole = whole or self._window.suspect()
                    self._window.checked()
                    chk = Check(unknown, self._window, whole)
                    queries = chk.queries()
                try:
                    views = await self._ask(queries)
                    missing = chk.missing(views)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._last_error = exc
                    if not is_retriable(exc):
                        # cannot read: send the unknown packages again whole
                        logger.error('write session: cannot check what the server holds '
                                     '(%s: %s); sending %d package(s) again whole',
                                     type(exc).__name__, str(exc), len(unknown))
                        missing = {}
                        for _, groups in chk.unknown:
                            for series, pairs in groups.items():
                                missing.setdefault(series, []).extend(pairs)
                        break
                    delay = backoff.next_delay()
                    logger.warning('write session: check failed (%s: %s); retrying '
                                   'in %.2f s', type(exc).__name__, str(exc), delay)
                    await asyncio.sleep(delay)
            from_unknown, from_window = chk.settle(missing)
            self._verifications += 1
            self._verified_points += chk.points
            self._missing += from_unknown + from_window
            self._lost_confirmed += from_window
            # written: the stored points of each unknown package, up to its credit
            carried = 0
            lacking = from_unknown
            for pkg in unknown:
                credit = pkg.credit if isinstance(pkg, Resend) else pkg.n
                self._written += credit
                carried += credit
            carried = min(carried, lacking)
            self._written -= carried
            if missing:
                self._resend(missing, carried, min([p.seq for p in unknown], default=0))
            for pkg in unknown:
                self._buf.completed(pkg)
            if from_unknown or from_window:
                logger.warning('write session: %d point(s) missing on the server '
                               '(%d of them confirmed before); sending them again',
                               from_unknown + from_window, from_window)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            logger.exception('write session check failed')
            self._fail(exc)
        finally:
            self._verify_time += loop.time() - started
            self._checker = None
            self._want_check = False
            for pkg, fut in waiting.items():
                self._waiting.pop(pkg, None)
                if not fut.done():
                    fut.set_result(None)
            self._launch()
            self._wake()
            self._notify()

    async def _ask(self, queries: List[str]) -> List[List[Dict[str, Any]]]:
        """The replies to ``queries`` as each server answered them: every
        connected server of a pool client (each answers for its own pool
        from what it holds), else the client's one answer."""
        client = self._client
        each = getattr(client, 'query_each', None) if self._once else None
        views: List[List[Dict[str, Any]]] = []
        for q in queries:
            self._verify_queries += 1
            if each is None:
                replies = [await client.query(q, timeout=self.insert_timeout)]
            else:
                replies = await each(q, timeout=self.insert_timeout)
            while len(views) < len(replies):
                views.append([])
            for view, reply in zip(views, replies):
                view.append(reply)
        return views

    async def _await_servers(self, started: float) -> None:
        """Before a check: wait (at most ``verify_wait`` seconds) until every
        server of the pool is connected, then, when one was down, another
        ``verify_settle`` seconds: a SiriDB replica acknowledges before it
        replicates (its queue survives a kill and is sent once it is back),
        so its pool partner may answer without points that are coming."""
        hosts = self._window.hosts
        if not hosts:
            return
        loop = asyncio.get_running_loop()
        was_down = self._window.suspect()
        while not all(h.up for h in hosts) and loop.time() < started + self.verify_wait:
            was_down = True
            await asyncio.sleep(min(0.05, self.verify_wait))
        if was_down and self.verify_settle > 0:
            await asyncio.sleep(self.verify_settle)

    def _resend(self, missing: Dict[str, List[Pair]], credit: int, seq: int) -> None:
        """Queue the missing points first, in packages of the usual size;
        ``credit`` of them count as written when confirmed."""
        size = min(self.autocommit_every, self.max_package_points)
        chunks: List[Dict[str, List[Pair]]] = [{}]
        n = 0
        for series, pairs in missing.items():
            for i in range(0, len(pairs), size):
                part = pairs[i:i + size]
                if n + len(part) > size and n:
                    chunks.append({})
                    n = 0
                chunks[-1][series] = chunks[-1].get(series, []) + part
                n += len(part)
        ready = self._buf.ready
        for data in reversed(chunks):
            k = sum(len(p) for p in data.values())
            body = None
            if self._packed:
                try:
                    body = pack_points(data)
                except (OverflowError, TypeError, ValueError):
                    body = None
            c = min(credit, k)
            credit -= c
            pkg = Resend(None if body is not None else data, body, k, seq, c)
            self._buf.retake(k)
            ready.appendleft(pkg)
            self._resent += k
            self._resent_packages += 1

    async def _reject(self, points: List[Point], exc: BaseException) -> None:
        self._rejected += len(points)
        rejected = Rejected(points, exc)
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
