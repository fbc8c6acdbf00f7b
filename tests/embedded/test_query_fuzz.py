"""Fuzzing the query language in-process: random and mutated query strings must only
ever produce a reply or a QueryFailure (never another exception, never a hang), and
the engine keeps answering afterwards."""
from __future__ import annotations

import json
import random
import time
from typing import List

from _embedded_helpers import RawConn
from _paths import CONFORMANCE

from siridb.embedded import EmbeddedServer
from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.query import execute
from siridb.embedded.store import ACCESS_PROFILES, Database

HERE = CONFORMANCE
INTERNAL = 'Internal error while processing the query.'

TOKENS = [
    'select', 'list', 'count', 'show', 'create', 'alter', 'drop', 'grant', 'revoke',
    'help', '?', 'timeit', 'from', 'where', 'and', 'or', 'after', 'before', 'between',
    'head', 'tail', 'merge', 'as', 'using', 'prefix', 'suffix', 'series', 'users', 'groups',
    'tags', 'pools', 'servers', 'user', 'group', 'tag', 'untag', 'set', 'name', 'type',
    'length', 'start', 'end', 'pool', 'limit', 'mean', 'sum', 'count', 'derivative',
    'filter', 'offset', 'difference', 'median', 'timeval', 'interval', 'now', '*', 'all',
    '"aggr"', '"log"', "'x'", '`g`', '/aggr.*/', '/(/', '/a/i', '(', ')', ',', '|', '-',
    '&', '^', '=>', '+', '/', '%', '==', '!=', '<', '>', '<=', '>=', '~', '!~', '0', '1',
    '5m', '1h', '-3', '2.5', '99999999999999999999', "'2015-11-11'", "'2015-13-45'",
    'database', 'list_limit', 'select_points_limit', 'drop_threshold', 'timezone',
    'password', 'read', 'full', 'to', 'ignore_threshold', 'true', 'false', 'expression',
    'for', 'integer', 'float', 'string', '#', '\x00', 'é', '"', "'", '`', '/',
]


def _corpus() -> List[str]:
    queries = []
    for name in ('query', 'admin', 'precision_ms', 'cluster'):
        with open(HERE / f'{name}.jsonl', encoding='utf-8') as f:
            for line in f:
                payload = json.loads(line)['request']['payload']
                if isinstance(payload, list) and payload and isinstance(payload[0], str) \
                        and len(payload) == 2:
                    queries.append(payload[0])
    return queries


def _ctx() -> QueryContext:
    db = Database('fuzz', 's')
    insert(db, {'aggr': [[1447250938 + 30 * i, i % 7] for i in range(40)],
                'aggr2': [[1447250938 + 30 * i, i * 1.5] for i in range(40)],
                'log': [[1447250938, 'one two'], [1447250968, 'two']]})
    return QueryContext(db, db.users['iris'], ServerInfo('127.0.0.1:1'))


def _mutate(rng: random.Random, q: str) -> str:
    chars = list(q)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        pos = rng.randint(0, len(chars))
        if op == 0 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op == 1:
            chars.insert(pos, rng.choice('()"\'`/*,|-&^=<>!~#0123456789 az.\\\n'))
        elif op == 2:
            chars[pos:pos] = list(' ' + rng.choice(TOKENS) + ' ')
        elif op == 3 and chars:
            cut = rng.randint(0, len(chars))
            chars = chars[:cut]
        else:
            a, b = sorted((rng.randint(0, len(chars)), rng.randint(0, len(chars))))
            chars[a:b] = chars[a:b] * 2
    return ''.join(chars)


def _check(ctx: QueryContext, query: str) -> None:
    try:
        result = execute(ctx, query, None)
    except QueryFailure as exc:
        assert exc.tp in (65, 69), (query, exc.tp, exc.msg)
        assert exc.msg != INTERNAL, query
        assert isinstance(exc.msg, str) and exc.msg
        return
    assert isinstance(result, dict), query


def _refresh(ctx: QueryContext) -> QueryContext:
    """Keep the fuzzed database useful: undo drops of everything and lost rights."""
    ctx.user.access = ACCESS_PROFILES['full']
    if len(ctx.db.series) < 3:
        return _ctx()
    return ctx


def test_fuzz_random_token_soup() -> None:
    rng = random.Random(1234)
    ctx = _ctx()
    deadline = time.monotonic() + 4.0
    n = 0
    while n < 15000 and time.monotonic() < deadline:
        query = ' '.join(rng.choice(TOKENS) for _ in range(rng.randint(0, 14)))
        _check(ctx, query)
        ctx = _refresh(ctx)
        n += 1
    assert n > 300
    assert execute(ctx, 'count series', None)['series'] >= 3


def test_fuzz_mutated_recorded_queries() -> None:
    rng = random.Random(4321)
    corpus = _corpus()
    assert len(corpus) > 100
    ctx = _ctx()
    deadline = time.monotonic() + 4.0
    n = 0
    while n < 15000 and time.monotonic() < deadline:
        _check(ctx, _mutate(rng, rng.choice(corpus)))
        ctx = _refresh(ctx)
        n += 1
    assert n > 300
    assert execute(ctx, 'select count() from "aggr"', None)['aggr'][0][1] == 40


def test_fuzz_random_characters() -> None:
    rng = random.Random(99)
    ctx = _ctx()
    alphabet = 'select from*"`/()=<>!~,|&^-+%#0123456789 abcdefghijklmnopqrstuvwxyz\'\n\t'
    for _ in range(1500):
        _check(ctx, ''.join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))))
        ctx = _refresh(ctx)


def test_hostile_inputs_are_bounded() -> None:
    ctx = _ctx()
    hostile = [
        '(' * 60000, 'select * from ' + '(' * 30000, '1' + ' + 1' * 16000,
        'select * from "aggr" where ' + 'length > 1 and ' * 4000 + 'length > 1',
        'select * from ' + ' | '.join(['"aggr"'] * 10000),
        'select ' + ' => '.join(['mean(1)'] * 3000) + ' from "aggr"',
        'select * from /' + 'a{99999999}' + '/', 'select * from /' + '\\' + '/',
        "'" + '9' * 5000 + "'", '9' * 60000, 'select * from "aggr" head ' + '9' * 100,
        'select mean(1) from "aggr" between 0 and 9223372036854775807',
        'list series limit 99999999999999999999999',
        '\x00\x01\x02', 'é' * 1000,
    ]
    for query in hostile:
        started = time.monotonic()
        _check(ctx, query)
        assert time.monotonic() - started < 5.0, query[:40]
    assert execute(ctx, 'count series', None) == {'series': 3}


async def test_fuzz_over_the_wire_only_query_errors_and_still_serving() -> None:
    """Random and mutated query strings sent to a real server over loopback: every one
    gets a reply (RES_QUERY or QueryError, never another type, never silence), other
    connections keep working, and the data is still there afterwards."""
    rng = random.Random(2024)
    corpus = _corpus()
    async with EmbeddedServer(port=0, databases={'fuzz': 's'}) as srv:
        insert(srv.database('fuzz'), {
            'aggr': [[1447250938 + 30 * i, i % 7] for i in range(40)],
            'log': [[1447250938, 'one two'], [1447250968, 'two']]})
        fuzzer = await RawConn.open(srv.host, srv.port)
        watcher = await RawConn.open(srv.host, srv.port)
        try:
            await fuzzer.auth('fuzz')
            await watcher.auth('fuzz')
            deadline = time.monotonic() + 4.0
            sent = 0
            while sent < 2000 and time.monotonic() < deadline:
                if rng.random() < 0.5:
                    query = _mutate(rng, rng.choice(corpus))
                else:
                    query = ' '.join(rng.choice(TOKENS) for _ in range(rng.randint(0, 14)))
                if query.lstrip().startswith(('drop', 'revoke', 'alter user', 'timeit drop',
                                               'timeit revoke')):
                    continue  # keep the data and the fuzzer's rights for the next queries
                tp, reply = await fuzzer.request(0, [query, None])
                assert tp in (0, 65), (query, tp, reply)
                if tp == 65:
                    assert reply['error_msg'] and reply['error_msg'] != INTERNAL, query
                sent += 1
                if sent % 200 == 0:
                    assert await watcher.request(3) == (3, None)
            assert sent > 200
            tp, reply = await watcher.request(0, ['select count() from "aggr"', None])
            assert (tp, reply['aggr'][0][1]) == (0, 40)
        finally:
            await fuzzer.close()
            await watcher.close()
