"""Durability with a data directory: what is acknowledged is there after a
restart; torn tails are ignored; service and query changes are replayed."""
from __future__ import annotations

import os

import pytest
from _embedded_helpers import RawConn

from siridb.embedded import EmbeddedServer
from siridb.embedded import persist as persist_mod
from siridb.embedded.engine import Engine
from siridb.embedded.persist import encode_record, read_records


def _exists(path):
    return os.path.exists(path)


def _size(path):
    return os.path.getsize(path)


def _append(path, data):
    with open(path, 'ab') as fh:
        fh.write(data)


async def _insert(srv, data, db='dbtest'):
    c = await RawConn.open(srv.host, srv.port)
    try:
        await c.auth(db)
        return await c.request(1, data)
    finally:
        await c.close()


async def _query(srv, q, db='dbtest'):
    c = await RawConn.open(srv.host, srv.port)
    try:
        await c.auth(db)
        return await c.request(0, [q, None])
    finally:
        await c.close()


async def _svc(srv, request, options):
    c = await RawConn.open(srv.host, srv.port)
    try:
        return await c.request(32, ['sa', 'siri', request, options])
    finally:
        await c.close()


async def test_inserts_survive_restart(tmp_path):
    d = str(tmp_path)
    async with EmbeddedServer(data_dir=d) as srv:
        assert (await _insert(srv, {'i': [[3, 1], [1, 2]], 's': [[1, 'a']]}))[0] == 1
        assert (await _insert(srv, [{'name': 'i', 'points': [[2, 3.9]]}]))[0] == 1
        assert (await _insert(srv, {'bad': [[1, None]]}))[0] == 66
    async with EmbeddedServer(data_dir=d) as srv:
        db = srv.store.databases['dbtest']
        assert sorted(db.series) == ['i', 's']
        ts, vals = db.series['i'].points()
        assert list(ts) == [1, 2, 3] and list(vals) == [2, 3, 1]
        assert db.series['s'].type_name == 'string'


async def test_existing_database_is_not_recreated(tmp_path, caplog):
    d = str(tmp_path)
    async with EmbeddedServer(data_dir=d, databases={'dbtest': 'ms'}) as srv:
        uuid = srv.store.databases['dbtest'].uuid
        await _insert(srv, {'x': [[1, 1]]})
    async with EmbeddedServer(data_dir=d, databases={'dbtest': 's', 'more': 'us'}) as srv:
        db = srv.store.databases['dbtest']
        assert db.precision == 'ms' and db.uuid == uuid and 'x' in db.series
        assert srv.store.databases['more'].precision == 'us'
    assert any('keeping' in r.getMessage() for r in caplog.records)


async def test_service_changes_survive_restart(tmp_path):
    d = str(tmp_path)
    async with EmbeddedServer(data_dir=d, databases=['keep', 'gone']) as srv:
        assert await _svc(srv, 3, {'dbname': 'new_s', 'time_precision': 's',
                                   'buffer_size': 2048}) == (32, None)
        assert await _svc(srv, 0, {'account': 'ops', 'password': 'pw123'}) == (32, None)
        assert await _svc(srv, 1, {'account': 'sa', 'password': 'newpass'}) == (32, None)
        c = await RawConn.open(srv.host, srv.port)
        assert await c.request(32, ['sa', 'newpass', 6, {'database': 'gone'}]) == (32, None)
        await c.close()
        await _insert(srv, {'x': [[1, 1]]}, db='new_s')
    assert not _exists(os.path.join(d, 'db', 'gone.log'))
    async with EmbeddedServer(data_dir=d, databases=[]) as srv:
        assert sorted(srv.store.databases) == ['keep', 'new_s']
        db = srv.store.databases['new_s']
        assert db.precision == 's' and db.buffer_size == 2048 and 'x' in db.series
        assert srv.store.accounts == {'sa': 'newpass', 'ops': 'pw123'}


async def test_query_changes_survive_restart(tmp_path):
    d = str(tmp_path)
    async with EmbeddedServer(data_dir=d) as srv:
        await _insert(srv, {'aggr': [[1, 1]], 'aggr2': [[1, 2]], 'zero': [[1, 0]]})
        for q in ['create user "reader" set password "secret1"',
                  'grant read to user "reader"',
                  'create group `aggrs` for /aggr.*/',
                  'alter series "aggr" tag `important`',
                  'alter database set list_limit 5000',
                  'drop series "zero"']:
            tp, data = await _query(srv, q)
            assert tp == 0, (q, data)
    async with EmbeddedServer(data_dir=d) as srv:
        db = srv.store.databases['dbtest']
        assert sorted(db.series) == ['aggr', 'aggr2']
        assert db.list_limit == 5000
        assert db.users['reader'].has('select') and not db.users['reader'].has('insert')
        assert db.tags == {'important': {'aggr'}}
        assert await _query(srv, 'list groups name, series') == (
            0, {'columns': ['name', 'series'], 'groups': [['aggrs', 2]]})
        # the restored user can log in
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth(user='reader', password='secret1')
        finally:
            await c.close()


async def test_torn_final_record_is_ignored(tmp_path):
    d = str(tmp_path)
    async with EmbeddedServer(data_dir=d) as srv:
        await _insert(srv, {'x': [[1, 1]]})
        await _insert(srv, {'x': [[2, 2]]})
    path = os.path.join(d, 'db', 'dbtest.log')
    size = _size(path)
    whole = encode_record(b'I', b'\x83\x81x\xfc\xfc\x03\x03')  # any bytes
    _append(path, whole[:-3])  # a record cut short by a crash
    async with EmbeddedServer(data_dir=d) as srv:
        assert list(srv.store.databases['dbtest'].series['x'].points()[0]) == [1, 2]
        assert _size(path) == size
        assert _exists(path + '.torn')
        await _insert(srv, {'x': [[3, 3]]})
    async with EmbeddedServer(data_dir=d) as srv:
        assert list(srv.store.databases['dbtest'].series['x'].points()[0]) == [1, 2, 3]


@pytest.mark.parametrize('tail', [b'\x01', b'\x05\x00\x00\x00', b'\x00' * 8,
                                  encode_record(b'I', b'abc')[:-1],
                                  encode_record(b'I', b'a' * 600)[:-600] + b'\0' * 600])
def test_read_records_stops_at_bad_tail(tmp_path, tail):
    path = str(tmp_path / 'x.log')
    good = encode_record(b'M', b'one') + encode_record(b'M', b'two')
    with open(path, 'wb') as fh:
        fh.write(good + tail)
    assert read_records(path) == [(b'M', b'one'), (b'M', b'two')]
    assert os.path.getsize(path) == len(good)
    assert read_records(str(tmp_path / 'missing.log')) == []


async def test_group_commit_fsyncs_before_replies(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(persist_mod.os, 'fsync',
                        lambda fd: (synced.append(fd), real_fsync(fd))[1])
    async with EmbeddedServer(data_dir=str(tmp_path)) as srv:
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth()
            before = len(synced)
            pids = [c.send(1, {'g': [[i, i]]}) for i in range(100)]
            for _ in pids:
                _, tp, _ = await c.recv()
                assert tp == 1
            # acknowledged only after an fsync, shared by requests arriving together
            assert 1 <= len(synced) - before < 100
        finally:
            await c.close()


async def test_fsync_never_still_writes_before_ack(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(persist_mod.os, 'fsync', lambda fd: synced.append(fd))
    async with EmbeddedServer(data_dir=str(tmp_path), fsync='never') as srv:
        path = os.path.join(str(tmp_path), 'db', 'dbtest.log')
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth()
            assert (await c.request(1, {'n': [[1, 1]]}))[0] == 1
            before = len(synced)
            for i in range(20):
                assert (await c.request(1, {'n': [[i, i]]}))[0] == 1
            assert len(synced) == before  # no fsync per request
        finally:
            await c.close()
        assert len(read_records(path)) == 21  # but every record written


def test_engine_rejects_unknown_fsync_policy(tmp_path):
    with pytest.raises(ValueError):
        Engine(str(tmp_path), fsync='sometimes')


def test_memory_only_by_default(tmp_path):
    e = Engine()
    e.ensure_database('db')
    assert not e.durable and e.data_dir is None


async def test_compaction_keeps_everything(tmp_path, monkeypatch):
    from siridb.embedded import engine as engine_mod
    d = str(tmp_path)
    async with EmbeddedServer(data_dir=d, databases={'dbtest': 'ms'}) as srv:
        await _insert(srv, {'i': [[2, 1], [1, 2]], 'f': [[1, 0.5]], 's': [[1, 'é✓']]})
        assert (await _query(srv, 'create user "reader" set password "secret1"'))[0] == 0
        srv.engine.compact('dbtest')
        assert _exists(os.path.join(d, 'db', 'dbtest.snap'))
        await _insert(srv, {'i': [[3, 3]], 'new': [[1, 1]]})
    async with EmbeddedServer(data_dir=d) as srv:
        db = srv.store.databases['dbtest']
        assert sorted(db.series) == ['f', 'i', 'new', 's']
        assert list(db.series['i'].points()[0]) == [1, 2, 3]
        assert list(db.series['i'].points()[1]) == [2, 1, 3]
        assert db.series['s'].points()[1] == ['é✓'] and db.series['f'].tp == 1
        assert 'reader' in db.users
    # a big log is compacted on start
    monkeypatch.setattr(engine_mod, 'COMPACT_BYTES', 10)
    async with EmbeddedServer(data_dir=d) as srv:
        assert _size(os.path.join(d, 'db', 'dbtest.log')) < 50
        assert len(srv.store.databases['dbtest'].series['i']) == 3
    monkeypatch.setattr(engine_mod, 'COMPACT_BYTES', 32 * 1024 * 1024)
    async with EmbeddedServer(data_dir=d) as srv:
        assert len(srv.store.databases['dbtest'].series['i']) == 3
        assert 'reader' in srv.store.databases['dbtest'].users


def test_crash_between_snapshot_and_new_log_replays_nothing_twice(tmp_path):
    from siridb.embedded.engine import _meta
    from siridb.embedded.insert import insert
    from siridb.embedded.snapshot import write_snapshot
    d = str(tmp_path)
    e = Engine(d)
    db = e.ensure_database('dbtest')
    e.insert(db, {'x': [[1, 1], [2, 2]]}, _packb({'x': [[1, 1], [2, 2]]}))
    e.close()
    # the snapshot was written, the log (generation 0) not yet replaced
    insert(db, {})  # no-op: db holds what the log holds
    write_snapshot(os.path.join(d, 'db', 'dbtest.snap'), db, 0, _meta(db))
    e2 = Engine(d)
    try:
        assert list(e2.store.databases['dbtest'].series['x'].points()[0]) == [1, 2]
    finally:
        e2.close()
    e3 = Engine(d)
    try:
        assert list(e3.store.databases['dbtest'].series['x'].points()[0]) == [1, 2]
    finally:
        e3.close()


def _packb(data):
    from siridb.connector.lib.codec import packb
    return packb(data)


async def test_failed_fsync_closes_instead_of_acknowledging(tmp_path, monkeypatch):
    async with EmbeddedServer(data_dir=str(tmp_path)) as srv:
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth()

            def broken(fd):
                raise OSError(5, 'I/O error')

            monkeypatch.setattr(persist_mod.os, 'fsync', broken)
            c.send(1, {'x': [[1, 1]]})
            assert await c.recv() is None  # closed without a reply
            monkeypatch.undo()
        finally:
            await c.close()
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth()
            assert (await c.request(1, {'x': [[2, 2]]}))[0] == 1
        finally:
            await c.close()


async def test_data_dir_is_locked_while_in_use(tmp_path):
    from siridb.embedded.persist import DataDirInUse
    d = str(tmp_path)
    srv = EmbeddedServer(data_dir=d)
    await srv.start()
    try:
        with pytest.raises(DataDirInUse):
            Engine(d)
    finally:
        await srv.stop()
    # released by stop(), taken again by start()
    e = Engine(d)
    e.close()
    await srv.start()
    try:
        with pytest.raises(DataDirInUse):
            Engine(d)
        assert (await _insert(srv, {'after': [[1, 1]]}))[0] == 1
    finally:
        await srv.stop()
