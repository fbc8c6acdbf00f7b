"""Package framing: the header layout, the check byte, the size limits, encoding.

A package is an 8-byte little-endian header ``<IHBB`` (payload length, pid,
type, check = type ^ 0xFF) followed by a qpack payload. Client and embedded
server both frame with this module; decoding lives in ``decode.py``.
"""
from __future__ import annotations

import struct
from typing import Any

import qpack

__all__ = ['HEADER', 'HEADER_SIZE', 'MAX_PAYLOAD', 'MAX_QUERY', 'PID_SPACE',
           'encode', 'pack', 'packb']

#: length, pid, type, check; the check byte is ``type ^ 0xFF`` (written
#: inline where packages are made and read: these are hot paths)
HEADER = struct.Struct('<IHBB')
HEADER_SIZE = HEADER.size

#: the largest payload the server accepts (40 MiB); bigger closes the connection
MAX_PAYLOAD = 41_943_040
#: the longest query text the server accepts
MAX_QUERY = 65_535
#: request ids are 16 bits: this many may be in flight per connection
PID_SPACE = 65536

_pack_header = HEADER.pack
_packb = qpack.packb


def packb(data: Any) -> bytes:
    """qpack-pack ``data``; an int outside int64 raises OverflowError, never
    SystemError."""
    try:
        return _packb(data)  # type: ignore[no-any-return]
    except SystemError as exc:
        raise OverflowError(
            'integer out of range: qpack packs 64-bit signed integers only'
        ) from exc


def encode(pid: int, tp: int, body: bytes = b'') -> bytes:
    """Header + ``body`` for one package."""
    return _pack_header(len(body), pid, tp, tp ^ 0xFF) + body


def pack(pid: int, tp: int, data: Any = None, is_binary: bool = False) -> bytes:
    """One complete package; ``data`` is qpack-packed unless ``is_binary``."""
    if data is None:
        body = b''
    elif is_binary:
        body = bytes(data)
    else:
        body = packb(data)
    return _pack_header(len(body), pid, tp, tp ^ 0xFF) + body
