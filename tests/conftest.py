"""Fixtures shared by the whole suite. The embedded server comes from the
package's own pytest plugin (the fixtures users get), so the suite tests it too."""
from __future__ import annotations

import pytest

from siridb.embedded import EmbeddedServer

# registered through the package's pytest11 entry point when it is installed;
# named here too so that a source checkout on PYTHONPATH has it as well
pytest_plugins = ['siridb.testing.pytest_plugin']


@pytest.fixture
def server(siridb_server: EmbeddedServer) -> EmbeddedServer:
    """A running embedded server on a free port with database ``dbtest`` (ms)."""
    return siridb_server
