"""Every QUERY line of the recorded transcripts, run in-process through execute().

The store is filled the way the recorder filled the real server (insert.jsonl,
then the INSERT lines of each file); AUTH lines switch the user. Replies are
compared like play_conformance.py does: list-style rows as sets, floats with a
relative tolerance of 1e-9, an int is not a float.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import pytest
import qpack
from _conformance_helpers import (
    RECORDING_SETTINGS,
    known_failure,
    matches,
    record_failure,
    records,
    self_contained,
    unjson,
)

from siridb.embedded.context import QueryContext, QueryFailure, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.query import execute
from siridb.embedded.store import Database


class Replayer:
    """A database plus users, fed INSERT/AUTH/QUERY lines the way the server would."""

    def __init__(self, dbname: str, precision: str) -> None:
        self.db = Database(dbname, precision)
        self.server = ServerInfo('localhost:9310', settings=RECORDING_SETTINGS)
        self.ctx = QueryContext(self.db, self.db.users['iris'], self.server)

    def run(self, rec: Dict[str, Any]) -> Optional[Tuple[int, Any]]:
        req = rec['request']
        tp = req['tp']
        payload = unjson(req['payload'])
        if tp == 1:
            if req.get('raw_hex'):  # the map order as sent (JSON sorted the keys)
                payload = qpack.unpackb(bytes.fromhex(req['raw_hex']), decode='utf-8')
            if not self.ctx.user.has('insert'):
                return 69, {'error_msg': f"Access denied. User '{self.ctx.user.name}' "
                                         "has no 'insert' privileges."}
            try:
                n = insert(self.db, payload)
            except QueryFailure as exc:
                return exc.tp, {'error_msg': exc.msg}
            return 1, {'success_msg': f'Successfully inserted {n} point(s).'}
        if tp == 2:
            user = self.db.users.get(payload[0])
            if user is None or user.password != payload[1]:
                return 72, None  # CPROTO_ERR_AUTH_CREDENTIALS, as the server answers
            self.ctx = QueryContext(self.db, user, self.server)
            return 2, None
        if _wire_only(rec):
            return None
        query, precision = payload
        if isinstance(query, bytes):
            query = query.decode('utf-8')
        try:
            return 0, execute(self.ctx, query, precision)
        except QueryFailure as exc:
            return exc.tp, {'error_msg': exc.msg}


def _fill_conf_s() -> Replayer:
    r = Replayer('conf_s', 's')
    for rec in records('insert'):
        if rec['request']['tp'] == 1 and rec['response']['tp'] == 1:
            r.run(rec)
    return r


def _wire_only(rec: Dict[str, Any]) -> bool:
    """Lines only the wire server answers (the service API, the package size
    limit): test_conformance.py plays them; they change no state here."""
    return rec['request']['tp'] == 32 or rec['name'] == 'query too long'


def _cases() -> List[Any]:
    out = []
    for name in ('query', 'admin', 'precision_ms', 'grammar', 'aggregates'):
        for i, rec in enumerate(records(name)):
            if 'drop_first' in rec or _wire_only(rec):
                continue
            out.append(pytest.param(name, i, id=f'{name}:{i}:{rec["name"]}'))
    return out


_STATE: Dict[str, Replayer] = {}


def _replayer(name: str) -> Replayer:
    """One replayer per file, advanced line by line in order (state carries over)."""
    if name not in _STATE:
        if name == 'query':
            _STATE[name] = _fill_conf_s()
        elif name == 'admin':
            # admin.jsonl follows query.jsonl on the same database
            r = _fill_conf_s()
            for rec in records('query'):
                r.run(rec)
            _STATE[name] = r
        elif self_contained(name):
            # the file creates its own database (service API) in its first lines
            create = next(r['request']['payload'][3] for r in records(name)
                          if r.get('request', {}).get('tp') == 32)
            _STATE[name] = Replayer(create['dbname'], create['time_precision'])
        else:
            _STATE[name] = Replayer('conf_ms', 'ms')
    return _STATE[name]


@pytest.mark.parametrize('name,index', _cases())
def test_line(name: str, index: int) -> None:
    rec = records(name)[index]
    got = _replayer(name).run(rec)
    assert got is not None
    tp, payload = got
    if rec.get('note', '').startswith('the real server converts down'):
        # the one documented exception: exact integer division is right
        assert tp == 0
        rows = payload['ms']
        assert [r[0] for r in rows] == [1447250938, 1447250939, 1447250941]
        return
    ok = matches(rec, (tp, payload))
    if not ok:
        record_failure('inproc', name, index)
    if known_failure('inproc', name, index):
        assert not ok, 'a known failure passes now: remove it from known_failures.txt'
        pytest.xfail('known difference (tests/conformance/known_failures.txt)')
    assert ok, (rec['request']['payload'], rec['response'], got)


def test_cluster_lines() -> None:
    """cluster.jsonl: three servers, pool 1 down for the lines saying so."""
    db = Database('dbcluster', 's')
    servers = [ServerInfo('127.0.0.1:9010', 0), ServerInfo('127.0.0.1:9011', 0),
               ServerInfo('127.0.0.1:9012', 1)]
    user = db.users['iris']
    checked = 0
    for rec in records('cluster'):
        req = rec['request']
        down = 'pool down' in rec['name']
        servers[2].online = not down
        servers[2].status = 'offline' if down else 'running'
        ctx = QueryContext(db, user, servers[0], servers, pool_down=down)
        if req['tp'] == 1:
            if not down:
                data = qpack.unpackb(bytes.fromhex(req['raw_hex']), decode='utf-8')
                for i, name in enumerate(data):  # spread series over both pools
                    insert(db, {name: data[name]})
                    db.series[name].pool = i % 2
            continue
        if req['tp'] != 0:
            continue
        query, precision = req['payload']
        try:
            got: Tuple[int, Any] = (0, execute(ctx, query, precision))
        except QueryFailure as exc:
            got = (exc.tp, {'error_msg': exc.msg})
        assert matches(rec, got), (query, rec['response'], got)
        checked += 1
    assert checked == 6
