"""Turning query results into rows and printing them as a table, JSON or CSV.

SiriDB answers each kind of statement with its own map shape; ``tabulate``
knows those shapes (select, list, count, show, messages) and falls back to
JSON for anything else.
"""
from __future__ import annotations

import csv
import datetime
import io
import json
import unicodedata
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence, Tuple

from ..connector.lib.timestamps import precision_factor

__all__ = ['Table', 'tabulate', 'is_select_result', 'iter_points', 'iso_timestamp',
           'render', 'render_table', 'render_csv', 'render_json', 'display_width']

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)

#: keys of list-style results besides "columns"
_TIMESTAMP_COLUMNS = frozenset(('start', 'end', 'timestamp', 'calc'))


class Table:
    """Columns and rows, plus an optional message (e.g. ``success_msg``)."""

    def __init__(self, columns: Sequence[str], rows: List[List[Any]],
                 message: Optional[str] = None) -> None:
        self.columns = list(columns)
        self.rows = rows
        self.message = message


def iso_timestamp(ts: Any, precision: str) -> Any:
    """``ts`` in ``precision`` units as an exact ISO 8601 UTC text (others unchanged)."""
    if not isinstance(ts, int) or isinstance(ts, bool):
        return ts
    factor = precision_factor(precision)
    seconds, frac = divmod(ts, factor)
    try:
        text = (_EPOCH + datetime.timedelta(seconds=seconds)).strftime('%Y-%m-%dT%H:%M:%S')
    except OverflowError:
        return ts
    if factor > 1:
        text += '.' + str(frac).rjust(len(str(factor)) - 1, '0')
    return text + 'Z'


def is_select_result(result: Any) -> bool:
    """True for ``{series: [[ts, value], ...], ...}`` (a select result)."""
    if not isinstance(result, dict):
        return False
    items = [(k, v) for k, v in result.items() if k != '__timeit__']
    if not items:
        return False
    for _, points in items:
        if not isinstance(points, list):
            return False
        for p in points[:1]:
            if not (isinstance(p, list) and len(p) == 2):
                return False
    return True


def iter_points(result: Dict[str, Any]) -> Iterator[Tuple[str, Any, Any]]:
    """(series, timestamp, value) for every point of a select result."""
    for name, points in result.items():
        if name == '__timeit__':
            continue
        for ts, value in points:
            yield name, ts, value


def tabulate(result: Any, precision: Optional[str] = None) -> Optional[Table]:
    """Rows for a result of a known shape, or None (print it as JSON).

    With ``precision`` set, timestamp columns become ISO datetimes.
    """
    if not isinstance(result, dict):
        return None
    result = {k: v for k, v in result.items() if k != '__timeit__'}

    def ts(value: Any) -> Any:
        return iso_timestamp(value, precision) if precision else value

    if 'columns' in result and len(result) == 2:
        (key, rows), = ((k, v) for k, v in result.items() if k != 'columns')
        columns = result['columns']
        if isinstance(rows, list) and isinstance(columns, list):
            fix = [i for i, c in enumerate(columns) if c in _TIMESTAMP_COLUMNS]
            out = []
            for row in rows:
                row = list(row) if isinstance(row, list) else [row]
                for i in fix:
                    if i < len(row):
                        row[i] = ts(row[i])
                out.append(row)
            return Table([str(c) for c in columns], out)
    if 'data' in result and len(result) == 1 and isinstance(result['data'], list):
        rows = []
        for item in result['data']:
            if isinstance(item, dict):
                rows.append([item.get('name'), item.get('value')])
        return Table(['name', 'value'], rows)
    if set(result) <= {'success_msg', 'error_msg'} and result:
        return Table([], [], str(next(iter(result.values()))))
    if 'calc' in result and len(result) == 1:
        return Table(['calc'], [[ts(result['calc'])]])
    if is_select_result(result):
        return Table(['series', 'timestamp', 'value'],
                     [[name, ts(t), v] for name, t, v in iter_points(result)])
    if result and all(isinstance(v, (int, float, str)) for v in result.values()):
        return Table(list(result), [list(result.values())])
    return None


def _cell(value: Any) -> str:
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


#: control characters shown escaped in a table, so that each row stays one line
_ESCAPES = {ord('\n'): '\\n', ord('\r'): '\\r', ord('\t'): '\\t'}


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide and fullwidth (East Asian)
    characters take two, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ('W', 'F') else 1
    return width


def _pad(text: str, width: int, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` terminal columns."""
    fill = ' ' * max(0, width - display_width(text))
    return fill + text if right else text + fill


def render_table(table: Table) -> str:
    """An aligned text table (numbers right-aligned) with a row count."""
    if not table.columns:
        return (table.message or '') + '\n'
    cells = [[_cell(v).translate(_ESCAPES) for v in row] for row in table.rows]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool)
                   for row in table.rows if i < len(row))
               for i in range(len(table.columns))]
    widths = [display_width(c) for c in table.columns]
    for row in cells:
        for i, c in enumerate(row[:len(widths)]):
            widths[i] = max(widths[i], display_width(c))
    lines = [' | '.join(_pad(c, w) for c, w in zip(table.columns, widths)).rstrip(),
             '-+-'.join('-' * w for w in widths)]
    for row in cells:
        line = ' | '.join(_pad(c, w, right=numeric[i])
                          for i, (c, w) in enumerate(zip(row, widths)))
        lines.append(line.rstrip())
    n = len(table.rows)
    lines.append(f'({n} row{"" if n == 1 else "s"})')
    return '\n'.join(lines) + '\n'


def render_csv(table: Table) -> str:
    """CSV with a header row; a message-only result is one ``message`` column."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator='\n')
    if not table.columns:
        writer.writerow(['message'])
        writer.writerow([table.message or ''])
        return buf.getvalue()
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def _iso_result(result: Any, precision: str) -> Any:
    """A copy of ``result`` with select timestamps (and ``calc``) as ISO texts."""
    if is_select_result(result):
        return {k: (v if k == '__timeit__' else [[iso_timestamp(t, precision), x]
                                                 for t, x in v])
                for k, v in result.items()}
    if isinstance(result, dict) and 'calc' in result:
        return {**result, 'calc': iso_timestamp(result['calc'], precision)}
    table = tabulate(result, precision)
    if table is not None and table.columns and isinstance(result, dict) \
            and 'columns' in result:
        key = next(k for k in result if k not in ('columns', '__timeit__'))
        return {**result, key: table.rows}
    return result


def render_json(result: Any, precision: Optional[str] = None) -> str:
    """The result as one JSON document (ISO timestamps when ``precision`` is set)."""
    if precision:
        result = _iso_result(result, precision)
    return json.dumps(result, ensure_ascii=False) + '\n'


def render(result: Any, fmt: str, iso_precision: Optional[str] = None) -> str:
    """The result in ``fmt`` (table, json or csv); unknown shapes print as JSON."""
    if fmt == 'json':
        return render_json(result, iso_precision)
    table = tabulate(result, iso_precision)
    if table is None:
        return render_json(result, iso_precision)
    if fmt == 'csv':
        return render_csv(table)
    return render_table(table) + _timeit_lines(result)


def _timeit_lines(result: Any) -> str:
    """The servers' timings of a ``timeit`` query, one line each."""
    timeit = result.get('__timeit__') if isinstance(result, dict) else None
    if not isinstance(timeit, list):
        return ''
    return ''.join(f"timeit: {t.get('server')} {t.get('time')} s\n"
                   for t in timeit if isinstance(t, dict))


def write(out: IO[str], text: str) -> None:
    """Write and flush (output may be piped into another program)."""
    out.write(text)
    out.flush()
