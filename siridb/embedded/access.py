"""Rights and pool checks of the embedded server, each defined once.

Layers: the wire side (``protocol.py``) owns what concerns a connection and
a request's shape (authentication, a paused server, decoding, sizes); this
module owns whether the user may do something and whether the cluster's
pools can serve it. The executor (``query/execute.py``) applies these to
statements; the wire side applies them to inserts, which bypass the
executor (an insert checks its right, then a paused server, then pools, as
SiriDB 2.0.55 does).
"""
from __future__ import annotations

from typing import Optional

from ..wire import types as pm
from .context import QueryFailure
from .store import User

__all__ = ['required_right', 'check_right', 'check_pools', 'POOL_DOWN_INSERT']

#: a cluster with a pool down: the texts of the real server per request
POOL_DOWN_INSERT = 'At least one pool has no server available to process the request'
_NO_ACCESS_POOL = 'At least one pool is lacking an accessible server to process this request'
_NO_ONLINE_POOL = 'At least one pool is lacking an online server to process this request'


def required_right(kind: str) -> Optional[str]:
    """The access right a statement kind (or ``insert``) needs (None: calc,
    help, empty)."""
    if kind in ('select', 'list', 'count', 'show', 'grant', 'revoke', 'insert'):
        return kind
    for prefix in ('create', 'alter', 'drop'):
        if kind.startswith(prefix + '_'):
            return prefix
    return None


def check_right(user: User, kind: str) -> None:
    """Raise access denied (69) unless ``user`` may run ``kind``."""
    right = required_right(kind)
    if right is not None and not user.has(right):
        raise QueryFailure(
            pm.CPROTO_ERR_USER_ACCESS,
            f"Access denied. User '{user.name}' has no '{right}' privileges.")


def check_pools(pool_down: bool, kind: str, target: Optional[str] = None) -> None:
    """Raise the pool error (68) a request of ``kind`` (``target``: what a
    list/count statement lists) gets while a pool of the cluster is down."""
    if not pool_down:
        return
    if kind == 'insert':
        raise QueryFailure(pm.CPROTO_ERR_POOL, POOL_DOWN_INSERT)
    if kind == 'select':
        raise QueryFailure(pm.CPROTO_ERR_POOL, _NO_ACCESS_POOL)
    if (kind in ('list', 'count') and target == 'series') or \
            kind in ('drop_series', 'alter_series'):
        raise QueryFailure(pm.CPROTO_ERR_POOL, _NO_ONLINE_POOL)
