"""The small-insert fast path of validate.pack_insert: same bytes and same
errors as the general checks, taken only for ``{str: [[int, scalar], ...]}``
of at most CHECKED_POINTS points."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siridb.connector.lib import validate
from siridb.connector.lib.codec import packb
from siridb.connector.lib.exceptions import InsertDataError

_ints = st.integers(min_value=-2**63, max_value=2**63 - 1)
_values = st.one_of(_ints, st.floats(allow_nan=False), st.text(max_size=8))
_small = st.dictionaries(st.text(max_size=6),
                         st.lists(st.tuples(_ints, _values).map(list), max_size=8),
                         max_size=8)


@given(_small)
@settings(max_examples=200, deadline=None)
def test_fast_path_packs_like_the_general_path(data: Any) -> None:
    n = sum(len(v) for v in data.values())
    assert validate._is_small_flat(data) == (n <= validate.CHECKED_POINTS)
    assert validate.pack_insert(data) == packb(data)


class _Int(int):
    pass


@pytest.mark.parametrize('data', [
    {'s': [[1, True]]},             # bool: not an exact int/float/str
    {'s': [[_Int(1), 2]]},          # int subclass
    {'s': [[1, None]]},
    {'s': [[1, 2, 3]]},             # three items
    {'s': [[1.5, 2]]},              # float timestamp
    {'s': [[1, [2]]]},              # nested value
    {('t',): [[1, 2]]},             # non-str key
    {'s': [[i, i] for i in range(validate.CHECKED_POINTS + 1)]},
    [{'name': 's', 'points': [[1, 2]]}],
])
def test_other_shapes_take_the_general_path(data: Any) -> None:
    assert not validate._is_small_flat(data)


def test_fast_path_keeps_the_errors() -> None:
    with pytest.raises(InsertDataError, match='64-bit'):
        validate.pack_insert({'s': [[2**63, 1]]})
    with pytest.raises(InsertDataError, match='64-bit'):
        validate.pack_insert({'s': [[1, -2**63 - 1]]})
    deep: Any = 1
    for _ in range(100):
        deep = [deep]
    with pytest.raises(InsertDataError, match='levels deep'):
        validate.pack_insert({'s': [[1, deep]]})
    assert validate.pack_insert({'s': [(1, 2.5)]}) == packb({'s': [[1, 2.5]]})
