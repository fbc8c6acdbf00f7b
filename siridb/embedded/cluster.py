"""``EmbeddedCluster``: several listeners in one process sharing one store.

Each listener plays one server of a SiriDB cluster (all of them replicas of
the same data): stop, restart, pause or make any of them answer PoolError to
test a client's failover for real. Give ``pools`` to label servers with pool
numbers; when every server of a pool is stopped or paused, the others answer
PoolError like a real cluster with a pool down.
"""
from __future__ import annotations

import ssl as _ssl
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .context import ServerInfo
from .engine import Engine
from .limits import Limits
from .server import Databases, EmbeddedServer, normalize_databases
from .settings import ServerSettings
from .store import Store

__all__ = ['EmbeddedCluster']


class EmbeddedCluster:
    """``n`` ``EmbeddedServer`` listeners (``servers``) over one engine;
    ``limits`` (``siridb.embedded.limits.Limits``) applies to each;
    ``settings`` (``siridb.embedded.settings.ServerSettings``), one per server,
    give each its configuration (names must differ; default: SiriDB's)."""

    def __init__(self, n: int = 3, databases: Databases = None, *,
                 host: str = '127.0.0.1', data_dir: Optional[str] = None,
                 pools: Optional[Sequence[int]] = None, fsync: str = 'always',
                 ssl: Optional[_ssl.SSLContext] = None,
                 recover: bool = False, limits: Optional[Limits] = None,
                 settings: Optional[Sequence[ServerSettings]] = None) -> None:
        if n < 1:
            raise ValueError('a cluster needs at least one server')
        if pools is not None and len(pools) != n:
            raise ValueError('pools must give a pool number for each server')
        if settings is not None:
            if len(settings) != n:
                raise ValueError('settings must give settings for each server')
            names = [s.server_name for s in settings if s.server_name is not None]
            if len(set(names)) != len(names):
                raise ValueError('each server of a cluster needs its own server_name')
        dbs = normalize_databases(databases)
        self.engine = Engine(data_dir, fsync, recover=recover)
        for name, precision in dbs.items():
            self.engine.ensure_database(name, precision)
        self.servers: List[EmbeddedServer] = [
            EmbeddedServer(host, 0, databases={}, ssl=ssl, engine=self.engine,
                           pool=pools[i] if pools is not None else 0,
                           cluster=self, limits=limits,
                           settings=settings[i] if settings is not None else None)
            for i in range(n)]

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def infos(self) -> List[ServerInfo]:
        return [s.info for s in self.servers]

    @property
    def hostlist(self) -> List[Tuple[str, int]]:
        """``[(host, port), ...]`` for ``SiriDBClient``."""
        return [(s.host, s.port) for s in self.servers]

    def pool_missing(self) -> bool:
        """True when some pool has no running, unpaused server."""
        pools: Dict[int, bool] = {}
        for s in self.servers:
            pools[s.info.pool] = pools.get(s.info.pool, False) or (
                s.running and not s.paused)
        return not all(pools.values())

    async def start(self) -> None:
        self.engine.open()
        for s in self.servers:
            await s.start()

    async def stop(self) -> None:
        for s in self.servers:
            await s.stop()
        self.engine.close()

    async def __aenter__(self) -> EmbeddedCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f'<EmbeddedCluster {[s.name for s in self.servers]}>'
