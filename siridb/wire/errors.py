"""The codec-level error: bytes that are not a valid SiriDB package.

Neither client nor server meaning is attached: the client's
``ProtocolError`` derives from it (and adds "the connection is closed"),
the embedded server answers or drops the connection on it.
"""
from __future__ import annotations

from typing import Any, List

__all__ = ['WireError']


class WireError(Exception):
    """A package or payload that cannot be decoded.

    When raised by ``Decoder.feed``, ``packages`` holds the intact packages
    that arrived in the same chunk before the fault.
    """

    packages: List[Any] = []
