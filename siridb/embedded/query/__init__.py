"""The SiriDB query language of the embedded server.

``execute(ctx, query, time_precision)`` returns the RES_QUERY payload or
raises ``QueryFailure(tp, msg)`` with the response type and exact text.
"""
from __future__ import annotations

from .execute import execute

__all__ = ['execute']
