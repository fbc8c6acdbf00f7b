"""pytest fixtures that give tests an embedded SiriDB server and a client.

Enable them in a ``conftest.py`` with one line::

    pytest_plugins = ['siridb.testing.pytest_plugin']

Fixtures (function scope, async; pytest-asyncio required):

- ``siridb_server``: a running ``EmbeddedServer`` on 127.0.0.1 and a free
  port with database ``dbtest`` (precision ms, user ``iris``/``siri``).
- ``siridb_client``: a connected ``SiriDBClient`` on ``siridb_server``,
  closed after the test.
- ``siridb_cluster``: a running ``EmbeddedCluster`` of three listeners.
"""
from __future__ import annotations

from typing import Any, AsyncIterator

import pytest_asyncio

from ..embedded import EmbeddedCluster, EmbeddedServer

__all__ = ['siridb_server', 'siridb_client', 'siridb_cluster']


@pytest_asyncio.fixture
async def siridb_server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(port=0) as server:
        yield server


@pytest_asyncio.fixture
async def siridb_client(siridb_server: EmbeddedServer) -> AsyncIterator[Any]:
    from ..connector import SiriDBClient  # imported late: optional for users

    client = SiriDBClient('iris', 'siri', 'dbtest',
                          [(siridb_server.host, siridb_server.port)])
    errors = await client.connect()
    failed = [e for e in errors if e is not None]
    if failed:
        client.close()
        raise failed[0]
    try:
        yield client
    finally:
        client.close()
        wait_closed = getattr(client, 'wait_closed', None)
        if wait_closed is not None:
            await wait_closed()


@pytest_asyncio.fixture
async def siridb_cluster() -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(n=3) as cluster:
        yield cluster
