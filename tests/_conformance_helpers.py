"""Reading the recorded transcripts (tests/conformance/*.jsonl) and comparing a reply
with a recorded one by the line's ``compare`` mode, as the transcripts' README
says (rows of list-style results as sets,
floats with a relative tolerance of 1e-9, an int is not a float)."""
from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Dict, List, Optional, Tuple

from siridb.embedded.settings import ServerSettings

HERE = pathlib.Path(__file__).parent / 'conformance'


_RECORDS: Dict[str, List[Dict[str, Any]]] = {}

#: the configuration of the server that recorded the single-server files, as its
#: replies show it (`show server`, `show ip_support`, `show max_open_files`)
RECORDING_SETTINGS = ServerSettings(server_name='localhost:9310', ip_support='IPV4ONLY',
                                    max_open_files=4096)
#: the names of the three servers that recorded cluster.jsonl (`list servers`)
CLUSTER_SETTINGS = [ServerSettings(server_name=f'127.0.0.1:{port}', ip_support='IPV4ONLY')
                    for port in (9010, 9011, 9012)]


def records(name: str) -> List[Dict[str, Any]]:
    if name not in _RECORDS:
        with open(HERE / f'{name}.jsonl', encoding='utf-8') as fh:
            _RECORDS[name] = [json.loads(line) for line in fh if line.strip()]
    return _RECORDS[name]


#: lines known to differ from the real server, one ``MODE FILE:INDEX`` a line
#: (MODE ``wire`` or ``inproc``); they are strict xfails, so a fixed line must leave
#: the list (regenerate it with CONFORMANCE_RECORD=FILE, see known_failure()).
KNOWN_FAILURES = HERE / 'known_failures.txt'
_KNOWN: Optional[frozenset[str]] = None


def known_failure(mode: str, name: str, index: int) -> bool:
    """Whether a line is on the known-failure list (and, when the environment
    variable CONFORMANCE_RECORD names a file, note it there for regenerating)."""
    global _KNOWN
    if _KNOWN is None:
        text = KNOWN_FAILURES.read_text() if KNOWN_FAILURES.exists() else ''
        _KNOWN = frozenset(line.strip() for line in text.splitlines()
                           if line.strip() and not line.startswith('#'))
    return f'{mode} {name}:{index}' in _KNOWN


def record_failure(mode: str, name: str, index: int) -> None:
    """Append a failing line to $CONFORMANCE_RECORD (regenerating the list)."""
    path = os.environ.get('CONFORMANCE_RECORD')
    if path:
        with open(path, 'a', encoding='utf-8') as fh:
            fh.write(f'{mode} {name}:{index}\n')


def self_contained(name: str) -> bool:
    """A file whose first line names the databases to drop before playing it."""
    return 'drop_first' in records(name)[0]


def unjson(v: Any) -> Any:
    """A recorded payload as sent (``{"__bytes__": hex}`` back to bytes)."""
    if isinstance(v, dict):
        if set(v) == {'__bytes__'}:
            return bytes.fromhex(v['__bytes__'])
        return {k: unjson(x) for k, x in v.items()}
    if isinstance(v, list):
        return [unjson(x) for x in v]
    return v


def _norm(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return 'NaN'
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v


def _unordered(v: Any) -> Any:
    if isinstance(v, dict) and 'columns' in v:
        return {k: (sorted(x, key=repr) if k != 'columns' and isinstance(x, list) else x)
                for k, x in v.items()}
    return v


def _shape(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _shape(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return ['list']
    return type(v).__name__


def close(a: Any, b: Any) -> bool:
    """``a`` (received) equals ``b`` (recorded) by the comparison rules."""
    a, b = _norm(a), _norm(b)
    if isinstance(a, float) and isinstance(b, (int, float)) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) and type(a) is type(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    return bool(a == b) and type(a) is type(b)


def _points_limit_deviation(rec: Dict[str, Any], got: Tuple[int, Any]) -> bool:
    """The one deliberate deviation: the real server checks select_points_limit
    before each next series, so the last series is never counted (20 points of
    "aggr" pass a limit of 10 in admin.jsonl); the embedded server counts every
    point it returns and refuses that select with the real server's text."""
    exp = rec['response']
    want = exp['payload'] if exp['tp'] == 0 else {}
    if rec['name'] != 'select * from "aggr"' or len(want.get('aggr', ())) <= 10:
        return False
    return got[0] == 65 and got[1]['error_msg'].startswith(
        'Query has reached the maximum number of selected points (10). Please use '
        'another time window, an aggregation function or select less series')


def matches(rec: Dict[str, Any], got: Optional[Tuple[int, Any]]) -> bool:
    """Whether ``got`` ((type, payload), or None for no reply) matches the line."""
    exp = rec['response']
    if exp is not None and got is not None and _points_limit_deviation(rec, got):
        return True
    if exp is None or got is None:
        return exp is None and got is None
    tp, payload = got
    if tp != exp['tp']:
        return False
    mode = rec.get('compare', 'exact')
    want = exp['payload']
    if mode == 'shape':
        if isinstance(payload, dict):
            return _shape(payload) == _shape(want)
        return type(payload) is type(want)
    if mode == 'contains':
        return isinstance(payload, list) and all(x in payload for x in want)
    return close(_unordered(payload), _unordered(want))
