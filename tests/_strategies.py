"""Hypothesis strategies shared by the property tests."""
from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


def qpack_values(*, text: int = 20, items: int = 4, keys: int = 8, leaves: int = 12,
                 nan: bool = True) -> st.SearchStrategy[Any]:
    """Values qpack can pack: None, bools, int64 ints, floats (NaN when ``nan``),
    str of at most ``text`` characters, and lists and str-keyed maps of at most
    ``items`` entries (keys of at most ``keys`` characters), ``leaves`` scalars
    in all."""
    scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
               | st.floats(allow_nan=nan) | st.text(max_size=text))
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=items) | st.dictionaries(
            st.text(max_size=keys), inner, max_size=items),
        max_leaves=leaves)
