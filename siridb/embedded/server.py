"""``EmbeddedServer``: a SiriDB-compatible server on asyncio, in-process.

``async with EmbeddedServer(port=0) as srv:`` listens on 127.0.0.1 and a free
port (``srv.host``, ``srv.port``) with database ``dbtest`` (user ``iris`` /
``siri``, service account ``sa`` / ``siri``). ``EmbeddedServer.
start_in_thread()`` runs one in a background thread for synchronous code.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl as _ssl
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Dict,
    Iterable,
    Mapping,
    Optional,
    Set,
    Union,
)

from .context import QueryContext, ServerInfo
from .engine import Engine
from .limits import AuthThrottle, Limits, LogRateLimit, is_loopback
from .protocol import ServerProtocol
from .settings import ServerSettings
from .store import DEFAULT_SERVICE_ACCOUNT, Database, Store, User, check_db_name

if TYPE_CHECKING:  # pragma: no cover
    from .cluster import EmbeddedCluster
    from .faults import InsertFaults

__all__ = ['EmbeddedServer', 'ServerThread', 'Databases', 'normalize_databases',
           'Limits', 'is_loopback']

log = logging.getLogger('siridb.embedded')

#: ``{'name': 'precision'}``, or database names (precision ms)
Databases = Union[Mapping[str, str], Iterable[str], None]

DEFAULT_DATABASES: Dict[str, str] = {'dbtest': 'ms'}


def normalize_databases(databases: Databases) -> Dict[str, str]:
    """``{name: precision}``; ValueError for a name that is not a valid
    database name (``store.check_db_name``)."""
    if databases is None:
        return dict(DEFAULT_DATABASES)
    if isinstance(databases, str):
        databases = [databases]
    if isinstance(databases, Mapping):
        out = {str(k): str(v) for k, v in databases.items()}
    else:
        out = {str(name): 'ms' for name in databases}
    for name in out:
        check_db_name(name)
    return out


#: seconds after a stop before the accept-error handler is removed (asyncio
#: retries a failed accept after 1 s)
_ACCEPT_RETRY_GRACE = 1.5


def _unset_handler(loop: asyncio.AbstractEventLoop, handler: Any) -> None:
    """Remove the server's exception handler unless something replaced it."""
    if not loop.is_closed() and loop.get_exception_handler() is handler:
        loop.set_exception_handler(None)


class EmbeddedServer:
    """One listener of the embedded server (see the module docstring).

    ``databases`` are created unless they already exist (e.g. loaded from
    ``data_dir``). ``ssl`` is a server ``ssl.SSLContext``; ``unix_path``
    listens on a unix socket instead of TCP. ``fsync`` is the durability
    policy with a ``data_dir`` (``'always'`` or ``'never'``, see
    ``siridb.embedded.persist``). A damaged file in ``data_dir`` stops the
    start (``persist.DataDirError``) unless ``recover`` is true: then what is
    readable is loaded and the originals are kept next to the files.
    ``engine``/``pool``/``cluster`` are used by ``EmbeddedCluster`` to share
    one store between listeners. ``limits`` bounds what each client may make
    the server hold or do (``siridb.embedded.limits.Limits``; its defaults when
    None). ``settings`` are what a real SiriDB reads from its configuration
    file (``siridb.embedded.settings.ServerSettings``: server name,
    ip_support, max_open_files, ...; SiriDB's defaults when None).
    """

    def __init__(self, host: str = '127.0.0.1', port: int = 0,
                 databases: Databases = None, data_dir: Optional[str] = None,
                 ssl: Optional[_ssl.SSLContext] = None,
                 unix_path: Optional[str] = None, *, fsync: str = 'always',
                 recover: bool = False,
                 engine: Optional[Engine] = None, pool: int = 0,
                 cluster: Optional[EmbeddedCluster] = None,
                 limits: Optional[Limits] = None,
                 settings: Optional[ServerSettings] = None) -> None:
        self.host = host
        self.port = port
        self.ssl = ssl
        self.unix_path = unix_path
        dbs = normalize_databases(databases)
        self._owns_engine = engine is None
        self.engine = engine if engine is not None else Engine(
            data_dir, fsync, recover=recover)
        for name, precision in dbs.items():
            self.engine.ensure_database(name, precision)
        self.cluster = cluster
        self.settings = settings if settings is not None else ServerSettings()
        self.info = ServerInfo(name=self.settings.name_for(host, port), pool=pool,
                               online=False, status='offline', settings=self.settings)
        self.connections: Set[ServerProtocol] = set()
        self.limits = limits if limits is not None else Limits()
        #: per-peer delay of login answers after failed logins
        self.throttle = AuthThrottle(self.limits.auth_fail_delay)
        #: bytes buffered by connections that have not authenticated
        self.pre_auth_buffered = 0
        self._log_rate = LogRateLimit()
        self._old_handler: Any = None
        self.paused = False
        self._pool_error = False
        #: test-only insert faults (``faults.InsertFaults.attach``)
        self.faults: Optional[InsertFaults] = None
        self._server: Optional[asyncio.AbstractServer] = None
        self._last_ctx: Optional[QueryContext] = None

    # -- public API ----------------------------------------------------

    @property
    def store(self) -> Store:
        """The shared ``store.Store`` (``.databases``, ``.accounts``)."""
        return self.engine.store

    @property
    def name(self) -> str:
        """The server's name (``settings.server_name``, else where it listens)."""
        return self.info.name

    @property
    def listening_on(self) -> str:
        """Where clients connect: ``host:port``, or the unix socket's path."""
        return self.unix_path if self.unix_path is not None else f'{self.host}:{self.port}'

    @property
    def running(self) -> bool:
        return self._server is not None

    def database(self, name: str = 'dbtest') -> Database:
        return self.engine.store.databases[name]

    async def start(self) -> None:
        """Start listening (again, on the same port, after ``stop()``)."""
        if self._server is not None:
            return
        if self._owns_engine:
            self.engine.open()
        loop = asyncio.get_running_loop()
        self._quiet_accept_errors(loop)
        if self.unix_path is not None:
            self._server = await loop.create_unix_server(
                lambda: ServerProtocol(self), self.unix_path, ssl=self.ssl)
            self.info.name = self.settings.server_name or self.unix_path
        else:
            self._server = await loop.create_server(
                lambda: ServerProtocol(self), self.host, self.port,
                ssl=self.ssl)
            self.port = self._server.sockets[0].getsockname()[1]
            self.info.name = self.settings.name_for(self.host, self.port)
        self.info.online = not self.paused
        self.info.status = 'paused' if self.paused else 'running'
        self.info.started = time.time()
        log.info('embedded SiriDB server listening on %s%s', self.info.name,
                 ' (TLS)' if self.ssl else '')
        self._warn_exposed()

    async def stop(self) -> None:
        """Stop listening and drop every connection (in-flight requests of
        clients fail with a lost connection, like a server going down)."""
        server, self._server = self._server, None
        self.info.online = False
        self.info.status = 'offline'
        if server is not None:
            server.close()
            for conn in list(self.connections):
                conn.abort()
            await server.wait_closed()
            # let the aborted transports run connection_lost
            await asyncio.sleep(0)
            if self.unix_path is not None:
                try:
                    os.unlink(self.unix_path)
                except OSError:
                    pass
            log.info('embedded SiriDB server %s stopped', self.info.name)
        self._restore_handler()
        if self._owns_engine:
            self.engine.close()

    def pause(self) -> None:
        """Answer every request with ServerError (67), like a server that is
        not running (starting up, shutting down)."""
        self.paused = True
        self.info.online = False
        if self._server is not None:
            self.info.status = 'paused'

    def resume(self) -> None:
        self.paused = False
        if self._server is not None:
            self.info.online = True
            self.info.status = 'running'

    def pool_error(self, flag: bool = True) -> None:
        """Answer as a cluster member whose other pool is down (68)."""
        self._pool_error = flag

    @property
    def paused_msg(self) -> str:
        return f"Server '{self.info.name}' is not running (paused)."

    @property
    def pool_down(self) -> bool:
        if self._pool_error:
            return True
        return self.cluster is not None and self.cluster.pool_missing()

    def query_context(self, db: Database, user: User) -> QueryContext:
        pool_down = self.pool_down
        if self.cluster is not None:
            return QueryContext(db=db, user=user, server=self.info,
                                servers=self.cluster.infos, pool_down=pool_down)
        # a lone server reuses its last context (statements only read it):
        # no new object per query while database, user and pool state stay
        ctx = self._last_ctx
        if ctx is None or ctx.db is not db or ctx.user is not user or \
                ctx.pool_down != pool_down:
            ctx = self._last_ctx = QueryContext(
                db=db, user=user, server=self.info, servers=[self.info],
                pool_down=pool_down)
        return ctx

    async def __aenter__(self) -> EmbeddedServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return (f'<EmbeddedServer {self.info.name} '
                f'{"running" if self.running else "stopped"}>')

    @classmethod
    def start_in_thread(cls, **kwargs: Any) -> ServerThread:
        """Run a server in a background thread; returns once it listens.
        Use the handle's ``host``/``port`` and ``close()`` it when done."""
        return ServerThread(**kwargs)

    def unsent_total(self) -> int:
        """Bytes of replies that wait to be sent, over all connections."""
        return sum(c.unsent for c in self.connections)

    def log_limited(self, kind: str, msg: str, *args: Any,
                    level: int = logging.WARNING) -> None:
        """Log ``msg`` at most once per 10 s for each ``kind`` of event (an
        attacker must not be able to flood the log), with a count of the
        lines left out."""
        left_out = self._log_rate.allow(kind, time.monotonic())
        if left_out is None:
            return
        fmt = f'%s: {msg} (%d more like this not logged)' if left_out else \
            f'%s: {msg}'
        extra = (left_out,) if left_out else ()
        log.log(level, fmt, self.info.name, *args, *extra)

    # -- internals -----------------------------------------------------

    def _quiet_accept_errors(self, loop: asyncio.AbstractEventLoop) -> None:
        """Out of file descriptors, asyncio reports every failed accept (and
        any other callback that fails for want of one) to the loop's exception
        handler; unless the application set its own, those reports are logged
        at most once per 10 s."""
        if loop.get_exception_handler() is not None:
            return

        def handler(loop: asyncio.AbstractEventLoop,
                    context: Dict[str, Any]) -> None:
            exc = context.get('exception')
            # out of file descriptors, any callback may fail (not only accept):
            # one rate-limited line for all of them, no traceback per failure
            if isinstance(exc, OSError) and (
                    exc.errno in (errno.EMFILE, errno.ENFILE)
                    or 'accept' in str(context.get('message', ''))):
                self.log_limited('accept', 'cannot accept connections: %s',
                                 exc, level=logging.ERROR)
                return
            if isinstance(exc, ValueError) and '_start_serving' in repr(context.get('handle')):
                # after a failed accept asyncio re-arms the listening socket
                # with a timer; when the server stopped meanwhile, that timer
                # finds the socket closed: nothing is wrong
                log.debug('%s: accept retry after the server stopped', self.info.name)
                return
            loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        self._old_handler = (loop, handler)

    def _restore_handler(self) -> None:
        mine, self._old_handler = self._old_handler, None
        if mine is not None:
            loop, handler = mine
            if not loop.is_closed() and loop.get_exception_handler() is handler:
                # after asyncio's accept retry delay (1 s), so that a retry timer
                # armed before the stop still meets this handler
                loop.call_later(_ACCEPT_RETRY_GRACE, _unset_handler, loop, handler)

    def _warn_exposed(self) -> None:
        if self.unix_path is not None or is_loopback(self.host):
            return
        store = self.engine.store
        name, password = DEFAULT_SERVICE_ACCOUNT
        weak = store.accounts.get(name) == password or any(
            (u := db.users.get('iris')) is not None and u.password == 'siri'
            for db in store.databases.values())
        if weak:
            log.warning(
                'embedded SiriDB server on %s is reachable beyond loopback '
                'with a default password (service account sa or user iris); '
                'change the passwords', self.info.name)


class ServerThread:
    """An ``EmbeddedServer`` running in its own thread and event loop."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self.server: Optional[EmbeddedServer] = None
        self._thread = threading.Thread(
            target=self._run, name='siridb-embedded', daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception('embedded server thread failed')

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.server = EmbeddedServer(**self._kwargs)
        await self.server.start()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()

    @property
    def host(self) -> str:
        assert self.server is not None
        return self.server.host

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def store(self) -> Store:
        assert self.server is not None
        return self.server.store

    def _call(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(fn, *args)

    def pause(self) -> None:
        assert self.server is not None
        self._call(self.server.pause)

    def resume(self) -> None:
        assert self.server is not None
        self._call(self.server.resume)

    def pool_error(self, flag: bool = True) -> None:
        assert self.server is not None
        self._call(self.server.pool_error, flag)

    def close(self) -> None:
        """Stop the server and wait for its thread."""
        if self._stop is not None:
            self._call(self._stop.set)
        self._thread.join()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f'<ServerThread {self.server!r}>'
