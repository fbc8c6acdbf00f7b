"""``siridb import``: stream points from a CSV or JSON lines file into a database.

Rows are read one at a time and handed to a write session in batches, so
memory stays bounded whatever the file size. Rows that cannot be imported
are reported on stderr with their line numbers and make the exit code 1.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
from collections import OrderedDict
from typing import IO, TYPE_CHECKING, List, Optional, Tuple

from ..connector.lib.exceptions import AuthenticationError
from .connect import open_client
from .exitcodes import OK, REQUEST_ERROR, UsageError
from .options import ConnectionSettings, connection_settings
from .rows import Point, Rejected, guess_format, read_rows

if TYPE_CHECKING:
    from ..connector.lib.session import Rejected as SessionRejected
    from ..connector.lib.session import WriteSession

__all__ = ['run', 'Progress', 'Importer']

#: the most rejected rows listed one by one; later ones are only counted
MAX_LISTED = 100


class Progress:
    """Points imported, rejected and the rate, redrawn on one stderr line."""

    def __init__(self, out: IO[str], enabled: bool, interval: float = 0.5) -> None:
        self.out = out
        self.enabled = enabled
        self.interval = interval
        self.start = time.monotonic()
        self._last = 0.0
        self._open_line = False  # a progress line is drawn without its newline

    def end_line(self) -> None:
        """End the progress line, so that a message printed next starts on
        its own line (the next update draws a fresh progress line)."""
        if self._open_line:
            self.out.write('\n')
            self.out.flush()
            self._open_line = False

    def update(self, written: int, rejected: int, retried: int = 0,
               force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        rate = written / max(now - self.start, 1e-9)
        text = f'\rimported {written} points ({rate:,.0f} points/s), {rejected} rejected'
        if retried:
            text += f', {retried} retried'
        self.out.write(text)
        self.out.flush()
        self._open_line = True

    def done(self, written: int, rejected: int, retried: int = 0) -> None:
        if self.enabled:
            self.update(written, rejected, retried, force=True)
            self.end_line()


class Importer:
    """Feeds rows to a write session in chunks and keeps the counters.

    The session bounds what is buffered (``max_buffer_points``) and makes the
    reader wait when the server is slower; points the server rejects come back
    through ``on_error`` and are traced to their line numbers through a window
    of recent rows at least as large as that bound.
    """

    def __init__(self, session: WriteSession, chunk: int, window: int,
                 err: IO[str], progress: Optional[Progress] = None) -> None:
        self.session = session
        self.chunk = chunk
        self.err = err
        self.progress = progress
        self.rejected = 0
        self.listed = 0
        self._rows: List[Point] = []
        self.fatal: Optional[BaseException] = None
        self._retried_seen = 0
        self._written_seen = 0
        self._retrying = False
        self._window = window
        self._recent: OrderedDict[Tuple[str, int], int] = OrderedDict()

    @property
    def written(self) -> int:
        return self.session.written

    @property
    def retried(self) -> int:
        return self.session.retried

    def check_retries(self) -> None:
        """Say once per outage that the server is unavailable and we retry
        (the session resends until the server is back)."""
        retried = self.session.retried
        if retried > self._retried_seen:
            if not self._retrying:
                error = self.session.stats().last_error or 'unknown error'
                self._end_progress_line()
                self.err.write(f'server unavailable ({error}); retrying until it is back '
                               '(Ctrl-C to stop)\n')
                self.err.flush()
                self._retrying = True
            self._retried_seen = retried
        elif self._retrying and self.session.written > self._written_seen:
            self._retrying = False
        self._written_seen = self.session.written

    def _end_progress_line(self) -> None:
        if self.progress is not None:
            self.progress.end_line()

    def reject(self, line: Optional[int], reason: str) -> None:
        self.rejected += 1
        if self.listed < MAX_LISTED:
            self._end_progress_line()
            where = f'line {line}' if line is not None else 'line ?'
            self.err.write(f'{where}: rejected: {reason}\n')
            self.listed += 1
            if self.listed == MAX_LISTED:
                self.err.write(f'(only the first {MAX_LISTED} rejected rows are listed)\n')

    def on_error(self, rejected: SessionRejected) -> None:
        """The server refused these points: report each with its line (or, when
        the user may not insert at all, stop the import with that error)."""
        if isinstance(rejected.error, AuthenticationError):
            if self.fatal is None:
                self.fatal = rejected.error
            return
        for p in rejected.points:
            key = (p.series, int(p.timestamp))  # type: ignore[arg-type]
            self.reject(self._recent.get(key), f'rejected by the server: {rejected.error}')

    async def add(self, point: Point) -> None:
        self._rows.append(point)
        key = (point.series, point.ts)
        self._recent[key] = point.line
        self._recent.move_to_end(key)
        if len(self._recent) > self._window:
            self._recent.popitem(last=False)
        if len(self._rows) >= self.chunk:
            await self.flush_rows()

    async def flush_rows(self) -> None:
        rows, self._rows = self._rows, []
        if not rows:
            return
        try:
            await self.session.write_many([(p.series, p.ts, p.value) for p in rows])
        except (TypeError, ValueError):
            # The session refused the chunk as a whole (nothing was taken):
            # hand the rows over one by one to name the bad ones.
            for p in rows:
                try:
                    await self.session.write_many([(p.series, p.ts, p.value)])
                except (TypeError, ValueError) as exc:
                    self.reject(p.line, str(exc))


async def _tick(importer: Importer, progress: Progress) -> None:
    """Progress and retry notices also while the reader waits on a full buffer."""
    while True:
        await asyncio.sleep(progress.interval)
        importer.check_retries()
        progress.update(importer.written, importer.rejected, importer.retried)


def _open_input(path: str) -> IO[str]:
    if path == '-':
        return io.TextIOWrapper(sys.stdin.buffer, encoding='utf-8-sig', newline='')
    try:
        return open(path, encoding='utf-8-sig', newline='')
    except OSError as exc:
        raise UsageError(f'cannot read {path}: {exc.strerror}') from None


async def _import(args: argparse.Namespace, settings: ConnectionSettings,
                  stream: IO[str], progress: Progress) -> Importer:
    from ..connector.lib.session import WriteSession

    fmt = guess_format(args.file, args.format)
    async with open_client(settings) as client:
        precision = await client.time_precision(settings.timeout)
        bound = 4 * args.batch
        importer: Optional[Importer] = None
        session = WriteSession(
            client, autocommit_every=args.batch, max_buffer_points=bound,
            max_package_points=args.batch, on_full='wait',
            on_error=lambda rejected: importer.on_error(rejected) if importer else None,
            insert_timeout=settings.timeout)
        importer = Importer(session, min(args.batch, 1000), bound + args.batch, sys.stderr,
                            progress)
        ticker = asyncio.get_running_loop().create_task(_tick(importer, progress))
        try:
            async with session:
                for row in read_rows(stream, fmt, precision):
                    if isinstance(row, Rejected):
                        importer.reject(row.line, row.reason)
                    else:
                        await importer.add(row)
                    if importer.fatal is not None:
                        break
                    progress.update(importer.written, importer.rejected, importer.retried)
                await importer.flush_rows()
                await session.commit()
            if importer.fatal is not None:
                raise importer.fatal
        except UnicodeDecodeError as exc:
            raise UsageError(f'{args.file} is not UTF-8 text: {exc.reason}') from None
        finally:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
            progress.done(importer.written, importer.rejected, importer.retried)
    return importer


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        raise UsageError('--batch must be at least 1')
    settings = connection_settings(args)
    show = {'always': True, 'never': False}.get(args.progress, sys.stderr.isatty())
    with _open_input(args.file) as stream:
        importer = asyncio.run(_import(args, settings, stream, Progress(sys.stderr, show)))
    n = importer.written
    summary = f'imported {n} point{"" if n == 1 else "s"}'
    if importer.rejected:
        summary += f', rejected {importer.rejected} row{"" if importer.rejected == 1 else "s"}'
    print(summary, file=sys.stderr)
    return REQUEST_ERROR if importer.rejected else OK


