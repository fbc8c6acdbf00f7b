"""The SiriDB query language of the embedded server.

``execute(ctx, query, time_precision)`` returns the RES_QUERY payload or
raises ``QueryFailure(tp, msg)`` with the response type and exact text;
``check_precision``, ``prepare`` and ``run`` are its steps, for a caller that
looks at the parsed statement first (``changes``: whether it is logged).
"""
from __future__ import annotations

from .execute import changes, check_precision, execute, prepare, run

__all__ = ['execute', 'check_precision', 'prepare', 'run', 'changes']
