"""The blocking ``connect()`` from plain synchronous code (no event loop of ours)."""
from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Any, Iterator, List

import pytest

from siridb.connector import SiriDBConnection, connect
from siridb.connector.lib import exceptions as ex
from siridb.embedded import EmbeddedServer, ServerThread


@pytest.fixture()
def server() -> Iterator[ServerThread]:
    with EmbeddedServer.start_in_thread(databases={'dbtest': 's'}) as srv:
        yield srv


def _threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == 'siridb-connector-loop')


def test_blocking_connect_insert_query(server: ServerThread) -> None:
    before = _threads()
    conn = connect('iris', 'siri', 'dbtest', server.host, server.port)
    try:
        assert isinstance(conn, SiriDBConnection) and conn.connected
        assert conn.insert({'a': [[1, 1], [2, 2]]}) == {
            'success_msg': 'Successfully inserted 2 point(s).'}
        assert conn.query('select * from "a"') == {'a': [[1, 1], [2, 2]]}
        assert conn.query('select * from "a"', time_precision='ms') == {
            'a': [[1000, 1], [2000, 2]]}
        with pytest.raises(ex.QueryError):
            conn.query('selec')
        with pytest.raises(TypeError):
            conn.query(None)
    finally:
        conn.close()
    conn.close()  # idempotent
    assert not conn.connected
    assert _threads() == before  # the private loop thread is gone
    with pytest.raises(ex.ClientClosedError):
        conn.query('show dbname')


def test_blocking_connect_works_with_loop_argument_and_context_manager(
        server: ServerThread) -> None:
    loop = asyncio.new_event_loop()  # 2.1.6 callers pass a loop: accepted, not needed
    try:
        with connect('iris', 'siri', 'dbtest', server.host, server.port, loop=loop) as conn:
            assert conn.query('count series') == {'series': 0}
    finally:
        loop.close()
    assert not conn.connected


def test_blocking_connect_from_several_threads(server: ServerThread) -> None:
    results: List[Any] = []

    def work(i: int) -> None:
        with connect('iris', 'siri', 'dbtest', server.host, server.port) as conn:
            conn.insert({f's{i}': [[i + 1, i]]})
            results.append(conn.query(f'select * from "s{i}"'))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results, key=str) == sorted(
        ({f's{i}': [[i + 1, i]]} for i in range(4)), key=str)


def test_blocking_connect_errors(server: ServerThread) -> None:
    before = _threads()
    with pytest.raises(ex.InvalidCredentialsError):
        connect('iris', 'wrong', 'dbtest', server.host, server.port)
    with pytest.raises(ex.UnknownDatabaseError):
        connect('iris', 'siri', 'nosuchdb', server.host, server.port)
    assert _threads() == before


def test_blocking_connect_refused() -> None:
    with EmbeddedServer.start_in_thread(databases={'dbtest': 's'}) as srv:
        port = srv.port
    with pytest.raises(ConnectionError):
        connect('iris', 'siri', 'dbtest', '127.0.0.1', port, timeout=2)


async def test_blocking_connect_inside_a_running_loop(server: ServerThread) -> None:
    """Even called from a coroutine (blocking it), it does not touch that loop."""
    conn = connect('iris', 'siri', 'dbtest', server.host, server.port)
    try:
        assert conn.query('show dbname')['data'][0]['value'] == 'dbtest'
    finally:
        conn.close()


def test_unclosed_blocking_connection_warns_and_cleans_up(server: ServerThread) -> None:
    before = _threads()
    conn = connect('iris', 'siri', 'dbtest', server.host, server.port)
    assert _threads() == before + 1
    with pytest.warns(ResourceWarning, match='unclosed'):
        del conn
        gc.collect()
    for _ in range(200):  # its private loop shuts itself down
        if _threads() == before:
            break
        time.sleep(0.01)
    assert _threads() == before
