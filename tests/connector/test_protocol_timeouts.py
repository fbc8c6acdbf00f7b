"""Request timeouts of SiriDBProtocol (one deadline heap and one loop timer per
connection): mixed and out-of-order deadlines, answered requests never time
out, the heap stays bounded, close leaves no timer behind; write batches of
WRITE_BATCH requests leave without waiting for the end of the iteration, and
big bodies leave at once, in order."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, List, Tuple

import pytest
from _driver_helpers import ScriptedConn, ScriptedServer, scripted_connection

from siridb.connector.lib import exceptions as ex
from siridb.connector.lib import protomap as pm
from siridb.connector.lib.codec import Package
from siridb.connector.lib.protocol import BIG_WRITE, WRITE_BATCH, SiriDBProtocol


def _stall_or_echo(stalled: List[Package]) -> Any:
    def handler(conn: ScriptedConn, pkg: Package) -> None:
        if pkg.tp == pm.CPROTO_REQ_AUTH:
            conn.reply(pkg.pid, pm.CPROTO_RES_AUTH_SUCCESS)
            return
        data = pkg.data()
        if isinstance(data, str) and data.startswith('stall'):
            stalled.append(pkg)
        else:
            conn.reply(pkg.pid, pm.CPROTO_RES_QUERY, data)
    return handler


@asynccontextmanager
async def _scripted(handler: Any) -> AsyncIterator[Tuple[ScriptedServer, SiriDBProtocol]]:
    """``scripted_connection`` giving the connection's protocol."""
    async with scripted_connection(handler) as (srv, conn):
        proto = conn._protocol
        assert proto is not None
        yield srv, proto


async def test_each_request_times_out_at_its_own_deadline() -> None:
    stalled: List[Package] = []
    async with _scripted(_stall_or_echo(stalled)) as (srv, proto):
        loop = asyncio.get_running_loop()
        failed_at: Dict[str, float] = {}
        start = loop.time()

        async def call(name: str, timeout: float) -> Any:
            try:
                return await proto.send_package(pm.CPROTO_REQ_QUERY, name, timeout=timeout)
            except ex.RequestTimeoutError:
                failed_at[name] = loop.time() - start
                raise

        # a later request with an earlier deadline must not wait for the first
        long = proto.send_package(pm.CPROTO_REQ_QUERY, 'stall-long', timeout=30)
        res = await asyncio.gather(
            call('stall-a', 0.3), call('stall-b', 0.1), call('echo', 0.15),
            call('stall-c', 0.2), return_exceptions=True)
        assert res[2] == 'echo'  # answered in time: never failed
        for i in (0, 1, 3):
            assert isinstance(res[i], ex.RequestTimeoutError)
        assert 'within 0.3 s' in str(res[0])
        assert sorted(failed_at, key=failed_at.__getitem__) == [
            'stall-b', 'stall-c', 'stall-a']
        # never early; late by at most a loop stall on a loaded machine
        for name, limit in (('stall-b', 0.1), ('stall-c', 0.2), ('stall-a', 0.3)):
            assert limit - 0.01 <= failed_at[name] < limit + 1.0
        assert not long.done()
        # timed-out pids stay reserved, the unanswered one too
        assert proto.pending == 4
    assert isinstance(long.exception(), ex.ClientClosedError)
    # close fails what is left and cancels the timer
    assert proto._timer is None
    assert proto.core.deadlines == []


async def test_request_without_timeout_waits_and_others_still_time_out() -> None:
    stalled: List[Package] = []
    async with _scripted(_stall_or_echo(stalled)) as (srv, proto):
        forever = proto.send_package(pm.CPROTO_REQ_QUERY, 'stall-forever', timeout=None)
        with pytest.raises(ex.RequestTimeoutError):
            await proto.send_package(pm.CPROTO_REQ_QUERY, 'stall-short', timeout=0.05)
        assert not forever.done()
        srv.conns[0].reply(stalled[0].pid, pm.CPROTO_RES_QUERY, 'at last')
        assert await forever == 'at last'


async def test_deadline_heap_stays_bounded_and_timeouts_still_fire() -> None:
    stalled: List[Package] = []
    async with _scripted(_stall_or_echo(stalled)) as (srv, proto):
        slow = asyncio.ensure_future(
            proto.send_package(pm.CPROTO_REQ_QUERY, 'stall', timeout=0.5))
        most = 0
        for start in range(0, 6000, 500):
            futs = [proto.send_package(pm.CPROTO_REQ_QUERY, i, timeout=60)
                    for i in range(start, start + 500)]
            most = max(most, len(proto.core.deadlines))
            assert await asyncio.gather(*futs) == list(range(start, start + 500))
        # answered requests leave stale heap entries; they are dropped
        assert most <= 2 * 501 + 1024 + 1
        with pytest.raises(ex.RequestTimeoutError):
            await slow
        assert proto.pending == 1


async def test_a_full_write_batch_goes_out_at_once() -> None:
    stalled: List[Package] = []
    async with _scripted(_stall_or_echo(stalled)) as (srv, proto):
        futs = [proto.send_package(pm.CPROTO_REQ_QUERY, i, timeout=30)
                for i in range(WRITE_BATCH - 1)]
        assert len(proto._wbuf) == WRITE_BATCH - 1  # still queued
        futs.append(proto.send_package(pm.CPROTO_REQ_QUERY, WRITE_BATCH - 1, timeout=30))
        assert proto._wbuf == []  # the full batch was written without waiting
        futs += [proto.send_package(pm.CPROTO_REQ_QUERY, i, timeout=30)
                 for i in range(WRITE_BATCH, WRITE_BATCH + 3)]
        assert len(proto._wbuf) == 3  # the rest leaves at the end of the iteration
        await asyncio.sleep(0)
        assert proto._wbuf == []
        assert await asyncio.gather(*futs) == list(range(WRITE_BATCH + 3))


async def test_a_big_body_goes_out_uncopied_behind_what_is_queued() -> None:
    seen: List[Any] = []

    def echo(conn: ScriptedConn, pkg: Package) -> None:
        if pkg.tp == pm.CPROTO_REQ_AUTH:
            conn.reply(pkg.pid, pm.CPROTO_RES_AUTH_SUCCESS)
            return
        seen.append(pkg.data())
        conn.reply(pkg.pid, pm.CPROTO_RES_QUERY, len(pkg.body))

    async with _scripted(echo) as (srv, proto):
        big = 'x' * BIG_WRITE
        futs = [proto.send_package(pm.CPROTO_REQ_QUERY, i, timeout=30) for i in range(3)]
        assert len(proto._wbuf) == 3
        futs.append(proto.send_package(pm.CPROTO_REQ_QUERY, big, timeout=30))
        assert proto._wbuf == []  # the queued ones left first, then the big one
        futs += [proto.send_package(pm.CPROTO_REQ_QUERY, i, timeout=30) for i in (3, 4)]
        assert len(proto._wbuf) == 2
        sizes = await asyncio.gather(*futs)
        assert seen == [0, 1, 2, big, 3, 4]  # arrival order is send order
        assert sizes[3] > BIG_WRITE and sizes[:3] == [1, 1, 1]
