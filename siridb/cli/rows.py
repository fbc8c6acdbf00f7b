"""Reading points from CSV or JSON lines files, one row at a time.

Each row becomes a ``Point`` (with its line number) or a ``Rejected`` saying
why it cannot be imported; the file is never read whole, so files larger
than memory stream through.
"""
from __future__ import annotations

import csv
import datetime
import json
import math
import re
from typing import IO, Any, Iterator, NamedTuple, Optional, Union

from ..connector.lib.timestamps import max_timestamp, precision_factor
from ..wire.units import INT64_MAX, INT64_MIN

__all__ = ['Point', 'Rejected', 'read_rows', 'parse_timestamp', 'parse_csv_value',
           'EMPTY_VALUE']


_INT_RE = re.compile(r'^[+-]?\d+$')
_ISO_RE = re.compile(
    r'^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,9}))?)?'
    r'(Z|[+-]\d{2}:?\d{2})?$')
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_HEADER = ('series', 'timestamp', 'value')

#: why a row with an empty value is refused (the server would store '' as 0.0
#: in a number series, or create a string series of empty strings)
EMPTY_VALUE = 'empty value (every row needs series, timestamp and a value)'


class Point(NamedTuple):
    """One valid row: line number, series name, timestamp, value."""

    line: int
    series: str
    ts: int
    value: Union[int, float, str]


class Rejected(NamedTuple):
    """One row that cannot be imported, and why."""

    line: int
    reason: str


def parse_timestamp(raw: Any, precision: str) -> int:
    """An integer timestamp in ``precision`` from an int, integer text or ISO 8601 text.

    ISO texts without a zone are UTC; fractions finer than the precision are an
    error rather than silently rounded. Raises ValueError with a clear reason.
    """
    if isinstance(raw, bool):
        raise ValueError('timestamp must be an integer or an ISO 8601 datetime')
    if isinstance(raw, int):
        ts = raw
    elif isinstance(raw, str) and not raw.strip():
        raise ValueError('empty timestamp')
    elif isinstance(raw, str) and _INT_RE.match(raw.strip()):
        ts = int(raw.strip())
    elif isinstance(raw, str):
        ts = _parse_iso(raw.strip(), precision)
    else:
        raise ValueError('timestamp must be an integer or an ISO 8601 datetime')
    if not 0 <= ts <= max_timestamp(precision):
        raise ValueError(f'timestamp {ts} out of range for precision {precision}')
    return ts


def _parse_iso(text: str, precision: str) -> int:
    m = _ISO_RE.match(text)
    if not m:
        raise ValueError(f'invalid timestamp {text!r} (expecting an integer or ISO 8601)')
    date, clock, frac, zone = m.groups()
    base = f'{date}T{clock or "00:00"}'
    if zone and zone != 'Z':
        base += zone if ':' in zone else f'{zone[:3]}:{zone[3:]}'
    try:
        dt = datetime.datetime.fromisoformat(base)
    except ValueError as exc:
        raise ValueError(f'invalid timestamp {text!r}: {exc}') from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    delta = dt - _EPOCH
    seconds = delta.days * 86400 + delta.seconds
    factor = precision_factor(precision)
    sub = 0
    if frac:
        scaled = int(frac) * factor
        sub, rest = divmod(scaled, 10 ** len(frac))
        if rest:
            raise ValueError(f'timestamp {text!r} is finer than the database precision '
                             f'({precision})')
    return seconds * factor + sub


def parse_csv_value(raw: str) -> Union[int, float, str]:
    """A CSV cell as int, float or (anything else) string."""
    text = raw.strip()
    if _INT_RE.match(text):
        value = int(text)
        if INT64_MIN <= value <= INT64_MAX:
            return value
        return raw
    try:
        number = float(text)
    except ValueError:
        return raw
    if math.isfinite(number):
        return number
    return raw


def _check_value(value: Any) -> Union[int, float, str]:
    if isinstance(value, bool) or value is None:
        raise ValueError('value must be an integer, float or string')
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError('integer value out of the 64-bit range')
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError('float value must be finite')
        return value
    if isinstance(value, str):
        if not value.strip():
            raise ValueError(EMPTY_VALUE)
        return value
    raise ValueError('value must be an integer, float or string')


def _check_series(series: Any) -> str:
    if not isinstance(series, str) or not series:
        raise ValueError('series name must be a non-empty string')
    return series


def _read_csv(stream: IO[str], precision: str) -> Iterator[Union[Point, Rejected]]:
    reader = csv.reader(stream)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Rejected(start, f'malformed CSV: {exc}')
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if line == 1 and tuple(c.strip().lower() for c in row) == _HEADER:
            continue
        if len(row) != 3:
            yield Rejected(line, f'expecting 3 columns (series,timestamp,value), '
                                 f'got {len(row)}')
            continue
        try:
            if not row[2].strip():
                raise ValueError(EMPTY_VALUE)
            yield Point(line, _check_series(row[0]), parse_timestamp(row[1], precision),
                        parse_csv_value(row[2]))
        except ValueError as exc:
            yield Rejected(line, str(exc))


def _read_jsonl(stream: IO[str], precision: str) -> Iterator[Union[Point, Rejected]]:
    for line, text in enumerate(stream, 1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except ValueError as exc:
            yield Rejected(line, f'invalid JSON: {exc}')
            continue
        try:
            if isinstance(obj, dict):
                missing = [k for k in _HEADER if k not in obj]
                if missing:
                    raise ValueError(f'missing key(s): {", ".join(missing)}')
                series, ts, value = obj['series'], obj['timestamp'], obj['value']
            elif isinstance(obj, list) and len(obj) == 3:
                series, ts, value = obj
            else:
                raise ValueError('expecting an object with series, timestamp and value '
                                 'or an array [series, timestamp, value]')
            yield Point(line, _check_series(series), parse_timestamp(ts, precision),
                        _check_value(value))
        except ValueError as exc:
            yield Rejected(line, str(exc))


def read_rows(stream: IO[str], fmt: str, precision: str
              ) -> Iterator[Union[Point, Rejected]]:
    """Points and rejected rows of ``stream`` in ``fmt`` ('csv' or 'jsonl')."""
    if fmt == 'jsonl':
        return _read_jsonl(stream, precision)
    return _read_csv(stream, precision)


def guess_format(path: str, fmt: Optional[str]) -> str:
    """The input format from ``--format`` or the file name (default csv)."""
    if fmt and fmt != 'auto':
        return fmt
    lower = path.lower()
    if lower.endswith(('.jsonl', '.ndjson', '.json')):
        return 'jsonl'
    return 'csv'
