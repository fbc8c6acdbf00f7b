"""pytest fixtures that give tests an embedded SiriDB server and a client.

Installed with the ``testing`` extra (``pip install 'siridb-connector[testing]'``)
the fixtures are available in every test without any setup: the package
registers this module through the ``pytest11`` entry point. Without the
entry point (e.g. the source tree on ``PYTHONPATH``) one line in
``conftest.py`` enables them::

    pytest_plugins = ['siridb.testing.pytest_plugin']

Fixtures (function scope, async, on the test's event loop; they work in
pytest-asyncio's strict mode, where the test needs ``@pytest.mark.asyncio``,
and in auto mode):

- ``siridb_server``: a running ``EmbeddedServer`` on 127.0.0.1 and a free
  port with database ``dbtest`` (precision ms, user ``iris``/``siri``).
- ``siridb_client``: a connected ``SiriDBClient`` on ``siridb_server``,
  closed after the test.
- ``siridb_cluster``: a running ``EmbeddedCluster`` of three listeners.

Without pytest-asyncio (the driver installed without the extra) loading this
module changes nothing; a test that asks for one of the fixtures fails and
names the extra to install.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import pytest

if TYPE_CHECKING:  # imported when used: the plugin loads in every pytest run
    from ..connector import SiriDBClient
    from ..embedded import EmbeddedCluster, EmbeddedServer

__all__ = ['siridb_server', 'siridb_client', 'siridb_cluster']

MISSING_EXTRA = ("the siridb fixtures need pytest-asyncio: "
                 "pip install 'siridb-connector[testing]'")

_Fixture = Callable[..., Any]

try:
    import pytest_asyncio
    HAVE_PYTEST_ASYNCIO = True
except ImportError:  # the driver without the testing extra
    HAVE_PYTEST_ASYNCIO = False


def _async_fixture(fn: _Fixture) -> _Fixture:
    """``fn`` as a pytest-asyncio fixture on the test's own (function) loop,
    or, without pytest-asyncio, a fixture that fails naming the extra."""
    if HAVE_PYTEST_ASYNCIO:
        return pytest_asyncio.fixture(fn, loop_scope='function')

    def missing() -> None:
        pytest.fail(MISSING_EXTRA, pytrace=False)

    return pytest.fixture(name=fn.__name__)(missing)


@_async_fixture
async def siridb_server() -> AsyncIterator[EmbeddedServer]:
    from ..embedded import EmbeddedServer

    async with EmbeddedServer(port=0) as server:
        yield server


@_async_fixture
async def siridb_client(siridb_server: EmbeddedServer) -> AsyncIterator[SiriDBClient]:
    from ..connector import SiriDBClient

    client = SiriDBClient('iris', 'siri', 'dbtest',
                          [(siridb_server.host, siridb_server.port)])
    errors = await client.connect()
    failed = [e for e in errors if e is not None]
    if failed:
        await client.aclose()
        raise failed[0]
    try:
        yield client
    finally:
        await client.aclose()


@_async_fixture
async def siridb_cluster() -> AsyncIterator[EmbeddedCluster]:
    from ..embedded import EmbeddedCluster

    async with EmbeddedCluster(n=3) as cluster:
        yield cluster
