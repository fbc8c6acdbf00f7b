"""Play the transcripts recorded from a real SiriDB 2.0.55 (tests/conformance/)
against the embedded server and check every reply by its ``compare`` mode.

Each file is played once, in order, over one connection (state carries over
from line to line, as in the recording); every line is its own test so that a
failure names the line. Every line of every file must match.
"""
from __future__ import annotations

import asyncio
import socket
import struct
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from _conformance_helpers import (
    CLUSTER_SETTINGS,
    RECORDING_SETTINGS,
    known_failure,
    matches,
    record_failure,
)
from _conformance_helpers import records as _records

from siridb.connector.lib.codec import packb, unpack_body
from siridb.embedded import EmbeddedCluster, EmbeddedServer

HDR = struct.Struct('<IHBB')

#: files played against one server, in this order, with the database the
#: player authenticates to first (None: the transcript does its own auth)
SERVER_FILES: List[Tuple[str, Optional[str]]] = [
    ('service', None), ('auth', None), ('insert', 'conf_s'),
    ('query', 'conf_s'), ('admin', 'conf_s'), ('precision_ms', 'conf_ms'),
    ('grammar', None), ('aggregates', None),
]
#: the reply to a ``{"drop_first": [...]}`` line: the service replies, one per database
DROPPED = 'dropped'

# -- a blocking client and a server in a background loop -----------------

class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.pid = 0

    def send(self, tp: int, body: bytes) -> None:
        self.pid = (self.pid + 1) % 65536
        self.sock.sendall(HDR.pack(len(body), self.pid, tp, tp ^ 0xFF) + body)

    def recv(self, timeout: float) -> Optional[Tuple[int, Any]]:
        self.sock.settimeout(timeout)
        try:
            hdr = self._read(8)
            if hdr is None:
                return None
            length, _, tp, _ = HDR.unpack(hdr)
            body = self._read(length) if length else b''
        except (socket.timeout, ConnectionError):
            return None
        if body is None:
            return None
        return tp, unpack_body(body)

    def _read(self, n: int) -> Optional[bytes]:
        buf = b''
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf

    def auth(self, db: str) -> None:
        self.send(2, packb(['iris', 'siri', db]))
        assert self.recv(10) == (2, None)

    def close(self) -> None:
        self.sock.close()


class Background:
    """An event loop in a thread, to run servers for the blocking client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


def _request_body(rec: Dict[str, Any]) -> bytes:
    req = rec['request']
    if req.get('raw_hex') is not None:
        return bytes.fromhex(req['raw_hex'])
    if rec['name'] == 'query too long':
        return packb(['select * from "' + 'x' * 70000 + '"', None])
    return b'' if req['payload'] is None else packb(req['payload'])


def play(host: str, port: int, name: str, db: Optional[str],
         hooks: Optional[Dict[str, Callable[[], None]]] = None
         ) -> Iterator[Tuple[Dict[str, Any], Optional[Tuple[int, Any]]]]:
    hooks = hooks or {}
    conn = Conn(host, port)
    try:
        if db:
            conn.auth(db)
        for rec in _records(name):
            if 'drop_first' in rec:  # start from a server without these databases
                for dbname in rec['drop_first']:
                    conn.send(32, packb(['sa', 'siri', 6, {'database': dbname}]))
                    assert conn.recv(10) is not None
                yield rec, DROPPED
                continue
            if rec['name'] in hooks:
                hooks[rec['name']]()
            conn.send(rec['request']['tp'], _request_body(rec))
            got = conn.recv(0.5 if rec['response'] is None else 10)
            yield rec, got
            if got is None and rec['response'] is not None:
                conn.close()  # out of step: start over, like the player
                conn = Conn(host, port)
                if db:
                    conn.auth(db)
    finally:
        conn.close()


@pytest.fixture(scope='module')
def transcripts() -> Iterator[Dict[str, List[Tuple[Dict[str, Any], Any]]]]:
    bg = Background()
    results: Dict[str, List[Tuple[Dict[str, Any], Any]]] = {}
    try:
        server = EmbeddedServer(databases={}, settings=RECORDING_SETTINGS)
        bg.run(server.start())
        try:
            for name, db in SERVER_FILES:
                results[name] = list(play(server.host, server.port, name, db))
        finally:
            bg.run(server.stop())
        cluster = EmbeddedCluster(3, {'dbcluster': 's'}, pools=[0, 0, 1],
                                  settings=CLUSTER_SETTINGS)
        bg.run(cluster.start())
        down = cluster.servers[2]
        try:
            hooks = {'insert with a pool down': lambda: bg.run(down.stop()),
                     'insert after the pool is back': lambda: bg.run(down.start())}
            results['cluster'] = list(play(cluster.servers[0].host,
                                           cluster.servers[0].port, 'cluster',
                                           'dbcluster', hooks))
        finally:
            bg.run(cluster.stop())
    finally:
        bg.close()
    yield results


def _cases() -> List[Any]:
    cases = []
    for name in [n for n, _ in SERVER_FILES] + ['cluster']:
        for i, rec in enumerate(_records(name)):
            if 'drop_first' not in rec:
                cases.append(pytest.param(name, i, id=f'{name}:{i:03d}:{rec["name"]}'))
    return cases


@pytest.mark.parametrize('name, index', _cases())
def test_line(transcripts, name, index):
    rec, got = transcripts[name][index]
    exp = rec['response']
    want = None if exp is None else (exp['tp'], exp['payload'])
    ok = matches(rec, got)
    if not ok:
        record_failure('wire', name, index)
    if known_failure('wire', name, index):
        assert not ok, 'a known failure passes now: remove it from known_failures.txt'
        pytest.xfail('known difference (tests/conformance/known_failures.txt)')
    assert ok, (
        f'{rec["name"]} ({rec.get("compare", "exact")}):\n'
        f'  want {str(want)[:400]}\n  got  {str(got)[:400]}')


def test_every_line_is_played(transcripts):
    for name, _ in SERVER_FILES:
        assert len(transcripts[name]) == len(_records(name))
        for rec, got in transcripts[name]:
            assert ('drop_first' in rec) == (got == DROPPED)
    assert len(transcripts['cluster']) == len(_records('cluster'))


def test_received_points_count_successful_inserts():
    """`show received_points` counts the points of successful inserts, as the real
    server does (grammar.jsonl: 64 + 4 inserted points answer 68)."""
    bg = Background()
    try:
        server = EmbeddedServer(databases={'db_rp': 's'})
        bg.run(server.start())
        conn = Conn(server.host, server.port)
        try:
            conn.auth('db_rp')

            def query(text: str) -> Any:
                conn.send(0, packb([text, None]))
                return conn.recv(10)

            assert query('show received_points') == (
                0, {'data': [{'name': 'received_points', 'value': 0}]})
            conn.send(1, packb({'a': [[1, 1], [2, 2]], 'b': [[1, 1.5]]}))
            assert conn.recv(10)[0] == 1
            conn.send(1, packb({'a': [[-1, 1]]}))  # refused: no points counted
            assert conn.recv(10)[0] != 1
            assert query('show received_points') == (
                0, {'data': [{'name': 'received_points', 'value': 3}]})
            assert query('count servers received_points') == (
                0, {'servers_received_points': 3})
        finally:
            conn.close()
            bg.run(server.stop())
    finally:
        bg.close()
