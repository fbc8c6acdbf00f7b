"""The embedded server often runs inside a user's process (tests): however
busy, it never changes the process-wide state of the cyclic garbage collector
(enabled or not, thresholds) that user code sees, on the loop's thread or on
another one (issue 14)."""
from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Iterator, Set, Tuple

import pytest
from _embedded_helpers import RawConn

from siridb.connector.lib import protomap as pm
from siridb.connector.lib.codec import HEADER, packb
from siridb.embedded import EmbeddedServer
from siridb.embedded.bulk import BULK_BODY
from siridb.embedded.query.select import ROWS_STEP

State = Tuple[bool, Tuple[int, ...]]

#: points of the big insert (a body far over BULK_BODY: stored over many
#: turns) and of the big select's answer (many slices)
POINTS = 200_000


def gc_state() -> State:
    return gc.isenabled(), gc.get_threshold()


@pytest.fixture(params=[True, False], ids=['gc-on', 'gc-off'])
def user_gc(request: pytest.FixtureRequest) -> Iterator[State]:
    """The user's own GC settings (not Python's defaults), put back after."""
    saved = gc_state()
    gc.set_threshold(1234, 7, 3)
    (gc.enable if request.param else gc.disable)()
    try:
        yield gc_state()
    finally:
        gc.set_threshold(*saved[1])
        (gc.enable if saved[0] else gc.disable)()


async def read_reply(c: RawConn) -> Tuple[int, bytes]:
    """The next reply's type and body, not decoded (the client's decoding
    of big replies is not what this test is about)."""
    size, _pid, tp, _check = HEADER.unpack(await c.reader.readexactly(HEADER.size))
    return tp, await c.reader.readexactly(size)


async def test_a_busy_server_never_changes_the_process_gc_state(user_gc: State) -> None:
    seen: Set[State] = set()
    stop = threading.Event()

    def user_thread() -> None:  # user code on another thread
        while not stop.is_set():
            seen.add(gc_state())
            time.sleep(0.0002)

    async def user_task() -> None:  # user code on the server's loop
        while True:
            seen.add(gc_state())
            await asyncio.sleep(0)

    watcher = threading.Thread(target=user_thread)
    watcher.start()
    task = asyncio.ensure_future(user_task())
    try:
        async with EmbeddedServer(port=0) as srv:
            c = await RawConn.open(srv.host, srv.port)
            await c.auth()
            points = {'big': [[1_000_000 + i, i * 0.25] for i in range(POINTS)]}
            body = packb(points)
            assert len(body) > 10 * BULK_BODY  # stored in steps, over many turns
            c.send(pm.CPROTO_REQ_INSERT, body=body)
            for _ in range(3):
                c.send(pm.CPROTO_REQ_QUERY, ['select * from "big"', None])
                c.send(pm.CPROTO_REQ_QUERY, ['select mean(1m) from "big"', None])
                c.send(pm.CPROTO_REQ_PING)
            await c.writer.drain()
            replies = [await asyncio.wait_for(read_reply(c), 60) for _ in range(10)]
            assert [tp for tp, _ in replies] == [pm.CPROTO_RES_INSERT] + [
                pm.CPROTO_RES_QUERY, pm.CPROTO_RES_QUERY, pm.CPROTO_RES_ACK] * 3
            # the answers of `select *` were made in many slices
            assert POINTS > 10 * ROWS_STEP
            assert all(len(replies[i][1]) > 1_000_000 for i in (1, 4, 7))
            await c.close()
    finally:
        task.cancel()
        stop.set()
        watcher.join()
    assert seen == {user_gc}
