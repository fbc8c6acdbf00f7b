"""Regular expressions in selectors, filters and groups: refused when they can
backtrack exponentially (Python's re cannot be interrupted), accepted otherwise."""
from __future__ import annotations

import asyncio
import struct
import sys
import time

import pytest

from siridb.connector.lib.codec import packb, unpack_body
from siridb.embedded import EmbeddedServer
from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.patterns import compile_regex, is_exponential
from siridb.embedded.query import execute
from siridb.embedded.store import Database

EXPONENTIAL = [
    '(a+)+b', '(a*)*b', '(a+)*', r'(\w+\s?)+$', '(a|aa)+b', '(a|a?)+b', '(.*a){12}',
    r'(\d+)*x', '((ab)*)+c', '(x+x+)+y', '(a{1,5}){1,10}b', r'(a)\1*(a)\2+',
    r'(?:[a-z]+[a-z0-9]*)+!', '^(([a-z])+.)+[A-Z]([a-z])+$',
]
SAFE = [
    '.*', 'aggr.*', r'cpu\..*', r'([a-z]+\.)+com', '(foo|bar)+', 'a+b+c+', '.*one.*',
    '[0-9]{4}-[0-9]{2}', r'(\d{4}-)+x', '(?:ab)+', r'server-(?:eu|us)-\d+',
    r'(cpu|mem)\.[a-z]+', 'aggr2|log', '(ab)*', r'(a\d)+', '.*2',
    # the examples of docs.siridb.com (match series)
    'linux.*', '(?!linux).*', '((?!linux).)*', '.*cpu.*',
]


@pytest.mark.parametrize('pattern', EXPONENTIAL)
def test_exponential_patterns_are_recognised(pattern: str) -> None:
    assert is_exponential('^' + pattern + '$')
    with pytest.raises(QueryFailure) as info:
        compile_regex(pattern, False)
    assert info.value.tp == 65
    assert info.value.msg.startswith(f"Cannot compile regular expression '^{pattern}$': ")
    assert 'exponential' in info.value.msg


# atomic groups and possessive quantifiers (PCRE has them; Python's re only
# from 3.11 on: before that the server answers "Cannot compile ...")
if sys.version_info >= (3, 11):
    SAFE += ['(?>a+)+b', 'a++b']


@pytest.mark.parametrize('pattern', SAFE)
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    assert not is_exponential('^' + pattern + '$')
    assert compile_regex(pattern, True).pattern == '^' + pattern + '$'


def test_invalid_patterns_keep_the_pcre_style_texts() -> None:
    with pytest.raises(QueryFailure) as info:
        compile_regex('(bla', False)
    assert info.value.msg == \
        "Cannot compile regular expression '^(bla$': missing closing parenthesis"


def _ctx() -> QueryContext:
    db = Database('rx', 's')
    name = 'a' * 40 + 'c'  # 2**40 steps for /(a+)+b/ in Python's re
    insert(db, {name: [[1, 1]], 'log': [[1, name]], 'cpu.one': [[1, 2]]})
    return QueryContext(db, db.users['iris'], ServerInfo('127.0.0.1:1'))


@pytest.mark.parametrize('query', [
    'select * from /(a+)+b/', 'select filter(/(a+)+b/) from "log"',
    'list series /(a|a?)+b/', 'count series /(a*)*b/ & /.*/',
    'create group `bad` for /(\\w+\\d*)+b/', 'select * from /(a+)+b/i',
])
def test_hostile_regex_queries_answer_at_once(query: str) -> None:
    ctx = _ctx()
    started = time.monotonic()
    with pytest.raises(QueryFailure) as info:
        execute(ctx, query, None)
    assert time.monotonic() - started < 1.0
    assert info.value.tp == 65 and 'exponential backtracking' in info.value.msg
    assert 'bad' not in ctx.db.groups


def test_safe_regexes_still_select() -> None:
    ctx = _ctx()
    assert execute(ctx, 'list series /(cpu|mem)\\.[a-z]+/', None) == \
        {'columns': ['name'], 'series': [['cpu.one']]}
    assert execute(ctx, 'select filter(/a+c/) from "log"', None) == \
        {'log': [[1, 'a' * 40 + 'c']]}
    execute(ctx, 'create group `words` for /([a-z]+\\.)+[a-z]+/', None)
    assert execute(ctx, 'select * from `words`', None) == {'cpu.one': [[1, 2]]}


async def test_hostile_regex_does_not_block_other_clients() -> None:
    hdr = struct.Struct('<IHBB')

    async def request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      tp: int, payload: object) -> tuple:
        body = b'' if payload is None else packb(payload)
        writer.write(hdr.pack(len(body), 1, tp, tp ^ 0xFF) + body)
        length, _, rtp, _ = hdr.unpack(await reader.readexactly(8))
        data = await reader.readexactly(length)
        return rtp, unpack_body(data) if data else None

    async with EmbeddedServer(port=0) as srv:
        r1, w1 = await asyncio.open_connection(srv.host, srv.port)
        r2, w2 = await asyncio.open_connection(srv.host, srv.port)
        try:
            for r, w in ((r1, w1), (r2, w2)):
                assert await request(r, w, 2, ['iris', 'siri', 'dbtest']) == (2, None)
            assert (await request(r1, w1, 1, {'a' * 40 + 'c': [[1, 1]]}))[0] == 1
            tp, reply = await asyncio.wait_for(
                request(r1, w1, 0, ['select * from /(a+)+b/', None]), 2)
            assert tp == 65 and 'exponential' in reply['error_msg']
            assert await asyncio.wait_for(request(r2, w2, 3, None), 2) == (3, None)
        finally:
            for w in (w1, w2):
                w.close()
                await w.wait_closed()


def test_pcre_posix_classes_and_leading_flags() -> None:
    """What SiriDB's PCRE takes and Python's re spells otherwise (grammar.jsonl,
    aggregates.jsonl): POSIX classes in brackets, inline flags before the anchor."""
    assert compile_regex('[[:alpha:]]+\\.rx', False).match('net.rx')
    assert not compile_regex('[[:digit:]]+', False).match('net')
    assert compile_regex('(?s)line.break', False).match('line\nbreak')
    with pytest.raises(QueryFailure) as info:
        compile_regex('[a-', False)
    assert info.value.msg == ("Cannot compile regular expression '^[a-$': range out of "
                              'order in character class')
