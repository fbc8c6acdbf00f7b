"""hosts.choose_host (single pass, single-server fast path) picks exactly what
the plain definition picks, with the same random draws."""
from __future__ import annotations

import random
from typing import List, Optional, Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from siridb.connector.lib.hosts import HostState, choose_host, weighted_choice


def _reference(hosts: Sequence[HostState], rng: random.Random, now: float,
               allow_any_open: bool) -> Optional[HostState]:
    available = [h for h in hosts if h.available(now)]
    if available:
        primary = [h for h in available if not h.backup]
        return weighted_choice(primary or available, rng)
    if allow_any_open:
        opened = [h for h in hosts if h.up]
        if opened:
            return rng.choice(opened)
    return None


_host = st.tuples(st.integers(1, 9), st.booleans(), st.booleans(),
                  st.sampled_from([0.0, 5.0, 20.0]))


@given(st.lists(_host, min_size=1, max_size=5), st.booleans(), st.integers(0, 2**32))
@settings(max_examples=300, deadline=None)
def test_choice_matches_the_definition(spec: List[tuple], allow: bool, seed: int) -> None:
    hosts = []
    for i, (weight, backup, up, inactive_until) in enumerate(spec):
        h = HostState(f'h{i}', 9000 + i, weight, backup)
        h.up = up
        h.inactive_until = inactive_until
        hosts.append(h)
    a, b = random.Random(seed), random.Random(seed)
    for _ in range(5):
        assert choose_host(hosts, a, 10.0, allow) is _reference(hosts, b, 10.0, allow)
    assert a.random() == b.random()  # the same number of draws
