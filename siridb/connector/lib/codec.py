"""The client's view of the wire codec (``siridb.wire``), kept importable.

Framing, limits and decoding live in ``siridb.wire``; this module re-exports
them with the client's error: ``Decoder.feed`` and ``unpack_body`` raise
``ProtocolError`` (a ``WireError`` that also is a ``ConnectionLostError``).
"""
from __future__ import annotations

from typing import Any, Optional, Type

from ...wire import decode as _wire_decode
from ...wire.decode import (
    DECODE_ERRORS,
    DEEP_STACK_SIZE,
    FRESH_THREAD_BODY,
    MAX_DEPTH,
    REPLY_BYTES_PER_CONTAINER,
    SAFE_BODY_SIZE,
    Package,
    container_limit,
    run_deep,
    tighten_depth_bound,
)
from ...wire.errors import WireError
from ...wire.framing import HEADER, HEADER_SIZE, MAX_PAYLOAD, MAX_QUERY, encode, pack, packb
from .exceptions import ProtocolError

__all__ = [
    'HEADER', 'HEADER_SIZE', 'MAX_PAYLOAD', 'MAX_QUERY', 'Package', 'Decoder',
    'encode', 'pack', 'packb', 'unpack_body', 'DECODE_ERRORS', 'SAFE_BODY_SIZE',
    'MAX_DEPTH', 'run_deep', 'DEEP_STACK_SIZE', 'FRESH_THREAD_BODY',
    'REPLY_BYTES_PER_CONTAINER', 'container_limit', 'tighten_depth_bound',
]


class Decoder(_wire_decode.Decoder):
    """``siridb.wire.Decoder`` raising ``ProtocolError``."""

    __slots__ = ()
    error: Type[WireError] = ProtocolError


def unpack_body(body: bytes, decode: Optional[str] = 'utf-8',
                depth_bound: int = -1, reply: bool = False) -> Any:
    """``siridb.wire.unpack_body`` raising ``ProtocolError``."""
    try:
        return _wire_decode.unpack_body(body, decode, depth_bound, reply)
    except WireError as exc:
        raise ProtocolError(str(exc)) from None
