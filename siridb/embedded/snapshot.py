"""Snapshots of one database, written when its log is compacted.

A snapshot holds the whole database (series as the raw bytes of their typed
arrays, and the metadata) in a single CRC-framed record, written to a
temporary file, fsync-ed and renamed into place, so it is either complete or
absent. It records the generation of the log it covers: on start, a log of
that generation or older is already in the snapshot and is not replayed (a
crash between writing the snapshot and starting the next log).
"""
from __future__ import annotations

import os
import sys
from array import array
from typing import Any, Dict, List, Optional

from ..connector.lib.codec import packb, unpack_body
from .persist import encode_record, read_records, sync_dir
from .store import TYPE_STRING, Database, Series

__all__ = ['write_snapshot', 'load_snapshot', 'SNAPSHOT_VERSION']

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
    tmp = path + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        data = memoryview(encode_record(_KIND, body))
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    sync_dir(os.path.dirname(path))


def load_snapshot(path: str, db: Database) -> Optional[Dict[str, Any]]:
    """Load the snapshot at ``path`` into ``db``; returns
    ``{'covers_gen': int, 'meta': dict}``, or None without a snapshot."""
    records = read_records(path)
    if not records or records[0][0] != _KIND:
        return None
    version, covers_gen, byteorder, meta, series = unpack_body(
        records[0][1], decode=None)
    if version != SNAPSHOT_VERSION:
        raise ValueError(f'unknown snapshot version {version} in {path}')
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
        s.ts = ts
        s.values = values
        if s.chunks is not None:  # chunks are not kept in a snapshot: one chunk
            s.chunks = [(ts, values)]
        db.series[s.name] = s
    return {'covers_gen': covers_gen, 'meta': unpack_body(meta)}
