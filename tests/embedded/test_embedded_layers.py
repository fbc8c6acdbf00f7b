"""Each check of the embedded server lives in one layer: the statement kind
comes from the parser alone, rights and pools from ``access.py`` alone, the
time precision's meaning from the executor alone."""
from __future__ import annotations

from typing import Any, Optional

import pytest

from siridb.embedded.access import POOL_DOWN_INSERT, check_pools, check_right, required_right
from siridb.embedded.context import QueryFailure
from siridb.embedded.query import changes, check_precision, prepare
from siridb.embedded.store import ACCESS_PROFILES, User
from siridb.wire import types as pm


@pytest.mark.parametrize('query,logged', [
    ('drop series "a"', True), ('timeit  drop series "a"', True),
    ('create user "u" set password "p"', True), ('alter database set list_limit 5', True),
    ('grant read to user "iris"', True), ('revoke read from user "iris"', True),
    ('select * from "a"', False), ('list series', False), ('timeit', False),
    ('show dbname', False), ('now - 1h', False), ('count series', False),
])
def test_changes_follows_the_parsed_kind(query: str, logged: bool) -> None:
    assert changes(prepare(query)) is logged


def test_prepare_raises_the_parser_error() -> None:
    with pytest.raises(QueryFailure) as info:
        prepare('drop nothing')
    assert info.value.tp == pm.CPROTO_ERR_QUERY


@pytest.mark.parametrize('value,want', [(None, None), (0, 0), (3, 3), (4, None), (-1, None)])
def test_check_precision(value: Optional[int], want: Optional[int]) -> None:
    assert check_precision(value) == want
    assert check_precision(check_precision(value)) == want  # a checked one stays


@pytest.mark.parametrize('value', [1.0, True, '1'])
def test_check_precision_refuses_other_types(value: Any) -> None:
    with pytest.raises(QueryFailure) as info:
        check_precision(value)
    assert info.value.tp == pm.CPROTO_ERR_QUERY


def test_rights_and_pools() -> None:
    reader = User('reader', 'x', ACCESS_PROFILES['read'])
    assert required_right('insert') == 'insert' and required_right('drop_series') == 'drop'
    assert required_right('calc') is None
    check_right(reader, 'select')
    with pytest.raises(QueryFailure) as info:
        check_right(reader, 'insert')
    assert (info.value.tp, info.value.msg) == (
        pm.CPROTO_ERR_USER_ACCESS, "Access denied. User 'reader' has no 'insert' privileges.")
    check_pools(False, 'insert')
    check_pools(True, 'show')
    check_pools(True, 'list', 'users')
    with pytest.raises(QueryFailure) as info:
        check_pools(True, 'insert')
    assert (info.value.tp, info.value.msg) == (pm.CPROTO_ERR_POOL, POOL_DOWN_INSERT)
    for kind, target in (('select', None), ('list', 'series'), ('drop_series', None)):
        with pytest.raises(QueryFailure) as info:
            check_pools(True, kind, target)
        assert info.value.tp == pm.CPROTO_ERR_POOL
