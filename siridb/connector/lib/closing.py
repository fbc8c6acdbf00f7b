"""``async with`` and ``aclose()`` support shared by the client, connection
and service types (``contextlib.aclosing`` works on all of them)."""
from __future__ import annotations

from types import TracebackType
from typing import Optional, Type

__all__ = ['AsyncClosing']


class AsyncClosing:
    """``aclose()`` (and leaving an ``async with`` block) calls ``close()``
    and then awaits ``wait_closed()``, which the class provides; the two
    stay public for code written for 2.1.6."""

    def close(self) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close and wait until everything is closed (idempotent)."""
        self.close()
        await self.wait_closed()

    async def __aexit__(self, et: Optional[Type[BaseException]],
                        ev: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        await self.aclose()
