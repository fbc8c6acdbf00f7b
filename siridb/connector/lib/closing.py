"""``async with`` support shared by the client, connection and service types."""
from __future__ import annotations

from types import TracebackType
from typing import Optional, Type

__all__ = ['AsyncClosing']


class AsyncClosing:
    """Leaving an ``async with`` block calls ``close()`` and then awaits
    ``wait_closed()``, which the class provides."""

    def close(self) -> None:
        raise NotImplementedError

    async def wait_closed(self) -> None:
        raise NotImplementedError

    async def __aexit__(self, et: Optional[Type[BaseException]],
                        ev: Optional[BaseException],
                        tb: Optional[TracebackType]) -> None:
        self.close()
        await self.wait_closed()
