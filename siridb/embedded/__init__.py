"""An embedded, SiriDB-compatible server (wire protocol of SiriDB 2.0.55).

``EmbeddedServer`` runs one in-process; ``EmbeddedCluster`` runs several
listeners over one store to test failover; ``python -m siridb.embedded``
runs one standalone. ``Limits`` bounds what each client may make a server
hold or do; ``ServerSettings`` is what a real SiriDB reads from its
configuration file (server name, ip_support, max_open_files, shards).
"""
from __future__ import annotations

from .cluster import EmbeddedCluster
from .limits import Limits
from .server import EmbeddedServer, ServerThread
from .settings import ServerSettings

__all__ = ['EmbeddedServer', 'EmbeddedCluster', 'ServerThread', 'Limits',
           'ServerSettings']
