"""ServerSettings: the configuration values a real SiriDB reports (server name,
ip_support, max_open_files, db_path), their defaults, checks, the command line
and what `show` / `list servers` answer over the wire."""
from __future__ import annotations

from typing import Any, Dict

import pytest
from _embedded_helpers import RawConn

from siridb.embedded import EmbeddedCluster, EmbeddedServer, ServerSettings
from siridb.embedded.__main__ import parse_args, settings_from_args


def _show(payload: Dict[str, Any]) -> Dict[str, Any]:
    return {d['name']: d['value'] for d in payload['data']}


def test_defaults_are_siridbs():
    s = ServerSettings()
    assert (s.ip_support, s.max_open_files, s.db_path) == ('ALL', 32768, '/var/lib/siridb')
    assert s.server_name is None
    assert s.name_for('127.0.0.1', 9000) == '127.0.0.1:9000'
    assert ServerSettings(server_name='db1:9010').name_for('127.0.0.1', 9000) == 'db1:9010'
    assert ServerSettings(db_path='/data/').database_path('x') == '/data/x/'


@pytest.mark.parametrize('kwargs', [
    {'ip_support': 'IPV4'}, {'ip_support': 'all'}, {'max_open_files': 2},
    {'max_open_files': 32769}, {'max_open_files': True}, {'server_name': 'host'},
    {'server_name': 'host:0'}, {'server_name': 'host:70000'}, {'server_name': '::1:9010'},
    {'server_name': ':9010'}, {'db_path': ''},
])
def test_invalid_values_are_refused(kwargs):
    with pytest.raises(ValueError):
        ServerSettings(**kwargs)


def test_ipv6_server_name_in_brackets():
    assert ServerSettings(server_name='[::1]:9010').server_name == '[::1]:9010'


async def test_show_and_list_servers_report_the_settings():
    settings = ServerSettings(server_name='localhost:9310', ip_support='IPV4ONLY',
                              max_open_files=4096, db_path='/srv/siridb')
    async with EmbeddedServer(databases={'dbs': 's'}, settings=settings) as srv:
        assert srv.name == 'localhost:9310'
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth('dbs')
            tp, res = await c.request(0, ['show server, ip_support, max_open_files', None])
            assert tp == 0
            assert _show(res) == {'server': 'localhost:9310', 'ip_support': 'IPV4ONLY',
                                  'max_open_files': 4096}
            tp, res = await c.request(0, [
                'list servers name, address, port, ip_support, max_open_files, dbpath, '
                'buffer_path', None])
            assert res['servers'] == [['localhost:9310', 'localhost', 9310, 'IPV4ONLY',
                                       4096, '/srv/siridb/dbs/', '/srv/siridb/dbs/buffer/']]
            tp, res = await c.request(0, ['timeit show version', None])
            assert res['__timeit__'][0]['server'] == 'localhost:9310'
        finally:
            await c.close()


async def test_default_name_is_the_listening_address():
    async with EmbeddedServer(databases={'dbs': 's'}) as srv:
        c = await RawConn.open(srv.host, srv.port)
        try:
            await c.auth('dbs')
            _, res = await c.request(0, ['show server, ip_support, max_open_files', None])
            assert _show(res) == {'server': f'127.0.0.1:{srv.port}', 'ip_support': 'ALL',
                                  'max_open_files': 32768}
        finally:
            await c.close()


async def test_cluster_servers_get_their_own_settings():
    names = ['127.0.0.1:9010', '127.0.0.1:9011']
    settings = [ServerSettings(server_name=n) for n in names]
    async with EmbeddedCluster(2, {'dbc': 's'}, settings=settings) as cluster:
        c = await RawConn.open(cluster.servers[1].host, cluster.servers[1].port)
        try:
            await c.auth('dbc')
            _, res = await c.request(0, ['list servers name', None])
            assert sorted(r[0] for r in res['servers']) == names
            _, res = await c.request(0, ['show server', None])
            assert _show(res) == {'server': '127.0.0.1:9011'}
        finally:
            await c.close()


def test_cluster_settings_are_checked():
    with pytest.raises(ValueError, match='each server'):
        EmbeddedCluster(2, settings=[ServerSettings()])
    same = ServerSettings(server_name='h:9010')
    with pytest.raises(ValueError, match='own server_name'):
        EmbeddedCluster(2, settings=[same, same])


def test_command_line_options():
    s = settings_from_args(parse_args([]))
    assert s == ServerSettings()
    s = settings_from_args(parse_args(['--server-name', 'localhost:9310', '--ip-support',
                                       'IPV6ONLY', '--max-open-files', '512']))
    assert s == ServerSettings(server_name='localhost:9310', ip_support='IPV6ONLY',
                               max_open_files=512)


@pytest.mark.parametrize('argv', [['--server-name', 'nohost'], ['--ip-support', 'V4'],
                                  ['--max-open-files', '1']])
def test_command_line_rejects(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert 'error' in capsys.readouterr().err
