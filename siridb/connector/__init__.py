"""siridb.connector: asyncio driver for SiriDB (drop-in for siridb-connector 2.1.6).

Public names: ``SiriDBClient`` (pool), ``SiriDBConn`` (one server with
reconnect), ``async_connect``/``SiriDBAsyncConnection`` (one connection),
``connect``/``SiriDBConnection`` (blocking), ``SiriDBProtocol``,
``async_server_info`` and the time precision constants.
"""
from __future__ import annotations

from .lib.builder import CountSeries, ListSeries, Select
from .lib.client import SiriDBClient
from .lib.connection import (
    SiriDBAsyncConnection,
    SiriDBConnection,
    async_connect,
    connect,
)
from .lib.constants import (
    DEFAULT_CLIENT_PORT,
    MICROSECOND,
    MILLISECOND,
    NANOSECOND,
    SECOND,
)
from .lib.exceptions import SiriDBError
from .lib.info import async_server_info
from .lib.protocol import SiriDBProtocol
from .lib.results import SeriesResult
from .lib.service import ServiceAPI, SiriDBService
from .lib.session import (
    BufferFullError,
    FlushTimeoutError,
    Point,
    RejectedPointsError,
    SessionClosedError,
    SessionError,
    WriteSession,
)
from .lib.single_server import SiriDBConn
from .lib.stats import ServerStats
from .lib.url import URLError, parse_url

__all__ = [
    'SiriDBClient', 'SiriDBConn', 'SiriDBProtocol', 'SiriDBAsyncConnection',
    'SiriDBConnection', 'SiriDBError', 'connect', 'async_connect',
    'async_server_info', 'SECOND', 'MILLISECOND', 'MICROSECOND', 'NANOSECOND',
    'DEFAULT_CLIENT_PORT',
    'Select', 'ListSeries', 'CountSeries', 'SeriesResult', 'ServiceAPI',
    'SiriDBService', 'WriteSession', 'Point', 'SessionError', 'BufferFullError',
    'FlushTimeoutError', 'RejectedPointsError', 'SessionClosedError', 'ServerStats',
    'URLError', 'parse_url',
]
