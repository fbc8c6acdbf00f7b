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


def _doubling(levels: int) -> Any:
    """A list nested ``levels`` deep whose every level holds the one below
    twice: tiny in memory, 2**levels values once packed."""
    x: Any = [1]
    for _ in range(levels):
        x = [x, x]
    return x


def test_small_inserts_that_refer_to_themselves_are_refused() -> None:
    loop: Any = []
    loop.append(loop)
    loop.append(loop)  # a doubling cycle: a level-by-level walk would explode
    for data in ({'s': [[1, loop]]}, [{'name': 's', 'points': [[1, loop]]}],
                 [loop]):
        with pytest.raises(InsertDataError, match='refers to itself'):
            validate.pack_insert(data)


def test_shared_parts_are_measured_once_and_counted_as_packed() -> None:
    # 40 levels: refused for depth after ~40 visits (not 2**40)
    with pytest.raises(InsertDataError, match='levels deep'):
        validate.pack_insert({'s': [[1, _doubling(40)]]})
    # 26 levels: within the depth bound, but 2**26 values pack to more than
    # the server accepts; refused before qpack spends minutes on it
    with pytest.raises(InsertDataError, match='packs to more than'):
        validate.pack_insert({'s': [[1, _doubling(26)]]})
    # 12 levels: 4096 values, packed as qpack packs it
    data = {'s': [[1, _doubling(12)]]}
    assert validate.pack_insert(data) == packb(data)


def test_big_inserts_are_packed_as_they_are() -> None:
    # more than CHECKED_POINTS points: no nesting measure (the server answers
    # nested values with its own InsertError), same bytes as qpack
    nested: Any = 1
    for _ in range(100):
        nested = [nested]
    data = {'s': [[i, 0.5] for i in range(validate.CHECKED_POINTS)] + [[99, nested]]}
    assert validate.pack_insert(data) == packb(data)


def _chain(inner: Any, levels: int) -> Any:
    for _ in range(levels):
        inner = [inner]
    return inner


def test_a_part_measured_high_up_counts_again_where_it_sits_deeper() -> None:
    # each chain ends in the one made before it; listed so that the short
    # chains are met (and memoized) first, high up, before the long ones
    # reach them again far deeper: ~2,000 levels in a one-point insert
    chains = [_chain(1, 20)]
    for _ in range(100):
        chains.append(_chain(chains[-1], 20))
    for order in (chains, chains[::-1]):
        with pytest.raises(InsertDataError, match='levels deep'):
            validate.pack_insert({'s': [[1, order]]})
    # the same sharing within the bound is fine
    shallow = [_chain(1, 5)]
    shallow.append(_chain(shallow[0], 5))
    data = {'s': [[1, shallow[::-1]]]}
    assert validate.pack_insert(data) == packb(data)


class _Tagged(list):  # type: ignore[type-arg]
    pass


def test_subclass_attributes_are_not_what_qpack_packs() -> None:
    tagged = _Tagged([1, 2])
    tagged.me = tagged  # type: ignore[attr-defined]  # qpack never looks here
    data = {'s': [[1, tagged]]}
    assert validate.pack_insert(data) == packb(data)
    looped = _Tagged()
    looped.append(looped)
    with pytest.raises(InsertDataError, match='refers to itself'):
        validate.pack_insert({'s': [[1, looped]]})
