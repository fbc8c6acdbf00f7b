"""The embedded server's engine: the store, its data directory and commits.

One engine serves one server or every listener of an ``EmbeddedCluster``.
It knows nothing of sockets: the wire side (``protocol.py``) calls
``insert``/``query``/service changes and hands each acknowledgement of a
change to ``commit()``, which sends it once the change is durable (see
``persist.py`` for the log format and the fsync policy).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..wire import types as pm
from ..wire.decode import unpack_body
from ..wire.framing import packb
from .context import QueryContext, QueryFailure
from .insert import apply_insert, parse_insert
from .patterns import group_pattern
from .persist import (
    DataDirError,
    DirLock,
    LogFile,
    LogWriteError,
    encode_record,
    read_records,
    sync_dir,
    write_file,
)
from .query import changes, check_precision, execute, prepare, run
from .snapshot import load_snapshot, write_snapshot
from .store import Database, Group, Series, Store, User, check_db_name

__all__ = ['Engine', 'Login', 'FSYNC_POLICIES', 'WRITE_FAILED']

log = logging.getLogger('siridb.embedded')

FSYNC_POLICIES = ('always', 'never')

#: database settings kept in metadata snapshots
_SETTINGS = ('buffer_size', 'duration_num', 'duration_log', 'list_limit',
             'select_points_limit', 'drop_threshold', 'timezone',
             'expiration_num', 'expiration_log')

_KIND_INSERT = b'I'
_KIND_DROP_SERIES = b'D'
_KIND_META = b'M'
_KIND_NEW_DB = b'N'
_KIND_DROP_DB = b'X'
_KIND_ACCOUNT = b'A'
_KIND_DROP_ACCOUNT = b'R'
_KIND_GENERATION = b'G'

#: a database log larger than this is compacted into a snapshot on start
COMPACT_BYTES = 32 * 1024 * 1024

#: the error text of a change whose log write failed ({} is the reason)
WRITE_FAILED = ('the embedded server cannot write its data directory ({}); '
                'nothing was changed')

#: suffixes of the files of database NAME in db/ (longest first)
_DB_FILE_SUFFIXES = ('.log.torn', '.log.new', '.log.tmp', '.snap.tmp',
                     '.log', '.snap')
#: a file of db/: the database name, then one of the suffixes or a copy kept
#: by recovery (``.corrupt``, ``.corrupt.1``, ...)
_DB_FILE = re.compile(r'(.+?)\.(?:log|snap)(?:\.(?:torn|new|tmp|corrupt(?:\.[0-9]+)?))?')



class Login:
    """Who one connection is logged in as (database and user names), set by
    AUTH; not a client session (``siridb.connector``'s write sessions)."""

    __slots__ = ('dbname', 'db', 'username')

    def __init__(self) -> None:
        self.dbname: Optional[str] = None
        self.db: Optional[Database] = None
        self.username: Optional[str] = None

    def __repr__(self) -> str:
        return f'Login(db={self.dbname!r}, user={self.username!r})'


class Engine:
    """Store + optional data directory + the group commit of replies."""

    def __init__(self, data_dir: Optional[str] = None,
                 fsync: str = 'always', *, recover: bool = False) -> None:
        """``recover``: load what is readable of damaged files instead of
        refusing to start (originals kept; see ``persist.py``)."""
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f'fsync must be one of {FSYNC_POLICIES}')
        self.store = Store()
        self.data_dir = data_dir
        self.fsync = fsync
        self.recover = recover
        self._server_log: Optional[LogFile] = None
        self._db_logs: Dict[str, LogFile] = {}
        #: generation of each database's current log (see snapshot.py)
        self._gens: Dict[str, int] = {}
        self._pending: List[Tuple[Callable[[], None],
                                  Optional[Callable[[], None]]]] = []
        self._flush_handle: Optional[asyncio.Handle] = None
        #: the connection storing a big insert in steps (see bulk.py); other
        #: changes wait for it, so that the store changes in log order
        self.bulk_writer: Optional[object] = None
        self._lock: Optional[DirLock] = None
        if data_dir is not None:
            os.makedirs(os.path.join(data_dir, 'db'), exist_ok=True)
            self._lock = DirLock(os.path.join(data_dir, 'LOCK'))
            self._lock.acquire()
            self._server_log = LogFile(os.path.join(data_dir, 'server.log'))
            try:
                self._load()
            except BaseException:
                self._lock.release()
                raise

    @property
    def durable(self) -> bool:
        return self._server_log is not None

    # -- authentication ------------------------------------------------

    def authenticate(self, login: Login, data: Any) -> Optional[int]:
        """Reply type to an AUTH payload (None: malformed, no reply)."""
        if type(data) is not list or len(data) != 3 or \
                not all(type(x) is str for x in data):
            return None
        username, password, dbname = data
        db = self.store.databases.get(dbname)
        if db is None:
            return pm.CPROTO_ERR_AUTH_UNKNOWN_DB
        user = db.users.get(username)
        if user is None or user.password != password:
            return pm.CPROTO_ERR_AUTH_CREDENTIALS
        login.dbname, login.db, login.username = dbname, db, username
        return pm.CPROTO_RES_AUTH_SUCCESS

    def resolve(self, login: Login) -> Optional[Tuple[Database, User]]:
        """The login's database and user, if both still exist."""
        db = login.db
        if db is None or self.store.databases.get(login.dbname or '') is not db:
            return None
        user = db.users.get(login.username or '')
        if user is None:
            return None
        return db, user

    # -- changes -------------------------------------------------------

    def insert(self, db: Database, data: Any, body: bytes) -> int:
        """Validate, log (the body as received) and store an insert."""
        chunks = parse_insert(data, db.max_ts)
        if chunks:
            self.log_insert(db, body)
        return apply_insert(db, chunks)

    def log_insert(self, db: Database, body: bytes) -> None:
        """Log an insert (the body as received) before it is stored; a failed
        write raises QueryFailure 66 and leaves the log as it was."""
        if self._server_log is not None:
            try:
                self._db_log(db.name).append(_KIND_INSERT, body)
            except LogWriteError as exc:
                raise QueryFailure(pm.CPROTO_ERR_INSERT, 'Insert failed: ' + WRITE_FAILED.format(
                    exc.strerror)) from None

    def query(self, ctx: QueryContext, query: str,
              time_precision: Optional[int]) -> Tuple[Dict[str, Any], bool]:
        """Run a query: (reply payload, whether it changed logged state);
        raise QueryFailure for error replies."""
        time_precision = check_precision(time_precision)
        if not self.durable:  # nothing is logged: no need to look first
            return execute(ctx, query, time_precision), False
        started = time.perf_counter()
        stmt = prepare(query)
        if not changes(stmt):
            return run(ctx, stmt, time_precision, started), False
        db = ctx.db
        saved = _Saved(db, stmt['kind'].startswith('drop_'))
        result = run(ctx, stmt, time_precision, started)
        if db.name in self.store.databases:
            records = []
            if saved.series is not None:
                dropped = [n for n in saved.series if n not in db.series]
                if dropped:
                    records.append((_KIND_DROP_SERIES, packb(dropped)))
            records.append((_KIND_META, packb(_meta(db))))
            try:
                self._db_log(db.name).append_many(records)
            except LogWriteError as exc:
                saved.restore(db)
                raise QueryFailure(pm.CPROTO_ERR_QUERY, 'Query failed: ' + WRITE_FAILED.format(
                    exc.strerror)) from None
        return result, True

    def new_database(self, name: str, precision: str = 'ms',
                     **options: Any) -> Database:
        """Create (and log) a database; ValueError for an invalid name,
        LogWriteError (nothing changed) when the log write fails."""
        check_db_name(name)
        db = Database(name, precision, **options)
        if self._server_log is not None:
            self._move_aside(name, 'files left of an older database')
            self._server_log.append(_KIND_NEW_DB, packb({
                'name': name, 'precision': precision, 'uuid': db.uuid,
                'created': db.created, **options}))
            self._gens[name] = 0
        self.store.databases[name] = db
        log.info('created database %s (time precision %s)', name, precision)
        return db

    def ensure_database(self, name: str, precision: str = 'ms') -> Database:
        db = self.store.databases.get(name)
        if db is None:
            db = self.new_database(name, precision)
            if self._server_log is not None:
                self._server_log.sync()
        elif db.precision != precision:
            log.warning('database %s exists with time precision %s; keeping '
                        'it (not %s)', name, db.precision, precision)
        return db

    def drop_database(self, name: str) -> None:
        if self._server_log is not None:
            self._server_log.append(_KIND_DROP_DB, packb({'name': name}))
            self._server_log.sync()
        self.store.databases.pop(name, None)
        if self._server_log is not None:
            self._db_logs.pop(name, LogFile(self._db_path(name))).remove()
            self._remove_snapshot(name)
        log.info('dropped database %s', name)

    def set_account(self, name: str, password: str) -> None:
        if self._server_log is not None:
            self._server_log.append(_KIND_ACCOUNT, packb(
                {'name': name, 'password': password}))
        self.store.accounts[name] = password

    def drop_account(self, name: str) -> None:
        if self._server_log is not None:
            self._server_log.append(_KIND_DROP_ACCOUNT,
                                    packb({'name': name}))
        self.store.accounts.pop(name, None)

    # -- commits -------------------------------------------------------

    @property
    def defers_acks(self) -> bool:
        """Whether ``commit()`` waits for an fsync (else it replies at once)."""
        return self._server_log is not None and self.fsync != 'never'

    def commit(self, reply: Callable[[], None],
               fail: Optional[Callable[[], None]] = None) -> None:
        """Send ``reply`` once every change made so far is durable; if the
        fsync fails, call ``fail`` instead (e.g. close the connection: the
        change must not be acknowledged)."""
        if not self.defers_acks:
            reply()
            return
        self._pending.append((reply, fail))
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(
                self.flush)

    def flush(self) -> None:
        """fsync every written log, then send the replies waiting for it."""
        self._flush_handle = None
        pending, self._pending = self._pending, []
        try:
            self._sync()
        except OSError:
            log.exception('fsync of the data directory failed; closing the '
                          'connections of %d unacknowledged change(s)',
                          len(pending))
            for _, fail in pending:
                if fail is not None:
                    fail()
            return
        for reply, _ in pending:
            reply()

    def _sync(self) -> None:
        if self._server_log is not None:
            self._server_log.sync()
        for f in self._db_logs.values():
            f.sync()

    def close(self) -> None:
        """Flush pending replies and close the logs (reopened on demand)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self.flush()
        if self._server_log is not None:
            self._server_log.close()
        for f in self._db_logs.values():
            f.close()
        if self._lock is not None:
            self._lock.release()

    def open(self) -> None:
        """Take the data directory again after ``close()`` (server restart)."""
        if self._lock is not None:
            self._lock.acquire()

    # -- data directory ------------------------------------------------

    def _db_path(self, name: str) -> str:
        assert self.data_dir is not None
        return os.path.join(self.data_dir, 'db', name + '.log')

    def _db_log(self, name: str) -> LogFile:
        f = self._db_logs.get(name)
        if f is None:
            f = self._db_logs[name] = LogFile(self._db_path(name))
        return f

    def _load(self) -> None:
        assert self._server_log is not None and self.data_dir is not None
        t0 = time.perf_counter()
        store = self.store
        dbs: Dict[str, Dict[str, Any]] = {}
        path = self._server_log.path
        records = read_records(path, recover=self.recover)
        folder = os.path.join(self.data_dir, 'db')
        if not records and not self.recover:
            files = sorted(os.listdir(folder))
            if files:
                what = 'empty' if os.path.exists(path) else 'missing'
                raise DataDirError(
                    f'{path} is {what} but {folder} holds {len(files)} '
                    f'file(s) ({", ".join(files[:3])}...): not starting '
                    f'without the list of databases. Restore server.log, or '
                    f'start with recover=True (--recover) to move those '
                    f'files aside into orphans/')
        for kind, body in records:
            rec = _decode(path, kind, body)
            if kind == _KIND_NEW_DB:
                name = rec['name']
                if not _safe_file_name(name):
                    raise DataDirError(
                        f'{path}: database name {name!r} cannot name a file '
                        f'in {folder}; not starting')
                dbs[name] = rec
            elif kind == _KIND_DROP_DB:
                dbs.pop(rec['name'], None)
            elif kind == _KIND_ACCOUNT:
                store.accounts[rec['name']] = rec['password']
            elif kind == _KIND_DROP_ACCOUNT:
                store.accounts.pop(rec['name'], None)
        points = 0
        damaged: List[str] = []
        for name, rec in dbs.items():
            opts = {k: rec[k] for k in ('buffer_size', 'duration_num',
                                        'duration_log') if k in rec}
            db = Database(name, rec['precision'], **opts)
            db.uuid = rec.get('uuid', db.uuid)
            db.created = rec.get('created', db.created)
            n, ok = self._load_database(db)
            points += n
            store.databases[name] = db
            if not ok:
                damaged.append(name)
        # files of databases dropped just before a crash, or of databases
        # server.log does not know: kept, moved aside
        for fn in sorted(os.listdir(folder)):
            if _owner(fn) not in dbs:
                self._move_file_aside(os.path.join(folder, fn),
                                      'no database of server.log owns it')
        for name in dbs:
            try:
                size = os.path.getsize(self._db_path(name))
            except OSError:
                continue
            if size > COMPACT_BYTES or name in damaged:
                try:
                    self.compact(name)
                except OSError as exc:
                    log.error('cannot compact the log of database %s (%s); '
                              'keeping the log', name, exc)
        log.info('loaded %d database(s), %d point(s) from %s in %.3f s',
                 len(dbs), points, self.data_dir, time.perf_counter() - t0)

    def _move_aside(self, name: str, why: str) -> None:
        """Move the files of database ``name`` in db/ into orphans/."""
        folder = os.path.dirname(self._db_path(name))
        for suffix in _DB_FILE_SUFFIXES:
            path = os.path.join(folder, name + suffix)
            if os.path.exists(path):
                self._move_file_aside(path, why)

    def _move_file_aside(self, path: str, why: str) -> None:
        """Rename ``path`` into ``<data_dir>/orphans/`` (a free name there),
        with a WARNING: files of the data directory are never deleted
        without a request to drop them."""
        assert self.data_dir is not None
        target_dir = os.path.join(self.data_dir, 'orphans')
        os.makedirs(target_dir, exist_ok=True)
        base = os.path.join(target_dir, os.path.basename(path))
        target, i = base, 0
        while os.path.exists(target):
            i += 1
            target = f'{base}.{i}'
        os.replace(path, target)
        sync_dir(target_dir)
        sync_dir(os.path.dirname(path))
        log.warning('data directory: moved %s to %s (%s)', path, target, why)

    def _snap_path(self, name: str) -> str:
        assert self.data_dir is not None
        return os.path.join(self.data_dir, 'db', name + '.snap')

    def _remove_snapshot(self, name: str) -> None:
        try:
            os.unlink(self._snap_path(name))
        except FileNotFoundError:
            pass

    def _load_database(self, db: Database) -> Tuple[int, bool]:
        """Snapshot, then the log records it does not cover: (points read,
        whether the files were intact; False only with ``recover``)."""
        snap_path = self._snap_path(db.name)
        log_path = self._db_path(db.name)
        snap = load_snapshot(snap_path, db, self.recover)
        covered = -1
        intact = True
        if snap is not None:
            covered = snap['covers_gen']
            intact = not snap['damaged']
            if snap['meta'] is not None:
                _apply_meta(db, snap['meta'])
        points = sum(len(s) for s in db.series.values())
        records = read_records(log_path, recover=self.recover)
        if records.salvaged:
            intact = False
        gen = 0
        if records and records[0][0] == _KIND_GENERATION:
            gen = int(_decode(log_path, *records[0]))
        self._gens[db.name] = gen
        if gen > 0 and snap is None:
            if not self.recover:
                raise DataDirError(
                    f'{log_path} continues a snapshot (log generation {gen}) '
                    f'but {snap_path} is missing: not starting. Restore the '
                    f'snapshot, or start with recover=True (--recover) to '
                    f'load the log alone')
            log.error('recover: %s is missing; loading database %s from its '
                      'log alone', snap_path, db.name)
            intact = False
        if gen <= covered:
            # compaction was cut short after the snapshot: finish it
            self._start_log(db.name, covered + 1)
            return points, intact
        for kind, body in records:
            if kind == _KIND_INSERT:
                points += apply_insert(
                    db, parse_insert(_decode(log_path, kind, body), db.max_ts))
            elif kind == _KIND_DROP_SERIES:
                db.drop_series(_decode(log_path, kind, body))
            elif kind == _KIND_META:
                _apply_meta(db, _decode(log_path, kind, body))
        return points, intact

    def _start_log(self, name: str, gen: int) -> None:
        """Replace the database's log by an empty one of generation gen."""
        f = self._db_logs.pop(name, None)
        if f is not None:
            f.close()
        write_file(self._db_path(name),
                   (encode_record(_KIND_GENERATION, str(gen).encode()),))
        self._gens[name] = gen

    def compact(self, name: str) -> None:
        """Write a snapshot of database ``name`` and start an empty log."""
        if self.data_dir is None:
            return
        t0 = time.perf_counter()
        db = self.store.databases[name]
        self._sync()
        gen = self._gens.get(name, 0)
        write_snapshot(self._snap_path(name), db, gen, _meta(db))
        self._start_log(name, gen + 1)
        log.info('compacted the log of database %s in %.3f s', name,
                 time.perf_counter() - t0)


def _decode(path: str, kind: bytes, body: bytes) -> Any:
    """The body of an intact record; DataDirError if it does not decode."""
    try:
        if kind == _KIND_GENERATION:
            return int(body.decode())
        return unpack_body(body)
    except Exception as exc:
        raise DataDirError(f'{path}: a record of kind {kind!r} does not '
                           f'decode ({exc}); not starting') from None


def _owner(file_name: str) -> str:
    """The database a file of db/ belongs to ('' for none)."""
    m = _DB_FILE.fullmatch(file_name)
    return m.group(1) if m else ''


def _safe_file_name(name: Any) -> bool:
    """Whether a database name of server.log maps to a file in db/ (names
    made before names were checked everywhere may not be valid names)."""
    return type(name) is str and bool(name) and name not in ('.', '..') and \
        not any(c in name for c in '/\\\0')


class _Saved:
    """What a mutating statement may change in a database, to put back
    when its log write fails (the statement must leave no trace)."""

    def __init__(self, db: Database, series: bool) -> None:
        self.users = [(u.name, u.password, u.access) for u in db.users.values()]
        self.groups = [(g.name, g.expression, g.regex)
                       for g in db.groups.values()]
        self.tags = {name: set(members) for name, members in db.tags.items()}
        self.settings = {k: getattr(db, k) for k in _SETTINGS if hasattr(db, k)}
        self.series: Optional[Dict[str, Series]] = \
            dict(db.series) if series else None

    def restore(self, db: Database) -> None:
        db.users = {n: User(n, pw, access) for n, pw, access in self.users}
        db.groups = {n: Group(n, expr, rx) for n, expr, rx in self.groups}
        db.tags = self.tags
        for key in _SETTINGS:
            if key in self.settings:
                setattr(db, key, self.settings[key])
            elif hasattr(db, key):
                delattr(db, key)
        if self.series is not None:
            db.series.clear()
            db.series.update(self.series)


def _meta(db: Database) -> Dict[str, Any]:
    return {
        'users': [[u.name, u.password, u.access] for u in db.users.values()],
        'groups': [[g.name, g.expression] for g in db.groups.values()],
        'tags': {name: sorted(members) for name, members in db.tags.items()},
        'settings': {k: getattr(db, k) for k in _SETTINGS if hasattr(db, k)},
    }


def _apply_meta(db: Database, meta: Dict[str, Any]) -> None:
    db.users = {name: User(name, pw, access)
                for name, pw, access in meta['users']}
    groups: Dict[str, Group] = {}
    for name, expression in meta['groups']:
        try:
            groups[name] = Group(name, expression, group_pattern(expression))
        except QueryFailure:
            log.warning('database %s: cannot restore group %s', db.name, name)
    db.groups = groups
    db.tags = {name: set(members) for name, members in meta['tags'].items()}
    for key, value in meta['settings'].items():
        setattr(db, key, value)
