"""Testing helpers shipped with the package: pytest fixtures with an embedded
server (``siridb.testing.pytest_plugin``) and a fault-injecting proxy
(``siridb.testing.proxy``)."""
from .proxy import FaultProxy

__all__ = ['FaultProxy']
