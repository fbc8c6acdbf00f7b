"""The shards the embedded server reports (`list shards`, `count shards`,
`drop shards`): SiriDB 2.0.55's buffer, windows, masks and file sizes."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.query import execute
from siridb.embedded.settings import ServerSettings
from siridb.embedded.shards import series_mask
from siridb.embedded.store import TYPE_INTEGER, TYPE_STRING, Database

T0 = 1447200000  # a multiple of a day (and of 6 hours)
COLUMNS = 'sid, type, start, end, size, status'


def make(settings: Optional[ServerSettings] = None) -> QueryContext:
    db = Database('dbshards', 's')
    info = ServerInfo('localhost:9310', settings=settings or ServerSettings())
    return QueryContext(db, db.users['iris'], info)


def rows(ctx: QueryContext, where: str = '') -> List[Dict[str, Any]]:
    res = execute(ctx, f'list shards {COLUMNS} {where}', None)
    return [dict(zip(res['columns'], r)) for r in res['shards']]


def err(ctx: QueryContext, query: str) -> str:
    try:
        execute(ctx, query, None)
    except QueryFailure as exc:
        return exc.msg
    raise AssertionError(f'{query!r} did not fail')


def test_masks_as_the_recorded_shard_ids_show():
    db = Database('m', 's')
    # grammar.jsonl: sids 1447200609 and 1447200600 for these two string series
    assert series_mask('log.app.main', TYPE_STRING, db) == 609
    assert series_mask('log.app.err', TYPE_STRING, db) == 600
    # number masks run 0..31 for a 1 week duration (sqrt(604800) // 24 == 32)
    masks = {series_mask('x' * k, TYPE_INTEGER, db) for k in range(1, 200)}
    assert masks == set(range(32))
    # bytes of non-ASCII names count as signed chars
    assert series_mask('é', TYPE_INTEGER, db) == ((2 ** 32 - 61 - 87) // 11) % 32


def test_number_points_wait_in_the_buffer_until_it_is_full():
    ctx = make()
    for i in range(63):
        insert(ctx.db, {'n': [[T0 + 10 * i, i]]})
    assert rows(ctx) == []
    insert(ctx.db, {'n': [[T0 + 630, 63]]})
    mask = series_mask('n', TYPE_INTEGER, ctx.db)
    # 64 points 10 s apart: auto duration 2000 * 10 s -> 6 hours; one chunk:
    # 22 (file) + 16 (index) + 16 + 1 (first gap) + 63 * 1 (values +1, 1 byte)
    assert rows(ctx) == [{'sid': T0 + mask, 'type': 'number', 'start': T0,
                          'end': T0 + 21600, 'size': 22 + 16 + 16 + 1 + 63,
                          'status': 'new-values | compressed'}]
    assert execute(ctx, 'count shards size', None) == {'shards_size': 118}
    assert execute(ctx, 'count shards where type == number', None) == {'shards': 1}


def test_a_large_insert_is_written_at_once_past_the_buffer():
    ctx = make()
    insert(ctx.db, {'n': [[T0 + 1, 1]]})  # stays in the buffer
    insert(ctx.db, {'n': [[T0 + 100 + i, 7] for i in range(65)]})
    (shard,) = rows(ctx)
    # 65 equal values 1 s apart: values need 0 bytes; 16 + 1 = 17 bytes of points
    assert shard['size'] == 22 + 16 + 17
    assert shard['end'] - shard['start'] == 3600  # 2000 s -> the next whole hour


def test_string_points_go_to_log_shards_at_once():
    ctx = make()
    insert(ctx.db, {'log.app.err': [[T0 + 49034, 'disk full'], [T0 + 49234, 'timeout'],
                                    [T0 + 49434, 'disk full']]})
    insert(ctx.db, {'log.app.main': [[T0 + 49033 + 45 * i, s] for i, s in enumerate(
        ['started', 'request ok', 'request failed', 'stopped', 'started again'])]})
    # the sizes the real server reported for these points (grammar.jsonl)
    assert sorted((r['sid'], r['size'], r['start'], r['end'], r['type']) for r in rows(ctx)) == [
        (T0 + 600, 90, T0, T0 + 86400, 'log'), (T0 + 609, 97, T0, T0 + 86400, 'log')]


def test_uncompressed_shards():
    ctx = make(ServerSettings(shard_compression=False))
    insert(ctx.db, {'s': [[T0 + i, 'ab'] for i in range(5)],
                    'n': [[T0 + i, i] for i in range(70)]})
    sizes = {r['type']: (r['size'], r['status']) for r in rows(ctx)}
    assert sizes == {'log': (22 + 16 + 5 * (4 + 3), 'new-values'),
                     'number': (22 + 14 + 70 * 12, 'new-values')}


def test_windows_split_and_overlap():
    ctx = make(ServerSettings(shard_auto_duration=False))
    insert(ctx.db, {'s': [[T0 + 10, 'a'], [T0 + 86400 + 10, 'b']]})
    assert [(r['start'], r['end']) for r in rows(ctx)] == [
        (T0, T0 + 86400), (T0 + 86400, T0 + 2 * 86400)]
    insert(ctx.db, {'s': [[T0 + 5, 'c'], [T0 + 20, 'd']]})  # within the first write's span
    status = {r['start']: r['status'] for r in rows(ctx)}
    assert status == {T0: 'overlap | new-values | compressed',
                      T0 + 86400: 'new-values | compressed'}
    assert execute(ctx, f"list shards start where start < {T0 + 86400}", None) == {
        'columns': ['start'], 'shards': [[T0]]}


def test_drop_shards_threshold_and_drop():
    ctx = make()
    insert(ctx.db, {'s': [[T0 + 10, 'a'], [T0 + 86400 + 10, 'b']],
                    'n': [[T0 + i, i] for i in range(100)]})
    assert err(ctx, 'drop shards') == (
        "This query would drop 100.00% of the shards in pool 0. Add 'set ignore_threshold "
        "true' to the query statement if you really want to do this.")
    done = 'shards. (this number does not include shards which are dropped on replica servers)'
    assert execute(ctx, 'drop shards where sid == 1', None) == {
        'success_msg': f'Successfully dropped 0 {done}'}
    ctx.db.drop_threshold = 0.5
    assert err(ctx, 'drop shards where type == log').startswith(
        'This query would drop 66.67% of the shards in pool 0.')
    res = execute(ctx, f'drop shards where type == log and start > {T0} '
                       'set ignore_threshold true', None)
    assert res == {'success_msg': f'Successfully dropped 1 {done}'}
    assert sorted((r['type'], r['start']) for r in rows(ctx)) == [('log', T0), ('number', T0)]
    assert execute(ctx, 'select * from "s"', None) == {'s': [[T0 + 10, 'a']]}
    assert execute(ctx, 'drop shards where type == number set ignore_threshold true',
                   None)['success_msg'] == \
        f'Successfully dropped 1 {done}'
    assert execute(ctx, 'count series length where name == "n"', None) == \
        {'series_length': 0}


def test_snapshot_loaded_points_count_as_one_insert():
    ctx = make()
    series = ctx.db.get_or_create('n', TYPE_INTEGER)
    series.extend(list(range(T0, T0 + 70)), list(range(70)))  # no insert: a loaded store
    (shard,) = rows(ctx)
    assert shard['size'] == 22 + 16 + 16 + 1 + 69  # 70 > 64 points: written at once
    insert(ctx.db, {'n': [[T0 + 100, 1]]})
    assert len(rows(ctx)) == 1  # the new point waits in the buffer


async def test_shards_are_the_same_after_a_restart_from_the_data_dir(tmp_path):
    from _embedded_helpers import RawConn

    from siridb.embedded import EmbeddedServer

    async def listed(srv: EmbeddedServer) -> Any:
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth('dbs')
            return await c.request(0, ['list shards sid, size, start, end, type', None])
        finally:
            await c.close()

    d = str(tmp_path / 'data')
    async with EmbeddedServer(databases={'dbs': 's'}, data_dir=d, fsync='never') as srv:
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth('dbs')
            for r in range(3):
                tp, _ = await c.request(1, {'n': [[T0 + 50 * r + k, k * r] for k in range(30)],
                                            's': [[T0 + 50 * r + k, f'v{k}'] for k in range(6)]})
                assert tp == 1
        finally:
            await c.close()
        before = await listed(srv)
    assert len(before[1]['shards']) == 2  # 90 number points: one buffer written
    async with EmbeddedServer(databases={}, data_dir=d, fsync='never') as srv:
        assert await listed(srv) == before
