"""Durability of the embedded server's data directory under damage (issue 13):
a damaged server.log never costs database logs; a failed write (full disk)
leaves the logs as they were and changes nothing; a damaged record or
snapshot stops the start with the file and offset (``recover`` salvages,
keeping the original); database names are checked the same way everywhere;
no password in the log; an out-of-range time-stamp answers a clear error."""
from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
import sys
import uuid

import pytest
from _embedded_helpers import RawConn
from _paths import ROOT as PROJECT

from siridb.cli.options import build_parser
from siridb.connector.lib.codec import packb
from siridb.embedded import EmbeddedServer, persist
from siridb.embedded import __main__ as embedded_main
from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.engine import Engine
from siridb.embedded.persist import (
    CorruptLog,
    DataDirError,
    encode_record,
)
from siridb.embedded.protocol import INT_OUT_OF_RANGE, redact_query
from siridb.embedded.service import handle_service
from siridb.embedded.store import valid_db_name

ROOT = str(PROJECT)
SECRET = 'pa55-secret-xyz'


# -- helpers -------------------------------------------------------------

def _insert(engine, db, data):
    return engine.insert(db, data, packb(data))


def _query(engine, db, q, precision=None):
    ctx = QueryContext(db=db, user=db.users['iris'], server=ServerInfo('t'))
    return engine.query(ctx, q, precision)


def _state(engine):
    """Everything a data directory holds, comparable with ==."""
    out = {'accounts': dict(engine.store.accounts)}
    for name, db in engine.store.databases.items():
        series = {}
        for s in db.series.values():
            ts, values = s.points()
            series[s.name] = (list(ts), list(values))
        out[name] = {
            'series': series,
            'users': sorted((u.name, u.password, u.access)
                            for u in db.users.values()),
            'groups': sorted(db.groups),
            'precision': db.precision,
        }
    return out


def _build(d, *, points=20, compact=False):
    """A data directory with two databases, an account, users and points;
    returns its state."""
    e = Engine(d)
    try:
        db = e.ensure_database('dbtest')
        other = e.ensure_database('other', 's')
        e.set_account('admin', 'admin-pw')
        for k in range(points):
            _insert(e, db, {'a': [[k, k * 10]], 'b': [[k, k / 4]]})
        _insert(e, other, {'s': [[1, 'one'], [2, 'two']]})
        _query(e, db, 'create user "reader" set password "secret1"')
        _query(e, db, 'grant read to user "reader"')
        if compact:
            e.compact('dbtest')
            _insert(e, db, {'a': [[1000, 1]]})
        return _state(e)
    finally:
        e.close()


def _load(d, **kw):
    e = Engine(d, **kw)
    try:
        return _state(e)
    finally:
        e.close()


def _offsets(path):
    """Offsets of the records of ``path``."""
    with open(path, 'rb') as fh:
        data = fh.read()
    out, pos = [], 0
    while pos < len(data):
        out.append(pos)
        length, _ = persist.RECORD_HEADER.unpack_from(data, pos)
        pos += persist.RECORD_HEADER.size + length
    return out


def _flip(path, offset, xor=0xFF):
    with open(path, 'r+b') as fh:
        fh.seek(offset)
        b = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([b ^ xor]))


def _read(path):
    with open(path, 'rb') as fh:
        return fh.read()


class _Full:
    """``persist.os_write`` replaced by a disk that takes ``room`` more
    bytes: a write past it is cut short (like write(2) on a full disk) and
    the next one fails with ENOSPC."""

    def __init__(self, room=0):
        self.room = room

    def __call__(self, fd, data):
        if self.room <= 0:
            raise OSError(errno.ENOSPC, 'No space left on device')
        n = min(len(data), self.room)
        self.room -= n
        return os.write(fd, bytes(data[:n]))


# -- 1: server.log damaged, empty or missing --------------------------------

@pytest.mark.parametrize('damage', ['flip', 'empty', 'missing'])
def test_damaged_server_log_refuses_start_and_keeps_database_logs(tmp_path, damage):
    d = str(tmp_path)
    expected = _build(d)
    path = os.path.join(d, 'server.log')
    db_files = {fn: _read(os.path.join(d, 'db', fn))
                for fn in os.listdir(os.path.join(d, 'db'))}
    assert 'dbtest.log' in db_files
    if damage == 'flip':
        _flip(path, _offsets(path)[0] + 12)
        with pytest.raises(CorruptLog) as info:
            Engine(d)
        assert info.value.path == path and info.value.offset == 0
        assert 'server.log: damaged record at offset 0' in str(info.value)
    else:
        if damage == 'empty':
            open(path, 'wb').close()
        else:
            os.unlink(path)
        with pytest.raises(DataDirError, match=f'server.log is {damage}'):
            Engine(d)
    # nothing was deleted or changed
    for fn, data in db_files.items():
        assert _read(os.path.join(d, 'db', fn)) == data
    if damage == 'flip':
        # recovery skips the damaged record (the first: database dbtest) and
        # moves dbtest's files aside instead of deleting them
        state = _load(d, recover=True)
        assert 'dbtest' not in state and state['other'] == expected['other']
        assert _read(os.path.join(d, 'orphans', 'dbtest.log')) == db_files['dbtest.log']
        assert os.path.exists(path + '.corrupt')
        assert _load(d) == state  # a clean directory again


def test_missing_server_log_with_recover_moves_files_aside(tmp_path, caplog):
    d = str(tmp_path)
    _build(d)
    os.unlink(os.path.join(d, 'server.log'))
    before = _read(os.path.join(d, 'db', 'dbtest.log'))
    with caplog.at_level(logging.WARNING, 'siridb.embedded'):
        state = _load(d, recover=True)
    assert set(state) == {'accounts'}
    assert _read(os.path.join(d, 'orphans', 'dbtest.log')) == before
    assert any('moved' in r.getMessage() and 'dbtest.log' in r.getMessage()
               for r in caplog.records)


def test_unknown_files_are_moved_aside_with_a_log_line(tmp_path, caplog):
    d = str(tmp_path)
    expected = _build(d)
    ghost = os.path.join(d, 'db', 'ghost.log')
    with open(ghost, 'wb') as fh:
        fh.write(b'data of a database server.log does not know')
    with caplog.at_level(logging.WARNING, 'siridb.embedded'):
        assert _load(d) == expected
    assert not os.path.exists(ghost)
    assert _read(os.path.join(d, 'orphans', 'ghost.log')).startswith(b'data of')
    assert any('ghost.log' in r.getMessage() for r in caplog.records)
    # a second orphan of the same name does not overwrite the first
    with open(ghost, 'wb') as fh:
        fh.write(b'second')
    assert _load(d) == expected
    assert _read(os.path.join(d, 'orphans', 'ghost.log.1')) == b'second'


# -- 2: a failed write (disk full) -------------------------------------------

def test_failed_append_is_cut_back_and_later_records_survive(tmp_path, monkeypatch):
    d = str(tmp_path)
    e = Engine(d)
    db = e.ensure_database('dbtest')
    assert _insert(e, db, {'x': [[1, 1]]}) == 1
    path = os.path.join(d, 'db', 'dbtest.log')
    size = os.path.getsize(path)
    monkeypatch.setattr(persist, 'os_write', _Full(room=5))
    with pytest.raises(QueryFailure) as info:
        _insert(e, db, {'x': [[2, 2]]})
    assert info.value.tp == 66 and 'cannot write its data directory' in info.value.msg
    assert 'No space left' in info.value.msg
    assert os.path.getsize(path) == size  # the partial record is gone
    assert list(db.series['x'].points()[0]) == [1]  # nothing applied
    monkeypatch.undo()  # space freed
    assert _insert(e, db, {'x': [[3, 3]]}) == 1
    e.new_database('later')
    e.close()
    state = _load(d)
    assert state['dbtest']['series']['x'] == ([1, 3], [1, 3])
    assert 'later' in state


def test_log_refuses_appends_until_it_can_cut_back(tmp_path, monkeypatch):
    d = str(tmp_path)
    e = Engine(d)
    db = e.ensure_database('dbtest')
    path = os.path.join(d, 'db', 'dbtest.log')
    assert _insert(e, db, {'x': [[1, 1]]}) == 1
    size = os.path.getsize(path)
    monkeypatch.setattr(persist, 'os_write', _Full(room=7))

    def no_truncate(fd, length):
        raise OSError(errno.EIO, 'I/O error')

    monkeypatch.setattr(persist.os, 'ftruncate', no_truncate)
    with pytest.raises(QueryFailure):
        _insert(e, db, {'x': [[2, 2]]})
    assert os.path.getsize(path) == size + 7  # could not cut back
    monkeypatch.setattr(persist, 'os_write', os.write)  # space again
    with pytest.raises(QueryFailure) as info:  # but the log is refused
        _insert(e, db, {'x': [[3, 3]]})
    assert info.value.tp == 66
    assert os.path.getsize(path) == size + 7
    monkeypatch.undo()  # truncation works again: cut back, then append
    assert _insert(e, db, {'x': [[4, 4]]}) == 1
    e.close()
    assert _load(d)['dbtest']['series']['x'] == ([1, 4], [1, 4])


def test_mutating_query_with_failed_write_changes_nothing(tmp_path, monkeypatch, caplog):
    d = str(tmp_path)
    e = Engine(d)
    db = e.ensure_database('dbtest')
    _insert(e, db, {'keep': [[1, 1]], 'drop-me': [[1, 1]]})
    _query(e, db, 'alter series "drop-me" tag `t`')
    before = _state(e)
    monkeypatch.setattr(persist, 'os_write', _Full(room=3))
    with caplog.at_level(logging.DEBUG, 'siridb.embedded'):
        for q in (f'create user "bob" set password "{SECRET}"',
                  'drop series "drop-me"',
                  'alter user "iris" set password "other-pw"',
                  'create group `g` for /k.*/',
                  'alter database set list_limit 5000',
                  'alter database set drop_threshold 0.5',
                  'revoke modify from user "iris"'):
            with pytest.raises(QueryFailure) as info:
                _query(e, db, q)
            assert info.value.tp == 65, q
            assert 'cannot write its data directory' in info.value.msg
            assert _state(e) == before, q
    assert db.list_limit == 10000 and db.tags == {'t': {'drop-me'}}
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    monkeypatch.undo()
    e.close()
    assert _load(d) == before


def test_failed_service_change_changes_nothing(tmp_path, monkeypatch):
    d = str(tmp_path)
    e = Engine(d)
    e.ensure_database('dbtest')
    path = os.path.join(d, 'server.log')
    size = os.path.getsize(path)
    monkeypatch.setattr(persist, 'os_write', _Full(room=3))
    for request, opts in ((0, {'account': 'ops', 'password': 'ops-pw'}),
                          (3, {'dbname': 'newdb'}),
                          (1, {'account': 'sa', 'password': 'new-pw'})):
        tp, reply = handle_service(e, ['sa', 'siri', request, opts])
        assert tp == 96 and 'cannot write its data directory' in reply['error_msg']
    assert e.store.accounts == {'sa': 'siri'} and list(e.store.databases) == ['dbtest']
    assert os.path.getsize(path) == size  # each partial record cut back
    monkeypatch.undo()
    e.close()
    assert set(_load(d)) == {'accounts', 'dbtest'}


async def test_disk_full_over_the_wire(tmp_path, monkeypatch):
    """Through the server: a failed write answers an error and stores
    nothing; every acknowledged point is there after a restart."""
    d = str(tmp_path)
    acked = []
    async with EmbeddedServer(data_dir=d) as srv:
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth()
            for k in range(30):
                full = 10 <= k < 20
                if full:  # a disk with room for a part of one record
                    monkeypatch.setattr(persist, 'os_write', _Full(room=11 if k == 10 else 0))
                else:
                    monkeypatch.setattr(persist, 'os_write', os.write)
                tp, reply = await c.request(1, {'s': [[k * 10 + i, i] for i in range(10)]})
                if full:
                    assert tp == 66 and 'No space left on device' in reply['error_msg']
                else:
                    assert tp == 1
                    acked.append(k)
        finally:
            await c.close()
    monkeypatch.undo()
    e = Engine(d)
    try:
        ts = list(e.store.databases['dbtest'].series['s'].points()[0])
        assert ts == [k * 10 + i for k in acked for i in range(10)]
    finally:
        e.close()


async def test_disk_full_during_a_big_insert_stored_in_steps(tmp_path, monkeypatch):
    """A body over 64 KiB is stored in steps (bulk.py): a failed log write
    answers 66 on the same connection and stores none of its points."""
    d = str(tmp_path)
    big = {f's{i}': [[j, float(j)] for j in range(20)] for i in range(1000)}
    async with EmbeddedServer(data_dir=d) as srv:
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth()
            monkeypatch.setattr(persist, 'os_write', _Full(room=0))
            tp, reply = await c.request(1, big)
            assert tp == 66 and 'No space left on device' in reply['error_msg']
            assert srv.store.databases['dbtest'].series == {}
            monkeypatch.setattr(persist, 'os_write', os.write)
            tp, reply = await c.request(1, big)  # the same connection goes on
            assert tp == 1
        finally:
            await c.close()
    monkeypatch.undo()
    e = Engine(d)
    try:
        assert len(e.store.databases['dbtest'].series) == 1000
        assert len(e.store.databases['dbtest'].series['s7']) == 20
    finally:
        e.close()


def test_failed_compaction_at_start_keeps_the_log(tmp_path, monkeypatch, caplog):
    from siridb.embedded import engine as engine_mod
    d = str(tmp_path)
    expected = _build(d)
    monkeypatch.setattr(engine_mod, 'COMPACT_BYTES', 10)
    monkeypatch.setattr(persist, 'os_write', _Full(room=100))
    with caplog.at_level(logging.ERROR, 'siridb.embedded'):
        assert _load(d) == expected
    assert any('cannot compact' in r.getMessage() for r in caplog.records)
    assert not [fn for fn in os.listdir(os.path.join(d, 'db')) if fn.endswith('.tmp')]
    monkeypatch.undo()
    assert _load(d) == expected


def _mount_tmpfs(path, size):
    if sys.platform != 'linux' or os.geteuid() != 0:
        pytest.skip('a small filesystem needs root on Linux (mount -t tmpfs)')
    os.makedirs(path)
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', path],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f'cannot mount a tmpfs here: {proc.stderr.strip()}')


def _umount(path):
    subprocess.run(['umount', '-l', path], check=False)


def _fill(path, size):
    with open(path, 'wb') as fh:
        try:
            fh.write(b'\0' * size)
        except OSError:
            pass


async def test_disk_full_on_a_small_filesystem(tmp_path):
    """A real full disk (a 256 KiB tmpfs): inserts fail with a clear error
    and change nothing; after space is freed every acknowledged point and a
    database created later survive a restart."""
    mnt = str(tmp_path / 'small')
    _mount_tmpfs(mnt, '256k')
    try:
        d = os.path.join(mnt, 'data')
        acked = []
        async with EmbeddedServer(data_dir=d) as srv:
            c = await RawConn.open(srv.host, srv.port)
            await c.auth()
            filler = os.path.join(mnt, 'filler')
            _fill(filler, 200 * 1024)  # most of the disk
            failed = 0
            for k in range(2000):
                tp, _ = await c.request(1, {'s': [[k * 100 + i, i] for i in range(100)]})
                if tp == 1:
                    acked.append(k)
                else:
                    assert tp == 66
                    failed += 1
                    if failed == 3:
                        break
            assert failed == 3 and acked, 'the disk never filled'
            tp, reply = await c.request(0, [f'create user "bob" set password "{SECRET}"', None])
            assert tp == 65 and 'cannot write' in reply['error_msg']
            assert 'bob' not in srv.store.databases['dbtest'].users
            os.unlink(filler)  # space freed
            for k in range(5000, 5005):
                tp, _ = await c.request(1, {'s': [[k * 100 + i, i] for i in range(100)]})
                assert tp == 1
                acked.append(k)
            await c.close()
            conn = await RawConn.open(srv.host, srv.port)
            tp, _ = await conn.request(32, ['sa', 'siri', 3, {'dbname': 'later'}])
            assert tp == 32
            await conn.close()
        e = Engine(d)
        try:
            ts = set(e.store.databases['dbtest'].series['s'].points()[0])
            assert all(k * 100 + i in ts for k in acked for i in range(100))
            assert len(ts) == len(acked) * 100  # no failed insert came back
            assert 'later' in e.store.databases
            assert 'bob' not in e.store.databases['dbtest'].users
        finally:
            e.close()
    finally:
        _umount(mnt)


# -- 3: damage in the middle of a log or in a snapshot --------------------

def test_damaged_middle_record_refuses_start_with_file_and_offset(tmp_path):
    d = str(tmp_path)
    expected = _build(d, points=200)
    path = os.path.join(d, 'db', 'dbtest.log')
    offsets = _offsets(path)
    bad = offsets[50]
    _flip(path, bad + 10)
    original = _read(path)
    with pytest.raises(CorruptLog) as info:
        Engine(d)
    assert info.value.path == path and info.value.offset == bad
    assert f'dbtest.log: damaged record at offset {bad} (checksum mismatch)' in str(info.value)
    assert _read(path) == original  # not cut
    # recovery: every other record, the original kept
    state = _load(d, recover=True)
    assert _read(path + '.corrupt') == original
    a_ts = state['dbtest']['series']['a'][0]
    assert len(a_ts) == 199 and set(a_ts) < set(expected['dbtest']['series']['a'][0])
    assert _load(d) == state  # the log was rewritten whole


def test_zeroed_page_in_the_middle_refuses_start(tmp_path):
    d = str(tmp_path)
    _build(d, points=400)
    path = os.path.join(d, 'db', 'dbtest.log')
    data = bytearray(_read(path))
    assert len(data) > 3 * 4096
    data[4096:8192] = bytes(4096)
    with open(path, 'wb') as fh:
        fh.write(data)
    with pytest.raises(CorruptLog) as info:
        Engine(d)
    assert info.value.offset <= 4096 and _read(path) == bytes(data)


def test_flipped_bit_in_snapshot_refuses_start_and_keeps_the_file(tmp_path):
    d = str(tmp_path)
    expected = _build(d, points=200, compact=True)
    snap = os.path.join(d, 'db', 'dbtest.snap')
    size = os.path.getsize(snap)
    _flip(snap, size // 2, 0x01)
    original = _read(snap)
    with pytest.raises(CorruptLog, match='dbtest.snap: damaged record at offset 0'):
        Engine(d)
    assert _read(snap) == original  # never cut to 0 bytes
    state = _load(d, recover=True)  # decoded despite the checksum
    assert _read(snap + '.corrupt') == original
    assert set(state['dbtest']['series']) == {'a', 'b'}
    assert len(state['dbtest']['series']['a'][0]) == len(expected['dbtest']['series']['a'][0])
    assert _load(d) == state  # compacted again: a clean snapshot


def test_missing_snapshot_refuses_start(tmp_path):
    d = str(tmp_path)
    _build(d, compact=True)
    os.unlink(os.path.join(d, 'db', 'dbtest.snap'))
    with pytest.raises(DataDirError, match='dbtest.snap is missing'):
        Engine(d)
    state = _load(d, recover=True)
    assert state['dbtest']['series'] == {'a': ([1000], [1])}


def test_torn_last_record_is_dropped_with_a_log_line(tmp_path, caplog):
    d = str(tmp_path)
    expected = _build(d)
    path = os.path.join(d, 'db', 'dbtest.log')
    with open(path, 'ab') as fh:
        fh.write(encode_record(b'I', packb({'a': [[999, 1]]}))[:-4])
    with caplog.at_level(logging.WARNING, 'siridb.embedded'):
        assert _load(d) == expected
    assert any('torn final record' in r.getMessage() for r in caplog.records)
    assert os.path.exists(path + '.torn')


@pytest.mark.parametrize('kind', ['server.log', 'db/dbtest.log', 'db/dbtest.snap'])
def test_corruption_matrix(tmp_path, kind):
    """A byte changed at every offset of each kind of file: a clear refusal
    to start, or all the data; never a silent loss."""
    base = str(tmp_path / 'base')
    expected = _build(base, points=6, compact=kind.endswith('.snap'))
    d = str(tmp_path / 'case')
    shutil.copytree(base, d)
    path = os.path.join(d, kind)
    original = _read(path)
    size = len(original)
    refused = full = 0
    for offset in range(size):
        for xor in (0x01, 0xFF):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, bytes([original[offset] ^ xor]), offset)
                try:
                    state = _load(d)
                except DataDirError as exc:
                    assert os.path.basename(kind) in str(exc)
                    refused += 1
                else:
                    assert state == expected, (offset, xor)
                    full += 1
                # a refused start changes nothing: put the byte back
                os.pwrite(fd, original[offset:offset + 1], offset)
            finally:
                os.close(fd)
            assert full == 0, 'a start with a damaged file'
    assert refused == 2 * size  # every byte is covered by a checksum
    assert full == 0


# -- 4: database names -----------------------------------------------------

@pytest.mark.parametrize('name', ['metrics.prod', '../../escaped', 'a/b', 'x',
                                  '1abc', '', 'a' * 21, 'ok_'])
def test_invalid_names_are_refused_everywhere(tmp_path, name):
    d = str(tmp_path / 'data')
    assert not valid_db_name(name)
    with pytest.raises(ValueError, match='invalid database name'):
        EmbeddedServer(data_dir=d, databases=[name])
    with pytest.raises(ValueError, match='invalid database name'):
        Engine().ensure_database(name)
    if name:
        with pytest.raises(SystemExit):
            embedded_main.parse_args(['--db', name])
        with pytest.raises(SystemExit):  # siridb serve: the same options
            build_parser().parse_args(['serve', '--db', name + ':ms'])
    tp, reply = handle_service(Engine(), ['sa', 'siri', 3, {'dbname': name}])
    assert tp == 96 and 'invalid database name' in reply['error_msg']
    assert not os.path.exists(str(tmp_path / 'escaped'))


@pytest.mark.parametrize('name', ['ab', 'metrics-prod', 'metrics_prod', 'A1', 'a' * 20])
def test_valid_names_are_accepted_everywhere(name):
    assert valid_db_name(name)
    assert build_parser().parse_args(['serve', '--db', name]).db == [{name: 'ms'}]
    assert embedded_main.parse_args(['--db', f'{name}:s']).db == [{name: 's'}]
    e = Engine()
    assert handle_service(e, ['sa', 'siri', 3, {'dbname': name}]) == (32, None)


def test_command_line_refuses_a_dotted_name():
    proc = subprocess.run(
        [sys.executable, '-m', 'siridb.embedded', '--port', '0', '--db', 'metrics.prod'],
        capture_output=True, text=True, timeout=30, cwd=ROOT,
        env={**os.environ, 'PYTHONPATH': ROOT})
    assert proc.returncode == 2 and 'invalid database name' in proc.stderr


def test_dotted_name_from_an_older_server_log_survives_restarts(tmp_path):
    """server.log written before names were checked everywhere: the files of
    ``metrics.prod`` belong to it (not to ``metrics``)."""
    d = str(tmp_path)
    os.makedirs(os.path.join(d, 'db'))
    with open(os.path.join(d, 'server.log'), 'wb') as fh:
        fh.write(encode_record(b'N', packb({'name': 'metrics.prod', 'precision': 'ms',
                                            'uuid': str(uuid.uuid4()), 'created': 1.0})))
    with open(os.path.join(d, 'db', 'metrics.prod.log'), 'wb') as fh:
        fh.write(encode_record(b'I', packb({'x': [[1, 1]]})))
    for _ in range(3):
        state = _load(d)
        assert state['metrics.prod']['series'] == {'x': ([1], [1])}
    assert not os.path.exists(os.path.join(d, 'orphans'))


def test_path_like_name_in_server_log_refuses_start(tmp_path):
    d = str(tmp_path)
    os.makedirs(os.path.join(d, 'db'))
    with open(os.path.join(d, 'server.log'), 'wb') as fh:
        fh.write(encode_record(b'N', packb({'name': '../../escaped', 'precision': 'ms'})))
    with pytest.raises(DataDirError, match='cannot name a file'):
        Engine(d)


# -- 11: no password in the log ----------------------------------------------

def test_redact_query():
    assert redact_query(f'create user "u" set password "{SECRET}"') == \
        'create user "u" set password <redacted>'
    assert SECRET not in redact_query(f"alter user 'u' SET PASSWORD\n'{SECRET}'")
    assert redact_query('list series') == 'list series'
    assert len(redact_query('x' * 1000)) == 200


async def test_failed_create_user_does_not_log_the_password(tmp_path, monkeypatch, caplog):
    async with EmbeddedServer(data_dir=str(tmp_path)) as srv:
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth()
            with caplog.at_level(logging.DEBUG):
                monkeypatch.setattr(persist, 'os_write', _Full())  # disk full
                tp, reply = await c.request(
                    0, [f'create user "bob" set password "{SECRET}"', None])
                assert tp == 65 and 'cannot write' in reply['error_msg']
                monkeypatch.undo()

                def broken(*args):  # any unexpected failure of a query
                    raise RuntimeError('boom')

                monkeypatch.setattr(srv.engine, 'query', broken)
                tp, reply = await c.request(
                    0, [f'create user "bob" set password "{SECRET}"', None])
                assert tp == 65 and 'internal error' in reply['error_msg']
            assert any('password <redacted>' in r.getMessage() for r in caplog.records)
            assert all(SECRET not in r.getMessage() and SECRET not in (r.exc_text or '')
                       for r in caplog.records)
            assert 'bob' not in srv.store.databases['dbtest'].users
        finally:
            await c.close()


# -- 13: the largest time-stamp in a finer precision ------------------------

async def test_largest_timestamp_in_finer_precision_answers_a_clear_error(caplog):
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as srv:
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth()
            assert (await c.request(1, {'x': [[2 ** 63 - 1, 1]]}))[0] == 1
            with caplog.at_level(logging.WARNING, 'siridb.embedded'):
                for precision in (2, 3):
                    for q in ('select * from "x"', 'select max(1) from "x"'):
                        tp, reply = await c.request(0, [q, precision])
                        assert (tp, reply) == (65, {'error_msg': INT_OUT_OF_RANGE})
            assert not caplog.records  # no traceback
            assert await c.request(0, ['select * from "x"', 1]) == \
                (0, {'x': [[2 ** 63 - 1, 1]]})
        finally:
            await c.close()


# -- the recovery flag on the command lines -----------------------------------

def _run_embedded(*args):
    """Start ``python -m siridb.embedded``; (exit status or None while it
    runs, its first stdout line, stderr). A running server is stopped."""
    proc = subprocess.Popen(
        [sys.executable, '-m', 'siridb.embedded', '--port', '0', '--log-level',
         'warning', *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT, env={**os.environ, 'PYTHONPATH': ROOT})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if 'listening on' in line:
        proc.terminate()
    _, err = proc.communicate(timeout=30)
    return (None if 'listening on' in line else proc.returncode), line, err


def test_embedded_command_refuses_damage_and_recovers_with_the_flag(tmp_path):
    d = str(tmp_path)
    expected = _build(d, points=30)
    path = os.path.join(d, 'db', 'dbtest.log')
    bad = _offsets(path)[10]
    _flip(path, bad + 9)
    code, _, err = _run_embedded('--data-dir', d)
    assert code == 1
    assert f'dbtest.log: damaged record at offset {bad}' in err and '--recover' in err
    code, line, err = _run_embedded('--data-dir', d, '--recover')
    assert code is None and 'databases dbtest,other' in line, err
    assert 'skipped' in err and os.path.exists(path + '.corrupt')
    state = _load(d)
    assert len(state['dbtest']['series']['a'][0]) == 29
    assert state['other'] == expected['other']


def test_siridb_serve_has_the_recovery_flag():
    assert build_parser().parse_args(['serve', '--recover']).recover is True
    assert build_parser().parse_args(['serve']).recover is False


def test_damaged_length_of_a_middle_record_is_not_taken_for_a_torn_tail(tmp_path):
    """Several bytes of a length field damaged so that the record seems to
    run past the end of the file: the intact records after it show that it
    is damage, not a torn append."""
    d = str(tmp_path)
    _build(d, points=50)
    path = os.path.join(d, 'db', 'dbtest.log')
    bad = _offsets(path)[20]
    with open(path, 'r+b') as fh:
        fh.seek(bad)
        fh.write(b'\x10\x32\x54\x00')
    with pytest.raises(CorruptLog) as info:
        Engine(d)
    assert info.value.offset == bad and 'past the end of the file' in str(info.value)


def test_zero_tail_after_damage_is_not_taken_for_a_torn_tail(tmp_path):
    d = str(tmp_path)
    _build(d, points=50)
    path = os.path.join(d, 'db', 'dbtest.log')
    bad = _offsets(path)[20]
    _flip(path, bad + 12)
    with open(path, 'ab') as fh:
        fh.write(bytes(4096))  # e.g. preallocated space after a machine crash
    with pytest.raises(CorruptLog) as info:
        Engine(d)
    assert info.value.offset == bad


@pytest.mark.parametrize('tail', ['random', 'records'])
def test_big_torn_tail_is_cut(tmp_path, tail):
    """A torn 40 MiB append cut after 4 MiB (random bytes, or bytes that look
    like records but are a part of the torn payload's own framing): cut off,
    the records before it kept."""
    path = str(tmp_path / 'x.log')
    good = encode_record(b'I', b'first') + encode_record(b'I', b'second')
    if tail == 'random':
        payload = os.urandom(4 * 1024 * 1024)
    else:  # header-like bytes whose checksums do not match
        payload = b''.join(encode_record(b'I', b'%08d' % i)[:-1] + b'?'
                           for i in range(200_000))
    header = persist.RECORD_HEADER.pack(40 * 1024 * 1024, 0)
    with open(path, 'wb') as fh:
        fh.write(good + header + b'I' + payload)
    assert persist.read_records(path) == [(b'I', b'first'), (b'I', b'second')]
    assert os.path.getsize(path) == len(good)
