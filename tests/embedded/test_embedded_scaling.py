"""The embedded server's small requests stay independent of the stored volume.

Small selects must not walk every series of the database, and the result keeps
the database's series order (creation order) for any selection size.
"""
from __future__ import annotations

import importlib
from array import array
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from _embedded_helpers import RawConn
from hypothesis import given, settings
from hypothesis import strategies as st

from siridb.connector.lib.codec import pack
from siridb.embedded import EmbeddedServer
from siridb.embedded import insert as insert_mod
from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.query import execute
from siridb.embedded.store import TYPE_FLOAT, TYPE_INTEGER, TYPE_STRING, Database, Series


class NoScanDict(Dict[str, Series]):
    """A series dict that fails when someone iterates over all of it."""

    armed = False

    def __iter__(self) -> Iterator[str]:
        if self.armed:
            raise AssertionError('a small request scanned every series')
        return super().__iter__()

    def keys(self) -> Any:
        if self.armed:
            raise AssertionError('a small request scanned every series')
        return super().keys()


def make_db(n: int = 200) -> Database:
    db = Database('dbtest', 'ms')
    insert(db, {f's{i:03d}': [[1000 + i, i]] for i in range(n)})
    return db


def ctx_of(db: Database) -> QueryContext:
    return QueryContext(db, db.users['iris'], ServerInfo('127.0.0.1:9000'))

def _count_io(proto: Any) -> Tuple[List[int], List[int]]:
    """Record the size of every transport write and every read of one server
    connection: (writes, reads), filled in as they happen."""
    transport: Any = proto._transport
    writes: List[int] = []
    reads: List[int] = []
    real_write = transport.write
    real_received = proto.data_received

    def counting_write(data: bytes) -> None:
        writes.append(len(data))
        real_write(data)

    def counting_received(data: bytes) -> None:
        reads.append(len(data))
        real_received(data)

    transport.write = counting_write
    proto.data_received = counting_received
    return writes, reads



def test_select_one_series_does_not_scan_all_series() -> None:
    db = make_db()
    guarded = NoScanDict(db.series)
    db.series = guarded
    ctx = ctx_of(db)
    guarded.armed = True
    try:
        assert execute(ctx, 'select * from "s150"', None) == {'s150': [[1150, 150]]}
        assert execute(ctx, 'select * from "s150", "s007"', None) == {
            's007': [[1007, 7]], 's150': [[1150, 150]]}
        assert execute(ctx, 'select * from "nope"', None) == {}
    finally:
        guarded.armed = False


@pytest.mark.parametrize('picked', [
    ['s009', 's002'],  # a small selection (sorted by creation number)
    [f's{i:03d}' for i in range(0, 12, 1)][::-1],  # a large one (dict scan)
])
def test_selection_keeps_creation_order_after_drop_and_recreate(picked: List[str]) -> None:
    db = make_db(12)
    ctx = ctx_of(db)
    execute(ctx, 'drop series "s005"', None)
    insert(db, {'s005': [[5, 5]]})  # recreated: now the newest series
    selector = ', '.join(f'"{n}"' for n in picked + ['s005'])
    got = list(execute(ctx, f'select * from {selector}', None))
    expected = [n for n in db.series if n in set(picked) | {'s005'}]
    assert got == expected
    assert got[-1] == 's005'


async def test_replies_to_one_read_of_requests_leave_in_one_write() -> None:
    """Pipelined requests arriving together are answered in order, with one
    transport write (one send) per read instead of one per reply."""
    async with EmbeddedServer(port=0) as srv:
        conn = await RawConn.open(srv.host, srv.port)
        try:
            await conn.auth()
            assert await conn.request(1, {'t': [[1, 1], [2, 2], [3, 3]]}) == (
                1, {'success_msg': 'Successfully inserted 3 point(s).'})
            (proto,) = srv.connections
            writes, reads = _count_io(proto)
            batch = []
            for i in range(30):
                batch.append(pack(100 + 3 * i, 1, {f'w{i % 4}': [[10 + i, i]]}))
                batch.append(pack(101 + 3 * i, 0, ['select * from "t"', None]))
                batch.append(pack(102 + 3 * i, 3))
            conn.send_raw(b''.join(batch))
            got = [await conn.recv() for _ in range(90)]
            assert [r[0] for r in got if r is not None] == list(range(100, 190))
            assert got[0] == (100, 1, {'success_msg': 'Successfully inserted 1 point(s).'})
            assert got[1] == (101, 0, {'t': [[1, 1], [2, 2], [3, 3]]})
            assert got[2] == (102, 3, None)
            assert sum(reads) == len(b''.join(batch))
            assert len(writes) == len(reads)  # 1 on loopback, as a rule
        finally:
            await conn.close()


def test_repeated_select_is_parsed_once_and_sees_new_data(
        monkeypatch: pytest.MonkeyPatch) -> None:
    execute_mod = importlib.import_module('siridb.embedded.query.execute')
    calls: List[str] = []
    real_parse = execute_mod.parse

    def counting_parse(text: str) -> Dict[str, Any]:
        calls.append(text)
        return real_parse(text)

    monkeypatch.setattr(execute_mod, 'parse', counting_parse)
    monkeypatch.setattr(execute_mod, '_SELECT_CACHE', {})
    db = make_db(3)
    ctx = ctx_of(db)
    query = 'select max(2) prefix "m-", * from "s001", "s002" after 1001'
    first = execute(ctx, query, None)
    assert first == {'m-s001': [[1002, 1]], 'm-s002': [[1002, 2]],
                     's001': [[1001, 1]], 's002': [[1002, 2]]}
    insert(db, {'s001': [[1003, 7]], 's002': [[999, 9]]})
    again = execute(ctx, query, 1)  # other precision, new points: same tree
    assert again == {'m-s001': [[1002, 1], [1004, 7]], 'm-s002': [[1002, 2]],
                     's001': [[1001, 1], [1003, 7]], 's002': [[1002, 2]]}
    assert execute(ctx, 'timeit ' + query, None)['__timeit__'][0]['server'] == \
        '127.0.0.1:9000'
    assert execute(ctx, query, None) == execute(ctx, query, None)
    assert calls == [query, 'timeit ' + query]
    # other statements are parsed each time (their trees may end up in replies)
    execute(ctx, 'list series', None)
    execute(ctx, 'list series', None)
    assert calls[2:] == ['list series', 'list series']
    # a syntax error is never cached
    for _ in range(2):
        with pytest.raises(QueryFailure, match="Query error at position"):
            execute(ctx, 'select * frm "s001"', None)
    assert calls[4:] == ['select * frm "s001"'] * 2


_TS = st.one_of(
    st.integers(-2, 3), st.integers(-2 ** 64, 2 ** 64),
    st.sampled_from([-1, 0, 2 ** 32 - 1, 2 ** 32, 2 ** 63 - 1, 2 ** 63]),
    st.floats(), st.text(max_size=1), st.booleans(), st.none())
_VALUE = st.one_of(
    st.integers(-2 ** 64, 2 ** 64), st.floats(), st.text(max_size=2), st.booleans(),
    st.none(), st.lists(st.integers(), max_size=1))
_POINT = st.tuples(_TS, _VALUE).map(list)
_POINTS = st.lists(st.one_of(_POINT, _POINT, _POINT, st.lists(_VALUE, max_size=3), _VALUE),
                   max_size=10)


@given(pts=_POINTS, max_ts=st.sampled_from([2 ** 32 - 1, 2 ** 63 - 1]))
@settings(max_examples=500, deadline=None)
def test_small_insert_fast_path_matches_bulk_checks(pts: List[Any], max_ts: int) -> None:
    """Point lists of up to 8 points skip the bulk checks: same chunks, same
    error texts as the bulk path."""
    def run(small: int) -> Any:
        insert_mod._SMALL = small
        try:
            return insert_mod.parse_insert({'s': pts}, max_ts)
        except QueryFailure as exc:
            return exc.tp, exc.msg
        finally:
            insert_mod._SMALL = 8

    assert run(8) == run(0)


def test_select_all_points_is_independent_of_the_store() -> None:
    """`select *` builds its rows from the stored arrays without slicing them:
    later inserts (in or out of order) leave an earlier result alone."""
    db = make_db(2)
    ctx = ctx_of(db)
    insert(db, {'str': [[5, 'b'], [3, 'a']]})
    first = execute(ctx, 'select * from "s001", "str"', None)
    assert first == {'s001': [[1001, 1]], 'str': [[3, 'a'], [5, 'b']]}
    first['s001'][0][1] = 99
    insert(db, {'s001': [[1, -1]], 'str': [[4, 'c']]})
    assert execute(ctx, 'select * from "s001", "str"', None) == {
        's001': [[1, -1], [1001, 1]], 'str': [[3, 'a'], [4, 'c'], [5, 'b']]}
    assert execute(ctx, 'select * from "s001" merge as "m"', 1) == {
        'm': [[1, -1], [1001, 1]]}


_CHUNKS = st.lists(st.lists(st.integers(0, 40), min_size=1, max_size=20), max_size=12)


@given(chunks=_CHUNKS, tp=st.sampled_from([TYPE_INTEGER, TYPE_FLOAT, TYPE_STRING]),
       prefix=st.sampled_from([0, 1, 50, 400]))
@settings(max_examples=400, deadline=None)
def test_series_points_are_a_stable_sort_of_every_insert(chunks: List[List[int]],
                                                          tp: int, prefix: int) -> None:
    """Small out-of-order inserts go in place, larger ones are merged into the
    sorted points on the next read (or sorted with them when they are many):
    reads between inserts and at the end always give every point sorted by
    time, points of equal time in insertion order."""
    s = Series('s', tp)
    inserted: List[Any] = []
    chunks = [[i // 10 for i in range(prefix)]] + chunks if prefix else chunks
    for n, chunk in enumerate(chunks):
        raw = [n * 1000 + i for i in range(len(chunk))]
        vals: Any = [str(v) for v in raw] if tp == TYPE_STRING else \
            array('d' if tp == TYPE_FLOAT else 'q', raw)
        s.extend(array('q', chunk) if n % 2 else chunk, vals)
        inserted.extend(zip(chunk, vals))
        if n % 3 == 0:
            ts, values = s.points()
            expected = sorted(inserted, key=lambda p: p[0])
            assert list(zip(ts, values)) == expected
    ts, values = s.points()
    assert list(zip(ts, values)) == sorted(inserted, key=lambda p: p[0])
    assert len(s) == len(inserted)


def test_late_points_are_merged_into_a_big_series_on_read() -> None:
    s = Series('big', TYPE_FLOAT)
    s.extend(list(range(0, 2000, 2)), array('d', range(1000)))
    late = [1999, 1, 1, 0, 2000, 500, 17, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19]
    s.extend(late, array('d', [-float(i) for i in range(1, 18)]))
    assert not s._sorted
    ts, values = s.points()
    assert len(ts) == 1017 and list(ts) == sorted(ts)
    assert list(zip(ts[:6], values[:6])) == [
        (0, 0.0), (0, -4.0), (1, -2.0), (1, -3.0), (1, -8.0), (2, 1.0)]
    assert list(zip(ts[-3:], values[-3:])) == [(1998, 999.0), (1999, -1.0), (2000, -5.0)]


def test_small_out_of_order_insert_keeps_a_big_series_sorted() -> None:
    s = Series('big', TYPE_INTEGER)
    s.extend(list(range(0, 20000, 2)), array('q', range(10000)))
    s.extend([7, 7, 3], array('q', [-1, -2, -3]))  # out of order, small
    assert s._sorted  # put in place, nothing left to sort on read
    ts, values = s.points()
    assert list(ts[:8]) == [0, 2, 3, 4, 6, 7, 7, 8]
    assert list(values[:8]) == [0, 1, -3, 2, 3, -1, -2, 4]
    s.extend(list(range(100, 0, -5)), array('q', range(20)))  # 20 points: sort on read
    assert not s._sorted
    ts, _ = s.points()
    assert list(ts) == sorted(ts) and len(ts) == 10023


async def test_query_context_is_reused_until_database_user_or_pools_change() -> None:
    async with EmbeddedServer(port=0, databases=['dbtest', 'other']) as srv:
        db = srv.database('dbtest')
        iris = db.users['iris']
        ctx = srv.query_context(db, iris)
        assert srv.query_context(db, iris) is ctx
        assert (ctx.db, ctx.user, ctx.servers, ctx.pool_down) == (db, iris, [srv.info], False)
        other = srv.database('other')
        assert srv.query_context(other, other.users['iris']).db is other
        srv.pool_error(True)
        assert srv.query_context(db, iris).pool_down is True
        srv.pool_error(False)
        assert srv.query_context(db, iris).pool_down is False
        conn = await RawConn.open(srv.host, srv.port)
        try:
            await conn.auth()
            query = ['select * from "x"', None]
            assert await conn.request(0, query) == (0, {})
            srv.pool_error(True)
            assert (await conn.request(0, query))[0] == 68
            srv.pool_error(False)
            assert await conn.request(0, query) == (0, {})
        finally:
            await conn.close()


async def test_durable_acks_of_one_flush_leave_in_one_write(tmp_path: Any) -> None:
    """With a data directory (fsync before acknowledging), the replies that
    wait for the same fsync leave together, in request order."""
    async with EmbeddedServer(port=0, data_dir=str(tmp_path)) as srv:
        conn = await RawConn.open(srv.host, srv.port)
        try:
            await conn.auth()
            (proto,) = srv.connections
            writes, reads = _count_io(proto)
            engine: Any = srv.engine
            flushes: List[int] = []
            real_flush = engine.flush

            def counting_flush() -> None:
                flushes.append(1)
                real_flush()

            # the engine schedules ``self.flush``: the instance attribute wins
            engine.flush = counting_flush
            batch = [pack(200 + i, 1, {f'd{i % 3}': [[i, i]]}) for i in range(60)]
            conn.send_raw(b''.join(batch))
            got = [await conn.recv() for _ in range(60)]
            assert [r[:2] for r in got if r is not None] == [(200 + i, 1) for i in range(60)]
            assert sum(reads) == len(b''.join(batch))
            # one write per fsync, not one per reply (requests that arrive
            # together share an fsync unless handling them takes more than
            # one time slice of the connection, Limits.time_slice)
            assert 1 <= len(writes) <= len(flushes) < 60
        finally:
            await conn.close()
    async with EmbeddedServer(port=0, data_dir=str(tmp_path)) as srv:
        assert sum(len(s) for s in srv.database().series.values()) == 60
