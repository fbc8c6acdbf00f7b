"""Attacks on the embedded server's resources (issue 13, items 5, 6, 9, 10 and
12), each scaled down but of the same shape, against a real server: a PING
from another client must answer quickly during the attack and the server's
peak memory stays bounded (a server in a subprocess, peak RSS from
/proc/PID/status)."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from typing import AsyncIterator, List, Optional, Tuple

import pytest
from _embedded_helpers import RawConn
from _paths import ROOT as PROJECT

from siridb.connector.lib import protomap as pm
from siridb.connector.lib.codec import HEADER, encode, packb
from siridb.embedded import EmbeddedServer
from siridb.embedded.limits import EXPOSED_AUTH_FAIL_DELAY, Limits, limits_for
from siridb.wire.decode import unpack_body

ROOT = str(PROJECT)
LINUX = sys.platform.startswith('linux')


# -- helpers -------------------------------------------------------------

class ServerProcess:
    """``python -m siridb.embedded`` on a free loopback port."""

    def __init__(self, *args: str, nofile: Optional[int] = None,
                 accept_retry_delay: Optional[float] = None) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        # asyncio re-arms a listening socket ACCEPT_RETRY_DELAY (1 s) after a
        # failed accept; a test of running out of file descriptors sets it
        # shorter (in the server process alone) to see many retries quickly
        main = ['-m', 'siridb.embedded'] if accept_retry_delay is None else [
            '-c', 'import asyncio.constants, runpy; '
                  f'asyncio.constants.ACCEPT_RETRY_DELAY = {accept_retry_delay!r}; '
                  "runpy.run_module('siridb.embedded', run_name='__main__', "
                  'alter_sys=True)']

        def limit_files() -> None:  # runs in the child before exec
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [sys.executable, *main, '--port', '0',
             '--log-level', 'warning', *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            preexec_fn=limit_files)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        m = re.search(r'listening on ([\d.]+):(\d+)', line)
        assert m, line
        self.host, self.port = m.group(1), int(m.group(2))

    def peak_rss(self) -> int:
        """Peak resident memory of the server so far (bytes)."""
        with open(f'/proc/{self.proc.pid}/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
        raise AssertionError('no VmHWM')

    def stop(self) -> str:
        """Stop the server; its log (stderr)."""
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors='replace')


async def ping_times(host: str, port: int, n: int) -> List[float]:
    """Round trips of ``n`` PINGs, one after the other, on a new connection."""
    c = await RawConn.open(host, port)
    try:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            tp, _ = await c.request(pm.CPROTO_REQ_PING, timeout=30)
            times.append(time.perf_counter() - t0)
            assert tp == pm.CPROTO_RES_ACK
        return times
    finally:
        await c.close()


async def poll(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await cond():
            return True
        await asyncio.sleep(0.02)
    return False


async def can_ping(host: str, port: int) -> bool:
    """Whether a new connection gets its PING answered (within 0.5 s)."""
    try:
        c = await RawConn.open(host, port)
    except OSError:
        return False
    try:
        c.send(pm.CPROTO_REQ_PING)
        reply = await c.recv(timeout=0.5)
        return reply is not None and reply[1] == pm.CPROTO_RES_ACK
    except ConnectionError:  # closed at once (connection limit)
        return False
    finally:
        await c.close()


@pytest.fixture
async def proc() -> AsyncIterator[ServerProcess]:
    p = ServerProcess()
    yield p
    p.stop()


# -- 5: replies that the client never reads ------------------------------

#: points in the series the selects read: one reply is about 0.5 MB and
#: costs about 15 ms to build
BIG_POINTS = 50_000
#: pipelined selects of the attack (the old server built all 100 replies in
#: one go: the loop froze for 1.5-2.5 s and held 50 MB more)
SELECTS = 100


@pytest.mark.skipif(not LINUX, reason='peak RSS from /proc')
async def test_unread_replies_neither_starve_others_nor_grow_memory(proc):
    c = await RawConn.open(proc.host, proc.port)
    await c.auth()
    tp, _ = await c.request(pm.CPROTO_REQ_INSERT, {
        'big': [[i, i * 7] for i in range(BIG_POINTS)]}, timeout=30)
    assert tp == pm.CPROTO_RES_INSERT
    other = await RawConn.open(proc.host, proc.port)
    assert (await other.request(pm.CPROTO_REQ_PING))[0] == pm.CPROTO_RES_ACK
    before = proc.peak_rss()
    # the attacker pipelines selects and never reads a reply
    for _ in range(SELECTS):
        c.send(pm.CPROTO_REQ_QUERY, ['select * from "big"', None])
    await c.writer.drain()
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        assert (await other.request(pm.CPROTO_REQ_PING, timeout=30))[0] == \
            pm.CPROTO_RES_ACK
        times.append(time.perf_counter() - t0)
    # a PING waits for at most one select in the making (the old server
    # answered the first one after all 100 selects)
    assert statistics.median(times) < 0.1, times
    assert max(times) < 0.3, times
    # the server holds about one high water mark (1 MiB) of replies plus one
    # select in the making for this client (measured: 9-16 MB more at the
    # peak), not all 100 replies (50 MB)
    grown = proc.peak_rss() - before
    assert grown < 30 * 2 ** 20, grown
    # the attacker's requests were kept, not lost: reading resumes them
    for _ in range(5):
        reply = await c.recv(timeout=30)
        assert reply is not None and reply[1] == pm.CPROTO_RES_QUERY
    await c.close()
    await other.close()


#: item 5 at full scale: `select *` of a series of 1,000,000 points is a
#: 9.5 MB reply that takes 0.3-0.5 s to make and pack; the attacker
#: pipelines 250 of them and never reads
HUGE_POINTS = 1_000_000
HUGE_SELECTS = 250
#: selects of a second attacker that reads its replies, so that the server
#: makes one big reply after the other for the whole measurement (1-1.5 s:
#: 40-100 PINGs, each of which the old server held up for most of a reply)
READ_SELECTS = 3


async def read_replies(c: RawConn, n: int) -> List[bytes]:
    """The bodies of the next ``n`` replies, not decoded (a reply of a
    million points costs the test process 0.3 s to decode)."""
    bodies = []
    for _ in range(n):
        size, _pid, tp, _check = HEADER.unpack(
            await c.reader.readexactly(HEADER.size))
        assert tp == pm.CPROTO_RES_QUERY, tp
        bodies.append(await c.reader.readexactly(size))
    return bodies


@pytest.mark.skipif(not LINUX, reason='peak RSS from /proc')
async def test_selects_of_a_huge_series_never_hold_up_a_ping(proc):
    c = await RawConn.open(proc.host, proc.port)
    await c.auth()
    step = 200_000
    for k in range(0, HUGE_POINTS, step):
        tp, _ = await c.request(pm.CPROTO_REQ_INSERT, {
            'huge': [[1_000_000 + i, i * 0.5] for i in range(k, k + step)]},
            timeout=60)
        assert tp == pm.CPROTO_RES_INSERT
    reader = await RawConn.open(proc.host, proc.port)
    await reader.auth()
    other = await RawConn.open(proc.host, proc.port)
    assert (await other.request(pm.CPROTO_REQ_PING))[0] == pm.CPROTO_RES_ACK
    before = proc.peak_rss()
    query = ['select * from "huge"', None]
    for _ in range(HUGE_SELECTS):
        c.send(pm.CPROTO_REQ_QUERY, query)
    await c.writer.drain()
    for _ in range(READ_SELECTS):
        reader.send(pm.CPROTO_REQ_QUERY, query)
    replies = asyncio.ensure_future(read_replies(reader, READ_SELECTS))
    times = []
    while not replies.done():
        t0 = time.perf_counter()
        assert (await other.request(pm.CPROTO_REQ_PING, timeout=30))[0] == \
            pm.CPROTO_RES_ACK
        times.append(time.perf_counter() - t0)
    bodies = await replies
    assert len(bodies) == READ_SELECTS
    assert all(body == bodies[0] for body in bodies)
    # a PING waits for at most one slice (10 ms) of a select in the making;
    # the old server made each reply in one go (0.3-0.5 s) and a PING
    # waited for the rest of it
    # (measured: median 11-16 ms, 90% under 22-31 ms, the slowest 39-70 ms;
    # the old server: 90% under 0.25-0.31 s, the slowest 0.54-1.0 s). All
    # PINGs under 100 ms but for the odd outlier of a busy shared machine:
    times.sort()
    assert len(times) >= 20, times
    assert sum(t >= 0.1 for t in times) <= len(times) // 20, times
    assert times[-1] < 0.3, times
    # one reply in the making per attacker and the packed replies, never the
    # rows of a whole reply as lists (measured: 25 MB more at the peak; the
    # old server: 159 MB)
    grown = proc.peak_rss() - before
    assert grown < 60 * 2 ** 20, grown
    # the replies are the points
    points = unpack_body(bodies[0])['huge']
    assert len(points) == HUGE_POINTS
    assert points[:2] == [[1_000_000, 0.0], [1_000_001, 0.5]]
    await c.close()
    await reader.close()
    await other.close()


async def total_unsent_of_hogs(limits: Limits) -> Tuple[int, int]:
    """12 clients that never read, each with 10 selects of a ~0.5 MB reply
    queued: the server's unsent reply bytes once they stop growing, and the
    allowed bound (the budget plus one reply per connection)."""
    async with EmbeddedServer(port=0, limits=limits) as srv:
        c = await RawConn.open(srv.host, srv.port)
        await c.auth()
        await c.request(pm.CPROTO_REQ_INSERT, {
            'big': [[i, i] for i in range(50_000)]})  # ~0.5 MB per reply
        await c.close()
        hogs = []
        for _ in range(12):
            h = await RawConn.open(srv.host, srv.port, rcvbuf=4096)
            await h.auth()
            for _ in range(10):
                h.send(pm.CPROTO_REQ_QUERY, ['select * from "big"', None])
            hogs.append(h)
        # let the hogs take what they can: until their unsent replies stop
        # growing for a while (the budget holds them back)
        allowed = limits.reply_budget + 12 * 600_000

        async def settled() -> bool:
            before = srv.unsent_total()
            await asyncio.sleep(0.15)
            return 0 < before == srv.unsent_total() or before > allowed
        assert await poll(settled)
        # a client that reads its replies still gets answers
        assert max(await ping_times(srv.host, srv.port, 5)) < 1.0
        unsent = srv.unsent_total()
        for h in hogs:
            await h.close()
        return unsent, allowed


async def test_total_reply_budget_holds_back_clients_that_do_not_read():
    # each connection's own high water (16 MiB) is far above what the budget
    # lets all of them hold together: only the budget can keep them within it
    limits = Limits(reply_high_water=16 * 2 ** 20, reply_low_water=1 * 2 ** 20,
                    reply_budget=2 * 2 ** 20)
    unsent, allowed = await total_unsent_of_hogs(limits)
    # unsent replies: the budget, plus at most one reply of a connection
    # that had nothing unsent when it took its request
    assert unsent <= allowed, (unsent, allowed)
    # the same clients with a budget that does not bind hold more
    unbound, _ = await total_unsent_of_hogs(
        dataclasses.replace(limits, reply_budget=1 << 40))
    assert unbound > allowed, (unbound, allowed)


# -- 6: bodies before authentication -------------------------------------

async def test_big_body_before_auth_closes_from_its_header():
    async with EmbeddedServer(port=0) as srv:
        c = await RawConn.open(srv.host, srv.port)
        # only the header of a 1 MiB AUTH: closed without waiting for the body
        c.send_raw(HEADER.pack(2 ** 20, 1, pm.CPROTO_REQ_AUTH,
                               pm.CPROTO_REQ_AUTH ^ 0xFF))
        assert await c.is_closed_by_peer(timeout=5)
        await c.close()
        # a body within the cap still gets its answer
        c = await RawConn.open(srv.host, srv.port)
        tp, _ = await c.request(pm.CPROTO_REQ_SERVICE,
                                ['sa', 'x' * 4000, pm.SERVICE_GET_VERSION, {}])
        assert tp == pm.CPROTO_ERR_SERVICE
        # after AUTH, big bodies are fine again
        await c.auth()
        tp, _ = await c.request(pm.CPROTO_REQ_INSERT, {
            'a': [[i, i] for i in range(20_000)]})
        assert tp == pm.CPROTO_RES_INSERT
        # but no AUTH or SERVICE body is decoded beyond the cap: an invalid
        # service request (97), no answer to such an AUTH
        tp, _ = await c.request(pm.CPROTO_REQ_SERVICE, [
            'sa', 'siri', pm.SERVICE_GET_VERSION, {'x': list(range(5_000))}])
        assert tp == pm.CPROTO_ERR_SERVICE_INVALID_REQUEST
        # (a connection's requests are handled in order: the first reply
        # after the AUTH is that of the PING sent after it)
        c.send(pm.CPROTO_REQ_AUTH, ['iris', 'siri', 'dbtest', 'x' * 9000])
        pid = c.send(pm.CPROTO_REQ_PING)
        assert await c.recv() == (pid, pm.CPROTO_RES_ACK, None)
        await c.close()


@pytest.mark.skipif(not LINUX, reason='peak RSS from /proc')
async def test_wide_bodies_before_auth_cost_neither_time_nor_memory(proc):
    before = proc.peak_rss()
    # 20 connections each send a 2 MB wide SERVICE body (the old server
    # buffered and decoded every one: PINGs up to 0.38 s, 46 MB more; now
    # 2.4 MB more, PINGs within 10 ms)
    wide = encode(1, pm.CPROTO_REQ_SERVICE,
                  packb(['sa', 'siri', 1, {'x': list(range(400_000))}]))
    conns = [await RawConn.open(proc.host, proc.port) for _ in range(20)]
    for c in conns:
        c.send_raw(wide)
    times = await ping_times(proc.host, proc.port, 20)
    for c in conns:
        assert await c.is_closed_by_peer(timeout=5)
        await c.close()
    assert max(times) < 0.2, times
    grown = proc.peak_rss() - before
    assert grown < 16 * 2 ** 20, grown


async def test_bytes_buffered_before_auth_have_a_total_budget():
    limits = Limits(pre_auth_buffer_budget=40_000)
    async with EmbeddedServer(port=0, limits=limits) as srv:
        conns = []
        for _ in range(8):  # each holds 7 KiB of an AUTH body that never ends
            c = await RawConn.open(srv.host, srv.port)
            c.send_raw(HEADER.pack(8000, 1, pm.CPROTO_REQ_AUTH,
                                   pm.CPROTO_REQ_AUTH ^ 0xFF) + b'\x80' * 7000)
            conns.append(c)
        assert await poll(lambda: _true(srv.pre_auth_buffered >= 35_000
                                         or len(srv.connections) < 8))
        # the connections over the budget were closed; the total stays in it
        assert srv.pre_auth_buffered <= limits.pre_auth_buffer_budget
        closed = await asyncio.gather(*(c.is_closed_by_peer(timeout=0.2) for c in conns))
        assert any(closed) and not all(closed)
        for c in conns:
            await c.close()
        assert await poll(lambda: _true(srv.pre_auth_buffered == 0))


async def _true(value: bool) -> bool:
    return value


# -- 10: idle connections, connection limit ------------------------------

async def test_idle_unauthenticated_connection_is_closed():
    limits = Limits(pre_auth_idle_timeout=0.3)
    async with EmbeddedServer(port=0, limits=limits) as srv:
        t0 = time.monotonic()
        idle = await RawConn.open(srv.host, srv.port)
        authed = await RawConn.open(srv.host, srv.port)
        await authed.auth()
        busy = await RawConn.open(srv.host, srv.port)
        # requests keep a connection open, authenticated ones never time out
        for _ in range(5):
            assert (await busy.request(pm.CPROTO_REQ_PING))[0] == pm.CPROTO_RES_ACK
            await asyncio.sleep(0.15)
        assert (await authed.request(pm.CPROTO_REQ_PING))[0] == pm.CPROTO_RES_ACK
        assert await idle.is_closed_by_peer(timeout=5)
        assert time.monotonic() - t0 < 3
        for c in (idle, authed, busy):
            await c.close()


async def test_connection_limit_closes_new_connections():
    async with EmbeddedServer(port=0, limits=Limits(max_connections=5)) as srv:
        conns = [await RawConn.open(srv.host, srv.port) for _ in range(5)]
        assert await poll(lambda: _true(len(srv.connections) == 5))
        extra = await RawConn.open(srv.host, srv.port)
        assert await extra.is_closed_by_peer(timeout=5)
        await extra.close()
        await conns.pop().close()
        assert await poll(lambda: _true(len(srv.connections) == 4))
        new = await RawConn.open(srv.host, srv.port)
        assert (await new.request(pm.CPROTO_REQ_PING))[0] == pm.CPROTO_RES_ACK
        for c in conns + [new]:
            await c.close()


@pytest.mark.skipif(not LINUX, reason='RLIMIT_NOFILE in a subprocess')
async def test_idle_sockets_at_the_open_file_limit_lock_nobody_out():
    # 200 idle sockets against a server allowed 100 open files: the old
    # server ran out of file descriptors and never recovered (accept errors
    # logged over and over); now the excess is closed at once and the idle
    # ones after the pre-auth timeout
    # (a pre-auth timeout and an accept retry delay shorter than the
    # defaults, 30 s and asyncio's 1 s, so that recovery takes a fraction
    # of a second)
    p = ServerProcess('--pre-auth-timeout', '0.3', nofile=100, accept_retry_delay=0.1)
    try:
        conns = []
        for _ in range(200):
            try:
                conns.append(await RawConn.open(p.host, p.port))
            except OSError:
                pass

        assert await poll(lambda: can_ping(p.host, p.port), timeout=10)
        for c in conns:
            await c.close()
    finally:
        err = p.stop()
    assert p.proc.returncode == 0, err
    assert len(err.splitlines()) < 20, err[-3000:]


@pytest.mark.skipif(not LINUX, reason='RLIMIT_NOFILE in a subprocess')
async def test_accept_errors_out_of_file_descriptors_are_logged_rarely():
    # no connection limit, 64 open files, 150 sockets for 0.6 s: the old
    # server logged a traceback for every failed accept (about 1,800 lines,
    # 130 KB in 3 s); now one line per 10 s, and it serves again once files
    # are free. asyncio retries a failed accept after 0.1 s here (1 s by
    # default): the attack sees about six failed accepts, as many as 6 s would
    p = ServerProcess('--max-connections', '0', nofile=64, accept_retry_delay=0.1)
    try:
        conns = []
        for _ in range(150):
            try:
                conns.append(await RawConn.open(p.host, p.port))
            except OSError:
                pass
        await asyncio.sleep(0.6)  # the attack goes on for a while
        for c in conns:
            c.writer.transport.abort()

        assert await poll(lambda: can_ping(p.host, p.port), timeout=10)
    finally:
        err = p.stop()
    lines = err.splitlines()
    assert 1 <= sum('cannot accept' in line for line in lines) <= 2, err[-2000:]
    assert len(lines) <= 4, err[-2000:]


# -- 12: delay after failed logins ----------------------------------------

async def test_failed_logins_are_answered_later_per_peer():
    delay = 0.1
    async with EmbeddedServer(port=0, limits=Limits(auth_fail_delay=delay)) as srv:
        a = await RawConn.open(srv.host, srv.port)
        b = await RawConn.open(srv.host, srv.port)
        t0 = time.monotonic()
        # 3 wrong passwords pipelined on one connection, 2 on another
        pids_a = [a.send(pm.CPROTO_REQ_AUTH, ['iris', f'x{i}', 'dbtest'])
                  for i in range(3)]
        pids_b = [b.send(pm.CPROTO_REQ_SERVICE,
                         ['sa', f'x{i}', pm.SERVICE_GET_VERSION, {}])
                  for i in range(2)]
        # the loop is not blocked meanwhile
        assert max(await ping_times(srv.host, srv.port, 5)) < 0.1
        got = []
        for c, pids, tp in ((a, pids_a, pm.CPROTO_ERR_AUTH_CREDENTIALS),
                            (b, pids_b, pm.CPROTO_ERR_SERVICE)):
            for pid in pids:
                reply = await c.recv(timeout=5)
                assert reply is not None and reply[:2] == (pid, tp)
                got.append(time.monotonic() - t0)
        # five failures of one peer: answers one after the other, `delay` apart
        assert max(got) >= 5 * delay * 0.95, got
        # the right password is answered after the peer's delay, not before
        t1 = time.monotonic()
        await a.auth()
        assert time.monotonic() - t1 >= delay * 0.9 or \
            time.monotonic() - t0 >= 5 * delay
        for c in (a, b):
            await c.close()


async def test_no_login_delay_by_default_except_beyond_loopback():
    assert Limits().auth_fail_delay == 0
    assert limits_for('127.0.0.1').auth_fail_delay == 0
    assert limits_for('::1').auth_fail_delay == 0
    assert limits_for('0.0.0.0').auth_fail_delay == EXPOSED_AUTH_FAIL_DELAY
    assert limits_for('0.0.0.0', auth_fail_delay=0).auth_fail_delay == 0
    async with EmbeddedServer(port=0) as srv:
        c = await RawConn.open(srv.host, srv.port)
        t0 = time.monotonic()
        for i in range(50):
            tp, _ = await c.request(pm.CPROTO_REQ_AUTH, ['iris', f'x{i}', 'dbtest'])
            assert tp == pm.CPROTO_ERR_AUTH_CREDENTIALS
        assert time.monotonic() - t0 < 5
        await c.close()


# -- 9: one big insert of many tiny series ----------------------------------

#: series of the insert: a 3.7 MB body; the old server froze for 1.3-2 s
#: to decode, check and store it in one go
TINY_SERIES = 250_000


@pytest.mark.skipif(not LINUX, reason='peak RSS from /proc')
async def test_big_insert_of_tiny_series_does_not_freeze_the_loop(proc):
    c = await RawConn.open(proc.host, proc.port)
    await c.auth()
    other = await RawConn.open(proc.host, proc.port)
    assert (await other.request(pm.CPROTO_REQ_PING))[0] == pm.CPROTO_RES_ACK
    body = packb({f'tiny.{i}': [[1, i]] for i in range(TINY_SERIES)})
    before = proc.peak_rss()
    pid = c.send(pm.CPROTO_REQ_INSERT, body=body)
    # the same connection's next request waits for the insert to be stored
    c.send(pm.CPROTO_REQ_QUERY, [f'select * from "tiny.{TINY_SERIES - 1}"', None])
    times = []
    answered = asyncio.ensure_future(c.recv(timeout=60))
    while not answered.done():
        t0 = time.perf_counter()
        assert (await other.request(pm.CPROTO_REQ_PING, timeout=30))[0] == \
            pm.CPROTO_RES_ACK
        times.append(time.perf_counter() - t0)
    reply = await answered
    assert reply == (pid, pm.CPROTO_RES_INSERT, {
        'success_msg': f'Successfully inserted {TINY_SERIES} point(s).'})
    reply = await c.recv(timeout=30)
    assert reply is not None and reply[2] == {
        f'tiny.{TINY_SERIES - 1}': [[1, TINY_SERIES - 1]]}
    assert len(times) >= 5, times
    assert statistics.median(times) < 0.1, times
    # (a full collection of the cyclic GC once the insert is done takes
    # 0.1-0.2 s with this many objects alive, as it did before)
    assert max(times) < 0.5, times
    # the series themselves take most of it (measured: 165 MB more; the old
    # server: 254 MB)
    grown = proc.peak_rss() - before
    assert grown < 250 * 2 ** 20, grown
    await c.close()
    await other.close()


async def test_changes_wait_for_a_big_insert_being_stored():
    async with EmbeddedServer(port=0) as srv:
        a = await RawConn.open(srv.host, srv.port)
        b = await RawConn.open(srv.host, srv.port)
        await a.auth()
        await b.auth()
        body = packb({f's{i}': [[1, i]] for i in range(60_000)})
        a.send(pm.CPROTO_REQ_INSERT, body=body)
        await asyncio.sleep(0)
        # a drop from another connection waits for the whole insert
        tp, _ = await b.request(pm.CPROTO_REQ_QUERY,
                                ['drop series /s.*/ set ignore_threshold true', None],
                                timeout=30)
        assert tp == pm.CPROTO_RES_QUERY
        reply = await a.recv(timeout=30)
        assert reply is not None and reply[1] == pm.CPROTO_RES_INSERT
        assert len(srv.database().series) in (0, 60_000)
        for c in (a, b):
            await c.close()


def test_command_line_options_set_the_limits():
    from siridb.embedded.__main__ import limits_from_args, parse_args
    limits = limits_from_args(parse_args([
        '--host', '0.0.0.0', '--max-connections', '7', '--pre-auth-timeout', '5',
        '--reply-budget', '1000']))
    assert (limits.max_connections, limits.pre_auth_idle_timeout,
            limits.reply_budget, limits.auth_fail_delay) == (
        7, 5.0, 1000, EXPOSED_AUTH_FAIL_DELAY)
    assert limits_from_args(parse_args(
        ['--host', '0.0.0.0', '--unix', '/tmp/x.sock'])).auth_fail_delay == 0
    assert limits_from_args(parse_args([])).auth_fail_delay == 0
    with pytest.raises(SystemExit):
        parse_args(['--auth-fail-delay', '-1'])
    with pytest.raises(ValueError):
        Limits(reply_low_water=2, reply_high_water=1)


#: series of the insert that its client leaves: 15 validation steps and as
#: many store steps (``bulk._SERIES_STEP``), over many turns of the loop
HALF_STORED_SERIES = 30_000


async def test_insert_half_stored_when_its_client_goes_is_stored_completely(tmp_path):
    n = HALF_STORED_SERIES
    async with EmbeddedServer(port=0, data_dir=str(tmp_path)) as srv:
        c = await RawConn.open(srv.host, srv.port)
        await c.auth()
        c.send(pm.CPROTO_REQ_INSERT,
               body=packb({f's{i}': [[1, i]] for i in range(n)}))
        assert await poll(lambda: _true(srv.engine.bulk_writer is not None))
        # the server loses the connection (its reading is paused meanwhile,
        # so a client's close is noticed when the insert is done anyway)
        assert len(srv.database().series) < n  # the insert is under way
        (conn,) = srv.connections
        conn.abort()
        # the log holds the whole insert; memory gets all of it as well
        assert await poll(lambda: _true(len(srv.database().series) == n))
        assert await poll(lambda: _true(srv.engine.bulk_writer is None))
        await c.close()
    async with EmbeddedServer(port=0, data_dir=str(tmp_path)) as srv:
        assert len(srv.database().series) == n
