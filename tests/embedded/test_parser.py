"""The query parser: statement shapes, pyleri-style error texts, nesting bounds."""
from __future__ import annotations

import pytest

from siridb.embedded.context import QueryFailure
from siridb.embedded.query.parser import MAX_DEPTH, MAX_FLAT_OPS, parse

TIME_START = 'date/time_string, now, single_quote_str, double_quote_str, integer or ('


def error(query: str) -> str:
    with pytest.raises(QueryFailure) as info:
        parse(query)
    assert info.value.tp == 65
    return info.value.msg


@pytest.mark.parametrize('query,msg', [
    ('bogus statement', 'Query error at position 0. Expecting timeit, select, list, count, '
     'alter, create, drop, grant, revoke, show, date/time_string, now, single_quote_str, '
     'double_quote_str, integer, (, help, ? or end_of_statement'),
    ('select * frm "aggr"', 'Query error at position 9. Expecting =>, prefix, suffix, , '
     'or from'),
    ('select * from "aggr" between now and',
     'Query error at position 36. Expecting ' + TIME_START),
])
def test_recorded_parse_errors(query: str, msg: str) -> None:
    assert error(query) == msg


def test_error_position_is_after_whitespace() -> None:
    assert error('select *    frm "x"').startswith('Query error at position 12. ')


def test_error_at_end_of_calc() -> None:
    # a group of tokens is one element, spelled as the real server spells it
    assert error('now now') == ('Query error at position 4. Expecting + - * % / '
                                'or end_of_statement')


def test_single_expected_name() -> None:
    assert error('select * from "a" where type') == (
        'Query error at position 28. Expecting == !=')


def test_keywords_are_case_sensitive() -> None:
    assert error('SELECT * FROM "a"').startswith('Query error at position 0.')


def test_timeit_and_comment() -> None:
    stmt = parse('timeit show version # a comment')
    assert stmt['kind'] == 'show' and stmt['timeit'] is True
    assert stmt['props'] == ['version']
    assert parse('# only a comment')['kind'] == 'empty'
    assert parse('   ')['kind'] == 'empty'


def test_select_shape() -> None:
    stmt = parse('select mean(5m) => offset(60) prefix "p-", count() suffix "-c" from '
                 '"a" | `g` where length > 2 between now - 1d and now merge as "m" using '
                 'max(1h)')
    assert stmt['kind'] == 'select'
    assert [f['fn'] for f in stmt['aggrs'][0]['chain']] == ['mean', 'offset']
    assert stmt['aggrs'][0]['prefix'] == 'p-' and stmt['aggrs'][1]['suffix'] == '-c'
    assert stmt['selector'][0] == 'set'
    assert stmt['range'][0] == 'between'
    assert stmt['merge'][0] == 'm' and stmt['merge'][1][0]['fn'] == 'max'


def test_suffix_before_prefix_is_refused() -> None:
    # the real grammar takes prefix, then suffix, never the other way round
    assert error('select min() suffix "s" prefix "p" from "a"') == (
        'Query error at position 24. Expecting , or from')


def test_quoted_strings_unescape_doubled_quotes() -> None:
    assert parse('select * from "a""b"')['selector'] == ('name', 'a"b')
    assert parse("select * from 'it''s'")['selector'] == ('name', "it's")
    assert parse('select * from `g``x`')['selector'] == ('group', 'g`x')


def test_regex_with_escaped_slash_and_flag() -> None:
    assert parse(r'select * from /a\/b/i')['selector'] == ('regex', r'a\/b', True)


def test_filter_forms() -> None:
    def fn(q: str) -> dict:  # type: ignore[type-arg]
        return parse(f'select {q} from "a"')['aggrs'][0]['chain'][0]
    assert fn('filter(7)')['op'] == '=='
    assert fn('filter(>= -1.5)')['operand'] == ('num', '-1.5')
    assert fn('filter(~ "x")')['operand'] == ('str', 'x')
    assert fn('filter(/x.*/i)')['operand'] == ('regex', 'x.*', True)


def test_list_defaults_and_columns() -> None:
    assert parse('list series')['columns'] == ['name']
    assert parse('list servers')['columns'] == ['name', 'pool', 'version', 'online',
                                                'status']
    stmt = parse('list series name, length /a.*/ where type == integer limit 5')
    assert stmt['columns'] == ['name', 'length']
    assert stmt['limit'] == ('expr', (('int', '5'),), False)


def test_unknown_show_property_is_a_parse_error() -> None:
    assert error('show nothing').startswith('Query error at position 5. Expecting ')


def test_where_depth_limit() -> None:
    parse('select * from "a" where (((((length > 1)))))')  # five levels are fine
    assert error('select * from "a" where ((((((length > 1))))))') == \
        "Max depth reached in 'where' expression!"


def test_parse_error_wins_over_where_depth() -> None:
    msg = error('select * from "a" where ((((((length > 1)))))) bogus')
    assert msg.startswith('Query error at position ')


@pytest.mark.parametrize('query', [
    '(' * 10000 + '1' + ')' * 10000,
    'select * from ' + '(' * 10000 + '"a"' + ')' * 10000,
    'select * from "a" where ' + '(' * 10000 + 'length > 1' + ')' * 10000,
])
def test_deep_nesting_is_refused(query: str) -> None:
    # the real server's text for its parser's recursion limit (SiriDB's own tests)
    assert error(query) == 'Memory allocation error or maximum recursion depth reached.'


def test_nesting_up_to_the_limit_parses() -> None:
    depth = MAX_DEPTH - 1
    assert parse('(' * depth + '1' + ')' * depth)['kind'] == 'calc'


def test_long_flat_expressions_do_not_recurse() -> None:
    # parsed in a loop; the real server refuses 2000 operators with its recursion
    # text (and evaluates no text of 512 characters or more)
    stmt = parse(' + '.join(['1'] * (MAX_FLAT_OPS + 1)))
    assert stmt['expr'][0] == 'expr' and len(stmt['expr'][1]) == 2 * MAX_FLAT_OPS + 1
    assert error(' + '.join(['1'] * 20000)) == \
        'Memory allocation error or maximum recursion depth reached.'
    stmt = parse('select * from ' + ', '.join(['"a"'] * 10000))
    assert len(stmt['selector'][2]) == 9999


def test_help_topics() -> None:
    assert parse('help list series')['topic'] == ['list', 'series']
    assert parse('?')['topic'] == []


def test_group_and_regex_elements_are_not_named_in_expecting() -> None:
    # SiriDB's own tests (itest/test_parentheses.py) expect exactly this text
    assert error('list series /.*/ - ' + '(' * 10 + ')' * 10) == (
        'Query error at position 29. Expecting *, all, single_quote_str, '
        'double_quote_str or (')
    # nothing named at all: the real server still writes "Expecting "
    assert error('create group ') == 'Query error at position 13. Expecting '
