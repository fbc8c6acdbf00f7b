"""Delivery modes of write sessions under the embedded server's insert faults
(siridb.embedded.faults): ``verified`` stores every point exactly once
(duplicates written on purpose stay duplicates), ``at_least_once`` loses
nothing and counts the packages whose outcome was unknown."""
from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any, AsyncIterator, Tuple

import pytest
from _embedded_helpers import held, poll
from _session_helpers import DB, checked_session, connected, fast_client

from siridb.connector import SiriDBClient
from siridb.connector.lib.delivery import Check, Confirmed, Window, select_ranges
from siridb.connector.lib.session import WriteSession
from siridb.connector.lib.writebuffer import Package
from siridb.embedded import EmbeddedCluster, EmbeddedServer
from siridb.embedded.faults import InsertFaults

Pt = Tuple[str, int, Any]



@pytest.fixture
async def client(server: EmbeddedServer) -> AsyncIterator[SiriDBClient]:
    async with connected(fast_client([(server.host, server.port)])) as c:
        yield c


# ------------------------------------------------------------- sans-IO check

def test_check_counts_copies_per_timestamp_and_value() -> None:
    """Duplicates written on purpose are expected as many times as written;
    NaN values are matched; only what lacks is sent again."""
    nan = float('nan')
    window = Window(1000, 1 << 20)
    window.add(Confirmed(Package({'a': [(1, 1.0), (2, 2.0)]}, None, 2, 1)))
    unknown = Package({'a': [(2, 2.0), (3, nan), (3, nan)], 'b': [(5, 'x')]}, None, 4, 2)
    chk = Check([unknown], window, False)
    assert chk.ranges == {'a': (2, 3), 'b': (5, 5)}
    assert chk.queries() == ['select * from "a", "b" between 2 and 6']
    # the server holds a@2 once (of two expected), one NaN at 3 (of two), b@5
    missing = chk.missing([[{'a': [[1, 1.0], [2, 2.0], [3, nan], [9, 9.0]],
                             'b': [[5, 'x']]}]])
    assert list(missing) == ['a'] and missing['a'][0] == (2, 2.0)
    assert missing['a'][1][0] == 3 and math.isnan(missing['a'][1][1])
    assert chk.settle(missing) == (2, 0)  # both taken from the unknown package
    assert window.points == 2 + 2  # its stored part joined the window
    assert list(select_ranges({'x"y': (1, 1)})) == ['select * from "x""y" between 1 and 2']


def test_check_takes_the_fullest_view_of_each_point() -> None:
    """Each server answers for its own pool from what it holds: a replica
    may lack points its partner acknowledged and still has to send it."""
    unknown = Package({'a': [(1, 1), (2, 2), (2, 2)]}, None, 3, 1)
    chk = Check([unknown], Window(100, 1 << 20), False)
    server_a = [{'a': [[1, 1]]}]
    server_b = [{'a': [[2, 2], [2, 2]]}]
    assert chk.missing([server_a, server_b]) == {}
    assert chk.missing([server_a]) == {'a': [(2, 2), (2, 2)]}


def test_window_is_bounded_by_points_and_bytes() -> None:
    w = Window(100, 10_000)
    for i in range(50):
        w.add(Confirmed(Package(None, b'x' * 100, 10, i)))
    assert w.points <= 100 and w.bytes <= 10_000 and len(w.items) == 10
    w = Window(10_000, 1000)
    for i in range(50):
        w.add(Confirmed(Package(None, b'x' * 300, 10, i)))
    assert w.bytes <= 1000 and len(w.items) == 3


def test_delivery_option_is_checked() -> None:
    with pytest.raises(ValueError, match='delivery must be one of'):
        WriteSession(object(), delivery='exactly')
    with pytest.raises(ValueError, match='window_points'):
        WriteSession(object(), window_points=0)
    assert WriteSession(object()).delivery == 'verified'


# --------------------------------------------------------- one server, faults

@pytest.mark.parametrize('fraction', [0.0, 0.3, 0.6])
async def test_verified_resends_only_the_missing_part(
        server: EmbeddedServer, client: SiriDBClient, fraction: float) -> None:
    faults = InsertFaults.attach(server)
    s = checked_session(client, 'verified', autocommit_every=1000)
    faults.partial_then_drop(fraction=fraction)
    pts = [(f's{i}', t, t) for i in range(5) for t in range(4)]
    pts += [('s0', 1, 1), ('s4', 2, 2)]  # written twice on purpose
    await s.write_many(pts)
    await asyncio.wait_for(s.close(), 10)
    assert held(server, [f's{i}' for i in range(5)]) == Counter(pts)
    st = s.stats()
    assert (st.written, st.pending, st.unknown) == (22, 0, 1) and st.verifications >= 1
    k = min(4, max(1, int(5 * fraction)))  # series the fault stored (at least one)
    kept = sum(5 if i in (0, 4) else 4 for i in range(k))
    assert st.missing == st.resent == 22 - kept and st.resent_packages == 1


@pytest.mark.parametrize('store', [True, False])
async def test_verified_never_answered_insert(server: EmbeddedServer,
                                              client: SiriDBClient, store: bool) -> None:
    """The 5-minute forwarded-insert case: the attempt times out
    (insert_timeout), is checked and only what lacks is sent again."""
    faults = InsertFaults.attach(server)
    faults.never_answer(store=store)
    s = checked_session(client, 'verified', insert_timeout=0.2)
    await s.write_many([('q', 1, 5), ('q', 2, 6), ('q', 2, 6)])
    await asyncio.wait_for(s.close(), 10)
    assert held(server, ['q']) == Counter([('q', 1, 5), ('q', 2, 6), ('q', 2, 6)])
    st = s.stats()
    assert st.unknown == 1 and st.missing == (0 if store else 3) and st.written == 3


async def test_verified_restores_the_last_acknowledged_point_after_a_crash(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    """Read-your-writes: the server loses the last point it acknowledged
    (SiriDB 2.0.55 after a SIGKILL); the session checks its window once the
    connection is back and sends that point again."""
    faults = InsertFaults.attach(server)
    faults.lose_last_acked = True
    s = checked_session(client, 'verified', autocommit_every=10, flush_interval=0.01)
    pts = [('r', t, float(t)) for t in range(30)]
    await s.write_many(pts)
    await s.commit()
    lost = await faults.crash()
    assert lost == ('r', 29, 29.0) and held(server, ['r'])[lost] == 0
    await server.start()
    await poll(lambda: s.stats().lost_confirmed == 1)
    await s.commit()
    await asyncio.wait_for(s.close(), 10)
    assert held(server, ['r']) == Counter(pts)
    st = s.stats()
    assert st.written == 30 and st.missing == 1 and st.resent == 1 and st.unknown == 0


async def test_at_least_once_keeps_no_window(server: EmbeddedServer,
                                             client: SiriDBClient) -> None:
    faults = InsertFaults.attach(server)
    faults.lose_last_acked = True
    s = checked_session(client, 'at_least_once', autocommit_every=10)
    await s.write_many([('z', t, t) for t in range(20)])
    await s.commit()
    await faults.crash()
    await server.start()
    await client.wait_connected(5)
    await s.write('z', 1, 100)
    await asyncio.wait_for(s.close(), 10)
    assert len(held(server, ['z'])) == 20  # 19 of the first, the new one
    assert s.stats().verifications == 0


# ------------------------------------------------------------ cluster chaos

async def chaos(delivery: str, kill_at: int,
                seed: int) -> Tuple[Counter[Pt], Counter[Pt], WriteSession, int]:
    """A 3-server embedded cluster, several packages in flight, faults armed
    on every server at step ``kill_at`` and again later, one server crashed
    (losing its last acknowledged point) and restarted mid-stream."""
    names = [f'c{i}' for i in range(8)]
    sent: Counter[Pt] = Counter()
    async with EmbeddedCluster(n=3, databases={DB: 'ms'}) as cluster:
        faults = [InsertFaults.attach(srv) for srv in cluster.servers]
        victim = cluster.servers[seed % 3]
        c = fast_client(cluster.hostlist)
        await c.connect()
        try:
            s = checked_session(c, delivery, autocommit_every=40, max_in_flight=4,
                        flush_interval=0.005)
            for step in range(24):
                if step in (kill_at, kill_at + 9):
                    for k, f in enumerate(faults):
                        f.partial_then_drop(fraction=0.2 + 0.25 * k)
                        f.never_answer(store=(step + k) % 2 == 0)
                if step == kill_at + 4:
                    faults[seed % 3].lose_last_acked = True
                    await faults[seed % 3].crash()
                if step == kill_at + 6:
                    await victim.start()
                pts = [(names[(i + step) % 8], step * 50 + i // 2, float(i % 7))
                       for i in range(60)]  # (i // 2): some timestamps twice
                pts.append((names[step % 8], step * 50, float(0)))  # a duplicate on purpose
                await s.write_many(pts)
                sent.update(pts)
                await asyncio.sleep(0.003)
            await asyncio.wait_for(s.close(), 30)
        finally:
            c.close()
            await c.wait_closed()
        got = held(cluster, names)
    return sent, got, s, faults[seed % 3].lost


@pytest.mark.parametrize('kill_at', range(0, 10, 2))
async def test_verified_exactly_once_on_a_cluster_under_chaos(kill_at: int) -> None:
    sent, got, s, lost = await chaos('verified', kill_at, kill_at)
    assert lost in (0, 1)  # the last point the crashed server acknowledged, if any
    assert got == sent  # every point exactly as often as written
    st = s.stats()
    assert st.written == sum(sent.values()) and st.pending == 0
    assert st.unknown > 0 and st.verifications > 0


@pytest.mark.parametrize('kill_at', [1, 5])
async def test_at_least_once_loses_nothing_on_a_cluster_under_chaos(kill_at: int) -> None:
    sent, got, s, lost = await chaos('at_least_once', kill_at, kill_at)
    assert lost in (0, 1)
    # the point the crash took may be missing (this mode does not check),
    # nothing else; packages of unknown outcome were stored again
    assert len(set(sent) - set(got)) <= lost and sum((got - sent).values()) > 0
    st = s.stats()
    assert st.written == sum(sent.values()) and st.pending == 0
    assert st.unknown > 0 and st.verifications == 0


async def test_insert_once_and_query_each_on_a_cluster() -> None:
    """The client hooks of verified delivery: an insert on one server that
    says which one confirmed it, a query answered by every connected server."""
    from siridb.connector.lib.validate import pack_insert

    async with EmbeddedCluster(n=3, databases={DB: 'ms'}) as cluster:
        c = fast_client(cluster.hostlist)
        await c.connect()
        try:
            host = await c.insert_once(pack_insert({'h': [[1, 1]]}))
            assert (host.host, host.port) in cluster.hostlist
            replies = await c.query_each('select * from "h"')
            assert replies == [{'h': [[1, 1]]}] * 3
            await cluster.servers[1].stop()
            await poll(lambda: sum(h.up for h in c.hosts) == 2)
            assert len(await c.query_each('select * from "h"')) == 2
        finally:
            c.close()
            await c.wait_closed()
