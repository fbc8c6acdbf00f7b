"""Host choice (a pure function), hostlist parsing and the reconnect backoff."""
from __future__ import annotations

import random
from collections import Counter
from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siridb.connector.lib.backoff import Backoff
from siridb.connector.lib.hosts import HostState, choose_host, parse_hostlist


def _hosts(*specs: tuple) -> List[HostState]:
    out = []
    for i, (weight, backup, up) in enumerate(specs):
        h = HostState(f'h{i}', 9000 + i, weight, backup)
        h.up = up
        out.append(h)
    return out


def test_weighted_choice_matches_weights_chi_square() -> None:
    hosts = _hosts((1, False, True), (3, False, True), (9, False, True), (5, True, True))
    rng = random.Random(12345)
    n = 26_000
    counts = Counter(choose_host(hosts, rng, 0.0).host for _ in range(n))  # type: ignore[union-attr]
    assert counts['h3'] == 0  # a backup is never chosen while others are available
    total_weight = 1 + 3 + 9
    chi2 = 0.0
    for name, weight in (('h0', 1), ('h1', 3), ('h2', 9)):
        expected = n * weight / total_weight
        chi2 += (counts[name] - expected) ** 2 / expected
    # df = 2; 13.8 is the 0.999 quantile
    assert chi2 < 13.8, (counts, chi2)


def test_backup_used_only_when_no_other_is_available() -> None:
    hosts = _hosts((1, True, True), (1, False, True), (1, False, True))
    rng = random.Random(1)
    assert {choose_host(hosts, rng, 0.0).host for _ in range(500)} == {'h1', 'h2'}  # type: ignore[union-attr]
    hosts[1].up = False
    hosts[2].inactive_until = 10.0
    assert {choose_host(hosts, rng, 5.0).host for _ in range(50)} == {'h0'}  # type: ignore[union-attr]
    # once the inactive time has passed, the primary is preferred again
    assert {choose_host(hosts, rng, 10.0).host for _ in range(50)} == {'h2'}  # type: ignore[union-attr]


def test_inactive_hosts_only_on_first_attempt_of_a_query() -> None:
    hosts = _hosts((1, False, True), (1, False, False))
    hosts[0].inactive_until = 100.0
    rng = random.Random(2)
    assert choose_host(hosts, rng, 1.0) is None
    chosen = choose_host(hosts, rng, 1.0, allow_any_open=True)
    assert chosen is hosts[0]
    hosts[0].up = False
    assert choose_host(hosts, rng, 1.0, allow_any_open=True) is None


def test_parse_hostlist() -> None:
    hosts = parse_hostlist([('a', 9000), ['b', 9001, {'weight': 9, 'backup': True}],
                            ('c', 9002, {})])
    assert [(h.host, h.port, h.weight, h.backup) for h in hosts] == [
        ('a', 9000, 1, False), ('b', 9001, 9, True), ('c', 9002, 1, False)]
    for bad, exc in [([('a', 9000, {'weight': 0})], ValueError),
                     ([('a', 9000, {'weight': 10})], ValueError),
                     ([('a', 9000, {'weight': 1.5})], ValueError),
                     ([('a', 9000, {'wieght': 2})], ValueError),
                     ([('a', 0)], ValueError),
                     ([('a',)], TypeError),
                     ('a:9000', TypeError),
                     ([], ValueError)]:
        with pytest.raises(exc):
            parse_hostlist(bad)


def test_backoff_doubles_and_caps() -> None:
    b = Backoff(base=1.0, cap=90.0, jitter=0.0)
    assert [b.next_delay() for _ in range(9)] == [1, 2, 4, 8, 16, 32, 64, 90, 90]
    b.reset()
    assert b.next_delay() == 1


def test_backoff_jitter_stays_within_bounds_and_varies() -> None:
    b = Backoff(base=1.0, cap=10.0, jitter=0.2, rng=random.Random(3))
    delays = [b.next_delay() for _ in range(40)]
    nominal = [min(10.0, 2.0 ** i) for i in range(40)]
    assert all(0.8 * n <= d <= n for d, n in zip(delays, nominal))
    assert len({round(d, 6) for d in delays[10:]}) > 20  # not in lockstep
    assert max(delays) <= 10.0
    with pytest.raises(ValueError):
        Backoff(jitter=1.0)


@given(st.lists(st.tuples(st.integers(1, 9), st.booleans(), st.booleans(),
                          st.floats(0, 20)), min_size=1, max_size=8),
       st.floats(0, 20), st.booleans(), st.integers(0, 2 ** 32))
def test_choice_invariants(specs: list, now: float, allow_any: bool, seed: int) -> None:
    hosts = _hosts(*((w, b, up) for w, b, up, _ in specs))
    for h, (_, _, _, inactive_until) in zip(hosts, specs):
        h.inactive_until = inactive_until
    chosen = choose_host(hosts, random.Random(seed), now, allow_any)
    available = [h for h in hosts if h.up and now >= h.inactive_until]
    if chosen is None:
        assert not available and not (allow_any and any(h.up for h in hosts))
    elif available:
        assert chosen in available
        if any(not h.backup for h in available):
            assert not chosen.backup  # backups only when no primary is available
    else:
        assert allow_any and chosen.up  # first attempt of a query: any open one
