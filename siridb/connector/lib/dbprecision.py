"""The database's time precision, asked once per client and remembered.

Writes and typed selects need it to convert timestamps. It is kept here, in a
table keyed weakly by the client object, instead of on the client itself, so
that any object with a ``query`` coroutine (pool, ``SiriDBConn``, single
connection) gets the same cache without private attributes written into it.
"""
from __future__ import annotations

import weakref
from typing import Any, Optional, Protocol

from .results import QueryResult
from .timestamps import precision_name

__all__ = ['Queryable', 'known_precision', 'remember_precision', 'database_precision']


class Queryable(Protocol):
    """What asking the precision needs: a ``query`` coroutine (the pool,
    ``SiriDBConn`` and ``SiriDBAsyncConnection`` all have one)."""

    async def query(self, query: Any, time_precision: Any = None,
                    timeout: float = 60) -> QueryResult: ...


_KNOWN: weakref.WeakKeyDictionary[Queryable, str] = weakref.WeakKeyDictionary()


def known_precision(client: Queryable) -> Optional[str]:
    """The precision learned for ``client`` before, or None."""
    try:
        return _KNOWN.get(client)
    except TypeError:  # an object that cannot be referred to weakly
        return None


def remember_precision(client: Queryable, precision: Any) -> str:
    """Remember ``precision`` ('s'..'ns' or 0..3) for ``client``; returns its name."""
    name = precision_name(precision)
    try:
        _KNOWN[client] = name
    except TypeError:  # not cached: asked again next time
        pass
    return name


async def database_precision(client: Queryable, timeout: float = 60) -> str:
    """The database's time precision ('s', 'ms', 'us' or 'ns'), asked once
    (``show time_precision``) and remembered for ``client``."""
    known = known_precision(client)
    if known is not None:
        return known
    res = await client.query('show time_precision', timeout=timeout)
    value = {d['name']: d['value'] for d in res['data']}['time_precision']
    return remember_precision(client, value)
