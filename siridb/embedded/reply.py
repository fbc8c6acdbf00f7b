"""Query replies packed in steps: a select whose answer holds ``Rows`` (big
series, see ``query/select.py``) is made and packed a slice of rows at a
time, so that the event loop serves other connections in between.

qpack is a stream of values, so a container packed in parts is the same
bytes as one packed at once: a marker (the item count up to 5, else an
"open" marker), the items one after the other, and for an open container a
close marker. ``pack_steps`` yields 0.0 between slices (the wait of a
connection's job, see ``protocol.py``) and returns the body's parts.
"""
from __future__ import annotations

from typing import Any, Dict, Generator, List, Mapping

from ..wire.framing import packb
from .query.select import Rows

__all__ = ['has_rows', 'pack_steps']

#: qpack markers: a map or an array of 0..5 items, an open map or array and
#: their close markers
_MAP0, _ARRAY0 = 0xF3, 0xED
_FIXED_MAX = 5
_OPEN_ARRAY, _OPEN_MAP = b'\xfc', b'\xfd'
_CLOSE_ARRAY, _CLOSE_MAP = b'\xfe', b'\xff'


def has_rows(result: Dict[str, Any]) -> bool:
    """Whether a query's answer holds rows still to be made."""
    return any(type(v) is Rows for v in result.values())


def _items(packed: bytes, n: int) -> bytes:
    """The packed items of a packed array of ``n`` items (no markers)."""
    return packed[1:] if n <= _FIXED_MAX else packed[1:-1]


def pack_steps(result: Mapping[str, Any]) -> Generator[float, None, List[bytes]]:
    """Pack a query's answer (a map) into parts of the body, yielding 0.0
    after each slice of rows; ``b''.join`` of the parts is what ``packb``
    gives for the answer with every ``Rows`` made into lists. An integer
    qpack cannot carry raises OverflowError."""
    n = len(result)
    parts: List[bytes] = [bytes((_MAP0 + n,)) if n <= _FIXED_MAX else _OPEN_MAP]
    for key, value in result.items():
        parts.append(packb(key))
        if type(value) is not Rows:
            parts.append(packb(value))
            continue
        count = len(value)
        parts.append(bytes((_ARRAY0 + count,)) if count <= _FIXED_MAX
                     else _OPEN_ARRAY)
        for rows in value.slices():
            parts.append(_items(packb(rows), len(rows)))
            del rows
            yield 0.0
        if count > _FIXED_MAX:
            parts.append(_CLOSE_ARRAY)
    if n > _FIXED_MAX:
        parts.append(_CLOSE_MAP)
    return parts
