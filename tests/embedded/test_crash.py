"""Crash test: a standalone server with a data directory is killed with
SIGKILL in the middle of a stream of inserts; after a restart every
acknowledged point is there."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Dict, List, Tuple

import pytest
from _paths import ROOT

from siridb.connector.lib.codec import Decoder, pack
from siridb.embedded.engine import Engine

pytestmark = pytest.mark.skipif(sys.platform == 'win32', reason='needs SIGKILL')

POINTS_PER_REQUEST = 50


def _start(data_dir: str, *extra: str) -> Tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, '-m', 'siridb.embedded', '--port', '0', '--db', 'crash:ms',
         '--data-dir', data_dir, '--log-level', 'warning', *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=str(ROOT))
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if 'listening on' not in line:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f'server did not start: {line!r} {err}')
    port = int(line.split('listening on ', 1)[1].split()[0].rsplit(':', 1)[1])
    return proc, port


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def _stream(port: int, acked: Dict[int, bool], stop: threading.Event) -> None:
    """Pipelined inserts (up to 8 in flight); request k holds timestamps
    k*50 .. k*50+49 of series 'c'. Records which requests were acknowledged."""
    sock = socket.create_connection(('127.0.0.1', port), timeout=10)
    decoder = Decoder()
    try:
        sock.sendall(pack(1, 2, ['iris', 'siri', 'crash']))
        pending: List = []
        while not pending:
            pending.extend(decoder.feed(sock.recv(65536)))
        assert pending.pop(0).tp == 2
        k = 0
        in_flight = 0
        while not stop.is_set():
            while in_flight < 8:
                k += 1
                base = k * POINTS_PER_REQUEST
                pts = [[base + i, k] for i in range(POINTS_PER_REQUEST)]
                sock.sendall(pack(k % 65536, 1, {'c': pts}))
                acked[k] = False
                in_flight += 1
            data = sock.recv(65536)
            if not data:
                return
            for pkg in decoder.feed(data):
                assert pkg.tp == 1, pkg
                # pids are unique among the 8 in flight
                match = [r for r in acked if not acked[r] and r % 65536 == pkg.pid]
                acked[match[0]] = True
                in_flight -= 1
    except OSError:
        return  # the server was killed
    finally:
        sock.close()


@pytest.mark.parametrize('fsync', ['always', 'never'])
def test_sigkill_keeps_every_acknowledged_insert(tmp_path, fsync):
    data_dir = str(tmp_path / 'data')
    proc, port = _start(data_dir, '--fsync', fsync)
    acked: Dict[int, bool] = {}
    stop = threading.Event()
    client = threading.Thread(target=_stream, args=(port, acked, stop))
    client.start()
    try:
        deadline = time.monotonic() + 20
        while sum(acked.values()) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of the stream
        proc.wait(timeout=10)
    finally:
        stop.set()
        client.join(timeout=20)
        _stop(proc)
    done = sorted(k for k, ok in acked.items() if ok)
    assert len(done) >= 200, 'too few inserts acknowledged before the kill'

    # the restarted server starts and answers
    proc2, port2 = _start(data_dir)
    try:
        with socket.create_connection(('127.0.0.1', port2), timeout=10) as s:
            s.sendall(pack(1, 2, ['iris', 'siri', 'crash']))
            assert s.recv(8)[6] == 2
    finally:
        _stop(proc2)

    # every acknowledged point is in the data directory
    engine = Engine(data_dir)
    try:
        series = engine.store.databases['crash'].series['c']
        ts, values = series.points()
        have = set(ts)
        missing = [k for k in done
                   if any(k * POINTS_PER_REQUEST + i not in have
                          for i in range(POINTS_PER_REQUEST))]
        assert missing == []
        assert len(ts) % POINTS_PER_REQUEST == 0  # whole requests only
        assert len(ts) >= len(done) * POINTS_PER_REQUEST
    finally:
        engine.close()


def test_restart_after_crash_with_torn_server_log(tmp_path):
    """A torn record in server.log (crash during a service change) does not
    stop the server from starting."""
    data_dir = str(tmp_path / 'data')
    proc, _ = _start(data_dir)
    _stop(proc)
    with open(os.path.join(data_dir, 'server.log'), 'ab') as fh:
        fh.write(b'\x40\x00\x00\x00\x01\x02')
    proc, port = _start(data_dir)
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=10) as s:
            s.sendall(pack(1, 3))
            assert s.recv(8)[6] == 3
    finally:
        _stop(proc)
