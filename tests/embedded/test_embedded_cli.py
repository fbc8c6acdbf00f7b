"""``python -m siridb.embedded``: flags, databases, data directory, TLS."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest
from _paths import ROOT as PROJECT

from siridb.connector.lib.codec import Decoder, pack
from siridb.embedded.__main__ import parse_args

ROOT = str(PROJECT)


def test_parse_args_defaults_and_dbs():
    a = parse_args([])
    assert (a.host, a.port, a.db, a.data_dir, a.fsync) == ('127.0.0.1', 9000, [], None, 'always')
    a = parse_args(['--db', 'one', '--db', 'two:s', '--port', '0', '--data-dir', 'd'])
    assert a.db == [{'one': 'ms'}, {'two': 's'}] and a.port == 0 and a.data_dir == 'd'


@pytest.mark.parametrize('argv', [['--db', 'x:hours'], ['--db', ':s'], ['--tls-cert', 'c.pem'],
                                  ['--fsync', 'sometimes']])
def test_parse_args_rejects(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2


class Proc:
    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen([sys.executable, '-m', 'siridb.embedded', '--port', '0',
                                   '--log-level', 'warning', *args], cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.p.stdout is not None
        self.line = self.p.stdout.readline()
        assert 'listening on' in self.line, self.p.stderr.read() if self.p.stderr else ''
        self.port = int(self.line.split('listening on ', 1)[1].split()[0].rsplit(':', 1)[1])

    def request(self, tp, payload, ssl_ctx=None):
        raw = socket.create_connection(('127.0.0.1', self.port), timeout=10)
        s = ssl_ctx.wrap_socket(raw) if ssl_ctx else raw
        with s:
            s.sendall(pack(1, tp, payload))
            dec = Decoder()
            while True:
                pkgs = dec.feed(s.recv(65536))
                if pkgs:
                    return pkgs[0].tp, pkgs[0].data()

    def stop(self) -> int:
        self.p.send_signal(signal.SIGTERM)
        out, err = self.p.communicate(timeout=15)
        return self.p.returncode


def test_databases_flags_and_clean_shutdown(tmp_path):
    d = str(tmp_path / 'data')
    p = Proc('--db', 'first', '--db', 'second:s', '--data-dir', d)
    try:
        assert 'databases first,second' in p.line
        assert p.request(32, ['sa', 'siri', 66, {}]) == (33, ['first', 'second'])
        assert p.request(2, ['iris', 'siri', 'second']) == (2, None)
    finally:
        assert p.stop() == 0
    # existing databases are kept, not recreated (second stays precision s)
    p = Proc('--data-dir', d, '--db', 'second:ms')
    try:
        assert p.request(32, ['sa', 'siri', 66, {}]) == (33, ['first', 'second'])
    finally:
        p.stop()


def test_server_settings_flags():
    p = Proc('--server-name', 'localhost:9310', '--ip-support', 'IPV4ONLY',
             '--max-open-files', '4096')
    try:
        assert ' as localhost:9310 databases dbtest' in p.line
        assert p.request(2, ['iris', 'siri', 'dbtest']) == (2, None)
    finally:
        p.stop()


def test_default_database_is_dbtest():
    p = Proc()
    try:
        assert 'databases dbtest' in p.line
        assert p.request(2, ['iris', 'siri', 'dbtest']) == (2, None)
    finally:
        p.stop()


def test_tls_flags(tmp_path):
    import ssl
    openssl = shutil.which('openssl')
    if openssl is None:
        pytest.skip('openssl CLI not available to make a throwaway certificate')
    cert, key = str(tmp_path / 'c.pem'), str(tmp_path / 'k.pem')
    # (an EC key: generated in milliseconds, an RSA one takes a good part of a second)
    subprocess.run([openssl, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                    'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key,
                    '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1'],
                   check=True, capture_output=True)
    p = Proc('--tls-cert', cert, '--tls-key', key)
    try:
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
        assert p.request(3, None, ssl_ctx=ctx) == (3, None)
    finally:
        p.stop()


def test_port_in_use_fails_cleanly():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, '-m', 'siridb.embedded', '--port', str(port)],
                           cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and 'error' in r.stderr


def test_second_server_on_the_same_data_dir_is_refused(tmp_path):
    d = str(tmp_path / 'data')
    p = Proc('--data-dir', d)
    try:
        r = subprocess.run([sys.executable, '-m', 'siridb.embedded', '--port', '0',
                            '--data-dir', d], cwd=ROOT, capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 1 and 'in use' in r.stderr
        assert p.request(3, None) == (3, None)
    finally:
        p.stop()


def test_bench_script_runs():
    """bench/embedded_server.py (not a unit test) must not rot: a tiny run."""
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'embedded_server.py'),
                        '--points', '20000', '--batch', '5000'], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'points/s' in r.stdout and 'select * over 20,000 points' in r.stdout
