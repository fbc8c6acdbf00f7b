"""Conventions users of asyncpg/redis-py expect: ``aclose()`` on everything
that closes (``contextlib.aclosing``), typed replies, ``write``/``write_many``
returning counts, every public exception in one module, and ``to_dataframe``
with exact nanoseconds."""
from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import pickle
import typing

import pytest

from siridb.connector import (
    Select,
    SiriDBAsyncConnection,
    SiriDBClient,
    SiriDBConn,
    SiriDBService,
    async_connect,
)
from siridb.connector.lib import exceptions
from siridb.connector.lib.exceptions import (
    BufferFullError,
    FlushTimeoutError,
    RejectedPointsError,
    SessionClosedError,
    SessionError,
    SiriDBError,
    URLError,
)
from siridb.connector.lib.results import parse_select, to_dataframe
from siridb.connector.lib.session import Point, Rejected
from siridb.embedded import EmbeddedServer

UTC = dt.timezone.utc


@contextlib.asynccontextmanager
async def _aclosing_fallback(thing: typing.Any) -> typing.AsyncIterator[typing.Any]:
    try:
        yield thing
    finally:
        await thing.aclose()


#: contextlib.aclosing (Python 3.10+), or the same protocol on 3.9
aclosing = getattr(contextlib, 'aclosing', _aclosing_fallback)


async def test_aclose_and_aclosing_on_every_closable() -> None:
    async with EmbeddedServer(port=0) as srv:
        addr = [(srv.host, srv.port)]
        client = SiriDBClient('iris', 'siri', 'dbtest', addr)
        async with aclosing(client):
            await client.connect()
            assert client.connected
        assert client.is_closed and not client.connected
        await client.aclose()  # idempotent

        conn = SiriDBConn('iris', 'siri', 'dbtest', srv.host, srv.port)
        async with aclosing(conn):
            await conn.connect()
            assert conn.is_connected()
        assert conn.is_closed and not conn.is_connected()

        single = await async_connect('iris', 'siri', 'dbtest', srv.host, srv.port)
        assert isinstance(single, SiriDBAsyncConnection)
        async with aclosing(single):
            assert single.connected
        assert not single.connected

        svc = SiriDBService('sa', 'siri', srv.host, srv.port)
        async with aclosing(svc):
            assert 'dbtest' in await svc.get_databases()
        assert svc._protocol is None

        client = SiriDBClient('iris', 'siri', 'dbtest', addr)
        await client.connect()
        session = client.session()
        async with aclosing(session):
            await session.write('s', 1.5, 1000)
        assert session.closed
        stamps, values = srv.store.databases['dbtest'].series['s'].points()
        assert (list(stamps), list(values)) == ([1000], [1.5])
        await client.aclose()


async def test_write_and_write_many_return_counts() -> None:
    async with EmbeddedServer(port=0) as srv:
        async with SiriDBClient('iris', 'siri', 'dbtest', [(srv.host, srv.port)]) as c:
            assert await c.write('a', 1, 1000) == 1
            assert await c.write_many([('a', 2000, 2), Point('b', 3000, 'x')]) == 2
            async with c.session() as s:
                assert await s.write('c', 1.0, 1000) == 1
                assert await s.write_many([('c', 2000, 2.0)]) == 1
            result = await c.query('count series')
            assert result == {'series': 3}
            assert await c.insert({'d': [[1000, 1]]}) == {
                'success_msg': 'Successfully inserted 1 point(s).'}


def test_query_and_insert_have_real_return_types() -> None:
    for cls in (SiriDBClient, SiriDBConn, SiriDBAsyncConnection):
        for name in ('query', 'insert'):
            hints = typing.get_type_hints(getattr(cls, name))
            assert hints['return'] == typing.Dict[str, typing.Any], (cls, name)


def test_every_public_exception_is_in_the_exceptions_module() -> None:
    import siridb.connector as pkg
    from siridb.connector.lib import session, url

    public = {name: obj for name, obj in vars(pkg).items()
              if inspect.isclass(obj) and issubclass(obj, Exception)}
    for mod in (session, url):
        public.update({n: o for n, o in vars(mod).items()
                       if inspect.isclass(o) and issubclass(o, Exception)})
    assert {'BufferFullError', 'RejectedPointsError', 'FlushTimeoutError', 'URLError',
            'SessionError', 'SessionClosedError'} <= set(public)
    for name, cls in public.items():
        assert getattr(exceptions, name) is cls, name  # one definition
        assert cls.__module__ == exceptions.__name__, name
        assert name in exceptions.__all__, name
    assert issubclass(BufferFullError, SessionError) and issubclass(SessionError, SiriDBError)
    assert issubclass(SessionClosedError, SessionError)
    assert issubclass(FlushTimeoutError, TimeoutError) and issubclass(URLError, ValueError)
    # they still pickle (the session errors carry points)
    err = RejectedPointsError([Rejected([Point('a', 1, 2)], ValueError('bad'))])
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is RejectedPointsError and str(again) == str(err)
    flush = pickle.loads(pickle.dumps(FlushTimeoutError([Point('a', 1, 2)], None)))
    assert flush.points == [Point('a', 1, 2)]


# --------------------------------------------------------------- to_dataframe

def test_to_dataframe_exact_nanoseconds_utc() -> None:
    pd = pytest.importorskip('pandas')
    ts = 1447250938000000001  # 2015-11-11 14:08:58.000000001
    df = to_dataframe({'a': [[ts, 1.5], [ts + 998, 2.5]], 'b': [[ts, 'x']],
                       'empty': [], '__timeit__': []}, 'ns')
    assert str(df['time'].dtype) == 'datetime64[ns, UTC]'
    assert df['series'].tolist() == ['a', 'a', 'b']
    assert df['value'].tolist() == [1.5, 2.5, 'x']
    assert df['time'].astype('int64').tolist() == [ts, ts + 998, ts]
    assert df['time'][1] == pd.Timestamp(ts + 998, unit='ns', tz='UTC')
    # each precision, exact: whole units scaled to nanoseconds
    for precision, factor in (('s', 10 ** 9), ('ms', 10 ** 6), ('us', 10 ** 3), (3, 1)):
        df = to_dataframe({'a': [[-5, 1], [1447250938, 2]]}, precision)
        assert df['time'].astype('int64').tolist() == [-5 * factor, 1447250938 * factor]
    # numbers keep a numeric column
    assert str(to_dataframe({'a': [[1, 1], [2, 2]]}, 's')['value'].dtype) == 'int64'
    with pytest.raises(OverflowError):
        to_dataframe({'a': [[2 ** 62, 1]]}, 'ms')


def test_to_dataframe_takes_the_precision_from_typed_series() -> None:
    pytest.importorskip('pandas')
    typed = parse_select({'a': [[1447250938, 7]]}, 's')
    df = to_dataframe(typed)  # no precision argument: the series know theirs
    assert df['time'][0] == dt.datetime(2015, 11, 11, 14, 8, 58, tzinfo=UTC)
    # a raw map without one is in milliseconds, as before
    assert to_dataframe({'a': [[1000, 1]]})['time'][0] == dt.datetime(
        1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    mixed = {**parse_select({'a': [[1, 1]]}, 's'), **parse_select({'b': [[1, 1]]}, 'ms')}
    with pytest.raises(ValueError, match='precisions'):
        to_dataframe(mixed)


async def test_to_dataframe_of_select_in_nanoseconds() -> None:
    pytest.importorskip('pandas')
    async with EmbeddedServer(port=0, databases={'dbtest': 'ns'}) as srv:
        async with SiriDBClient('iris', 'siri', 'dbtest', [(srv.host, srv.port)]) as c:
            ts = 1447250938123456789
            await c.insert({'x': [[ts, 1.0], [ts + 1, 2.0]]})
            df = to_dataframe(await c.select(Select().from_series('x')))
            assert df['time'].astype('int64').tolist() == [ts, ts + 1]
