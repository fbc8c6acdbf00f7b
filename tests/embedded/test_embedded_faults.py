"""The embedded server's test-only insert faults (siridb.embedded.faults):
part of an insert applied then the connection dropped, an insert never
answered, the last acknowledged point lost on a simulated crash; seen from
the driver and from a write session. (A failed forward answered 66:
tests/connector/test_session_refusals.py.)"""
from __future__ import annotations

import asyncio
from collections import Counter
from typing import AsyncIterator

import pytest
from _embedded_helpers import stored
from _session_helpers import connected, fast_client

from siridb.connector import SiriDBClient
from siridb.connector.lib.exceptions import ConnectionLostError, PoolError, RequestTimeoutError
from siridb.embedded import EmbeddedServer
from siridb.embedded.faults import InsertFaults

DB = 'dbtest'


@pytest.fixture
async def client(server: EmbeddedServer) -> AsyncIterator[SiriDBClient]:
    async with connected(fast_client([(server.host, server.port)])) as c:
        yield c


async def test_partial_insert_then_dropped_connection(server: EmbeddedServer,
                                                      client: SiriDBClient) -> None:
    faults = InsertFaults.attach(server)
    faults.partial_then_drop(fraction=0.5)
    data = {name: [[1, 1], [2, 2]] for name in ('a', 'b', 'c', 'd')}
    with pytest.raises((ConnectionLostError, PoolError)):
        await client.insert(data, timeout=2)
    assert faults.partial == 1
    assert [len(stored(server, n)) for n in 'abcd'] == [2, 2, 0, 0]
    await client.wait_connected(5)
    await client.insert({'e': [[1, 1]]})  # disarmed after one: normal again
    assert stored(server, 'e') == [(1, 1)]
    faults.detach()
    assert server.faults is None


async def test_a_session_resends_a_partial_insert_at_least_once(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    faults = InsertFaults.attach(server)
    s = client.session(time_precision='ms', retry_delay=0.01, autocommit_every=1000,
                       delivery='at_least_once')
    faults.partial_then_drop(fraction=0.5)
    await s.write_many([(f's{i}', t, t) for i in range(4) for t in range(5)])
    await asyncio.wait_for(s.close(), 10)
    counts = [Counter(stored(server, f's{i}')) for i in range(4)]
    assert [set(c.values()) for c in counts] == [{2}, {2}, {1}, {1}]  # stored twice
    assert (s.written, s.pending) == (20, 0)  # confirmed once
    assert s.retried >= 20 and s.retried % 20 == 0  # whole package per failed attempt
    assert s.stats().unknown >= 1 and s.stats().verifications == 0


async def test_an_insert_never_answered(server: EmbeddedServer,
                                        client: SiriDBClient) -> None:
    faults = InsertFaults.attach(server)
    faults.never_answer(store=False)
    with pytest.raises(RequestTimeoutError):
        await client.insert({'q': [[1, 1]]}, timeout=0.2)
    assert stored(server, 'q') == [] and faults.silent == 1
    faults.never_answer(store=True)
    s = client.session(time_precision='ms', insert_timeout=0.2, retry_delay=0.01,
                       delivery='at_least_once')
    await s.write('q', 5, 2)
    await asyncio.wait_for(s.close(), 10)
    assert stored(server, 'q') == [(2, 5), (2, 5)]  # stored, unanswered, sent again
    assert s.written == 1 and s.retried >= 1 and faults.silent == 2


async def test_crash_loses_the_last_acknowledged_point(server: EmbeddedServer,
                                                       client: SiriDBClient) -> None:
    faults = InsertFaults.attach(server)
    faults.lose_last_acked = True
    await client.insert({'x': [[1, 1.5], [2, 2.5]], 'y': [[7, 'a'], [9, 'b']]})
    await client.insert({'x': [[3, 3.5]], 'y': [[8, 'c']]})
    lost = await faults.crash()
    assert lost == ('y', 8, 'c') and faults.lost == 1
    assert not server.running
    await server.start()
    assert stored(server, 'x') == [(1, 1.5), (2, 2.5), (3, 3.5)]
    assert stored(server, 'y') == [(7, 'a'), (9, 'b')]
    # without lose_last_acked a crash keeps everything
    faults.lose_last_acked = False
    await client.wait_connected(5)
    await client.insert({'x': [[4, 4.5]]})
    assert await faults.crash() is None
    await server.start()
    assert len(stored(server, 'x')) == 4


def test_fault_arguments_are_checked() -> None:
    srv = EmbeddedServer(port=0)
    faults = InsertFaults.attach(srv)
    with pytest.raises(ValueError):
        faults.partial_then_drop(fraction=1.0)
    with pytest.raises(ValueError):
        faults.forward_error(fraction=-0.1)
    faults.partial_then_drop(times=2)
    faults.forward_error(times=2)
    faults.never_answer()
    faults.clear()
    assert faults.insert is not None and not faults.lose_last_acked


async def test_at_least_once_through_faults_with_packages_in_flight(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    """Partial inserts with dropped connections and unanswered inserts, armed
    again and again while a session has several packages in flight: every
    point is stored, each is confirmed once; a crash and restart (without
    the lost-point fault) loses nothing either."""
    faults = InsertFaults.attach(server)
    s = client.session(time_precision='ms', autocommit_every=60, max_in_flight=4,
                       insert_timeout=0.3, retry_delay=0.01, retry_max_delay=0.05,
                       delivery='at_least_once')
    sent = set()
    for step in range(30):
        if step % 5 == 1:
            faults.partial_then_drop(fraction=0.3)
        if step % 7 == 3:
            faults.never_answer(store=step % 2 == 0)
        if step == 15:
            await faults.crash()
            await server.start()
        pts = [(f'f{i % 6}', step * 100 + i, float(i)) for i in range(100)]
        await s.write_many(pts)
        sent.update(pts)
        await asyncio.sleep(0.005)
    await asyncio.wait_for(s.close(), 30)
    got = set()
    for i in range(6):
        got.update((f'f{i}', ts, v) for ts, v in stored(server, f'f{i}'))
    assert got == sent
    assert s.written == 3000 and s.pending == 0
    assert faults.partial >= 5 and faults.silent >= 4 and s.retried > 0
