"""The SiriDB wire format, shared by the client and the embedded server.

``framing`` (header, check byte, size limits, encoding), ``types`` (package
type numbers), ``decode`` (the incremental decoder and ``unpack_body`` with
the qpack crash guards) and ``errors`` (``WireError``). Neither side's
meaning lives here: no asyncio, no client or server exceptions.
"""
from __future__ import annotations

from .decode import DECODE_ERRORS, SAFE_BODY_SIZE, Decoder, Package, unpack_body
from .errors import WireError
from .framing import HEADER, HEADER_SIZE, MAX_PAYLOAD, MAX_QUERY, PID_SPACE, encode, pack, packb

__all__ = [
    'DECODE_ERRORS', 'SAFE_BODY_SIZE', 'Decoder', 'Package', 'unpack_body', 'WireError',
    'HEADER', 'HEADER_SIZE', 'MAX_PAYLOAD', 'MAX_QUERY', 'PID_SPACE', 'encode', 'pack',
    'packb',
]
