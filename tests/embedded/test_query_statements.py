"""Each statement family of the embedded query language, run through execute()."""
from __future__ import annotations

from typing import Any, Dict, Optional

import pytest

from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.query import execute
from siridb.embedded.query.listing import access_text
from siridb.embedded.store import ACCESS, ACCESS_PROFILES, Database, User


def make_ctx(precision: str = 's') -> QueryContext:
    db = Database('dbtest', precision)
    insert(db, {
        'aggr': [[100, 5], [110, 8], [120, 1], [130, 12]],
        'aggr2': [[100, 7.5], [110, 12.0], [120, 1.5], [130, 18.0]],
        'log': [[105, 'one two'], [115, 'two']],
        'other': [[50, 1]],
    })
    return QueryContext(db, db.users['iris'], ServerInfo('127.0.0.1:9000'))


@pytest.fixture
def ctx() -> QueryContext:
    return make_ctx()


def q(ctx: QueryContext, query: str, tp: Optional[int] = None) -> Dict[str, Any]:
    return execute(ctx, query, tp)


def err(ctx: QueryContext, query: str, tp: int = 65) -> str:
    with pytest.raises(QueryFailure) as info:
        execute(ctx, query, None)
    assert info.value.tp == tp, info.value.msg
    return info.value.msg


def names(ctx: QueryContext, selector: str) -> set:  # type: ignore[type-arg]
    return set(q(ctx, f'select count() from {selector}'))


# -- selectors -------------------------------------------------------------------------

def test_regex_is_anchored_and_case_flag(ctx: QueryContext) -> None:
    assert names(ctx, '/aggr/') == {'aggr'}
    assert names(ctx, '/agg/') == set()
    assert names(ctx, '/AGGR.*/i') == {'aggr', 'aggr2'}


def test_set_operators_left_to_right(ctx: QueryContext) -> None:
    assert names(ctx, '"aggr", "log"') == {'aggr', 'log'}
    assert names(ctx, '* - /aggr.*/') == {'log', 'other'}
    assert names(ctx, '/aggr.*/ & /.*2/') == {'aggr2'}
    assert names(ctx, '/aggr.*/ ^ /aggr2|log/') == {'aggr', 'log'}
    assert names(ctx, '"aggr" | "log" - "aggr"') == {'log'}
    assert names(ctx, '"aggr" | ("log" - "aggr")') == {'aggr', 'log'}
    assert names(ctx, 'all - "other"') == {'aggr', 'aggr2', 'log'}


def test_regex_compile_error(ctx: QueryContext) -> None:
    assert err(ctx, 'select * from /(bla/') == \
        "Cannot compile regular expression '^(bla$': missing closing parenthesis"


def test_unknown_group(ctx: QueryContext) -> None:
    assert err(ctx, 'select * from `nope`') == "Cannot find group or tag 'nope'"


def test_where_filters(ctx: QueryContext) -> None:
    assert names(ctx, '* where type == string') == {'log'}
    assert names(ctx, '* where type != string and length > 3') == {'aggr', 'aggr2'}
    assert names(ctx, '* where name ~ "agg"') == {'aggr', 'aggr2'}
    assert names(ctx, '* where name !~ "agg"') == {'log', 'other'}
    assert names(ctx, '* where length == 1 or type == float') == {'aggr2', 'other'}
    assert names(ctx, '* where start < 100') == {'other'}
    assert names(ctx, '* where end >= 130') == {'aggr', 'aggr2'}
    assert names(ctx, '* where pool == 0 and (name == "log" or name == "other")') == \
        {'log', 'other'}


# -- select ----------------------------------------------------------------------------

def test_time_ranges(ctx: QueryContext) -> None:
    assert q(ctx, 'select * from "aggr" after 110')['aggr'] == [[110, 8], [120, 1],
                                                                 [130, 12]]
    assert q(ctx, 'select * from "aggr" before 110')['aggr'] == [[100, 5]]
    assert q(ctx, 'select * from "aggr" between 110 and 130')['aggr'] == [[110, 8],
                                                                          [120, 1]]
    assert q(ctx, 'select * from "aggr" head 1')['aggr'] == [[100, 5]]
    assert q(ctx, 'select * from "aggr" tail 1')['aggr'] == [[130, 12]]
    assert q(ctx, 'select * from "aggr" after 1000') == {'aggr': []}
    assert err(ctx, 'select * from "aggr" between 2 and 1') == \
        'Start time (2) should not be greater than end time (1)'
    assert err(ctx, 'select * from "aggr" tail 0') == \
        'Tail must be a value between 1 and 1000000, got 0'


def test_time_precision_conversion(ctx: QueryContext) -> None:
    for tp, factor in ((0, 1), (1, 10 ** 3), (2, 10 ** 6), (3, 10 ** 9)):
        assert q(ctx, 'select * from "aggr" head 1', tp)['aggr'] == [[100 * factor, 5]]
    ns = make_ctx('ns')
    insert(ns.db, {'x': [[1_999_999_999, 1]]})
    assert q(ns, 'select * from "x"', 0)['x'] == [[1, 1]]  # floor, exact
    assert q(ns, 'select * from "x"', 1)['x'] == [[1999, 1]]
    assert q(ns, 'select * from "x"', None)['x'] == [[1_999_999_999, 1]]


def test_invalid_time_precision(ctx: QueryContext) -> None:
    with pytest.raises(QueryFailure) as info:
        execute(ctx, 'show version', 7.0)
    assert info.value.tp == 65


def test_aggregates_prefix_suffix_and_uniqueness(ctx: QueryContext) -> None:
    res = q(ctx, 'select min() prefix "min-", max() prefix "max-" from "aggr"')
    assert res == {'min-aggr': [[130, 1]], 'max-aggr': [[130, 12]]}
    res = q(ctx, 'select first(), last() suffix "-l" from "aggr"')
    assert res == {'aggr': [[100, 5]], 'aggr-l': [[130, 12]]}
    assert err(ctx, 'select min(), max() from "aggr"') == (
        'When using multiple select methods, add a prefix and/or suffix to the selection '
        'to make them unique.')


def test_aggregate_errors_reach_the_client(ctx: QueryContext) -> None:
    assert err(ctx, 'select mean() from "log"') == 'Cannot use mean() on string type.'
    assert err(ctx, 'select mean(0) from "aggr"') == \
        'Group by time must be an integer value larger than zero.'
    assert err(ctx, 'select offset(5) from "aggr"') == \
        'Offset must be used after an aggregation method.'


def test_filters(ctx: QueryContext) -> None:
    assert q(ctx, 'select filter(> 7) from "aggr"')['aggr'] == [[110, 8], [130, 12]]
    assert q(ctx, 'select filter(~"one") from "log"')['log'] == [[105, 'one two']]
    # a filter regex is anchored like a selector (SiriDB's own tests: /l.*/ does not
    # take 'another line'); == and != may precede it
    assert q(ctx, 'select filter(/tw.*/) from "log"')['log'] == [[115, 'two']]
    assert q(ctx, 'select filter(/.*tw.*/) from "log"')['log'] == [[105, 'one two'],
                                                                  [115, 'two']]
    assert q(ctx, 'select filter(== /tw.*/) from "log"')['log'] == [[115, 'two']]
    assert q(ctx, 'select filter(!= /tw.*/) from "log"')['log'] == [[105, 'one two']]
    assert q(ctx, 'select filter(/TWO/i) from "log"')['log'] == [[115, 'two']]
    for op in ('~', '!~', '>', '<='):
        assert err(ctx, f'select filter({op} /tw.*/) from "log"').startswith(
            'Regular expressions can only be used with')
    assert err(ctx, 'select filter(/x/) from "aggr"') == \
        'Cannot use a string filter on number type.'
    # limit takes an expression (SiriDB's own tests: limit(6 - 6, mean))
    assert err(ctx, 'select limit(6 - 6, mean) from "aggr"') == \
        'Limit must be an integer value larger than zero.'
    assert q(ctx, 'select limit(1 + 1, count) from "aggr"') == \
        q(ctx, 'select limit(2, count) from "aggr"')
    assert q(ctx, 'select filter(> 7.5) from "aggr2"')['aggr2'] == [[110, 12.0],
                                                                  [130, 18.0]]


def test_merge(ctx: QueryContext) -> None:
    res = q(ctx, 'select * from "aggr", "aggr2" merge as "m"')
    assert res['m'][:2] == [[100, 7.5], [100, 5.0]]  # later series first, promoted
    assert all(isinstance(v, float) for _, v in res['m'])
    assert q(ctx, 'select * from "aggr", "other" merge as "m"')['m'][0] == [50, 1]
    assert q(ctx, 'select * from "aggr", "aggr2" merge as "m" using count()') == \
        {'m': [[130, 8]]}
    assert q(ctx, 'select * from /none/ merge as "e"') == {'e': []}
    assert err(ctx, 'select * from "aggr", "log" merge as "x"') == \
        'Cannot merge string and number series.'
    assert err(ctx, 'select * from "aggr" merge as ""') == \
        'Error while merging points. Make sure the destination series name is valid.'
    res = q(ctx, 'select min() prefix "a-", max() prefix "b-" from /aggr.*/ merge as "m"')
    assert res == {'a-m': [[130, 1.5], [130, 1.0]], 'b-m': [[130, 18.0], [130, 12.0]]}


def test_select_points_limit(ctx: QueryContext) -> None:
    q(ctx, 'alter database set select_points_limit 3')
    # every returned point counts, the only series' too (issue 13)
    assert err(ctx, 'select * from "aggr"') == (
        'Query has reached the maximum number of selected points (3). Please use '
        'another time window, an aggregation function or select less series to '
        'reduce the number of points.')
    assert len(q(ctx, 'select * from "aggr" head 3')['aggr']) == 3
    msg = err(ctx, 'select * from "aggr", "aggr2"')
    assert msg.startswith('Query has reached the maximum number of selected points (3).')
    assert err(ctx, 'select * from "aggr" head 4') == \
        'Head must be a value between 1 and 3, got 4'


def test_timeit(ctx: QueryContext) -> None:
    res = q(ctx, 'timeit count series')
    assert res['series'] == 4
    (entry,) = res['__timeit__']
    assert entry['server'] == '127.0.0.1:9000' and isinstance(entry['time'], float)


def test_empty_query_and_help(ctx: QueryContext) -> None:
    assert isinstance(q(ctx, '')['calc'], int)
    assert q(ctx, '', 1)['calc'] > 10 ** 12
    assert 'select' in q(ctx, 'help select')['help']
    # unknown topics are refused by the grammar, as the real server does
    assert err(ctx, 'help nothing').startswith(
        'Query error at position 5. Expecting access, alter, count, create, drop, ')


# -- list / count / show ---------------------------------------------------------------

def test_list_series_columns_limit_where(ctx: QueryContext) -> None:
    res = q(ctx, 'list series name, type, length, start, end, pool /aggr.*/')
    assert res == {'columns': ['name', 'type', 'length', 'start', 'end', 'pool'],
                   'series': [['aggr', 'integer', 4, 100, 130, 0],
                              ['aggr2', 'float', 4, 100, 130, 0]]}
    assert len(q(ctx, 'list series limit 2')['series']) == 2
    assert q(ctx, 'list series where type == string') == {'columns': ['name'],
                                                          'series': [['log']]}
    assert err(ctx, 'list series limit 10001') == (
        'Limit must be a value between 1 and 10000 but received: 10001 (optionally the '
        "limit can be changed, see 'help alter database')")


def test_count_statements(ctx: QueryContext) -> None:
    assert q(ctx, 'count series') == {'series': 4}
    assert q(ctx, 'count series /aggr.*/') == {'series': 2}
    assert q(ctx, 'count series length') == {'series_length': 11}
    assert q(ctx, 'count series where length > 3') == {'series': 2}
    assert q(ctx, 'count users') == {'users': 1}
    assert q(ctx, 'count groups') == {'groups': 0}
    assert q(ctx, 'count tags') == {'tags': 0}
    assert q(ctx, 'count pools') == {'pools': 1}
    assert q(ctx, 'count servers') == {'servers': 1}


def test_list_pools_and_servers(ctx: QueryContext) -> None:
    assert q(ctx, 'list pools') == {'columns': ['pool', 'servers', 'series'],
                                    'pools': [[0, 1, 4]]}
    res = q(ctx, 'list servers')
    assert res['columns'] == ['name', 'pool', 'version', 'online', 'status']
    assert res['servers'] == [['127.0.0.1:9000', 0, '2.0.55', True, 'running']]
    res = q(ctx, 'list servers address, port, uptime where online == true')
    assert res['servers'][0][:2] == ['127.0.0.1', 9000]
    # the columns SiriDB's own server tests list and filter on
    assert q(ctx, 'list servers active_tasks where active_tasks == 1 and idle_time >= 0 '
                  'and idle_percentage <= 100')['servers'] == [[1]]
    assert q(ctx, 'list servers log_level')['servers'] == [['warning']]  # SiriDB's default level
    assert q(ctx, 'count servers where active_handles > 1') == {'servers': 1}
    uuid = q(ctx, 'list servers uuid')['servers'][0][0]
    assert q(ctx, 'show uuid')['data'] == [{'name': 'uuid', 'value': uuid}]
    res = q(ctx, 'list servers buffer_size, sync_progress, reindex_progress')
    assert res['servers'] == [[1024, 'not available', 'not available']]


def test_show(ctx: QueryContext) -> None:
    res = q(ctx, 'show')
    props = {d['name']: d['value'] for d in res['data']}
    assert props['dbname'] == 'dbtest' and props['time_precision'] == 's'
    assert props['who_am_i'] == 'iris' and props['version'] == '2.0.55'
    assert props['drop_threshold'] == 1.0 and props['list_limit'] == 10000
    assert props['duration_num'] == 604800 and props['timezone'] == 'NAIVE'
    assert len(props) == len(res['data']) > 30
    assert q(ctx, 'show pool, server')['data'] == [
        {'name': 'pool', 'value': 0}, {'name': 'server', 'value': '127.0.0.1:9000'}]
    assert q(make_ctx('ms'), 'show duration_log')['data'][0]['value'] == 86400000


# -- groups and tags -------------------------------------------------------------------

def test_groups(ctx: QueryContext) -> None:
    assert q(ctx, 'create group `g` for /aggr.*/') == \
        {'success_msg': "Successfully created group 'g'."}
    assert err(ctx, 'create group `g` for /x/') == "Group 'g' already exists."
    assert err(ctx, 'create group `h` for /(x/').startswith('Cannot compile')
    assert q(ctx, 'list groups name, series, expression')['groups'] == [['g', 2,
                                                                         '/aggr.*/']]
    assert names(ctx, '`g`') == {'aggr', 'aggr2'}
    insert(ctx.db, {'aggr3': [[1, 1]]})  # membership follows new series at once
    assert names(ctx, '`g`') == {'aggr', 'aggr2', 'aggr3'}
    q(ctx, 'alter group `g` set expression /LOG/i')
    assert names(ctx, '`g`') == {'log'}
    assert q(ctx, 'alter group `g` set name "h"') == \
        {'success_msg': "Successfully updated group 'h'."}
    assert err(ctx, 'alter group `g` set name "x"') == "Cannot find group: 'g'"
    assert q(ctx, 'drop group `h`') == {'success_msg': "Successfully dropped group 'h'."}
    assert err(ctx, 'drop group `h`') == "Group 'h' does not exist."
    # the texts of SiriDB's own tests (plural even for 1)
    assert err(ctx, 'create group `` for /x/') == \
        'Group name should be at least 1 characters.'
    assert err(ctx, 'create group `%s` for /x/' % ('a' * 300)) == \
        'Group name should be at most 255 characters.'
    # a trailing comment is fine
    assert q(ctx, 'create group `all` for /.*/ # bla') == \
        {'success_msg': "Successfully created group 'all'."}


def test_tags(ctx: QueryContext) -> None:
    assert q(ctx, 'alter series "aggr", "log" tag `t`') == \
        {'success_msg': 'Successfully tagged 2 series.'}
    assert q(ctx, 'alter series /aggr.*/ tag `t`') == \
        {'success_msg': 'Successfully tagged 2 series.'}
    assert q(ctx, 'list tags name, series') == {'columns': ['name', 'series'],
                                                'tags': [['t', 3]]}
    assert q(ctx, 'alter series "log" untag `t`') == \
        {'success_msg': 'Successfully untagged 1 series.'}
    assert names(ctx, '`t`') == {'aggr', 'aggr2'}
    assert q(ctx, 'alter series * where type == float untag `t`')['success_msg'] == \
        'Successfully untagged 1 series.'
    assert q(ctx, 'alter tag `t` set name "u"') == \
        {'success_msg': "Successfully updated tag 'u'."}
    assert err(ctx, 'alter tag `t` set name "v"') == "Cannot find tag: 't'"
    q(ctx, 'drop series "aggr"')
    assert q(ctx, 'list tags name, series')['tags'] == [['u', 0]]
    assert q(ctx, 'drop tag `u`') == {'success_msg': "Successfully dropped tag 'u'."}
    assert err(ctx, 'drop tag `u`') == "Tag 'u' does not exist."


def test_groups_and_tags_share_a_namespace(ctx: QueryContext) -> None:
    q(ctx, 'create group `n` for /x/')
    assert err(ctx, 'alter series "aggr" tag `n`') == \
        'Cannot create tag `n` because a group with this name already exist.'
    q(ctx, 'alter series "aggr" tag `t`')
    assert err(ctx, 'create group `t` for /x/') == "Tag 't' already exists."
    assert err(ctx, 'alter group `n` set name "t"') == "Tag 't' already exists."
    assert err(ctx, 'alter tag `t` set name "n"') == "Group 'n' already exists."


# -- users and access ------------------------------------------------------------------

def test_access_text() -> None:
    assert access_text(ACCESS_PROFILES['full']) == 'full'
    assert access_text(ACCESS_PROFILES['read'] | ACCESS['insert']) == 'read and insert'
    # the largest profile, then the other rights alphabetically (SiriDB's own tests)
    assert access_text(ACCESS_PROFILES['read'] | ACCESS['insert'] | ACCESS['drop']) == \
        'read, drop and insert'
    assert access_text(ACCESS['show'] | ACCESS['count'] | ACCESS['alter'] |
                       ACCESS['drop']) == 'alter, count, drop and show'
    assert access_text(ACCESS['show']) == 'show'
    assert access_text(0) == 'no access'


def test_where_access_compares_rights(ctx: QueryContext) -> None:
    # the sequence of SiriDB's own user tests
    q(ctx, 'create user "sasientje" set password "blabla"')
    assert q(ctx, 'list users where access < modify')['users'] == [['sasientje', 'no access']]
    q(ctx, 'grant modify to user "sasientje"')
    assert q(ctx, 'list users where access < full')['users'] == [['sasientje', 'modify']]
    assert q(ctx, 'list users where access >= modify')['users'] == \
        [['iris', 'full'], ['sasientje', 'modify']]
    q(ctx, 'revoke write from user "sasientje"')
    q(ctx, 'grant show, count to user "sasientje"')
    assert q(ctx, 'list users where access < modify')['users'] == \
        [['sasientje', 'alter, count, drop and show']]
    assert q(ctx, 'count users where access == full') == {'users': 1}
    # access compares with rights only (the real grammar has no string form)
    assert err(ctx, 'list users where access ~ "count"').startswith(
        'Query error at position 24. Expecting == != <= >= < >')


def test_users(ctx: QueryContext) -> None:
    assert q(ctx, 'create user "bob" set password "secret"') == \
        {'success_msg': "Successfully created user 'bob'."}
    assert err(ctx, 'create user "bob" set password "secret"') == \
        "User 'bob' already exists."
    assert err(ctx, 'create user "b" set password "secret"') == \
        'User name should be at least 2 characters.'
    assert err(ctx, 'create user "bobby" set password "abc"') == \
        'Password should be at least 4 characters.'
    assert q(ctx, 'list users')['users'] == [['iris', 'full'], ['bob', 'no access']]
    q(ctx, 'grant read, insert to user "bob"')
    assert q(ctx, 'list users name, access')['users'][1] == ['bob', 'read and insert']
    assert q(ctx, 'revoke insert from user "bob"') == \
        {'success_msg': "Successfully revoked permissions from user 'bob'."}
    assert q(ctx, 'grant modify to user "bob"') == \
        {'success_msg': "Successfully granted permissions to user 'bob'."}
    assert q(ctx, 'list users where access == modify')['users'] == [['bob', 'modify']]
    assert q(ctx, 'alter user "bob" set password "other"') == \
        {'success_msg': "Successfully updated user 'bob'."}
    assert ctx.db.users['bob'].password == 'other'
    assert q(ctx, 'alter user "bob" set name "robert"') == \
        {'success_msg': "Successfully updated user 'robert'."}
    assert err(ctx, 'alter user "bob" set password "x1234"') == "Cannot find user: 'bob'"
    assert err(ctx, 'grant read to user "bob"') == "Cannot find user: 'bob'"
    assert err(ctx, 'drop user "iris"') == 'Cannot drop your own user.'
    assert q(ctx, 'drop user "robert"') == \
        {'success_msg': "Successfully dropped user 'robert'."}
    assert err(ctx, 'drop user "robert"') == "User 'robert' does not exist."


@pytest.mark.parametrize('query,right', [
    ('select * from "aggr"', 'select'), ('list series', 'list'), ('count series', 'count'),
    ('show version', 'show'), ('create group `g` for /x/', 'create'),
    ('alter database set list_limit 5', 'alter'), ('alter series "aggr" tag `t`', 'alter'),
    ('drop series "aggr"', 'drop'), ('grant read to user "iris"', 'grant'),
    ('revoke read from user "iris"', 'revoke'), ('create user "abc" set password "abcd"',
                                                 'create'),
])
def test_access_denied(query: str, right: str) -> None:
    ctx = make_ctx()
    nobody = User('nobody', 'pw', 0)
    ctx.db.users['nobody'] = nobody
    ctx.user = nobody
    assert err(ctx, query, tp=69) == \
        f"Access denied. User 'nobody' has no '{right}' privileges."
    assert isinstance(q(ctx, '1 + 1')['calc'], int)  # calc needs no right
    assert 'help' in q(ctx, 'help')


def test_read_profile_can_read_but_not_write() -> None:
    ctx = make_ctx()
    ctx.user = User('ro', 'pw', ACCESS_PROFILES['read'])
    assert q(ctx, 'select * from "aggr" head 1') == {'aggr': [[100, 5]]}
    assert err(ctx, 'drop series "aggr"', tp=69).endswith("has no 'drop' privileges.")


# -- drop series and alter database -----------------------------------------------------

def test_drop_series_threshold(ctx: QueryContext) -> None:
    assert err(ctx, 'drop series /.*/') == (
        "This query would drop 100.00% of the series in pool 0. Add 'set "
        "ignore_threshold true' to the query statement if you really want to do this.")
    q(ctx, 'alter database set drop_threshold 0.5')
    assert err(ctx, 'drop series /aggr.*/').startswith('This query would drop 50.00%')
    assert q(ctx, 'drop series "aggr"') == {'success_msg': 'Successfully dropped 1 series.'}
    assert q(ctx, 'drop series "nope"') == {'success_msg': 'Successfully dropped 0 series.'}
    assert q(ctx, 'drop series * set ignore_threshold true') == \
        {'success_msg': 'Successfully dropped 3 series.'}
    assert q(ctx, 'count series') == {'series': 0}


def test_drop_threshold_is_per_pool() -> None:
    ctx = make_ctx()
    ctx.db.series['aggr'].pool = 1
    ctx.db.series['aggr2'].pool = 1
    assert err(ctx, 'drop series "aggr", "aggr2"').startswith(
        'This query would drop 100.00% of the series in pool 1.')


def test_alter_database(ctx: QueryContext) -> None:
    assert q(ctx, 'alter database set list_limit 5000') == \
        {'success_msg': 'Successfully changed list limit from 10000 to 5000.'}
    assert q(ctx, 'alter database set select_points_limit 10') == \
        {'success_msg': 'Successfully changed select points limit from 1000000 to 10.'}
    assert q(ctx, 'alter database set drop_threshold 0.25') == \
        {'success_msg': 'Successfully changed drop_threshold from 1 to 0.25.'}
    assert err(ctx, 'alter database set drop_threshold 1.5') == (
        'Drop threshold should be a value between or equal to 0 and 1.0 but got 1.500')
    assert err(ctx, 'alter database set list_limit 0').startswith(
        'List limit should be a value greater than or equal to 1000')
    assert q(ctx, "alter database set timezone 'Europe/Amsterdam'") == {
        'success_msg': "Successfully changed timezone from 'NAIVE' to 'Europe/Amsterdam'."}
    assert q(ctx, "'2015-11-11'") == {'calc': 1447196400}
    assert err(ctx, "alter database set timezone 'Mars/Olympus'") == (
        "Unknown time zone: 'Mars/Olympus'. (see 'help timezones' for a list of valid "
        'time zones)')
    assert ctx.db.timezone == 'Europe/Amsterdam'
    q(ctx, "alter database set timezone 'NAIVE'")
    assert q(ctx, "'2015-11-11'") == {'calc': 1447200000}


# -- cluster / pools down ------------------------------------------------------------------

def test_pool_down_texts(ctx: QueryContext) -> None:
    ctx.pool_down = True
    assert err(ctx, 'select * from "aggr"', tp=68) == \
        'At least one pool is lacking an accessible server to process this request'
    for query in ('count series', 'list series', 'drop series "aggr"',
                  'alter series "aggr" tag `t`'):
        assert err(ctx, query, tp=68) == \
            'At least one pool is lacking an online server to process this request'
    assert q(ctx, 'show version')['data'][0]['value'] == '2.0.55'
    assert q(ctx, 'count users') == {'users': 1}


def test_mutations_replay_deterministically() -> None:
    """The server logs mutating statements and replays them: same text, same state."""
    script = ['create group `g` for /aggr.*/', 'alter series "log" tag `t`',
              'create user "bob" set password "secret"', 'grant write to user "bob"',
              'alter group `g` set name "h"', "alter database set timezone 'UTC'",
              'alter database set drop_threshold 0.75', 'drop series "other"']
    states = []
    for _ in range(2):
        ctx = make_ctx()
        for stmt in script:
            q(ctx, stmt)
        db = ctx.db
        states.append((sorted(db.series), {k: g.expression for k, g in db.groups.items()},
                       {k: sorted(v) for k, v in db.tags.items()},
                       {u.name: (u.password, u.access) for u in db.users.values()},
                       db.timezone, db.drop_threshold))
    assert states[0] == states[1]


def test_alter_server_log_level() -> None:
    # the texts and the sequence of SiriDB's own server tests
    db = Database('t', 's')
    servers = [ServerInfo('localhost:9010'), ServerInfo('localhost:9011', pool=1)]
    ctx = QueryContext(db, db.users['iris'], servers[0], servers)
    for port in (9010, 9011):
        assert q(ctx, f'alter server "localhost:{port}" set log_level error') == {
            'success_msg': f"Successfully set log level to 'error' on 'localhost:{port}'."}
    assert q(ctx, 'list servers log_level')['servers'] == [['error'], ['error']]
    for (uuid,) in q(ctx, 'list servers uuid')['servers']:
        q(ctx, f'alter server {uuid} set log_level debug')
    assert q(ctx, 'list servers log_level')['servers'] == [['debug'], ['debug']]
    assert q(ctx, 'alter servers set log_level info') == {
        'success_msg': "Successfully set log level to 'info' on 2 servers."}
    assert q(ctx, 'alter servers where pool == 1 set log_level warning') == {
        'success_msg': "Successfully set log level to 'warning' on 1 servers."}
    assert q(ctx, 'list servers log_level')['servers'] == [['info'], ['warning']]
    assert q(ctx, 'show log_level')['data'] == [{'name': 'log_level', 'value': 'info'}]
    assert err(ctx, 'alter server "localhost:{}" set log_level unknown') == (
        'Query error at position 42. Expecting debug, info, warning, error or critical')
    assert err(ctx, 'alter server "nope:1" set log_level info') == \
        "Cannot find server: 'nope:1'"
    ro = QueryContext(db, User('ro', 'secret', ACCESS_PROFILES['read']), servers[0], servers)
    assert err(ro, 'alter servers set log_level info', 69) == \
        "Access denied. User 'ro' has no 'alter' privileges."


@pytest.mark.parametrize('query', ['alter server "127.0.0.1:9000" set backup_mode true',
                                   'drop server "127.0.0.1:9000"'])
def test_unsupported_statements_answer_a_clear_error(ctx: QueryContext, query: str) -> None:
    assert err(ctx, query).startswith('The embedded server does not support ')


def test_shards_hold_only_written_points(ctx: QueryContext) -> None:
    # the number series wait in their buffers; the string series is written at once
    # (more in test_embedded_shards.py)
    assert q(ctx, 'list shards size where type == number limit 1') == {
        'columns': ['size'], 'shards': []}
    assert q(ctx, 'count shards where type == log') == {'shards': 1}


def test_list_target_error_names_every_target(ctx: QueryContext) -> None:
    assert err(ctx, 'list bogus') == ('Query error at position 5. Expecting series, tags, '
                                      'users, shards, groups, servers or pools')


def test_unknown_time_precision_converts_nothing(ctx: QueryContext) -> None:
    # the real server answers as without a precision (grammar.jsonl)
    want = execute(ctx, 'select * from "aggr"', None)
    assert execute(ctx, 'select * from "aggr"', 4) == want
    assert execute(ctx, 'select * from "aggr"', -1) == want


@pytest.mark.parametrize('precision', [1.0, True, '1'])
def test_time_precision_must_be_a_small_int(ctx: QueryContext, precision: Any) -> None:
    with pytest.raises(QueryFailure) as info:
        execute(ctx, 'select * from "aggr"', precision)
    assert info.value.tp == 65
    # the same text as the wire side's check
    assert info.value.msg == f'Invalid time precision: {precision!r} (expecting 0=s, ' \
        '1=ms, 2=us, 3=ns or None)'
