"""Bad input to the public API: a clear typed error, nothing sent when the
client can tell, and a client that keeps working afterwards.

A fault proxy (no faults) sits between client and server only to count the
bytes the client sends.
"""
from __future__ import annotations

import math
import subprocess
import sys
from typing import Any, AsyncIterator, Dict, Tuple, Type

import pytest
from _adversity_helpers import LoopErrors, inserted, strict_loop
from _paths import ROOT

from siridb.connector import SiriDBClient, async_connect
from siridb.connector.lib.codec import HEADER_SIZE
from siridb.connector.lib.exceptions import (
    InsertDataError,
    InsertError,
    QueryError,
    SiriDBError,
)
from siridb.embedded import EmbeddedServer
from siridb.testing.proxy import FaultProxy

__all__ = ['strict_loop']

Setup = Tuple[EmbeddedServer, FaultProxy, SiriDBClient]


@pytest.fixture
async def setup(strict_loop: LoopErrors) -> AsyncIterator[Setup]:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as server:
        async with FaultProxy(server.host, server.port) as proxy:
            client = SiriDBClient('iris', 'siri', 'dbtest', [proxy.address],
                                  keepalive=False)
            assert await client.connect() == [None]
            try:
                yield server, proxy, client
            finally:
                client.close()
                await client.wait_closed()


async def sent(proxy: FaultProxy, client: SiriDBClient) -> int:
    """Bytes the client sent so far, ending with a marker ping (a bare
    header): the ping's reply comes back only after the proxy read the ping,
    and so every byte the client wrote before it on the one connection."""
    await client.ping()
    return proxy.bytes_in['up']


async def still_usable(client: SiriDBClient) -> None:
    assert await client.insert({'ok': [[1, 1]]}) == inserted(1)
    assert 'ok' in await client.query('select * from "ok"')


def series_count(server: EmbeddedServer) -> int:
    return len(server.store.databases['dbtest'].series)


# refused by the client: nothing may reach the server
REFUSED_INSERTS: Dict[str, Any] = {
    'int beyond 64 bits (value)': {'s': [[1, 2**64]]},
    'int beyond 64 bits (negative)': {'s': [[1, -2**63 - 1]]},
    'int beyond 64 bits (timestamp)': {'s': [[2**63, 1]]},
    'huge int': {'s': [[1, 10**100]]},
    'object value': {'s': [[1, object()]]},
    'set of points': {'s': {1, 2}},
    'complex value': {'s': [[1, 1 + 2j]]},
    'oversized payload (> 40 MiB)': {'s': [[1, 'x' * (41_943_040 + 1)]]},
}


@pytest.mark.parametrize('name', sorted(REFUSED_INSERTS))
async def test_insert_refused_before_sending(setup: Setup, name: str) -> None:
    server, proxy, client = setup
    before = await sent(proxy, client)
    with pytest.raises(InsertDataError) as info:
        await client.insert(REFUSED_INSERTS[name])
    exc = info.value
    assert isinstance(exc, InsertError) and isinstance(exc, ValueError)
    assert isinstance(exc, SiriDBError) and exc.tp is None
    assert 'nothing was sent' in str(exc)
    assert await sent(proxy, client) == before + HEADER_SIZE  # only the marker
    assert series_count(server) == 0
    await still_usable(client)


# packable but invalid: sent, and the server's exact InsertError comes back
SERVER_REJECTED: Dict[str, Tuple[Any, str]] = {
    'NaN series name': (
        {math.nan: [[1, 1]]},
        'Expecting a series name (string value) with an array of points where each '
        'point should be an integer time-stamp with a value.'),
    'None': (None, 'Expecting an array or map containing series and points.'),
    'a string': ('series', 'Expecting an array or map containing series and points.'),
    'nested value': (
        {'s': [[1, {'x': [1, [2]]}]]},
        'Unsupported value received. (only integer, float and string values are '
        'supported).'),
    'None value': (
        {'s': [[1, None]]},
        'Unsupported value received. (only integer, float and string values are '
        'supported).'),
    'float timestamp': ({'s': [[1.5, 1]]}, 'Expecting an integer value as time-stamp.'),
    'empty name': (
        {'': [[1, 1]]},
        'Expecting a series name (string value) with an array of points where each '
        'point should be an integer time-stamp with a value.'),
    'points not a list': ({'s': 5}, 'Expecting an array with points.'),
    'negative timestamp': (
        {'s': [[-1, 1]]}, 'Received at least one time-stamp which is out-of-range.'),
}


@pytest.mark.parametrize('name', sorted(SERVER_REJECTED))
async def test_insert_rejected_by_server(setup: Setup, name: str) -> None:
    server, proxy, client = setup
    data, text = SERVER_REJECTED[name]
    with pytest.raises(InsertError) as info:
        await client.insert(data)
    assert not isinstance(info.value, InsertDataError)
    assert str(info.value) == text
    assert info.value.tp == 66
    assert series_count(server) == 0  # nothing half-written
    await still_usable(client)


BAD_QUERIES: Dict[str, Tuple[Any, Any, Type[Exception]]] = {
    'None query': (None, None, TypeError),
    'int query': (42, None, TypeError),
    'NaN query': (math.nan, None, TypeError),
    'list query': (['select * from "s"'], None, TypeError),
    'dict query': ({'q': 1}, None, TypeError),
    'precision 4': ('select * from "s"', 4, ValueError),
    'precision -1': ('select * from "s"', -1, ValueError),
    'precision name': ('select * from "s"', 'minutes', ValueError),
    'precision float': ('select * from "s"', 1.0, TypeError),
    'precision NaN': ('select * from "s"', math.nan, TypeError),
    'precision bool': ('select * from "s"', True, TypeError),
    'precision list': ('select * from "s"', [1], TypeError),
}


@pytest.mark.parametrize('name', sorted(BAD_QUERIES))
async def test_bad_query_arguments(setup: Setup, name: str) -> None:
    server, proxy, client = setup
    query, precision, exc_type = BAD_QUERIES[name]
    before = await sent(proxy, client)
    with pytest.raises(exc_type):
        await client.query(query, time_precision=precision)
    assert await sent(proxy, client) == before + HEADER_SIZE  # only the marker
    await still_usable(client)


async def test_query_too_long_is_a_query_error(setup: Setup) -> None:
    server, proxy, client = setup
    with pytest.raises(QueryError) as info:
        await client.query('select * from "' + 's' * 70_000 + '"')
    assert str(info.value) == 'Query too long.'
    await still_usable(client)


async def test_bad_input_on_single_connection(strict_loop: LoopErrors) -> None:
    async with EmbeddedServer(databases={'dbtest': 'ms'}) as server:
        conn = await async_connect('iris', 'siri', 'dbtest', server.host, server.port)
        try:
            with pytest.raises(InsertDataError):
                await conn.insert({'s': [[1, 2**70]]})
            with pytest.raises(TypeError):
                await conn.query(None)
            with pytest.raises(ValueError):
                await conn.query('select * from "s"', time_precision=9)
            with pytest.raises(InsertError):
                await conn.insert({'s': [[1, [1]]]})
            assert await conn.insert({'s': [[1, 1]]}) == inserted(1)
        finally:
            conn.close()
            await conn.wait_closed()


BAD_HOSTLISTS: Dict[str, Tuple[Any, Type[Exception]]] = {
    'a string': ('localhost:9000', TypeError),
    'None': (None, TypeError),
    'empty': ([], ValueError),
    'host only': ([('localhost',)], TypeError),
    'too many items': ([('localhost', 9000, {}, 1)], TypeError),
    'not a tuple': (['localhost'], TypeError),
    'None host': ([(None, 9000)], TypeError),
    'empty host': ([('', 9000)], TypeError),
    'port as str': ([('localhost', '9000')], ValueError),
    'port 0': ([('localhost', 0)], ValueError),
    'port 65536': ([('localhost', 65536)], ValueError),
    'port NaN': ([('localhost', math.nan)], ValueError),
    'port bool': ([('localhost', True)], ValueError),
    'options not a dict': ([('localhost', 9000, 'weight=2')], TypeError),
    'unknown option': ([('localhost', 9000, {'wieght': 2})], ValueError),
    'weight 0': ([('localhost', 9000, {'weight': 0})], ValueError),
    'weight 10': ([('localhost', 9000, {'weight': 10})], ValueError),
    'weight -1': ([('localhost', 9000, {'weight': -1})], ValueError),
    'weight float': ([('localhost', 9000, {'weight': 1.5})], ValueError),
    'weight NaN': ([('localhost', 9000, {'weight': math.nan})], ValueError),
    'weight str': ([('localhost', 9000, {'weight': '2'})], ValueError),
    'weight bool': ([('localhost', 9000, {'weight': True})], ValueError),
}


@pytest.mark.parametrize('name', sorted(BAD_HOSTLISTS))
def test_bad_hostlist(name: str) -> None:
    hostlist, exc_type = BAD_HOSTLISTS[name]
    with pytest.raises(exc_type) as info:
        SiriDBClient('iris', 'siri', 'dbtest', hostlist)
    assert str(info.value)  # says what is wrong


def test_bad_hostlist_messages_name_the_problem() -> None:
    with pytest.raises(ValueError, match='weight'):
        SiriDBClient('iris', 'siri', 'dbtest', [('h', 9000, {'weight': 0})])
    with pytest.raises(ValueError, match='port'):
        SiriDBClient('iris', 'siri', 'dbtest', [('h', 70000)])


def test_password_never_in_errors_or_repr() -> None:
    secret = 'pa55-SECRET-word'
    client = SiriDBClient('iris', secret, 'dbtest', [('localhost', 9000)])
    assert secret not in repr(client)
    with pytest.raises(Exception) as info:
        SiriDBClient('iris', secret, 'dbtest', [('localhost', 0)])
    assert secret not in str(info.value)


def test_deeply_nested_insert_raises_instead_of_crashing() -> None:
    code = (
        'import asyncio\n'
        'from siridb.connector import SiriDBClient\n'
        'from siridb.connector.lib.exceptions import InsertDataError\n'
        'from siridb.embedded import EmbeddedServer\n'
        'async def main():\n'
        '    async with EmbeddedServer(databases={"dbtest": "ms"}) as s:\n'
        '        c = SiriDBClient("iris", "siri", "dbtest", [(s.host, s.port)])\n'
        '        await c.connect()\n'
        '        x = []\n'
        '        for _ in range(200000):\n'
        '            x = [x]\n'
        '        try:\n'
        '            await c.insert({"s": [[1, x]]})\n'
        '        except InsertDataError:\n'
        '            pass\n'
        '        c.close()\n'
        '        await c.wait_closed()\n'
        'asyncio.run(main())\n')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          timeout=60, cwd=str(ROOT))
    assert proc.returncode == 0, f'child died: status {proc.returncode}'

