"""Snapshots of one database, written when its log is compacted.

A snapshot holds the whole database (series as the raw bytes of their typed
arrays, and the metadata) in a single CRC-framed record, written to a
temporary file, fsync-ed and renamed into place, so it is either complete or
absent. It records the generation of the log it covers: on start, a log of
that generation or older is already in the snapshot and is not replayed (a
crash between writing the snapshot and starting the next log).

A snapshot that fails its check (or does not decode) raises ``CorruptLog``:
the file is never cut or emptied. With ``recover=True`` a copy is kept as
``<name>.snap.corrupt`` and the record is decoded despite its checksum (a
flipped bit in the point data leaves the rest readable); if it does not
decode, the database is loaded from its log alone.
"""
from __future__ import annotations

import logging
import os
import sys
from array import array
from typing import Any, Dict, List, Optional

from ..wire.decode import unpack_body
from ..wire.framing import packb
from .persist import (
    RECORD_HEADER,
    CorruptLog,
    encode_record,
    keep_copy,
    read_records,
    write_file,
)
from .store import TYPE_STRING, Database, Series

__all__ = ['write_snapshot', 'load_snapshot', 'SNAPSHOT_VERSION']

log = logging.getLogger('siridb.embedded')

SNAPSHOT_VERSION = 1
_KIND = b'S'


def write_snapshot(path: str, db: Database, covers_gen: int,
                   meta: Dict[str, Any]) -> None:
    series: List[Any] = []
    for s in db.series.values():
        ts, values = s.points()
        if s.tp == TYPE_STRING:
            vals: Any = [v.encode('utf-8', 'surrogatepass') for v in values]
        else:
            assert isinstance(values, array)
            vals = values.tobytes()
        assert isinstance(ts, array)
        series.append([s.name.encode('utf-8', 'surrogatepass'), s.tp,
                       ts.tobytes(), vals])
    body = packb([SNAPSHOT_VERSION, covers_gen, sys.byteorder, packb(meta),
                  series])
    write_file(path, (encode_record(_KIND, body),))


def load_snapshot(path: str, db: Database, recover: bool = False
                  ) -> Optional[Dict[str, Any]]:
    """Load the snapshot at ``path`` into ``db``; returns
    ``{'covers_gen': int, 'meta': dict or None, 'damaged': bool}``, or None
    without a snapshot. With ``recover``, a damaged snapshot is loaded as far
    as it decodes (``damaged`` True; ``covers_gen`` -1 and ``meta`` None when
    nothing of it could be read)."""
    if not os.path.exists(path):
        return None
    try:
        records = read_records(path, strict=True)
        if len(records) != 1 or records[0][0] != _KIND:
            raise CorruptLog(path, 0, 'not one snapshot record')
        return _load_body(records[0][1], db)
    except CorruptLog:
        if not recover:
            raise
    except Exception as exc:  # an intact record that does not decode
        if not recover:
            raise CorruptLog(path, RECORD_HEADER.size,
                             f'snapshot does not decode: {exc}') from None
    copy = keep_copy(path, '.corrupt')
    with open(path, 'rb') as fh:
        data = fh.read()
    db.series.clear()
    try:
        snap = _load_body(data[RECORD_HEADER.size + 1:], db, checked=False)
    except Exception as exc:
        db.series.clear()
        log.error('recover: snapshot %s is damaged and does not decode (%s); '
                  'loading database %s from its log alone (the snapshot is '
                  'kept as %s)', path, exc, db.name, copy)
        os.unlink(path)
        return {'covers_gen': -1, 'meta': None, 'damaged': True}
    log.error('recover: snapshot %s fails its checksum; loaded it anyway '
              '(values may be damaged; the original is kept as %s)', path,
              copy)
    snap['damaged'] = True
    return snap


def _load_body(body: bytes, db: Database, checked: bool = True
               ) -> Dict[str, Any]:
    """Series of a snapshot body into ``db``; its generation and meta.
    Not ``checked`` (recovery): the points are sorted again on first read."""
    version, covers_gen, byteorder, meta, series = unpack_body(
        body, decode=None)
    if version != SNAPSHOT_VERSION:
        raise ValueError(f'unknown snapshot version {version}')
    swap = byteorder.decode() != sys.byteorder
    for name_b, tp, ts_b, vals in series:
        s = Series(name_b.decode('utf-8', 'surrogatepass'), tp)
        ts: array[int] = array('q')
        ts.frombytes(ts_b)
        if tp == TYPE_STRING:
            values: Any = [v.decode('utf-8', 'surrogatepass') for v in vals]
        else:
            values = array('q' if tp == 0 else 'd')
            values.frombytes(vals)
            if swap:
                values.byteswap()
        if swap:
            ts.byteswap()
        if len(values) != len(ts):
            raise ValueError(f'series {s.name!r}: {len(ts)} timestamps, '
                             f'{len(values)} values')
        s.ts = ts
        s.values = values
        if not checked:
            s.mark_unsorted()
        if s.chunks is not None:  # chunks are not kept in a snapshot: one chunk
            s.chunks = [(ts, values)]
        db.series[s.name] = s
    return {'covers_gen': covers_gen, 'meta': unpack_body(meta),
            'damaged': False}
