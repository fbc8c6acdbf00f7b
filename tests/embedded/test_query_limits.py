"""select_points_limit counts every point a select returns (after aggregates, for
each prefix/suffix, the first or only series too) and stops at the series that
passes it, before building that series' rows."""
from __future__ import annotations

import time
import tracemalloc

import pytest

from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.query import execute
from siridb.embedded.store import Database

LIMIT_TEXT = ('Query has reached the maximum number of selected points ({}). Please use '
              'another time window, an aggregation function or select less series to '
              'reduce the number of points.')


def _ctx(limit: int, big: int) -> QueryContext:
    db = Database('limits', 's')
    insert(db, {'big': [[t, t] for t in range(1, big + 1)],
                'small': [[t, 1.5] for t in range(1, 6)]})
    db.select_points_limit = limit
    return QueryContext(db, db.users['iris'], ServerInfo('127.0.0.1:1'))


def _error(ctx: QueryContext, query: str) -> str:
    with pytest.raises(QueryFailure) as info:
        execute(ctx, query, None)
    assert info.value.tp == 65
    return info.value.msg


def test_the_only_series_counts() -> None:
    ctx = _ctx(100, 300)
    assert _error(ctx, 'select * from "big"') == LIMIT_TEXT.format(100)
    assert _error(ctx, 'select * from /b.*/') == LIMIT_TEXT.format(100)


def test_the_limit_itself_is_allowed() -> None:
    ctx = _ctx(100, 100)
    assert len(execute(ctx, 'select * from "big"', None)['big']) == 100
    assert _error(ctx, 'select * from "big", "small"') == LIMIT_TEXT.format(100)
    assert len(execute(ctx, 'select * from "big" after 5', None)['big']) == 96


def test_points_are_counted_after_the_aggregates() -> None:
    ctx = _ctx(100, 300)
    assert execute(ctx, 'select count() from "big"', None) == {'big': [[300, 300]]}
    assert len(execute(ctx, 'select max(3) from "big"', None)['big']) == 100
    assert _error(ctx, 'select max(2) from "big"') == LIMIT_TEXT.format(100)
    assert len(execute(ctx, 'select * from "big" between 1 and 101', None)['big']) == 100
    assert _error(ctx, 'select * from "big" between 1 and 102') == LIMIT_TEXT.format(100)


def test_every_prefix_counts() -> None:
    ctx = _ctx(100, 60)
    assert len(execute(ctx, 'select * prefix "a-" from "big"', None)['a-big']) == 60
    assert _error(ctx, 'select * prefix "a-", * prefix "b-" from "big"') == \
        LIMIT_TEXT.format(100)
    res = execute(ctx, 'select count() prefix "a-", * prefix "b-" from "big"', None)
    assert list(res) == ['a-big', 'b-big'] and len(res['b-big']) == 60


def test_merged_series_count_before_the_merge() -> None:
    ctx = _ctx(100, 95)
    query = 'select * from "big", "small" merge as "m" using count()'
    assert execute(ctx, query, None)['m'][0][1] == 100
    insert(ctx.db, {'big': [[96, 96]]})
    assert _error(ctx, query) == LIMIT_TEXT.format(100)
    assert _error(ctx, 'select * from "big", "small" merge as "m"') == LIMIT_TEXT.format(100)


def test_twenty_prefixes_of_a_big_series_stop_early() -> None:
    """The attack: one series of 3x the limit under 20 prefixes. It fails at the
    series passing the limit with the memory of about one answer, not 20."""
    points, limit = 30_000, 45_000
    ctx = _ctx(limit, points)
    prefixes = ', '.join(f'difference() prefix "p{i}-"' for i in range(20))
    query = f'select {prefixes} from "big"'
    tracemalloc.start()
    started = time.monotonic()
    try:
        assert _error(ctx, query) == LIMIT_TEXT.format(limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    # one answer of 30,000 rows and two results are a few MB; 20 answers were ~60 MB
    assert peak < 16 * 1024 * 1024, peak
    assert elapsed < 5.0, elapsed


async def test_over_the_wire_a_read_only_user_gets_the_real_servers_text() -> None:
    """`select * from "big"` with 3x the limit, by a user with read rights over a
    loopback connection: query error 65 with the real server's text."""
    from _embedded_helpers import RawConn

    from siridb.embedded import EmbeddedServer

    async with EmbeddedServer(port=0) as srv:
        admin = await RawConn.open(srv.host, srv.port)
        reader = await RawConn.open(srv.host, srv.port)
        try:
            await admin.auth()
            assert (await admin.request(1, {'big': [[t, t] for t in range(1, 31)]}))[0] == 1
            for query in ('alter database set select_points_limit 10',
                          'create user "reader" set password "reader-pw"',
                          'grant read to user "reader"'):
                assert (await admin.request(0, [query, None]))[0] == 0
            await reader.auth(user='reader', password='reader-pw')
            assert await reader.request(0, ['select * from "big"', None]) == \
                (65, {'error_msg': LIMIT_TEXT.format(10)})
            tp, reply = await reader.request(0, ['select * from "big" head 10', None])
            assert tp == 0 and len(reply['big']) == 10
        finally:
            await admin.close()
            await reader.close()
