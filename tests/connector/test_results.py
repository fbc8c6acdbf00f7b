"""Typed views of query results."""
from __future__ import annotations

import datetime as dt

import pytest

from siridb.connector.lib.results import (
    count,
    parse_select,
    rows,
    show,
    to_dataframe,
)

UTC = dt.timezone.utc


def test_parse_select_every_precision() -> None:
    res = {'aggr': [[1447250938, 5], [1447250968, 8.5]], '__timeit__': [{'time': 0.1}]}
    out = parse_select(res, 's')
    assert list(out) == ['aggr']
    s = out['aggr']
    assert s.name == 'aggr' and len(s) == 2
    assert s.points == [(dt.datetime(2015, 11, 11, 14, 8, 58, tzinfo=UTC), 5),
                        (dt.datetime(2015, 11, 11, 14, 9, 28, tzinfo=UTC), 8.5)]
    assert s.timestamps == [1447250938, 1447250968]
    assert s.values == [5, 8.5]
    assert list(s) == s.points
    ms = parse_select({'x': [[1447250938123, 'a']]}, 1)['x']
    assert ms.points[0][0] == dt.datetime(2015, 11, 11, 14, 8, 58, 123000, tzinfo=UTC)
    ns = parse_select({'x': [[1447250938123456789, 1]]}, 'ns')['x']
    assert ns.raw == ((1447250938123456789, 1),)
    assert ns.points[0][0].microsecond == 123456


def test_parse_select_rejects_other_shapes() -> None:
    with pytest.raises(ValueError):
        parse_select({'series': 9}, 's')
    with pytest.raises(TypeError):
        parse_select([], 's')  # type: ignore[arg-type]


def test_rows_count_show() -> None:
    listed = {'columns': ['name', 'type', 'length'],
              'series': [['aggr', 'integer', 20], ['温度 ✓', 'float', 3]]}
    assert rows(listed) == [{'name': 'aggr', 'type': 'integer', 'length': 20},
                            {'name': '温度 ✓', 'type': 'float', 'length': 3}]
    assert rows({'columns': ['name', 'access'], 'users': [['iris', 'full']]}) == [
        {'name': 'iris', 'access': 'full'}]
    assert count({'series': 9}) == 9
    assert count({'series_length': 62}) == 62
    assert show({'data': [{'name': 'time_precision', 'value': 's'},
                          {'name': 'list_limit', 'value': 10000}]}) == {
        'time_precision': 's', 'list_limit': 10000}
    with pytest.raises(ValueError):
        rows({'series': 9})
    with pytest.raises(ValueError):
        count({'a': 1, 'b': 2})
    with pytest.raises(ValueError):
        count({'a': 'x'})
    with pytest.raises(ValueError):
        show({'series': 9})


def test_to_dataframe_without_or_with_pandas() -> None:
    try:
        import pandas  # type: ignore[import-not-found,import-untyped,unused-ignore]  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match='pandas'):
            to_dataframe({'a': [[1, 2]]}, 's')
        return
    df = to_dataframe({'a': [[1, 2]], 'b': [[1447250938001, 'x']], '__timeit__': []}, 'ms')
    assert list(df.columns) == ['series', 'time', 'value']
    assert df['series'].tolist() == ['a', 'b']
    assert df.iloc[0]['value'] == 2 and df.iloc[1]['value'] == 'x'
    assert df.iloc[1]['time'] == dt.datetime(2015, 11, 11, 14, 8, 58, 1000, tzinfo=UTC)
    listed = to_dataframe({'columns': ['name', 'length'], 'series': [['a', 3], ['b', 5]]})
    assert listed.to_dict('records') == [{'name': 'a', 'length': 3},
                                         {'name': 'b', 'length': 5}]


async def test_client_select_typed_in_any_precision() -> None:
    from siridb.connector import Select, SiriDBClient
    from siridb.embedded import EmbeddedServer

    async with EmbeddedServer(port=0, databases={'dbtest': 's'}) as srv:
        async with SiriDBClient('iris', 'siri', 'dbtest', [(srv.host, srv.port)]) as c:
            await c.write('x', 1.5, 1447250938)
            when = dt.datetime(2015, 11, 11, 14, 8, 58, tzinfo=UTC)
            for tp in (None, 0, 1, 'us', 3):
                res = await c.select(Select().from_series('x'), time_precision=tp)
                assert res['x'].points == [(when, 1.5)], tp
            ns = await c.select('select * from "x"', time_precision='ns')
            assert ns['x'].raw == ((1447250938 * 10**9, 1.5),)
