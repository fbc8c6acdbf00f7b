"""``siridb export``: the points of a select as CSV or JSON lines.

CSV rows are ``series,timestamp,value`` under a header row, the format
``siridb import`` reads back; JSON lines keep value types exactly.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import sys
from typing import IO, Any, Iterator, Optional, Tuple

from .connect import open_client, time_precision_arg
from .exitcodes import OK, CliError, UsageError
from .options import ConnectionSettings, connection_settings
from .output import is_select_result, iso_timestamp, iter_points

__all__ = ['run', 'write_points']


def write_points(out: IO[str], result: Any, fmt: str, iso_precision: Optional[str]) -> int:
    """Write every point of a select result; the number of points written."""
    n = 0
    points: Iterator[Any] = iter_points(result)
    writer = csv.writer(out, lineterminator='\n')
    if fmt == 'csv':
        writer.writerow(['series', 'timestamp', 'value'])
    for series, ts, value in points:
        if iso_precision:
            ts = iso_timestamp(ts, iso_precision)
        if fmt == 'csv':
            writer.writerow([series, ts, value])
        else:
            out.write(json.dumps({'series': series, 'timestamp': ts, 'value': value},
                                 ensure_ascii=False) + '\n')
        n += 1
    return n


async def _fetch(args: argparse.Namespace, settings: ConnectionSettings
                 ) -> Tuple[Any, Optional[str]]:
    async with open_client(settings) as client:
        result = await client.query(args.query, time_precision=time_precision_arg(
            args.precision), timeout=settings.timeout)
        iso_precision = None
        if args.iso:
            iso_precision = args.precision or await client.time_precision(settings.timeout)
    return result, iso_precision


def run(args: argparse.Namespace) -> int:
    result, iso_precision = asyncio.run(_fetch(args, connection_settings(args)))
    if not is_select_result(result):
        if isinstance(result, dict) and not result:  # a select that matched no series
            result = {}
        else:
            raise CliError('export needs a select query (the result holds no points)')
    with contextlib.ExitStack() as stack:
        if args.output == '-':
            out: IO[str] = sys.stdout
        else:
            try:
                out = stack.enter_context(open(args.output, 'w', encoding='utf-8',
                                               newline=''))
            except OSError as exc:
                raise UsageError(f'cannot write {args.output}: {exc.strerror}') from None
        n = write_points(out, result, args.format, iso_precision)
        out.flush()
    print(f'exported {n} point{"" if n == 1 else "s"}', file=sys.stderr)
    return OK
