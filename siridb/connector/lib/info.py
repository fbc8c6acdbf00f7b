"""``async_server_info``: is a server reachable, and how fast does it answer?

SiriDB >= 2.0.30 never answers INFO (2.1.6 waited out its timeout). This sends
a PING instead (allowed without authentication) and reports the round trip.
"""
from __future__ import annotations

import asyncio
import ssl as _ssl
from typing import Any, Dict, Optional

from . import protomap as pm
from .constants import DEFAULT_CLIENT_PORT
from .protocol import SiriDBProtocol, open_protocol

__all__ = ['async_server_info']


async def async_server_info(host: str = '127.0.0.1', port: int = DEFAULT_CLIENT_PORT,
                            loop: Any = None, timeout: Optional[float] = 10, *,
                            ssl: Optional[_ssl.SSLContext] = None,
                            unix_path: Optional[str] = None) -> Dict[str, Any]:
    """Connect, PING, close; returns ``{'host', 'port', 'reachable': True,
    'round_trip': seconds}``.

    Fails fast: ``ConnectionError``/``OSError`` when nothing listens,
    ``RequestTimeoutError`` (a ``TimeoutError``) when connect + PING take
    longer than ``timeout``. ``loop`` is accepted and ignored.
    """
    running = asyncio.get_running_loop()
    start = running.time()
    protocol = await open_protocol(SiriDBProtocol, host, port, timeout=timeout,
                                   ssl=ssl, unix_path=unix_path)
    try:
        remaining = None if timeout is None else max(0.001, start + timeout - running.time())
        sent = running.time()
        await protocol.send_package(pm.CPROTO_REQ_PING, timeout=remaining)
        round_trip = running.time() - sent
    finally:
        protocol.close()
        await protocol.wait_closed()
    return {
        'host': unix_path or host,
        'port': None if unix_path else port,
        'reachable': True,
        'round_trip': round_trip,
    }
