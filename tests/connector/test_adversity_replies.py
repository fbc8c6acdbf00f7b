"""Property test: whatever a server sends back, every request ends cleanly.

A loopback server answers AUTH properly, then answers three in-flight
queries with hypothesis-made bytes: well-framed replies of any type with any
body (valid qpack or not), for the right pids or not, bad check bytes, raw
garbage, cut anywhere. Each request must end with a reply value or a
``SiriDBError`` (never another exception type, never a hang past its
timeout), and the loop must report no unretrieved exception. This is the
socket-level smoke (a few examples); the same property over many more
streams runs in memory against the request core (test_request_core.py).
"""
from __future__ import annotations

import asyncio
import gc
import struct
from typing import Any, Dict, List, Tuple

import qpack
from _strategies import qpack_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siridb.connector import async_connect
from siridb.connector.lib.exceptions import SiriDBError

HDR = struct.Struct('<IHBB')

values = qpack_values()

frames = st.tuples(
    st.sampled_from([1, 2, 3, 1, 2, 3, 0, 9, 65535]),  # pids 1-3 are in flight
    st.sampled_from([0, 1, 2, 3, 4, 5, 32, 33, 64, 65, 66, 67, 68, 69, 70, 71,
                     72, 96, 97, 6, 100, 191, 200, 255]),
    st.one_of(values.map(qpack.packb), st.binary(max_size=40),
              st.just(b''), st.sampled_from([b'\xfe', b'\xff\x00', b'\xfc\xfc'])),
    st.booleans(),  # check byte right?
)


def stream_of(items: List[Tuple[int, int, bytes, bool]], garbage: bytes) -> bytes:
    out = b''
    for pid, tp, body, check_ok in items:
        check = tp ^ 0xFF if check_ok else (tp ^ 0xFF) ^ 0x5A
        out += HDR.pack(len(body), pid, tp, check) + body
    return out + garbage


async def scenario(reply: bytes, cut: int, hang_up: bool) -> List[Any]:
    loop = asyncio.get_running_loop()
    loop_errors: List[Dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    requests = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        try:
            header = await reader.readexactly(8)
            length, pid, _tp, _check = HDR.unpack(header)
            await reader.readexactly(length)
            writer.write(HDR.pack(0, pid, 2, 2 ^ 0xFF))  # AUTH success
            while requests < 3:  # the three queries
                length, _pid, _tp, _check = HDR.unpack(await reader.readexactly(8))
                await reader.readexactly(length)
                requests += 1
            writer.write(reply[:cut])
            await writer.drain()
            await asyncio.sleep(0.005)
            writer.write(reply[cut:])
            await writer.drain()
            if not hang_up:
                await asyncio.sleep(0.3)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    try:
        conn = await async_connect('iris', 'siri', 'dbtest', '127.0.0.1', port, timeout=2)
        try:
            # most examples leave a request unanswered, which waits out this
            # deadline: short, yet far above the ~5 ms the reply takes here
            # (and a late reply ends its request by the timeout, also clean)
            results = await asyncio.wait_for(asyncio.gather(
                *(conn.query(f'q{i}', timeout=0.08) for i in range(3)),
                return_exceptions=True), 2)
        finally:
            conn.close()
            await conn.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    await asyncio.sleep(0)
    gc.collect()  # unretrieved exceptions are reported on collection
    await asyncio.sleep(0)
    assert not loop_errors, [c.get('message') for c in loop_errors]
    return results


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(frames, max_size=5), garbage=st.binary(max_size=16),
       cut=st.integers(0, 400), hang_up=st.booleans())
def test_any_reply_stream_ends_every_request_cleanly(
        items: List[Tuple[int, int, bytes, bool]], garbage: bytes, cut: int,
        hang_up: bool) -> None:
    reply = stream_of(items, garbage)
    results = asyncio.run(scenario(reply, cut % (len(reply) + 1), hang_up))
    assert len(results) == 3
    for r in results:
        if isinstance(r, BaseException):
            assert isinstance(r, SiriDBError), repr(r)  # typed, nothing else


def test_a_clean_reply_is_returned() -> None:
    # the harness itself: proper replies for pids 1-3 come back as values
    reply = stream_of([(1, 0, qpack.packb({'a': 1}), True),
                       (3, 0, qpack.packb({'c': 3}), True),
                       (2, 65, qpack.packb({'error_msg': 'bad'}), True)], b'')
    results = asyncio.run(scenario(reply, 5, True))
    assert results[0] == {'a': 1}
    assert results[2] == {'c': 3}
    assert isinstance(results[1], SiriDBError) and str(results[1]) == 'bad'
