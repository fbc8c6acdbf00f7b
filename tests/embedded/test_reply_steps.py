"""Select replies made and packed in steps (siridb/embedded/reply.py): the
same bytes as packing the whole answer at once, for every shape of answer."""
from __future__ import annotations

from typing import Any, Dict, Optional

import pytest

from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.query import execute
from siridb.embedded.query.select import ROWS_STEP, Rows, deferred_rows
from siridb.embedded.reply import has_rows, pack_steps
from siridb.embedded.store import Database
from siridb.wire.framing import packb

BASE = 1_600_000_000_000
#: points of the big series: several slices and a partial last one
BIG = 2 * ROWS_STEP + 7


@pytest.fixture(scope='module')
def ctx() -> QueryContext:
    db = Database('steps', 'ms')
    insert(db, {
        'big': [[BASE + i * 1000, i * 0.5] for i in range(BIG)],
        'bigi': [[BASE + i * 1000 + 1, i] for i in range(BIG)],
        'bigs': [[BASE + i, f'v{i}'] for i in range(ROWS_STEP + 1)],
        'small': [[BASE + i, i] for i in range(3)],
        'six': [[BASE + i, i] for i in range(6)],
    })
    db.select_points_limit = 10 * BIG
    return QueryContext(db=db, user=db.users['iris'], server=ServerInfo('test:9000'))


def packed_in_steps(result: Dict[str, Any]) -> bytes:
    steps = pack_steps(result)
    slices = 0
    while True:
        try:
            assert next(steps) == 0.0
            slices += 1
        except StopIteration as stop:
            parts = stop.value
            break
    assert slices >= sum(len(v) // ROWS_STEP for v in result.values()
                         if type(v) is Rows)
    return b''.join(parts)


@pytest.mark.parametrize('query', [
    'select * from "big"',
    'select * from "big", "bigi", "bigs", "small", "six"',
    'select * from /.*/',
    'select * from /.*/ after 1600000000005',
    'select * from "big", "bigi" merge as "m"',
    'select difference() from "big"',
    'select * prefix "a-", mean(1h) prefix "b-" from "big"',
    'timeit select * from "big"',
    'select * from "bigs"',
])
@pytest.mark.parametrize('precision', [None, 0, 3])
def test_steps_pack_the_same_bytes_as_at_once(ctx: QueryContext, query: str,
                                              precision: Optional[int]) -> None:
    whole = execute(ctx, query, precision)
    with deferred_rows():
        deferred = execute(ctx, query, precision)
    assert has_rows(deferred)
    assert not has_rows(whole)
    whole.pop('__timeit__', None)
    deferred.pop('__timeit__', None)
    assert packed_in_steps(deferred) == packb(whole)


def test_small_answers_are_never_deferred(ctx: QueryContext) -> None:
    with deferred_rows():
        result = execute(ctx, 'select mean(1h) from "small", "six", "big"',
                         None)
    assert not has_rows(result)


def test_rows_keep_their_points_when_the_series_changes(ctx: QueryContext) -> None:
    db = ctx.db
    with deferred_rows():
        before = execute(ctx, 'select * from "bigi"', None)
    expected = packb(execute(ctx, 'select * from "bigi"', None))
    insert(db, {'bigi': [[BASE - 5, -1], [BASE + 10 ** 9, -2]]})
    try:
        assert packed_in_steps(before) == expected
    finally:
        db.series['bigi'].ts.remove(BASE - 5)  # back as the module's fixture had it
        db.series['bigi'].values.remove(-1)
        db.series['bigi'].ts.remove(BASE + 10 ** 9)
        db.series['bigi'].values.remove(-2)


def test_points_limit_still_counts_deferred_rows(ctx: QueryContext) -> None:
    db = ctx.db
    saved = db.select_points_limit
    db.select_points_limit = BIG - 1
    try:
        with deferred_rows(), pytest.raises(QueryFailure) as info:
            execute(ctx, 'select * from "big"', None)
    finally:
        db.select_points_limit = saved
    assert 'maximum number of selected points' in info.value.msg


def test_a_timestamp_out_of_range_raises_overflow_in_steps() -> None:
    db = Database('ovf', 'ms')
    insert(db, {'far': [[2 ** 60 + i, i] for i in range(ROWS_STEP + 1)]})
    ctx = QueryContext(db=db, user=db.users['iris'], server=ServerInfo('test:9000'))
    with deferred_rows():
        result = execute(ctx, 'select * from "far"', 3)
    with pytest.raises(OverflowError):
        packed_in_steps(result)


async def test_pipelined_changes_and_big_selects_on_a_durable_server(tmp_path) -> None:
    """Inserts (answered after their fsync) pipelined between big selects
    (answered in steps): every request gets its own intact reply."""
    import asyncio

    from _embedded_helpers import RawConn

    from siridb.connector.lib import protomap as pm
    from siridb.embedded import EmbeddedServer

    n = 10 * ROWS_STEP  # a reply of ~1 MB: written in 10 steps over several turns
    async with EmbeddedServer(port=0, data_dir=str(tmp_path), fsync='always') as srv:
        c = await RawConn.open(srv.host, srv.port)
        await c.auth()
        tp, _ = await c.request(pm.CPROTO_REQ_INSERT, {
            'big': [[BASE + i, i * 0.5] for i in range(n)]}, timeout=60)
        assert tp == pm.CPROTO_RES_INSERT
        expected = {}
        for k in range(6):
            pid = c.send(pm.CPROTO_REQ_INSERT, {f's{k}': [[BASE + k, k]]})
            expected[pid] = (pm.CPROTO_RES_INSERT, {
                'success_msg': 'Successfully inserted 1 point(s).'})
            pid = c.send(pm.CPROTO_REQ_QUERY, ['select * from "big"', None])
            expected[pid] = (pm.CPROTO_RES_QUERY, None)
        got = {}
        for _ in expected:
            reply = await asyncio.wait_for(c.recv(timeout=60), 60)
            assert reply is not None
            got[reply[0]] = reply[1:]
        assert set(got) == set(expected)
        for pid, (tp, data) in expected.items():
            assert got[pid][0] == tp
            if data is not None:
                assert got[pid][1] == data
            else:
                points = got[pid][1]['big']
                assert len(points) == n and points[-1] == [BASE + n - 1, (n - 1) * 0.5]
        await c.close()
