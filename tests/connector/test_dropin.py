"""Drop-in: code written for siridb-connector 2.1.6 (its README style and the
SiriDB server's own test style) runs unchanged against the embedded server."""
from __future__ import annotations

import asyncio
import random
import threading
import time
import unittest
from typing import Any, Iterator, List

import pytest

from siridb.embedded import EmbeddedServer, ServerThread

PORT = 9000  # replaced by the fixture with the embedded server's port


@pytest.fixture()
def server() -> Iterator[ServerThread]:
    global PORT
    with EmbeddedServer.start_in_thread(databases={'dbtest': 's'}) as srv:
        PORT = srv.port
        yield srv


def _in_thread(fn: Any) -> Any:
    """Run ``fn`` in a fresh thread (so that setting its default event loop
    leaves the test runner's loop state alone); re-raise what it raised."""
    out: List[Any] = []

    def target() -> None:
        try:
            out.append((True, fn()))
        except BaseException as exc:  # handed to the test thread
            out.append((False, exc))

    t = threading.Thread(target=target)
    t.start()
    t.join()
    ok, value = out[0]
    if not ok:
        raise value
    return value


def _run_with_default_loop(fn: Any) -> Any:
    """What a 2.1.6 program's process does around its code: there is a default
    event loop; at the end it is shut down (as asyncio.run would)."""
    def main() -> Any:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return fn()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()

    return _in_thread(main)


# --- 2.1.6 README style, unchanged apart from the port ----------------------
def readme_example() -> Any:
    from siridb.connector import SECOND, SiriDBClient

    output = []

    async def example(siri: Any) -> None:
        # Start connecting to SiriDB.
        # .connect() returns a list of all connections referring to the supplied
        # hostlist. The list can contain exceptions in case a connection could not
        # be made.
        await siri.connect()

        try:
            # insert
            ts = int(time.time())
            value = random.random()
            await siri.insert({'some_measurement': [[ts, value]]})

            # query
            resp = await siri.query('select * from "some_measurement"',
                                    time_precision=SECOND)
            output.append(resp)

        finally:
            # Close all SiriDB connections.
            siri.close()

    siri = SiriDBClient(
        username='iris',
        password='siri',
        dbname='dbtest',
        hostlist=[('localhost', PORT)],  # Multiple connections are supported
        keepalive=True)

    loop = asyncio.get_event_loop()
    loop.run_until_complete(example(siri))
    return output


def test_readme_example(server: ServerThread) -> None:
    output = _run_with_default_loop(readme_example)
    [resp] = output
    [[ts, value]] = resp['some_measurement']
    assert abs(ts - time.time()) < 60 and 0 <= value < 1


def readme_single_connection_example() -> Any:
    from siridb.connector import async_connect

    async def main() -> Any:
        conn = await async_connect('iris', 'siri', 'dbtest', 'localhost', PORT,
                                   loop=asyncio.get_event_loop(), keepalive=True)
        try:
            await conn.insert({'cpu': [[1, 1.5]]})
            return await conn.query('select * from "cpu"', timeout=10)
        finally:
            conn.close()

    return asyncio.get_event_loop().run_until_complete(main())


def test_readme_single_connection(server: ServerThread) -> None:
    assert _run_with_default_loop(readme_single_connection_example) == {'cpu': [[1, 1.5]]}


# --- SiriDB server integration-test style ------------------------------------
DATA = {
    'series float': [[1471254705, 1.5], [1471254707, -3.5], [1471254710, -7.3]],
    'series int': [[1471254705, 5], [1471254708, -3], [1471254710, -7]],
    'series string': [[1471254705, 'hi'], [1471254710, 'siridb']],
    'aggr': [[1447249033, 531], [1447249337, 534]],
}


class Client:
    """The helper the server's tests wrap around the connector."""

    def __init__(self, db: str, hostlist: Any, username: str = 'iris',
                 password: str = 'siri', loop: Any = None) -> None:
        self.dbname = db
        self.hostlist = hostlist
        self.username = username
        self.password = password
        self.loop = loop

    async def connect(self) -> None:
        from siridb.connector import SiriDBClient
        self.cluster = SiriDBClient(
            username=self.username, password=self.password, dbname=self.dbname,
            hostlist=self.hostlist, loop=self.loop, keepalive=True)
        await self.cluster.connect()
        self.query = self.cluster.query
        self.insert = self.cluster.insert

    def close(self) -> None:
        self.cluster.close()


class TestInsertAndQuery(unittest.TestCase):
    title = 'Test inserts and response'

    async def run_test(self) -> None:
        from siridb.connector.lib.exceptions import (
            AuthenticationError,
            InsertError,
            PoolError,
            QueryError,
            ServerError,
            UserAuthError,
        )
        self.assertTrue(issubclass(UserAuthError, AuthenticationError))
        self.assertTrue(ServerError and PoolError)

        await self.client0.connect()

        self.assertEqual(
            await self.client0.insert(DATA),
            {'success_msg': 'Successfully inserted 10 point(s).'})

        self.assertEqual(
            await self.client0.query('select * from "series float"'),
            {'series float': DATA['series float']})

        self.assertEqual(
            await self.client0.query('select * from "series int"', time_precision=1),
            {'series int': [[ts * 1000, v] for ts, v in DATA['series int']]})

        with self.assertRaisesRegex(InsertError, 'Expecting an array with points.'):
            await self.client0.insert({'no points': 5})

        with self.assertRaisesRegex(
                InsertError,
                'Expecting a series to have at least one point.'):
            await self.client0.insert({'no points': []})

        with self.assertRaisesRegex(QueryError, 'Query error at position'):
            await self.client0.query('select * from "series float" fail')

        self.client0.close()

        other = Client('dbtest', self.hostlist, password='wrong', loop=self.loop)
        await other.connect()
        with self.assertRaises(PoolError):
            await other.query('show dbname')
        other.close()

    def test_server_style(self) -> None:
        _in_thread(self._server_style)

    def _server_style(self) -> None:
        with EmbeddedServer.start_in_thread(databases={'dbtest': 's'}) as srv:
            self.hostlist = [(srv.host, srv.port)]
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.client0 = Client('dbtest', self.hostlist, loop=self.loop)
                self.loop.run_until_complete(self.run_test())
            finally:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                # the unauthenticated client keeps reconnecting until closed;
                # 2.1.6 code never awaited anything after close()
                for task in asyncio.all_tasks(self.loop):
                    task.cancel()
                    self.loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
                asyncio.set_event_loop(None)
                self.loop.close()


# --- old except clauses keep catching -----------------------------------------
async def test_old_except_clauses_still_catch() -> None:
    from siridb.connector import SiriDBClient, async_connect
    from siridb.connector.lib.exceptions import ServerError

    async with EmbeddedServer(databases={'dbtest': 's'}) as srv:
        conn = await async_connect('iris', 'siri', 'dbtest', srv.host, srv.port)
        try:
            srv.pause()
            try:
                await conn.query('show dbname')
            except ServerError as exc:
                assert str(exc) == srv.paused_msg
            srv.resume()
            caught = None
            try:
                await conn.send_request(4, None, timeout=0.1)  # INFO: never answered
            except asyncio.TimeoutError as exc:
                caught = exc
            assert isinstance(caught, TimeoutError)
        finally:
            conn.close()
            await conn.wait_closed()
        try:
            await conn.query('show dbname')
        except ConnectionError:
            pass
        else:
            raise AssertionError('expected ConnectionError')

        client = SiriDBClient('iris', 'siri', 'dbtest', [(srv.host, srv.port)])
        await client.connect()
        try:
            srv.pause()
            try:
                await client.query('show dbname')
            except Exception as exc:  # 2.1.6 callers catch PoolError and retry
                from siridb.connector.lib.exceptions import PoolError
                assert isinstance(exc, PoolError)
        finally:
            client.close()
            await client.wait_closed()


def test_public_names() -> None:
    import siridb
    import siridb.connector as sc
    from siridb.connector.lib import constants, protomap
    from siridb.connector.lib.connection import SiriDBAsyncConnection

    assert siridb.__version__ == '3.0.0.dev0'
    assert siridb.__version_info__[:3] == (3, 0, 0)
    for name in ('SiriDBClient', 'SiriDBProtocol', 'SiriDBConn', 'connect', 'async_connect',
                 'async_server_info', 'SiriDBConnection', 'SiriDBAsyncConnection'):
        assert hasattr(sc, name), name
    assert sc.SiriDBAsyncConnection is SiriDBAsyncConnection
    assert (sc.SECOND, sc.MILLISECOND, sc.MICROSECOND, sc.NANOSECOND) == (0, 1, 2, 3)
    assert (constants.SECOND, constants.NANOSECOND) == (0, 3)
    assert sc.DEFAULT_CLIENT_PORT == 9000
    assert protomap.CPROTO_REQ_QUERY == 0 and protomap.CPROTO_ERR_POOL == 68
    assert protomap.CPROTO_ACK_SERVICE_DATA == 33


# --- 2.1.6's error texts and classes ------------------------------------------
def test_authentication_texts_are_2_1_6s(server: ServerThread) -> None:
    """Code comparing ``str(exc)`` with 2.1.6's texts keeps working."""
    from siridb.connector import SiriDBClient
    from siridb.connector.lib.exceptions import AuthenticationError

    async def attempt(user: str, password: str, dbname: str) -> str:
        siri = SiriDBClient(user, password, dbname, [('127.0.0.1', PORT)])
        try:
            res = await siri.connect(timeout=5)
            exc = next(r for r in res if isinstance(r, Exception))
            assert isinstance(exc, AuthenticationError)
            return str(exc)
        finally:
            siri.close()

    async def main() -> List[str]:
        return [await attempt('iris', 'wrong', 'dbtest'),
                await attempt('iris', 'siri', 'nosuchdb')]

    assert _in_thread(lambda: asyncio.run(main())) == \
        ['Invalid credentials', 'Unknown database']


def test_query_after_close_is_a_pool_error(server: ServerThread) -> None:
    """2.1.6 raised PoolError('No available connections found') after close():
    ``except PoolError`` still catches it, and so does ``except ConnectionError``."""
    from siridb.connector import SiriDBClient
    from siridb.connector.lib.exceptions import PoolError

    async def main() -> List[str]:
        siri = SiriDBClient('iris', 'siri', 'dbtest', [('127.0.0.1', PORT)])
        await siri.connect(timeout=5)
        assert (await siri.query('count series'))['series'] == 0
        siri.close()
        caught = []
        for kind in (PoolError, ConnectionError):
            try:
                await siri.query('count series', timeout=5)
            except kind as exc:
                caught.append(type(exc).__name__)
        return caught

    assert _in_thread(lambda: asyncio.run(main())) == ['ClientClosedError'] * 2
