"""String series read through a time filter, as SiriDB 2.0.55 reads them.

The real server pairs the time-stamps of the points lo..hi-1 of a chunk (one insert)
with its strings from position n - hi on (siridb/embedded/query/strings.py); the
cases below are the recorded ones of aggregates.jsonl and grammar.jsonl, small.
"""
from __future__ import annotations

from typing import Any, Dict, List

from siridb.embedded.context import QueryContext, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.query import execute
from siridb.embedded.store import Database

WORDS = ['a', 'b', 'c', 'd', 'e']


def _ctx(*batches: Dict[str, List[List[Any]]]) -> QueryContext:
    db = Database('strs', 's')
    for batch in batches:
        insert(db, batch)
    return QueryContext(db, db.users['iris'], ServerInfo('h:1'))


def q(ctx: QueryContext, query: str) -> Any:
    return execute(ctx, query, None)


def test_one_insert_is_one_chunk() -> None:
    ctx = _ctx({'s': [[10 + i, w] for i, w in enumerate(WORDS)]})
    # first(): time-stamp of the first point, string at n - 1; last() the other way
    assert q(ctx, 'select first() from "s"') == {'s': [[10, 'e']]}
    assert q(ctx, 'select last() from "s"') == {'s': [[14, 'a']]}
    assert q(ctx, 'select first() prefix "f", count() prefix "c" from "s"') == {
        'fs': [[10, 'e']], 'cs': [[14, 5]]}
    # lo = 2, hi = 5: strings from 0; lo = 1, hi = 3: strings from 2
    assert q(ctx, 'select * from "s" after 12') == {'s': [[12, 'a'], [13, 'b'], [14, 'c']]}
    assert q(ctx, 'select * from "s" between 11 and 13') == {'s': [[11, 'c'], [12, 'd']]}
    # reads without a filter are exact
    assert q(ctx, 'select * from "s" head 2') == {'s': [[10, 'a'], [11, 'b']]}
    assert q(ctx, 'select first(100) from "s"') == {'s': [[10, 'a']]}
    assert q(ctx, 'select last() => count() from "s"') == {'s': [[14, 1]]}


def test_every_insert_is_a_chunk() -> None:
    # one point per insert: every read is exact (query.jsonl's series "log")
    ctx = _ctx(*({'s': [[10 + i, w]]} for i, w in enumerate(WORDS)))
    assert q(ctx, 'select first() from "s"') == {'s': [[10, 'a']]}
    assert q(ctx, 'select last() from "s"') == {'s': [[14, 'e']]}
    assert q(ctx, 'select * from "s" after 13') == {'s': [[13, 'd'], [14, 'e']]}


def test_chunks_under_five_points_are_read_right() -> None:
    # not compressed (query.jsonl's "log": 3 points, then 2, last() is exact)
    ctx = _ctx({'s': [[10 + i, w] for i, w in enumerate(WORDS[:4])]},
               {'s': [[20, 'x'], [21, 'y']]})
    assert q(ctx, 'select first() from "s"') == {'s': [[10, 'a']]}
    assert q(ctx, 'select last() from "s"') == {'s': [[21, 'y']]}
    assert q(ctx, 'select * from "s" after 12') == {
        's': [[12, 'c'], [13, 'd'], [20, 'x'], [21, 'y']]}


def test_duplicate_time_stamps() -> None:
    # aggregates.jsonl's s.dup: first() reads the two points at the first time
    # (hi = 2 of n = 6: the string at 4), last() the two at the last (strings from 0)
    ctx = _ctx({'s': [[1, 'z'], [1, 'x'], [2, 'y'], [2, 'z'], [3, 'x'], [3, 'z']]})
    assert q(ctx, 'select first() from "s"') == {'s': [[1, 'x']]}
    assert q(ctx, 'select last() from "s"') == {'s': [[3, 'z']]}
    assert q(ctx, 'select * from "s"') == {
        's': [[1, 'z'], [1, 'x'], [2, 'y'], [2, 'z'], [3, 'x'], [3, 'z']]}


def test_numbers_are_read_exactly() -> None:
    ctx = _ctx({'n': [[10 + i, i] for i in range(5)]})
    assert q(ctx, 'select first() prefix "f", last() prefix "l" from "n"') == {
        'fn': [[10, 0]], 'ln': [[14, 4]]}
    assert q(ctx, 'select * from "n" after 12') == {'n': [[12, 2], [13, 3], [14, 4]]}
