"""The query builder: generated text, quoting, and refusal of unsafe input."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siridb.connector.lib.builder import (
    ALL,
    CountSeries,
    ListSeries,
    Select,
    group,
    quote,
    regex,
    regex_literal,
    series,
    tag,
)

HOSTILE = [
    'a"b', '"', '""', "it's", 'x" from * where "', 'a/b', '/', '\\', 'a\\"',
    'line1\nline2', '\r\n', 'tab\tname', 'temp float', '温度 ✓', '💥',
    'select * from *', '`grp`', '# comment', "'", ' ', '\u2028', 'form\x0cfeed',
    'del\x7f', '\x1b[31m',
]


def test_issue_example() -> None:
    q = (Select('mean(1h)').from_series('cpu.load').from_regex(r'cpu\..*')
         .between(1000, 'now').merge_as('all', using='max(1h)'))
    assert q.build() == ('select mean(1h) from "cpu.load" | /cpu\\..*/ '
                         'between 1000 and now merge as "all" using max(1h)')
    assert str(q) == q.build()


def test_immutable() -> None:
    base = Select('count()')
    a = base.from_series('a')
    b = base.from_series('b')
    assert a.build() == 'select count() from "a"'
    assert b.build() == 'select count() from "b"'
    with pytest.raises(ValueError, match='no series selected'):
        base.build()
    with pytest.raises(AttributeError):
        a._selector = None  # type: ignore[misc]
    assert a == Select('count()').from_series('a')


@pytest.mark.parametrize('name', HOSTILE)
def test_quote_round_trips(name: str) -> None:
    text = quote(name)
    assert text[0] == text[-1] == '"'
    inner = text[1:-1]
    # every quote inside is doubled, so no single quote can end the string
    assert '"' not in inner.replace('""', '')
    assert inner.replace('""', '"') == name


@given(st.text(alphabet=st.characters(blacklist_characters='\x00'), min_size=1))
def test_quote_property(name: str) -> None:
    text = quote(name)
    m = re.fullmatch(r'"((?:[^"]|"")*)"', text, re.S)
    assert m is not None
    assert m.group(1).replace('""', '"') == name


def test_quote_refuses_nul() -> None:
    with pytest.raises(ValueError):
        quote('a\x00b')
    with pytest.raises(TypeError):
        quote(5)  # type: ignore[arg-type]


@pytest.mark.parametrize('name', HOSTILE)
def test_hostile_series_name_in_select(name: str) -> None:
    q = Select().from_series(name).build()
    assert q == f'select * from {quote(name)}'
    # the statement is exactly: select * from <one string literal>
    assert re.fullmatch(r'select \* from "((?:[^"]|"")*)"', q, re.S)


@pytest.mark.parametrize('pattern,expected', [
    ('abc', '/abc/'), ('a/b', '/a\\/b/'), ('a\\/b', '/a\\/b/'), ('a\\.b', '/a\\.b/'),
    ('x\ny', '/x\\ny/'), ('[/]', '/[\\/]/'), ('\\\\', '/\\\\/'), ('a\\\n', '/a\\n/'),
    ('\x01', '/\\x01/'), ('é.*', '/é.*/'),
    # an escaped control character (as re.escape writes it) means the character
    ('\\\x0c', '/\\x0c/'), ('\\\x7f', '/\\x7f/'), ('\\\x00', '/\\x00/'),
])
def test_regex_literal(pattern: str, expected: str) -> None:
    assert regex_literal(pattern) == expected
    # and the escaped text means the same for a regex engine
    body = expected[1:-1]
    for probe in ['abc', 'a/b', 'a.b', 'x\ny', '/', '\x01', 'éé', '\\', 'a\n']:
        assert bool(re.fullmatch(pattern, probe)) == bool(re.fullmatch(body, probe))


@given(st.text(min_size=1, max_size=20))
def test_regex_literal_never_leaves_unescaped_slash(pattern: str) -> None:
    try:
        compiled = re.compile(pattern)
    except re.error:
        return
    try:
        lit = regex_literal(pattern)
    except ValueError:
        return
    assert re.fullmatch(r'/(?:[^/\\\n]|\\.)+/', lit, re.S)
    # and it means the same: the text between the slashes matches what the
    # original pattern matches
    body = re.compile(lit[1:-1])
    for probe in (pattern, pattern.replace('\\', ''), '/', '\\', '\n'):
        assert bool(compiled.fullmatch(probe)) == bool(body.fullmatch(probe))


def test_regex_literal_errors_and_flags() -> None:
    assert regex_literal('abc', ignore_case=True) == '/abc/i'
    with pytest.raises(ValueError):
        regex_literal('abc\\')
    with pytest.raises(ValueError):
        regex_literal('')


def test_selectors_and_operators() -> None:
    sel = (series('a', 'b') - regex('x.*')) & group('g') ^ tag('t')
    q = Select('last()').from_(sel).build()
    assert q == 'select last() from ((("a", "b") - /x.*/) & `g`) ^ `t`'
    assert Select().from_(ALL).build() == 'select * from *'
    assert Select().from_all().from_series('x').build() == 'select * from * | "x"'
    with pytest.raises(ValueError):
        group('a`b')
    with pytest.raises(ValueError):
        series()
    with pytest.raises(ValueError):
        series('')
    with pytest.raises(TypeError):
        Select().from_('"a"')  # type: ignore[arg-type]


def test_columns_prefix_suffix_quoted() -> None:
    q = (Select('min(3m)', prefix='min-"x').also('max(3m)', suffix='\n')
         .from_series('aggr').build())
    assert q == 'select min(3m) prefix "min-""x", max(3m) suffix "\n" from "aggr"'


@pytest.mark.parametrize('agg', [
    '*', 'mean(1h)', 'mean(5m) => sum(10m)', 'filter(~"two")', 'filter(!= 5)',
    'filter(/.*one.*/)', 'limit(3, mean)', 'derivative(60, 5m)', 'count()',
    'filter(> -0.5) => count()', 'filter(~"a "" from * b")',
])
def test_valid_aggregates(agg: str) -> None:
    assert Select(agg).from_series('s').build() == f'select {agg} from "s"'


@pytest.mark.parametrize('agg', [
    'mean(1h) from "x"', 'mean(1h', 'mean(1h))', 'nope(1)', 'mean(1h) "a"',
    'mean(1h) =>', 'mean(") from *', 'filter(/abc)', 'mean(1h), max(1h)',
    'mean(1h) merge as "x"', 'filter(~"a") where x', 'mean(from)', '',
    'mean(1h); drop', 'count() from * --', 'mean(1h)\x00',
    'mean(\u0663h)', 'mean(1h)\u2028=> max()', 'mean(1h)\u00a0',
])
def test_unsafe_aggregates_refused(agg: str) -> None:
    with pytest.raises(ValueError):
        Select(agg)
    with pytest.raises(ValueError):
        Select().from_series('s').merge_as('m', using=agg)


def test_time_ranges() -> None:
    base = Select().from_series('s')
    assert base.after(5).build() == 'select * from "s" after 5'
    assert base.before('now - 1d').build() == 'select * from "s" before now - 1d'
    assert (base.between("'2015-11-11'", 'now').build() ==
            "select * from \"s\" between '2015-11-11' and now")
    assert base.head(3).build() == 'select * from "s" head 3'
    assert base.tail(2).build() == 'select * from "s" tail 2'
    # one range per select: a second one would silently replace the first
    for first in (base.after(1), base.before(9), base.between(1, 9), base.head(2),
                  base.tail(2)):
        for second in (lambda q: q.after(1), lambda q: q.before(5),
                       lambda q: q.between(1, 5), lambda q: q.head(1),
                       lambda q: q.tail(1)):
            with pytest.raises(ValueError, match='already has'):
                second(first)
    for bad in [0, -1, True, 1.5]:
        with pytest.raises(ValueError):
            base.head(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize('p,expected', [('s', 1447250938), ('ms', 1447250938500),
                                        ('us', 1447250938500000),
                                        ('ns', 1447250938500000000)])
def test_datetimes_become_integers_in_db_precision(p: str, expected: int) -> None:
    when = dt.datetime(2015, 11, 11, 14, 8, 58, 500000, tzinfo=dt.timezone.utc)
    q = Select().from_series('s').between(when, 1447250938.5 + 60)
    end = expected + 60 * {'s': 1, 'ms': 10**3, 'us': 10**6, 'ns': 10**9}[p]
    if p == 's':
        end = 1447250998
    assert q.build(p) == f'select * from "s" between {expected} and {end}'
    with pytest.raises(ValueError, match='precision'):
        q.build()


@pytest.mark.parametrize('expr', [
    'now; drop series', 'now - 1d"', '1x', "'2020' and 5", '', 'now from *',
    '(now', 'now)', 'select', "'unterminated", 'now\x00', 'now - \u0661d', 'now\u2003- 1d',
])
def test_unsafe_time_expressions_refused(expr: str) -> None:
    with pytest.raises(ValueError):
        Select().from_series('s').after(expr)


def test_numpy_time_bounds_when_installed() -> None:
    np = pytest.importorskip('numpy')
    q = Select().from_series('s').between(np.int64(5), np.float64(1.5))
    assert q.build('ms') == 'select * from "s" between 5 and 1500'


def test_bad_time_types() -> None:
    with pytest.raises(TypeError):
        Select().from_series('s').after(True)
    with pytest.raises(TypeError):
        Select().from_series('s').after([1])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Select().from_series('s').after(-5)


def test_merge_as_hostile_name() -> None:
    q = Select().from_regex('.*').merge_as('m" using sum(1h)').build()
    assert q == 'select * from /.*/ merge as "m"" using sum(1h)"'
    with pytest.raises(ValueError):
        Select().from_all().merge_as('')
    with pytest.raises(ValueError, match='already merges'):
        Select().from_all().merge_as('a').merge_as('b')


def test_list_and_count() -> None:
    assert ListSeries().build() == 'list series'
    assert (ListSeries('name', 'length').from_regex('a.*').limit(10).build() ==
            'list series name, length /a.*/ limit 10')
    assert CountSeries().build() == 'count series'
    assert CountSeries(length=True).from_series('x"').build() == 'count series length "x"""'
    with pytest.raises(ValueError):
        ListSeries('name; drop')


def test_where_clauses() -> None:
    q = (Select('count()').from_all().where('type', '!=', 'string')
         .where('length', '>', 10).where('name', '~', 'a"b').between(0, 'now'))
    assert q.build() == ('select count() from * where type != string and length > 10 '
                         'and name ~ "a""b" between 0 and now')
    when = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    assert (ListSeries('name').from_regex('a.*').where('start', '>=', when).limit(3)
            .build('s') == 'list series name /a.*/ where start >= 1577836800 limit 3')
    assert CountSeries().where('pool', '==', 0).build() == 'count series where pool == 0'
    for args, exc in [(('bogus', '==', 1), ValueError), (('type', '~', 'float'), ValueError),
                      (('type', '==', 'float; drop'), ValueError),
                      (('length', '>', '5 or 1'), TypeError), (('length', '>', True), TypeError),
                      (('name', '==', 5), TypeError), (('start', '>', 'now; x'), ValueError),
                      (('name', 'or', 'x'), ValueError)]:
        with pytest.raises(exc):
            Select().from_all().where(*args)


async def test_builder_against_the_embedded_server() -> None:
    from siridb.connector import SiriDBClient
    from siridb.embedded import EmbeddedServer

    async with EmbeddedServer(port=0, databases={'dbtest': 's'}) as srv:
        async with SiriDBClient('iris', 'siri', 'dbtest', [(srv.host, srv.port)]) as c:
            names = HOSTILE + ['decoy', 'aggr', 'aggr2']
            await c.write_many([(n, 1447250938 + i, i) for n in names for i in range(3)])
            await c.write_many([('log', 1447250950, 'text')])
            for name in HOSTILE:
                assert await c.query(Select('count()').from_series(name)) == {
                    name: [[1447250940, 3]]}, name
                assert await c.query(Select('last()').from_regex(re.escape(name))) == {
                    name: [[1447250940, 2]]}, name
                assert await c.query(CountSeries().from_series(name)) == {'series': 1}
            when = dt.datetime.fromtimestamp(1447250939, dt.timezone.utc)
            res = await c.query(Select().from_series('aggr').between(when, 1447250940.0))
            assert res == {'aggr': [[1447250939, 1]]}
            res = await c.query(Select('count()').from_regex('aggr.*').where('type', '==',
                                                                             'integer'))
            assert set(res) == {'aggr', 'aggr2'}
            res = await c.query(Select('count()').from_all().where('type', '==', 'string'))
            assert set(res) == {'log'}
            res = await c.query(ListSeries('name', 'length').from_regex('aggr.*')
                                .where('name', '!=', 'aggr2'))
            assert res == {'columns': ['name', 'length'], 'series': [['aggr', 3]]}
            merged = await c.query(Select().from_(series('aggr') | regex('aggr2'))
                                   .merge_as('m " x', using='sum(1h)'))
            assert list(merged) == ['m " x']
            assert await c.query(Select().from_(regex('aggr.*') - series('aggr'))
                                 .head(1)) == {'aggr2': [[1447250938, 0]]}


_NAMES = st.text(alphabet=st.characters(blacklist_characters='\x00'), min_size=1,
                 max_size=30)


@settings(max_examples=300, deadline=None)
@given(_NAMES, _NAMES, _NAMES, _NAMES)
def test_any_names_parse_back_to_exactly_themselves(name: str, other: str, prefix: str,
                                                    merged: str) -> None:
    """Through a SiriDB grammar parser (the embedded server's): whatever the
    names hold, the query selects exactly them, with exactly that prefix, merge
    name and where string, and nothing else."""
    from siridb.embedded.query.parser import parse

    q = (Select('count()', prefix=prefix).from_series(name, other)
         .where('name', '!=', other).after('now - 1d').merge_as(merged, using='sum(1h)'))
    node = parse(q.build())
    assert node['kind'] == 'select'
    assert node['selector'] == ('set', ('name', name), [(',', ('name', other))])
    assert node['aggrs'][0]['prefix'] == prefix
    assert node['where'] == ('cmp', 'name', '!=', ('str', other))
    assert node['merge'][0] == merged
    assert node['range'][0] == 'after'


@settings(max_examples=300, deadline=None)
@given(_NAMES)
def test_escaped_regex_parses_back_to_a_pattern_for_exactly_that_name(name: str) -> None:
    from siridb.embedded.query.parser import parse

    node = parse(Select().from_regex(re.escape(name)).build())
    kind, body, ignore_case = node['selector']
    assert (kind, ignore_case) == ('regex', False)
    assert re.fullmatch(body, name, re.S)


_AGG_TOKENS = ['mean', 'max', 'filter', 'limit', '(', ')', '(', ')', '1h', '5', '=>', ' ',
               ',', '"', "'", '/', '\\', '`', '*', '~', '-', '#', 'from', 'merge', 'as',
               'where', 'x', '"a"', "'b'", '/c/', '\n', ';', 'using', 'and']


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_AGG_TOKENS), min_size=1, max_size=12),
       st.booleans())
def test_an_accepted_aggregate_stays_inside_its_column(tokens: list, as_merge: bool) -> None:
    """Whatever text the aggregate check lets through, the statement still has
    exactly one column, selects exactly "s" and has no other clause (or fails
    to parse: a QueryError, never another meaning)."""
    from siridb.embedded.query.parser import parse

    text = ''.join(tokens)
    try:
        q = (Select().from_series('s').merge_as('m', using=text) if as_merge
             else Select(text).from_series('s'))
    except ValueError:
        return
    try:
        node = parse(q.build())
    except Exception as exc:  # the embedded parser's QueryFailure
        assert type(exc).__name__ == 'QueryFailure', exc
        return
    assert node['kind'] == 'select' and len(node['aggrs']) == 1
    assert node['selector'] == ('name', 's')
    assert node['where'] is None and node['range'] is None
    assert node['merge'] == (('m', node['merge'][1]) if as_merge else None)


_TIME_TOKENS = ['now', '1d', '5', '-', '+', '*', '/', '%', '(', ')', ' ', '"', "'",
                "'2020-01-01'", '"x"', 'from', 'and', 'merge', ';', '\n', '#', 'select', ',',
                '`', '\\', '2w']


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_TIME_TOKENS), min_size=1, max_size=8))
def test_an_accepted_time_expression_stays_a_time_bound(tokens: list) -> None:
    from siridb.embedded.query.parser import parse

    text = ''.join(tokens)
    try:
        q = Select().from_series('s').between(text, text)
    except ValueError:
        return
    try:
        node = parse(q.build())
    except Exception as exc:
        assert type(exc).__name__ == 'QueryFailure', exc
        return
    assert node['selector'] == ('name', 's') and len(node['aggrs']) == 1
    assert node['where'] is None and node['merge'] is None
    assert node['range'][0] == 'between'
