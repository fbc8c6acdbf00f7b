"""Clients and write sessions that retry, reconnect and fail over within tens of
milliseconds, for the session and fault tests (defaults wait seconds)."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, List, Tuple

from siridb.connector import SiriDBClient
from siridb.connector.lib.session import WriteSession

#: the database of the embedded server fixtures (precision ms)
DB = 'dbtest'

#: pool options that retry within tens of milliseconds
FAST_POOL: Dict[str, Any] = dict(keepalive=False, backoff_base=0.02, max_wait_retry=0.1,
                                 inactive_time=0.02, pool_retry_interval=0.02, timeout=2)


def fast_client(hostlist: List[Tuple[str, int]], cls: Any = SiriDBClient,
                **kw: Any) -> Any:
    """A ``cls`` (a ``SiriDBClient`` by default) on ``hostlist`` with the
    options of ``FAST_POOL``, overridden by ``kw``."""
    return cls('iris', 'siri', DB, hostlist, **{**FAST_POOL, **kw})


@asynccontextmanager
async def connected(client: SiriDBClient) -> AsyncIterator[SiriDBClient]:
    """``client`` connected for the block, closed after it."""
    await client.connect()
    try:
        yield client
    finally:
        client.close()
        await client.wait_closed()


def checked_session(c: SiriDBClient, delivery: str, **kw: Any) -> WriteSession:
    """A session that retries fast and checks at once (no settle wait: one
    embedded store has no replica to wait for)."""
    opts: Dict[str, Any] = dict(time_precision='ms', retry_delay=0.01, retry_max_delay=0.05,
                                insert_timeout=0.3, delivery=delivery, verify_wait=1.0,
                                verify_settle=0.0)
    opts.update(kw)
    return c.session(**opts)
