"""Reconnect delays: exponential (base, 2*base, 4*base, ...) capped, with jitter.

Jitter keeps many clients from reconnecting in lockstep after a server restart.
"""
from __future__ import annotations

import random
from typing import Optional

__all__ = ['Backoff']


class Backoff:
    """Delays ``base * 2**n`` capped at ``cap``, each shortened by up to
    ``jitter`` (a fraction, 0 disables it), so a delay never exceeds ``cap``."""

    __slots__ = ('base', 'cap', 'jitter', '_rng', '_n')

    def __init__(self, base: float = 1.0, cap: float = 90.0, jitter: float = 0.2,
                 rng: Optional[random.Random] = None) -> None:
        if base <= 0 or cap <= 0:
            raise ValueError('backoff base and cap must be positive')
        if not 0 <= jitter < 1:
            raise ValueError('backoff jitter must be in [0, 1)')
        self.base = base
        self.cap = cap
        self.jitter = jitter
        self._rng = rng or random.Random()
        self._n = 0

    @property
    def attempts(self) -> int:
        """Delays handed out since the last reset."""
        return self._n

    def reset(self) -> None:
        self._n = 0

    def peek(self) -> float:
        """The next delay without jitter."""
        return min(self.cap, self.base * 2.0 ** min(self._n, 64))

    def next_delay(self) -> float:
        delay = self.peek()
        self._n += 1
        if self.jitter:
            delay *= 1.0 - self.jitter * self._rng.random()
        return delay

    def max_delay(self) -> float:
        """The capped delay with jitter (used after an authentication failure)."""
        self._n = 64
        return self.next_delay()
