"""Helpers for the adversity tests: a strict loop, leak checks, small utilities."""
from __future__ import annotations

import asyncio
import gc
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List

import pytest

from siridb.connector import SiriDBClient


class LoopErrors:
    """Everything the loop's exception handler saw during a test."""

    def __init__(self) -> None:
        self.contexts: List[Dict[str, Any]] = []

    def handler(self, loop: asyncio.AbstractEventLoop, context: Dict[str, Any]) -> None:
        self.contexts.append(context)

    def messages(self) -> List[str]:
        return [f'{c.get("message")}: {c.get("exception")!r}' for c in self.contexts]


@pytest.fixture
async def strict_loop() -> AsyncIterator[LoopErrors]:
    """Fail the test on any loop-level error ("Task exception was never
    retrieved", "Future exception was never retrieved", exceptions in
    callbacks) and on tasks still pending at the end."""
    loop = asyncio.get_running_loop()
    errors = LoopErrors()
    old = loop.get_exception_handler()
    loop.set_exception_handler(errors.handler)
    # Objects older than the test are set aside (not freed, not scanned) until
    # its end, so the full collection below scans only what the test made:
    # ~1 ms instead of 20-50 ms in a pytest process. Garbage older than the
    # test is collected later as usual, after the unfreeze.
    gc.freeze()
    try:
        yield errors
        for _ in range(3):  # let close callbacks run
            await asyncio.sleep(0)
        gc.collect()  # unretrieved exceptions are reported on collection
        await asyncio.sleep(0)
        me = asyncio.current_task()
        stray = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        assert not stray, f'tasks left pending: {stray}'
        assert not errors.contexts, f'loop errors: {errors.messages()}'
    finally:
        gc.unfreeze()
        loop.set_exception_handler(old)


def pending_requests(client: SiriDBClient) -> int:
    """Requests (futures) still waiting in any connection of the pool."""
    return sum(h.protocol.pending for h in client.hosts if h.protocol is not None)


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0,
                     step: float = 0.01) -> float:
    """Wait for ``cond()``; returns the seconds it took (fails the test after
    ``timeout``)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not cond():
        if loop.time() - t0 > timeout:
            raise AssertionError(f'condition not met within {timeout} s')
        await asyncio.sleep(step)
    return loop.time() - t0


async def timed(aw: Awaitable[Any]) -> float:
    """Seconds an awaitable took (its result or exception is dropped)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    try:
        await aw
    except Exception:
        pass
    return loop.time() - t0


def inserted(n: int) -> Dict[str, str]:
    """The server's reply to an insert of ``n`` points."""
    return {'success_msg': f'Successfully inserted {n} point(s).'}


def points(n: int, t0: int = 1_000) -> List[List[int]]:
    return [[t0 + i, i] for i in range(n)]
