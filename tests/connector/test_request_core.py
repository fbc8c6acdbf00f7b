"""The sans-IO request core in memory: pids, deadlines, reply routing, floods.

No sockets and no event loop: requests are answered through ``Box``
handles (a minimal result holder), time is a number the test sets, and
replies are bytes made with the codec. (Socket-level smokes of the same
behaviour stay in test_protocol.py, test_adversity.py and
test_adversity_replies.py.)
"""
from __future__ import annotations

import logging
import random
import struct
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Tuple

import pytest
import qpack
from _strategies import qpack_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siridb.connector.lib import exceptions as ex
from siridb.connector.lib.request_core import (
    NO_DEADLINE,
    REPLY_TYPES,
    UNKNOWN_REPLY_LIMIT,
    RequestCore,
)
from siridb.wire import SAFE_BODY_SIZE, encode, pack
from siridb.wire import types as pm

QUERY = pm.CPROTO_REQ_QUERY
RES_QUERY = pm.CPROTO_RES_QUERY


class Box:
    """A minimal request handle: done, set_result, set_exception, cancel;
    completing it twice is an error (the core must complete each once)."""

    __slots__ = ('_state', '_value')

    def __init__(self) -> None:
        self._state = ''
        self._value: Any = None

    def done(self) -> bool:
        return self._state != ''

    def _set(self, state: str, value: Any) -> None:
        assert self._state == '', f'completed twice: {self._state} then {state}'
        self._state, self._value = state, value

    def set_result(self, result: Any, /) -> None:
        self._set('result', result)

    def set_exception(self, exception: BaseException, /) -> None:
        self._set('exception', exception)

    def cancel(self) -> bool:
        if self._state:
            return False
        self._state = 'cancelled'
        return True

    def cancelled(self) -> bool:
        return self._state == 'cancelled'

    def result(self) -> Any:
        if self._state == 'exception':
            raise self._value
        assert self._state == 'result', self._state
        return self._value

    def exception(self) -> Optional[BaseException]:
        assert self._state in ('result', 'exception'), self._state
        return self._value if self._state == 'exception' else None


class Clock:
    """A settable clock for the core."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def start(core: RequestCore, tp: int = QUERY, deadline: float = NO_DEADLINE,
          timeout: Optional[float] = None) -> Tuple[int, Box]:
    fut: Box = Box()
    return core.start(tp, fut, deadline, timeout), fut


def error_of(fut: Box) -> BaseException:
    exc = fut.exception()
    assert exc is not None
    return exc


# ------------------------------------------------------------------ pids
def test_pids_count_up_from_zero_and_answers_free_them() -> None:
    core = RequestCore()
    pids = [start(core)[0] for _ in range(3)]
    assert pids == [0, 1, 2]
    assert core.receive(pack(1, RES_QUERY, 'one')) is None
    assert sorted(core.pending) == [0, 2]


def test_pid_wraparound_with_out_of_order_replies() -> None:
    """70,000 requests, replies shuffled per batch of 500: every reply
    completes its own request and the whole pid space is used."""
    core = RequestCore()
    rnd = random.Random(7)
    used = set()
    for base in range(0, 70_000, 500):
        batch = [(i, *start(core)) for i in range(base, base + 500)]
        used.update(pid for _, pid, _ in batch)
        rnd.shuffle(batch)
        assert core.receive(b''.join(pack(pid, RES_QUERY, i) for i, pid, _ in batch)) is None
        assert all(fut.result() == i for i, _, fut in batch)
    assert core.pending == {}
    assert len(used) == 65536
    assert core.next_pid == 70_000 % 65536


def test_sliding_window_across_the_wrap() -> None:
    """Requests stay in flight while the pids wrap; each reply is for the
    oldest one, so pids in use are never handed out twice."""
    core = RequestCore()
    window: Deque[Tuple[int, int, Box]] = deque()
    in_flight = set()
    for i in range(70_000):
        pid, fut = start(core)
        assert pid not in in_flight
        in_flight.add(pid)
        window.append((i, pid, fut))
        if len(window) == 1000:
            j, old, oldfut = window.popleft()
            in_flight.remove(old)
            assert core.receive(pack(old, RES_QUERY, j)) is None
            assert oldfut.result() == j
    assert set(core.pending) == in_flight and len(in_flight) == 999
    assert core.next_pid == 70_000 % 65536


def test_a_timed_out_pid_stays_reserved_until_its_late_reply() -> None:
    clock = Clock()
    core = RequestCore(clock)
    stalled, slow = start(core, deadline=1.0, timeout=1.0)
    assert core.expire(2.0) == NO_DEADLINE
    assert isinstance(error_of(slow), ex.RequestTimeoutError)
    assert isinstance(error_of(slow), TimeoutError)
    assert list(core.pending) == [stalled]  # reserved
    # round the whole pid space: the stalled pid is skipped
    for _ in range(0, 65_600, 800):
        batch = [start(core) for _n in range(800)]
        assert stalled not in [pid for pid, _ in batch]
        core.receive(b''.join(pack(pid, RES_QUERY, n) for n, (pid, _) in enumerate(batch)))
        assert [f.result() for _, f in batch] == list(range(800))
    nxt, fut = start(core)
    assert core.receive(pack(stalled, RES_QUERY, 'late')) is None  # dropped
    assert not fut.done() and stalled not in core.pending
    assert core.unknown_replies == 0  # a late reply is no unknown one
    assert core.receive(pack(nxt, RES_QUERY, 'next')) is None
    assert fut.result() == 'next'


def test_a_cancelled_request_keeps_its_pid_and_its_reply_touches_nothing() -> None:
    core = RequestCore()
    a, fa = start(core)
    b, fb = start(core)
    assert fa.cancel()
    assert core.receive(pack(a, RES_QUERY, {'for': 'a'})) is None
    assert not fb.done() and a not in core.pending
    assert core.receive(pack(b, RES_QUERY, {'for': 'b'})) is None
    assert fb.result() == {'for': 'b'}


def test_a_full_pid_space_refuses_new_requests() -> None:
    core = RequestCore()
    for _ in range(65536):
        start(core)
    with pytest.raises(ex.TooManyRequestsError):
        start(core)
    with pytest.raises(ex.TooManyRequestsError):
        core.check_free()


def test_a_pid_space_of_given_up_requests_closes_the_connection() -> None:
    core = RequestCore()
    futs = [start(core)[1] for _ in range(65536)]
    futs[9].cancel()
    with pytest.raises(ex.ConnectionLostError, match='1 requests .* without a reply'):
        start(core)


# -------------------------------------------------------------- deadlines
def test_each_request_times_out_at_its_own_deadline() -> None:
    core = RequestCore()
    _, a = start(core, deadline=3.0, timeout=3)
    _, b = start(core, deadline=1.0, timeout=1)
    _, forever = start(core)
    _, c = start(core, deadline=2.0, timeout=2)
    assert core.expire(0.5) == 1.0
    assert not (a.done() or b.done() or c.done())
    assert core.expire(1.0) == 2.0
    assert str(error_of(b)) == 'no reply from the server within 1 s'
    assert not a.done() and not c.done()
    assert core.expire(10.0) == NO_DEADLINE
    assert str(error_of(c)) == 'no reply from the server within 2 s'
    assert str(error_of(a)) == 'no reply from the server within 3 s'
    assert not forever.done()
    assert len(core.pending) == 4  # every pid stays reserved


def test_answered_requests_leave_the_heap_bounded() -> None:
    core = RequestCore()
    _, slow = start(core, deadline=50.0, timeout=50)
    most = 0
    for _ in range(12):
        batch = [start(core, deadline=60.0, timeout=60)[0] for _ in range(500)]
        most = max(most, len(core.deadlines))
        core.receive(b''.join(pack(pid, RES_QUERY, 1) for pid in batch))
    assert most <= 2 * 501 + 1024 + 1
    assert core.expire(55.0) == NO_DEADLINE  # stale entries are dropped
    assert isinstance(error_of(slow), ex.RequestTimeoutError)


def test_a_pid_reused_after_its_answer_keeps_its_new_deadline() -> None:
    core = RequestCore()
    pid, first = start(core, deadline=1.0, timeout=1)
    core.receive(pack(pid, RES_QUERY, 'a'))
    core.next_pid = pid
    again, second = start(core, deadline=5.0, timeout=5)
    assert again == pid
    assert core.expire(2.0) == 5.0  # the old heap entry is not this request's
    assert not second.done() and first.result() == 'a'


def test_a_big_reply_past_its_deadline_fails_by_its_timeout() -> None:
    clock = Clock()
    core = RequestCore(clock)
    pid, fut = start(core, deadline=1.0, timeout=1)
    body = qpack.packb(['x' * 10] * 4000)
    assert len(body) > SAFE_BODY_SIZE
    clock.now = 1.5  # the reply arrives after the deadline, before the timer
    assert core.receive(encode(pid, RES_QUERY, body)) is None
    assert isinstance(error_of(fut), ex.RequestTimeoutError)
    pid, fut = start(core, deadline=9.0, timeout=1)
    assert core.receive(encode(pid, RES_QUERY, body)) is None
    assert fut.result() == ['x' * 10] * 4000


def test_fail_all_ends_every_request_and_frees_the_pids() -> None:
    core = RequestCore()
    futs = [start(core, deadline=float(i + 1), timeout=1)[1] for i in range(3)]
    futs[0].cancel()
    core.fail_all(lambda: ex.ClientClosedError('closed'))
    assert core.pending == {} and core.deadlines == []
    assert all(isinstance(error_of(f), ex.ClientClosedError) for f in futs[1:])
    assert error_of(futs[1]) is not error_of(futs[2])  # one instance each


# ---------------------------------------------------------------- routing
@pytest.mark.parametrize('req', sorted(REPLY_TYPES))
def test_each_request_type_takes_only_its_reply_types(req: int) -> None:
    for tp in sorted(REPLY_TYPES[req]):
        core = RequestCore()
        pid, fut = start(core, req)
        assert core.receive(pack(pid, tp, [1])) is None
        expected = qpack.packb([1]) if tp == pm.CPROTO_RES_FILE else [1]
        assert fut.result() == expected
    others = {0, 1, 2, 3, 4, 5, 32, 33} - REPLY_TYPES[req]
    for tp in sorted(others):
        core = RequestCore()
        pid, fut = start(core, req)
        _, bystander = start(core, req)
        exc = core.receive(pack(pid, tp, [1]))
        assert isinstance(exc, ex.ProtocolError)
        assert str(exc).startswith(f'the server sent a reply of type {tp} where type')
        assert error_of(fut) is exc
        assert not bystander.done()  # the owner fails the rest (fail_all)
        assert core.receive(pack(1, tp, [1])) is exc  # input refused after


def test_an_unknown_reply_type_fails_only_its_request() -> None:
    core = RequestCore()
    pid, fut = start(core)
    assert core.receive(pack(pid, 200, [1])) is None
    assert isinstance(error_of(fut), ex.UnknownResponseError)


@pytest.mark.parametrize('tp, cls', [
    (pm.CPROTO_ERR_QUERY, ex.QueryError), (pm.CPROTO_ERR_INSERT, ex.InsertError),
    (pm.CPROTO_ERR_SERVER, ex.ServerError), (pm.CPROTO_ERR_POOL, ex.PoolError),
    (pm.CPROTO_ERR_USER_ACCESS, ex.UserAuthError),
])
def test_error_replies_fail_their_request_with_the_server_text(tp: int, cls: type) -> None:
    core = RequestCore()
    pid, fut = start(core)
    assert core.receive(pack(pid, tp, {'error_msg': 'nope'})) is None
    exc = error_of(fut)
    assert type(exc) is cls and str(exc) == 'nope' and exc.tp == tp  # type: ignore[attr-defined]


def test_a_corrupt_payload_fails_its_request_and_closes() -> None:
    core = RequestCore()
    pid, fut = start(core)
    exc = core.receive(encode(pid, RES_QUERY, b'\xfe'))  # a bare close marker
    assert isinstance(exc, ex.ProtocolError) and 'close marker' in str(exc)
    assert isinstance(error_of(fut), ex.ProtocolError)


def test_intact_replies_before_a_corrupt_header_are_delivered() -> None:
    core = RequestCore()
    a, fa = start(core)
    _, fb = start(core)
    bad = struct.pack('<IHBB', 0, 9, 0, 0x00)  # wrong check byte
    exc = core.receive(pack(a, RES_QUERY, 'ok') + bad)
    assert isinstance(exc, ex.ProtocolError) and 'check byte' in str(exc)
    assert fa.result() == 'ok'
    assert not fb.done()


def test_replies_in_one_byte_chunks() -> None:
    core = RequestCore()
    pids = [start(core) for _ in range(3)]
    data = b''.join(pack(pid, RES_QUERY, {'n': pid}) for pid, _ in pids)
    for i in range(len(data)):
        assert core.receive(data[i:i + 1]) is None
    assert [f.result() for _, f in pids] == [{'n': p} for p, _ in pids]


def test_a_flood_of_unknown_pids_closes_after_the_limit(
        caplog: pytest.LogCaptureFixture) -> None:
    core = RequestCore()
    _, fut = start(core)
    caplog.set_level(logging.DEBUG, logger='siridb.connector')
    for pid in range(5000, 5000 + UNKNOWN_REPLY_LIMIT):
        assert core.receive(pack(pid, RES_QUERY, 1)) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # the first one; the rest at DEBUG level
    exc = core.receive(pack(9999, RES_QUERY, 1))
    assert isinstance(exc, ex.ProtocolError)
    assert 'no request is waiting' in str(exc)
    assert not fut.done()


# ------------------------------------------------------------- properties
values = qpack_values()

frames = st.tuples(
    st.sampled_from([0, 1, 2, 0, 1, 2, 7, 65535]),  # pids 0-2 are in flight
    st.sampled_from([0, 1, 2, 3, 4, 5, 32, 33, 64, 65, 66, 67, 68, 69, 70, 71,
                     72, 96, 97, 6, 100, 191, 200, 255]),
    st.one_of(values.map(qpack.packb), st.binary(max_size=40),
              st.just(b''), st.sampled_from([b'\xfe', b'\xff\x00', b'\xfc\xfc'])),
    st.booleans(),  # check byte right?
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(frames, max_size=6), garbage=st.binary(max_size=16),
       cuts=st.lists(st.integers(0, 400), max_size=4), cancel=st.sets(st.integers(0, 2)))
def test_any_reply_stream_ends_every_request_cleanly(
        items: List[Tuple[int, int, bytes, bool]], garbage: bytes, cuts: List[int],
        cancel: set[int]) -> None:
    """Whatever bytes come back, each request ends with a value or a
    ``SiriDBError`` once the owner acts on what the core says (close:
    fail_all; else the deadline passes), and no pid is lost."""
    core = RequestCore()
    futs = [start(core, deadline=1.0, timeout=1)[1] for _ in range(3)]
    for i in cancel:
        futs[i].cancel()
    stream = b''.join(
        struct.pack('<IHBB', len(body), pid, tp, (tp ^ 0xFF) ^ (0 if ok else 0x5A)) + body
        for pid, tp, body, ok in items) + garbage
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    closed = None
    for lo, hi in zip(points, points[1:]):
        closed = core.receive(stream[lo:hi])
        if closed is not None:
            assert isinstance(closed, ex.ProtocolError)
            core.fail_all(lambda: ex.ConnectionLostError('closed'))
            break
    else:
        core.expire(2.0)
    for i, fut in enumerate(futs):
        assert fut.done()
        if i not in cancel and fut.exception() is not None:
            assert isinstance(fut.exception(), ex.SiriDBError)
    # every pid still held belongs to a request that gave up or timed out
    assert all(entry[0].done() for entry in core.pending.values())


ops = st.lists(st.one_of(
    st.tuples(st.just('start'), st.integers(0, 3)),     # a request, deadline in 0-3
    st.tuples(st.just('reply'), st.integers(0, 40)),    # the reply of the n-th oldest
    st.tuples(st.just('stray'), st.integers(0, 40)),    # a reply for the n-th oldest, twice
    st.tuples(st.just('cancel'), st.integers(0, 40)),
    st.tuples(st.just('tick'), st.integers(0, 3)),      # time goes on to now + n
), max_size=80)


@settings(max_examples=200, deadline=None)
@given(ops=ops, first_pid=st.sampled_from([0, 65530]))
def test_replies_complete_exactly_their_own_request(
        ops: List[Tuple[str, int]], first_pid: int) -> None:
    """Random starts, replies (also repeated ones), cancels and ticks: a
    reply completes the request it was sent for and no other, a pid is never
    handed out while reserved, timeouts fire at their deadlines."""
    clock = Clock()
    core = RequestCore(clock)
    core.next_pid = first_pid
    open_: Dict[int, Tuple[int, Box, float]] = {}  # pid -> (id, fut, deadline)
    order: List[int] = []
    n = 0
    for op, arg in ops:
        if op == 'start':
            deadline = clock.now + arg if arg else NO_DEADLINE
            pid, fut = start(core, deadline=deadline, timeout=arg or None)
            assert pid not in open_, 'a reserved pid was handed out again'
            open_[pid] = (n, fut, deadline)
            order.append(pid)
            n += 1
        elif op in ('reply', 'stray') and order:
            pid = order[arg % len(order)]
            ident, fut, _ = open_[pid]
            was_done = fut.done()
            for _ in range(2 if op == 'stray' else 1):
                closed = core.receive(pack(pid, RES_QUERY, ident))
                if core.unknown_replies > UNKNOWN_REPLY_LIMIT:
                    assert isinstance(closed, ex.ProtocolError)  # the flood rule
                    return
                assert closed is None
            if not was_done:
                assert fut.result() == ident
            del open_[pid]
            order.remove(pid)
        elif op == 'cancel' and order:
            open_[order[arg % len(order)]][1].cancel()
        elif op == 'tick':
            clock.now += arg
            core.expire(clock.now)
        for pid, (_, fut, deadline) in open_.items():
            assert pid in core.pending
            if deadline <= clock.now and not fut.cancelled():
                assert isinstance(fut.exception(), ex.RequestTimeoutError)
            elif not fut.cancelled() and fut.done():
                raise AssertionError(f'request {pid} ended without its reply')
    assert set(core.pending) == set(open_)
