"""siridb:// URL parsing for SiriDBClient.from_url."""
from __future__ import annotations

import pytest

from siridb.connector.lib.url import ConnectionURL, URLError, parse_url


def test_issue_example() -> None:
    u = parse_url('siridb://iris:siri@host1:9000,host2:9000/dbtest'
                  '?backup=host3:9000&weight=host1:9000:3')
    assert u.username == 'iris'
    assert u.password == 'siri'
    assert u.dbname == 'dbtest'
    assert u.hostlist == [('host1', 9000, {'weight': 3, 'backup': False}),
                          ('host2', 9000),
                          ('host3', 9000, {'weight': 1, 'backup': True})]
    assert u.options == {}


def test_defaults_ipv6_and_options() -> None:
    u = parse_url('SIRIDB://u:p@[::1],localhost:9001,10.0.0.1/db-1'
                  '?timeout=2.5&inactive_time=30&max_wait_retry=5&keepalive=false'
                  '&backup=[fe80::1]:9002&backup=b2')
    assert u.hostlist == [('::1', 9000), ('localhost', 9001), ('10.0.0.1', 9000),
                          ('fe80::1', 9002, {'weight': 1, 'backup': True}),
                          ('b2', 9000, {'weight': 1, 'backup': True})]
    assert u.options == {'timeout': 2.5, 'inactive_time': 30, 'max_wait_retry': 5,
                         'keepalive': False}
    kw = u.client_kwargs()
    assert kw['dbname'] == 'db-1' and kw['timeout'] == 2.5 and kw['hostlist'] == u.hostlist


def test_percent_decoding() -> None:
    u = parse_url('siridb://us%40er:p%40ss%3Aw%2Fo%3Frd%25@h/d%C3%A9')
    assert u.username == 'us@er'
    assert u.password == 'p@ss:w/o?rd%'
    assert u.dbname == 'dé'
    # a raw '@' in the password also works: the last '@' ends the user info
    assert parse_url('siridb://iris:a@b@h/db').password == 'a@b'
    # an empty password is allowed when written
    assert parse_url('siridb://iris:@h/db').password == ''


def test_password_never_shown() -> None:
    u = parse_url('siridb://iris:TopSecret99@h/db')
    assert 'TopSecret99' not in repr(u)
    assert 'TopSecret99' not in str(u)


def test_service_url_without_db() -> None:
    u = parse_url('siridb://sa:siri@h:9000', need_dbname=False)
    assert u.dbname == '' and u.hostlist == [('h', 9000)]
    with pytest.raises(URLError, match='missing database name'):
        parse_url('siridb://sa:siri@h:9000')


@pytest.mark.parametrize('url,msg', [
    ('http://iris:siri@h/db', 'scheme'),
    ('iris:siri@h/db', 'not a URL'),
    ('siridb://h:9000/db', 'user:password@'),
    ('siridb://iris@h/db', 'missing password'),
    ('siridb://:siri@h/db', 'missing user name'),
    ('siridb://iris:siri@/db', 'missing host'),
    ('siridb://iris:siri@h:0/db', 'invalid port'),
    ('siridb://iris:siri@h:65536/db', 'invalid port'),
    ('siridb://iris:siri@h:abc/db', 'invalid port'),
    ('siridb://iris:siri@h:/db', 'missing port'),
    ('siridb://iris:siri@h1,,h2/db', 'empty host'),
    ('siridb://iris:siri@::1/db', 'brackets'),
    ('siridb://iris:siri@[::1/db', 'unclosed'),
    ('siridb://iris:siri@h/db/x', 'unexpected "/"'),
    ('siridb://iris:siri@h/db?bogus=1', 'unknown option'),
    ('siridb://iris:siri@h/db?timeout=', 'needs a value'),
    ('siridb://iris:siri@h/db?timeout=abc', 'must be a number'),
    ('siridb://iris:siri@h/db?timeout=-1', 'positive'),
    ('siridb://iris:siri@h/db?keepalive=maybe', 'true or false'),
    ('siridb://iris:siri@h/db?weight=h:9000:10', 'invalid weight'),
    ('siridb://iris:siri@h/db?weight=h', 'invalid weight'),
    ('siridb://iris:siri@h/db?weight=other:9000:2', 'not a listed host'),
    ('siridb://iris:siri@h,h:9000/db', 'listed twice'),
    ('siridb://iris:siri@h/db#frag', 'fragment'),
    ('siridb://iris:%ff@h/db', 'password is not valid'),
    # str.isdigit() accepts these; a port or weight must be ASCII digits
    ('siridb://iris:siri@h:\u00b2/db', 'invalid port'),
    ('siridb://iris:siri@h:\u0663/db', 'invalid port'),
    ('siridb://iris:siri@h/db?weight=h:9000:\u00b2', 'invalid weight'),
    ('siridb://iris:siri@h/db?weight=h:9000:\u0663', 'invalid weight'),
])
def test_bad_urls(url: str, msg: str) -> None:
    with pytest.raises(URLError, match=msg) as info:
        parse_url(url)
    assert isinstance(info.value, ValueError)
    assert 'siri@' not in str(info.value)


@pytest.mark.parametrize('url', [
    'siridb://iris:Secr3t?timeout=x@h/db',
    'siridb://iris:Secr3t/x@h/db',
    'siridb://iris:Secr3t#x@h/db',
    'siridb://iris:Secr3t@h:bad/db',
])
def test_errors_never_hold_the_password(url: str) -> None:
    with pytest.raises(URLError) as info:
        parse_url(url)
    assert 'Secr3t' not in str(info.value)


def test_service_url_names_one_server() -> None:
    from siridb.connector import SiriDBService

    svc = SiriDBService.from_url('siridb://sa:s%40cret@h:9001?timeout=2')
    assert (svc.host, svc.port, svc._password, svc._connect_timeout) == (
        'h', 9001, 's@cret', 2)
    assert 's@cret' not in repr(svc)
    for url, msg in [('siridb://sa:siri@h1,h2', 'exactly one server'),
                     ('siridb://sa:siri@h1?backup=h2', 'exactly one server'),
                     ('siridb://sa:siri@h1?keepalive=no', 'keepalive')]:
        with pytest.raises(URLError, match=msg):
            SiriDBService.from_url(url)


def test_not_a_string() -> None:
    with pytest.raises(URLError):
        parse_url(None)  # type: ignore[arg-type]


def test_dataclass_is_frozen() -> None:
    u = parse_url('siridb://iris:siri@h/db')
    assert isinstance(u, ConnectionURL)
    with pytest.raises(AttributeError):
        u.dbname = 'x'  # type: ignore[misc]


async def test_client_from_url_end_to_end(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from siridb.connector import SiriDBClient
    from siridb.embedded import EmbeddedServer

    caplog.set_level(logging.DEBUG)
    async with EmbeddedServer(port=0, databases={'dbtest': 's'}) as srv:
        hosts = f'{srv.host}:{srv.port}'
        client = SiriDBClient.from_url(f'siridb://iris:siri@{hosts}/dbtest?timeout=3',
                                       keepalive=False)
        async with client:
            await client.write('x', 1, 5)
            assert await client.query('select * from "x"') == {'x': [[5, 1]]}
        assert 'siri@' not in repr(client)
        # a wrong password: the connect result says so, logs never hold it
        bad = SiriDBClient.from_url(f'siridb://iris:Wr0ngPassw0rd@{hosts}/dbtest',
                                    max_wait_retry=0.1)
        res = await bad.connect()
        bad.close()
        await bad.wait_closed()
        assert res[0] is not None
        assert 'Wr0ngPassw0rd' not in repr(bad)
    assert caplog.records
    assert not any('Wr0ngPassw0rd' in r.getMessage() for r in caplog.records)
