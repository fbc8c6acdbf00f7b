"""Aggregates against the real server's recorded answers (tests/conformance/query.jsonl).

Each case names a recorded line and the aggregate chain the parser makes of its query;
the expected points are read from the transcript itself, so nothing is retyped here.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, List, Sequence, Tuple

import pytest
from _paths import CONFORMANCE

from siridb.embedded.context import QueryFailure
from siridb.embedded.query.aggregates import AggrSpec, apply, apply_chain, check_chain
from siridb.embedded.store import TYPE_FLOAT, TYPE_INTEGER, TYPE_STRING

# the series the transcripts were recorded on (see tests/conformance/README.md)
AGGR_TS = [1447250938 + 30 * i for i in range(20)]
AGGR_V = [5, 8, 1, 12, 7, 3, 9, 15, 4, 6, 11, 2, 10, 14, 13, 0, 5, 7, 8, 9]
AGGR2_V = [v * 1.5 for v in AGGR_V]
LOG_TS = [1447249033, 1447249040, 1447249050, 1447249060, 1447249070]
LOG_V = ['started', 'one two', 'two', '42', '-0.500000']
MS_TS = [1447250938000 + 1500 * i for i in range(10)]
MS_V = list(range(10))

SERIES: Dict[str, Tuple[List[int], List[Any], int]] = {
    'aggr': (AGGR_TS, AGGR_V, TYPE_INTEGER),
    'aggr2': (AGGR_TS, AGGR2_V, TYPE_FLOAT),
    'log': (LOG_TS, LOG_V, TYPE_STRING),
    'ms': (MS_TS, MS_V, TYPE_INTEGER),
}

M5 = 300


def A(name: str, **kw: Any) -> AggrSpec:  # noqa: N802 - reads like the query
    return AggrSpec(name, **kw)


def _load() -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for fname in ('query.jsonl', 'precision_ms.jsonl'):
        with open(CONFORMANCE / fname, encoding='utf-8') as fp:
            for line in fp:
                rec = json.loads(line)
                out[rec['name']] = rec['response']['payload'] if rec['response'] else None
    return out


RECORDED = _load()

# recorded line name -> (series key in the reply, source series, chain)
CASES: Dict[str, Tuple[str, str, Sequence[AggrSpec]]] = {
    'select mean() from "aggr"': ('aggr', 'aggr', [A('mean')]),
    'select mean(5m) from "aggr"': ('aggr', 'aggr', [A('mean', group=M5)]),
    'select sum(2m) from "aggr"': ('aggr', 'aggr', [A('sum', group=120)]),
    'select count(4m) from "aggr"': ('aggr', 'aggr', [A('count', group=240)]),
    'select median() from "aggr"': ('aggr', 'aggr', [A('median')]),
    'select variance() from "aggr"': ('aggr', 'aggr', [A('variance')]),
    'select pvariance() from "aggr"': ('aggr', 'aggr', [A('pvariance')]),
    'select stddev() from "aggr"': ('aggr', 'aggr', [A('stddev')]),
    'select stddev(5m) from "aggr2"': ('aggr2', 'aggr2', [A('stddev', group=M5)]),
    'select difference() from "aggr"': ('aggr', 'aggr', [A('difference')]),
    'select difference(3m) from "aggr"': ('aggr', 'aggr', [A('difference', group=180)]),
    'select derivative() from "aggr"': ('aggr', 'aggr', [A('derivative')]),
    'select derivative(60) from "aggr"': ('aggr', 'aggr', [A('derivative', ts_unit=60)]),
    'select derivative(60, 5m) from "aggr"': (
        'aggr', 'aggr', [A('derivative', ts_unit=60, group=M5)]),
    'select filter(> 7) from "aggr"': ('aggr', 'aggr', [A('filter', op='>', operand=7)]),
    'select filter(7) from "aggr"': ('aggr', 'aggr', [A('filter', operand=7)]),
    'select filter(!= 5) from "aggr"': ('aggr', 'aggr', [A('filter', op='!=', operand=5)]),
    'select filter(~"two") from "log"': ('log', 'log', [A('filter', op='~', operand='two')]),
    'select filter(!~"two") from "log"': (
        'log', 'log', [A('filter', op='!~', operand='two')]),
    'select filter(/.*one.*/) from "log"': (
        'log', 'log', [A('filter', op='regex', operand=re.compile('.*one.*'))]),
    'select limit(3, mean) from "aggr"': ('aggr', 'aggr', [A('limit', limit=3, fn='mean')]),
    'select limit(50, mean) from "aggr"': (
        'aggr', 'aggr', [A('limit', limit=50, fn='mean')]),
    'select mean(5m) => sum(10m) from "aggr"': (
        'aggr', 'aggr', [A('mean', group=M5), A('sum', group=600)]),
    'select filter(> 5) => count() from "aggr"': (
        'aggr', 'aggr', [A('filter', op='>', operand=5), A('count')]),
    'select max(5m) => difference() from "aggr"': (
        'aggr', 'aggr', [A('max', group=M5), A('difference')]),
    'select mean(5m) => offset(60) from "aggr"': (
        'aggr', 'aggr', [A('mean', group=M5), A('offset', offset=60)]),
    'select mean(3s)': ('ms', 'ms', [A('mean', group=3000)]),
    # two selections in one query: each checked on its own
    'select min(3m) prefix "min-", max(3m) prefix "max-" from "aggr"#min': (
        'min-aggr', 'aggr', [A('min', group=180)]),
    'select min(3m) prefix "min-", max(3m) prefix "max-" from "aggr"#max': (
        'max-aggr', 'aggr', [A('max', group=180)]),
    'select median_low(), median_high() suffix "-h" from "aggr"#low': (
        'aggr', 'aggr', [A('median_low')]),
    'select median_low(), median_high() suffix "-h" from "aggr"#high': (
        'aggr-h', 'aggr', [A('median_high')]),
    'select first(), last() suffix "-l" from "aggr"#first': ('aggr', 'aggr', [A('first')]),
    'select first(), last() suffix "-l" from "aggr"#last': ('aggr-l', 'aggr', [A('last')]),
}


def _same(got: Any, want: Any) -> bool:
    """Equal the way the conformance files compare: floats to 1e-9, int is not float."""
    if isinstance(want, float):
        return isinstance(got, float) and math.isclose(got, want, rel_tol=1e-9)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(
            _same(g, w) for g, w in zip(got, want))
    return type(got) is type(want) and bool(got == want)


@pytest.mark.parametrize('case', sorted(CASES))
def test_matches_recorded_reply(case: str) -> None:
    key, source, chain = CASES[case]
    want = RECORDED[case.split('#')[0]][key]
    ts, values, tp = SERIES[source]
    out_ts, out_v, _ = apply_chain(chain, ts, values, tp)
    got = [[t, v] for t, v in zip(out_ts, out_v)]
    assert _same(got, want), (got, want)


def test_timeval_and_interval_match_recorded_head() -> None:
    # recorded with "head 3" / "head 4": the range is the evaluator's, so slice here
    want = RECORDED['select timeval() from "aggr" head 3']['aggr']
    ts, v, tp = apply(A('timeval'), AGGR_TS[:3], AGGR_V[:3], TYPE_INTEGER)
    assert [[t, x] for t, x in zip(ts, v)] == want and tp == TYPE_INTEGER
    want = RECORDED['select interval() from "aggr" head 4']['aggr']
    ts, v, tp = apply(A('interval'), AGGR_TS[:4], AGGR_V[:4], TYPE_INTEGER)
    assert [[t, x] for t, x in zip(ts, v)] == want and tp == TYPE_INTEGER


def test_last_of_a_string_series_matches_recorded() -> None:
    want = RECORDED['select last() from /aggr/ | /log/']['log']
    ts, v, tp = apply(A('last'), LOG_TS, LOG_V, TYPE_STRING)
    assert [[t, x] for t, x in zip(ts, v)] == want and tp == TYPE_STRING


def test_count_of_every_recorded_series() -> None:
    want = RECORDED['select count() from *']
    for name in ('aggr', 'aggr2', 'log'):
        ts, values, tp = SERIES[name]
        out_ts, out_v, out_tp = apply(A('count'), ts, values, tp)
        assert [[t, x] for t, x in zip(out_ts, out_v)] == want[name]
        assert out_tp == TYPE_INTEGER


@pytest.mark.parametrize('case, source, chain', [
    ('select mean() from "log"', 'log', [A('mean')]),
    ('select filter(> 5) from "log"', 'log', [A('filter', op='>', operand=5)]),
    ('select filter(~"x") from "aggr"', 'aggr', [A('filter', op='~', operand='x')]),
    ('select filter(> "x") from "aggr"', 'aggr', [A('filter', op='>', operand='x')]),
    ('select mean(0) from "aggr"', 'aggr', [A('mean', group=0)]),
    ('select limit(0, mean) from "aggr"', 'aggr', [A('limit', limit=0, fn='mean')]),
    ('select offset(5) from "aggr"', 'aggr', [A('offset', offset=5)]),
])
def test_recorded_error_texts(case: str, source: str, chain: List[AggrSpec]) -> None:
    want = RECORDED[case]['error_msg']
    ts, values, tp = SERIES[source]
    with pytest.raises(QueryFailure) as info:
        apply_chain(chain, ts, values, tp)
    assert info.value.tp == 65 and info.value.msg == want == str(info.value)


def test_check_chain_refuses_up_front_without_data() -> None:
    for chain, text in [
            ([A('mean', group=0)], RECORDED['select mean(0) from "aggr"']['error_msg']),
            ([A('limit', limit=0, fn='mean')],
             RECORDED['select limit(0, mean) from "aggr"']['error_msg']),
            ([A('offset', offset=5)], RECORDED['select offset(5) from "aggr"']['error_msg']),
            ([A('filter', op='>', operand=1), A('offset', offset=5)],
             'Offset must be used after an aggregation method.'),
            ([A('mean', group=60), A('offset', offset=5), A('offset', offset=5)],
             'Offset must be used after an aggregation method.')]:
        with pytest.raises(QueryFailure) as info:
            check_chain(chain)
        assert info.value.msg == text
    check_chain([A('mean', group=60), A('offset', offset=5), A('sum')])  # no error
