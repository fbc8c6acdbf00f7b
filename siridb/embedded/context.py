"""What the wire side of the embedded server hands to the query engine.

The engine needs the database, the authenticated user and a few facts about
the server answering (its name, the cluster's servers and pools); it reports
failures as ``QueryFailure`` carrying the response type and the exact text.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import List

from .settings import ServerSettings
from .store import VERSION, Database, User

__all__ = ['QueryFailure', 'ServerInfo', 'QueryContext']


class QueryFailure(Exception):
    """A query or insert that the server answers with an error package.

    ``tp`` is the response type (65 query error, 66 insert error, 67 server
    error, 68 pool error, 69 access denied) and ``msg`` the exact error_msg.
    """

    def __init__(self, tp: int, msg: str) -> None:
        super().__init__(msg)
        self.tp = tp
        self.msg = msg


@dataclass
class ServerInfo:
    """One server of the (possibly simulated) cluster, for list/show."""

    name: str  # "host:port"
    pool: int = 0
    online: bool = True
    status: str = 'running'  # running | offline | ...
    version: str = VERSION
    log_level: str = 'warning'  # SiriDB's default; set by `alter server(s) ... set log_level`
    started: float = field(default_factory=time.time)
    received_points: int = 0  # points of successful inserts (`show received_points`)
    #: what a real server reads from its configuration file (ip_support, ...)
    settings: ServerSettings = field(default_factory=ServerSettings)


@dataclass
class QueryContext:
    """Everything a statement may read besides the database itself."""

    db: Database
    user: User
    server: ServerInfo
    servers: List[ServerInfo] = field(default_factory=list)
    #: cluster mode: some pool has no online server -> PoolError texts
    pool_down: bool = False

    def __post_init__(self) -> None:
        if not self.servers:
            self.servers = [self.server]
