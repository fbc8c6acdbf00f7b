"""Aggregates in us and ns databases through a real server over loopback: bucket sizes
and time expressions in the database's units, results converted exactly by
time_precision, the int64 edge of ns timestamps."""
from __future__ import annotations

from typing import Any, AsyncIterator, Tuple

import pytest
from _embedded_helpers import RawConn

from siridb.embedded import EmbeddedServer

BASE_S = 1447250938  # 2015-11-11 14:08:58 UTC
VALUES = [5, 8, 1, 12, 7, 3, 9, 15, 4, 6]


@pytest.fixture
async def server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(port=0, databases={'db_us': 'us', 'db_ns': 'ns'}) as srv:
        yield srv


async def _conn(srv: EmbeddedServer, db: str) -> RawConn:
    c = await RawConn.open(srv.host, srv.port)
    await c.auth(db)
    factor = 10 ** 6 if db == 'db_us' else 10 ** 9
    tp, reply = await c.request(1, {
        'v': [[(BASE_S + 30 * i) * factor + 1, v] for i, v in enumerate(VALUES)]})
    assert (tp, reply) == (1, {'success_msg': 'Successfully inserted 10 point(s).'})
    return c


async def _q(c: RawConn, query: str, precision: Any = None) -> Tuple[int, Any]:
    return await c.request(0, [query, precision])


@pytest.mark.parametrize('db, factor', [('db_us', 10 ** 6), ('db_ns', 10 ** 9)])
async def test_grouped_aggregates_use_database_units(server, db: str, factor: int) -> None:
    c = await _conn(server, db)
    try:
        tp, reply = await _q(c, 'select count(1m), sum(1m) prefix "s-" from "v"')
        assert tp == 0
        # every point is 1 unit after a whole 30 s: buckets (label - 1m, label]
        labels = [1447251000, 1447251060, 1447251120, 1447251180, 1447251240]
        assert reply['v'][0] == [1447250940 * factor, 1]
        assert [t for t, _ in reply['v'][1:]] == [t * factor for t in labels]
        assert [n for _, n in reply['v']] == [1, 2, 2, 2, 2, 1]
        assert [s for _, s in reply['s-v']] == [5, 9, 19, 12, 19, 6]
        # a bucket of exactly one unit holds exactly one point
        tp, reply = await _q(c, 'select count(1) from "v"')
        assert [n for _, n in reply['v']] == [1] * 10
        # derivative per second over consecutive points, 30 s apart
        tp, reply = await _q(c, 'select derivative(1s) from "v" head 3')
        assert reply['v'] == [[(BASE_S + 30) * factor + 1, 0.1],
                              [(BASE_S + 60) * factor + 1, -7 / 30]]
        # time expressions in database units; dates in the database's zone (NAIVE)
        tp, reply = await _q(
            c, "select * from \"v\" between '2015-11-11 14:09:28' + 1 and "
               "'2015-11-11 14:09:28' + 1m + 2")
        assert [v for _, v in reply['v']] == [8, 1, 12]
        tp, reply = await _q(c, 'select mean() from "v" after 1447251208 * 1s')
        assert reply == {'v': [[(BASE_S + 270) * factor + 1, 6.0]]}
    finally:
        await c.close()


@pytest.mark.parametrize('db, factor', [('db_us', 10 ** 6), ('db_ns', 10 ** 9)])
async def test_time_precision_converts_results_exactly(server, db: str, factor: int) -> None:
    c = await _conn(server, db)
    try:
        for precision, unit in ((0, 1), (1, 10 ** 3), (2, 10 ** 6), (3, 10 ** 9)):
            tp, reply = await _q(c, 'select first(), max(1m) prefix "m-" from "v"', precision)
            assert tp == 0
            first_ts = BASE_S * factor + 1
            want = first_ts * unit // factor  # floor, exact integers
            assert reply['v'] == [[want, 5]]
            assert reply['m-v'][-1] == [1447251240 * unit, 6]
            tp, reply = await _q(c, '1s', precision)
            assert reply == {'calc': unit}
    finally:
        await c.close()


async def test_ns_buckets_at_the_end_of_int64(server) -> None:
    c = await RawConn.open(server.host, server.port)
    try:
        await c.auth('db_ns')
        top = 2 ** 63 - 1
        assert (await c.request(1, {'edge': [[top - 1000, 1], [top, 2]]}))[0] == 1
        assert await _q(c, 'select count() from "edge"') == (0, {'edge': [[top, 2]]})
        assert await _q(c, 'select count(1) from "edge"') == \
            (0, {'edge': [[top - 1000, 1], [top, 1]]})
        assert await _q(c, 'select interval() from "edge"') == (0, {'edge': [[top, 1000]]})
        # 2**63-1 is no multiple of 1 s: the last bucket would end after the last
        # valid time-stamp
        assert await _q(c, 'select count(1s) from "edge"') == \
            (65, {'error_msg': 'Overflow detected while using count().'})
        tp, reply = await _q(c, 'select * from "edge"', 0)
        assert reply == {'edge': [[(top - 1000) // 10 ** 9, 1], [top // 10 ** 9, 2]]}
        assert await _q(c, 'select * from "edge" after 9223372036854775807') == \
            (0, {'edge': [[top, 2]]})
        tp, reply = await _q(c, 'select * from "edge" after 9223372036854775807 + 1')
        # int64 wraps to a negative time, as in the real server
        assert tp == 65 and reply['error_msg'] == 'Time expression out-of-range.'
        assert await c.request(3) == (3, None)
    finally:
        await c.close()
