"""What an insert's error reply says about its outcome (SiriDB 2.0.55):
ServerError (67) and PoolError (68) are answered before anything is stored,
so a write session sends the package again after its backoff without a
check; an InsertError (66) about a failed forward comes after the receiving
server stored its own pool's part (``InsertForwardError``: unknown outcome,
retriable, checked in verified mode)."""
from __future__ import annotations

import asyncio
import pickle
from collections import Counter
from typing import Any, AsyncIterator, List, Tuple

import pytest
from _embedded_helpers import held, poll
from _session_helpers import checked_session, connected, fast_client

from siridb.connector import SiriDBClient
from siridb.connector.lib import exceptions
from siridb.connector.lib.constants import NO_CONNECTIONS
from siridb.connector.lib.delivery import Confirmed, Window
from siridb.connector.lib.exceptions import (
    ClientClosedError,
    ConnectionLostError,
    Failover,
    InsertError,
    InsertForwardError,
    PoolError,
    RequestTimeoutError,
    ServerError,
    TooManyRequestsError,
    error_for_response,
    failover_of,
    is_retriable,
    outcome_known,
)
from siridb.connector.lib.writebuffer import Package
from siridb.embedded import EmbeddedServer
from siridb.embedded.faults import InsertFaults
from siridb.wire import types as pm

FORWARD = "Error occurred while sending points to at least 'srv2:9010'"
CRITICAL = "Critical error occurred on 'srv1:9010'"


@pytest.fixture
async def client(server: EmbeddedServer) -> AsyncIterator[SiriDBClient]:
    async with connected(fast_client([(server.host, server.port)])) as c:
        yield c


# ----------------------------------------------------------- the classes

@pytest.mark.parametrize('text', [FORWARD, CRITICAL])
def test_a_failed_forward_is_an_insert_error_of_unknown_outcome(text: str) -> None:
    exc = error_for_response(pm.CPROTO_ERR_INSERT, {'error_msg': text})
    assert type(exc) is InsertForwardError and isinstance(exc, InsertError)
    assert str(exc) == text and exc.tp == pm.CPROTO_ERR_INSERT
    assert is_retriable(exc) and not outcome_known(exc)
    assert failover_of(exc) is Failover.RAISE  # the pool hands it to the caller
    again = pickle.loads(pickle.dumps(exc))
    assert type(again) is InsertForwardError and str(again) == text
    assert 'InsertForwardError' in exceptions.__all__ and 'outcome_known' in exceptions.__all__


def test_other_insert_errors_stay_refusals() -> None:
    for text in ('Expecting an integer value as time-stamp.',
                 'error occurred while sending points to at least x',  # not the server's case
                 "Critical error occurred"):  # without the server's name
        exc = error_for_response(pm.CPROTO_ERR_INSERT, {'error_msg': text})
        assert type(exc) is InsertError, text
        assert not is_retriable(exc) and outcome_known(exc)
    # the same text under another type is not refined
    assert type(error_for_response(pm.CPROTO_ERR_QUERY, {'error_msg': FORWARD})) \
        is exceptions.QueryError


def test_which_failures_say_nothing_was_stored() -> None:
    known = [error_for_response(pm.CPROTO_ERR_SERVER, {'error_msg': 'not running'}),
             error_for_response(pm.CPROTO_ERR_POOL, {'error_msg': 'a pool is down'}),
             PoolError(NO_CONNECTIONS), TooManyRequestsError('x'), InsertError('x')]
    unknown = [ConnectionLostError('x'), RequestTimeoutError('x'), ClientClosedError('x'),
               InsertForwardError(FORWARD), ConnectionResetError(), TimeoutError(),
               asyncio.TimeoutError(), OSError()]
    assert [type(e) for e in known[:2]] == [ServerError, PoolError]
    assert all(outcome_known(e) for e in known), [e for e in known if not outcome_known(e)]
    assert not any(outcome_known(e) for e in unknown), [e for e in unknown
                                                         if outcome_known(e)]


# ------------------------------------------------------ the verify window

class Host:
    def __init__(self) -> None:
        self.protocol: Any = None


def test_a_first_connection_is_not_a_lost_one() -> None:
    """Servers not connected when the session started: their first
    connection does not make the window suspect; a later change does."""
    a, b = Host(), Host()
    w = Window(100, 1 << 20, [a, b])
    a.protocol = 'a1'
    w.add(Confirmed(Package({'s': [(1, 1)]}, None, 1, 1), a))
    assert not w.suspect()
    b.protocol = 'b1'  # connected later, confirmed nothing
    assert not w.suspect()
    a.protocol = 'a2'  # reconnected: what a1 acknowledged may be lost
    assert w.suspect()
    w.checked()
    assert not w.suspect()
    b.protocol = None  # down at a check, back later: checked again
    w.checked()
    b.protocol = 'b2'
    assert w.suspect()


def test_a_first_confirmation_on_a_lost_connection_is_suspect() -> None:
    a = Host()
    w = Window(100, 1 << 20, [a])
    w.add(Confirmed(Package({'s': [(1, 1)]}, None, 1, 1), a))  # lost before it was kept
    a.protocol = 'a1'
    assert w.suspect()


# -------------------------------------------------- against the server

async def test_client_insert_raises_the_forward_error(server: EmbeddedServer,
                                                      client: SiriDBClient) -> None:
    """Not retried inside the pool (unknown outcome): exactly the part the
    fault stored is there, and the caller gets an InsertError subclass."""
    faults = InsertFaults.attach(server)
    faults.forward_error(fraction=0.5)
    data = {name: [[1, 1], [2, 2]] for name in ('a', 'b', 'c', 'd')}
    with pytest.raises(InsertError) as info:
        await client.insert(data)
    assert type(info.value) is InsertForwardError
    assert str(info.value) == ("Error occurred while sending points to at least "
                               f"'{server.name}'")
    assert faults.forward == 1
    assert held(server, list(data)) == Counter(
        {(n, t, t): 1 for n in ('a', 'b') for t in (1, 2)})


Pt = Tuple[str, int, Any]
POINTS: List[Pt] = [(f's{i}', t, t) for i in range(4) for t in range(5)] + [('s0', 1, 1)]


@pytest.mark.parametrize('fraction', [0.0, 0.5])
async def test_verified_stores_every_point_once_after_a_forward_error(
        server: EmbeddedServer, client: SiriDBClient, fraction: float) -> None:
    faults = InsertFaults.attach(server)
    faults.forward_error(fraction=fraction)
    s = checked_session(client, 'verified')
    await s.write_many(POINTS)
    await asyncio.wait_for(s.close(), 10)
    assert held(server, [f's{i}' for i in range(4)]) == Counter(POINTS)
    st = s.stats()
    # the fault stores at least one series: s0 (6 points), with 0.5 s1 (5) too
    kept = 6 if fraction == 0 else 11
    assert (st.written, st.rejected, st.pending, st.unknown) == (21, 0, 0, 1)
    assert st.verifications == 1 and st.missing == st.resent == 21 - kept
    assert faults.forward == 1


async def test_at_least_once_resends_the_package_after_a_forward_error(
        server: EmbeddedServer, client: SiriDBClient) -> None:
    faults = InsertFaults.attach(server)
    faults.forward_error(fraction=0.5)
    s = checked_session(client, 'at_least_once')
    await s.write_many(POINTS)
    await asyncio.wait_for(s.close(), 10)
    got = held(server, [f's{i}' for i in range(4)])
    want = Counter(POINTS)
    assert all(got[p] >= k for p, k in want.items()) and set(got) == set(want)
    assert sum(got.values()) == 21 + 11  # the stored part twice
    st = s.stats()
    assert (st.written, st.rejected, st.pending, st.unknown) == (21, 0, 0, 1)
    assert st.verifications == 0


@pytest.mark.parametrize('fault', ['pause', 'pool_error'])
async def test_a_refusal_is_resent_without_a_check(server: EmbeddedServer,
                                                   client: SiriDBClient,
                                                   fault: str) -> None:
    """A paused server (67) or a pool offline (68) stores nothing: the
    session sends the package again once the server takes it, with no check
    and without waiting ``verify_settle`` (5 s, the default here)."""
    s = checked_session(client, 'verified', verify_settle=5.0, flush_interval=0.01)
    await s.write_many(POINTS[:10])
    await s.commit()
    if fault == 'pause':
        server.pause()
    else:
        server.pool_error(True)
    try:
        await s.write_many(POINTS[10:])
        await poll(lambda: s.retried > 0, timeout=5)  # refused at least once
    finally:
        server.resume()
        server.pool_error(False)
    await poll(lambda: s.pending == 0, timeout=1.5)  # well under verify_settle
    await asyncio.wait_for(s.close(), 1.5)
    assert held(server, [f's{i}' for i in range(4)]) == Counter(POINTS)
    st = s.stats()
    assert (st.verifications, st.unknown, st.written) == (0, 0, 21)
