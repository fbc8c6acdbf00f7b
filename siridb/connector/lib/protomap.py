"""Package type numbers of the SiriDB client protocol (names as in 2.1.6).

Re-exported from ``siridb.wire.types``, their one definition (its
``__all__`` lists them).
"""
from __future__ import annotations

from ...wire import types as _wire_types
from ...wire.types import *  # noqa: F403

__all__ = _wire_types.__all__
