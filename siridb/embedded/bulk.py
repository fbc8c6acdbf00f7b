"""Big INSERT bodies, handled in steps so that the event loop keeps serving.

qpack decodes a body in one C call that holds the GIL (about 65 ms per MB
of tiny series), so a body over ``DECODE_WHOLE`` is cut into pieces of whole top-level items
first (``pieces``): each piece is a qpack value of its own, decoded alone,
and the pieces are merged into what decoding the whole body gives. A long
point list of one series (map form) is cut between points as well.
``insert_steps`` then validates the series and ``apply_steps`` stores them,
a batch at a time. Each is a generator that yields 0.0 between steps (the
wait of a connection's job, see ``protocol.py``) and returns its result.
"""
from __future__ import annotations

import re
from typing import Any, Generator, Iterator, List, Tuple

from ..wire.decode import SAFE_BODY_SIZE, unpack_body
from ..wire.errors import WireError
from .insert import Chunk, apply_insert, iter_chunks
from .store import Database

__all__ = ['BULK_BODY', 'pieces', 'decode_steps', 'insert_steps', 'apply_steps']

#: bodies larger than this are inserted in steps (smaller ones take a few
#: milliseconds in one go)
BULK_BODY = 65_536
#: bodies up to this size are decoded whole (at most about 15 ms): cutting
#: them into pieces costs about twice the decoding
DECODE_WHOLE = 262_144
#: bytes of body per decoded piece: a piece (with its container marker and
#: a series name) stays within the size that qpack decodes in-line
PIECE = SAFE_BODY_SIZE - 256
#: series validated, or points applied, per step
_SERIES_STEP = 2_000
_POINTS_STEP = 50_000

_OPEN_ARRAY, _OPEN_MAP, _CLOSE_ARRAY, _CLOSE_MAP = 0xFC, 0xFD, 0xFE, 0xFF
#: markers on the skip stack for open containers (fixed ones count down)
_OPEN_A, _OPEN_M = -1, -2

#: bytes taken by a token that holds no items, by its first byte (0: a
#: container, a close marker or a raw with its length in the next bytes)
_SIZE = bytes(
    1 if b < 0x80 else
    1 + b - 0x80 if b < 0xE4 else
    (2, 3, 5, 9, 9)[b - 0xE8] if 0xE8 <= b <= 0xEC else
    1 if b in (0xED, 0xF3, 0xF9, 0xFA, 0xFB) else
    0
    for b in range(256))
#: raw strings with a length of 1, 2, 4 or 8 bytes after the marker
_RAW_LEN = {0xE4: 1, 0xE5: 2, 0xE6: 4, 0xE7: 8}

# Runs of the usual shapes are skipped by regular expressions (in C): a
# number, a short string, a point [int, number or short string], and a
# series as a map entry (name, points) or as a map of name and points.
_NUM = rb'(?:[\x00-\x7f\xf9-\xfb]|\xe8.|\xe9..|\xea.{4}|[\xeb\xec].{8})'
_STR = b'(?:' + b'|'.join(
    re.escape(bytes([0x80 + n])) + (b'.{%d}' % n if n else b'')
    for n in range(100)) + b')'
_POINT = rb'\xef' + _NUM + b'(?:' + _NUM + b'|' + _STR + b')'
_POINTS_VALUE = (rb'(?:\xee' + _POINT + rb'|\xef(?:' + _POINT + rb'){2}|\xf0(?:'
                 + _POINT + rb'){3}|\xf1(?:' + _POINT + rb'){4}|\xf2(?:' + _POINT
                 + rb'){5}|\xfc(?:' + _POINT + rb')*\xfe)')
_POINTS_RUN = re.compile(b'(?:' + _POINT + b')*', re.DOTALL)
_MAP_ENTRIES = re.compile(b'(?:' + _STR + _POINTS_VALUE + b')*', re.DOTALL)
_LIST_ITEMS = re.compile(
    rb'(?:\xf5(?:\x84name' + _STR + rb'\x86points' + _POINTS_VALUE +
    rb'|\x86points' + _POINTS_VALUE + rb'\x84name' + _STR + rb'))*', re.DOTALL)
#: a series name then an open point list, as a map entry
_NAME_OPEN_POINTS = re.compile(_STR + rb'\xfc', re.DOTALL)


class _Malformed(Exception):
    """The body is not a well-formed qpack value where the pieces end."""


def _skip(body: bytes, pos: int, end: int) -> int:
    """The position after the value at ``pos`` (containers included);
    open containers may end at ``end`` like in qpack."""
    stack: List[int] = []
    size_of = _SIZE
    while True:
        if pos >= end:
            if stack and all(d < 0 for d in stack):
                return end
            raise _Malformed
        b = body[pos]
        size = size_of[b]
        if size:
            pos += size
        elif b in _RAW_LEN:
            n = _RAW_LEN[b]
            pos += 1 + n + int.from_bytes(body[pos + 1:pos + 1 + n], 'little')
        elif b <= 0xF8:  # fixed containers with 1-5 items or pairs
            stack.append(b - 0xED if b <= 0xF2 else 2 * (b - 0xF3))
            pos += 1
            continue
        elif b == _OPEN_ARRAY:
            stack.append(_OPEN_A)
            pos = _POINTS_RUN.match(body, pos + 1, end).end()  # type: ignore[union-attr]
            continue
        elif b == _OPEN_MAP:
            stack.append(_OPEN_M)
            pos += 1
            continue
        else:  # a close marker ends the open container it belongs to
            if not stack or stack[-1] != (_OPEN_A if b == _CLOSE_ARRAY else _OPEN_M):
                raise _Malformed
            stack.pop()
            pos += 1
        if pos > end:
            raise _Malformed
        # one item done: count it in the fixed containers it completes
        while stack and stack[-1] > 0:
            stack[-1] -= 1
            if stack[-1]:
                break
            stack.pop()
        if not stack:
            return pos


def pieces(body: bytes) -> Iterator[Tuple[bytes, bool]]:
    """``(piece, continues)`` for a body whose top level is an array or a
    map: each piece is an open array or map of whole items of the body, or,
    when ``continues``, more points of the series the previous piece ended
    with (``{name: [points]}``). A body of another kind is one piece.
    Raises ``_Malformed`` where the structure breaks."""
    end = len(body)
    first = body[0] if body else 0
    if first in (_OPEN_ARRAY, _OPEN_MAP):
        is_map, count, pos = first == _OPEN_MAP, -1, 1
    elif 0xEE <= first <= 0xF2:
        is_map, count, pos = False, first - 0xED, 1
    elif 0xF4 <= first <= 0xF8:
        is_map, count, pos = True, first - 0xF3, 1
    else:
        yield body, False
        return
    prefix = bytes((_OPEN_MAP if is_map else _OPEN_ARRAY,))
    close = _CLOSE_MAP if is_map else _CLOSE_ARRAY
    run = _MAP_ENTRIES if is_map else _LIST_ITEMS
    while True:
        start = pos
        limit = min(end, start + PIECE)
        while pos < end and pos - start < PIECE and count != 0:
            if body[pos] == close and count < 0:
                break
            if count < 0:  # runs of usual items, in C
                m = run.match(body, pos, limit)
                if m is not None and m.end() > pos:
                    pos = m.end()
                    continue
            if pos > start:  # an item of its own kind starts the next piece
                break
            if is_map:
                m = _NAME_OPEN_POINTS.match(body, pos, end)
                if m is not None:
                    # a series whose points do not fit a piece: cut between points
                    pos = yield from _long_series(body, pos, m.end(), end, prefix)
                    count -= 1
                    start = pos
                    limit = min(end, start + PIECE)
                    continue
            pos = _skip(body, pos, end)
            if is_map:
                pos = _skip(body, pos, end) if pos < end else pos
            count -= 1
        if pos >= end and count > 0:  # a fixed container short of items
            raise _Malformed
        if pos > start:
            yield prefix + body[start:pos], False
        if pos >= end or count == 0 or (count < 0 and body[pos] == close):
            return


def _long_series(body: bytes, entry: int, points: int, end: int,
                 prefix: bytes) -> Generator[Tuple[bytes, bool], None, int]:
    """Pieces of one map entry whose open point list starts at ``points``;
    returns the position after the entry."""
    head = prefix + body[entry:points]  # {name: [
    pos = points
    continues = False
    while True:
        start = pos
        while pos < end and body[pos] != _CLOSE_ARRAY and pos - start < PIECE:
            m = _POINTS_RUN.match(body, pos, min(end, start + PIECE))
            if m is not None and m.end() > pos:
                pos = m.end()
            else:
                pos = _skip(body, pos, end)
        yield head + body[start:pos], continues
        continues = True
        if pos >= end:
            return end
        if body[pos] == _CLOSE_ARRAY:
            return pos + 1


def decode_steps(body: bytes, depth_bound: int,
                 whole_up_to: int = DECODE_WHOLE) -> Generator[float, None, Any]:
    """Decode an INSERT body piece by piece (yielding between pieces) into
    what ``unpack_body`` gives for the whole (at once up to ``whole_up_to``
    bytes); raises ``WireError``."""
    if len(body) <= whole_up_to:
        return unpack_body(body, depth_bound=depth_bound)
    merged: Any = None
    last: Any = None
    it = pieces(body)
    while True:
        try:
            piece, continues = next(it)
        except StopIteration:
            break
        except _Malformed:
            # qpack is the judge: decode the rest as it stands (qpack stops
            # at the first fault, so this costs little when it is one)
            return unpack_body(body, depth_bound=depth_bound)
        value = unpack_body(piece, depth_bound=min(depth_bound, len(piece))
                            if depth_bound >= 0 else -1)
        if merged is None:
            merged = value
            if type(value) is dict and value:
                last = next(reversed(value))
        elif type(merged) is dict and type(value) is dict:
            if continues and last is not None and value:
                name, pts = next(iter(value.items()))
                if name == last and type(pts) is list and \
                        type(merged[last]) is list:
                    merged[last].extend(pts)
                    yield 0.0
                    continue
            merged.update(value)
            if value:
                last = next(reversed(value))
        elif type(merged) is list and type(value) is list:
            merged.extend(value)
        else:  # pieces always share the body's kind
            raise WireError('corrupt payload: pieces of another kind')
        yield 0.0
    if merged is None:  # an empty container: no piece
        return {} if body[:1] == bytes((_OPEN_MAP,)) else []
    return merged


def insert_steps(db: Database, data: Any) -> Generator[float, None, List[Chunk]]:
    """Validate a decoded INSERT payload a batch of series at a time
    (yielding between batches); the chunks, or QueryFailure(pm.CPROTO_ERR_INSERT, text)."""
    chunks: List[Chunk] = []
    for i, chunk in enumerate(iter_chunks(data, db.max_ts)):
        chunks.append(chunk)
        if i % _SERIES_STEP == _SERIES_STEP - 1:
            yield 0.0
    return chunks


def apply_steps(db: Database, chunks: List[Chunk]) -> Generator[float, None, int]:
    """Store validated chunks a batch at a time; the number of points. The
    list lets go of each batch once stored (freeing it all at the end is a
    step of its own otherwise)."""
    n = 0
    start = 0
    points = 0
    for i, chunk in enumerate(chunks):
        points += len(chunk[1])
        if points >= _POINTS_STEP or i + 1 - start >= _SERIES_STEP:
            n += apply_insert(db, chunks[start:i + 1])
            chunks[start:i + 1] = [None] * (i + 1 - start)  # type: ignore[list-item]
            start = i + 1
            points = 0
            yield 0.0
    if start < len(chunks):
        n += apply_insert(db, chunks[start:])
    return n
