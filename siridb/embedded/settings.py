"""``ServerSettings``: what a real SiriDB reads from its configuration file
(``siridb.conf``, section ``[siridb]``) and reports back through ``show`` and
``list servers``, with the defaults of the ``siridb.conf`` SiriDB ships.

The embedded server answers ``show ip_support``, ``show max_open_files``,
``list servers name`` and the ``shards`` statements from these values, so a
test can make it report what a given real server reports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = ['ServerSettings', 'IP_SUPPORT', 'MAX_OPEN_FILES_RANGE', 'DEFAULT_DB_PATH']

#: the values ``ip_support`` accepts (SiriDB refuses to start on any other)
IP_SUPPORT: Tuple[str, ...] = ('ALL', 'IPV4ONLY', 'IPV6ONLY')
#: the range SiriDB accepts for ``max_open_files`` (it falls back to the
#: maximum, 32768, for a value outside; here a ValueError)
MAX_OPEN_FILES_RANGE: Tuple[int, int] = (3, 32768)
#: ``db_path`` of the shipped siridb.conf: a database lives in DB_PATH/NAME/
DEFAULT_DB_PATH = '/var/lib/siridb'


@dataclass(frozen=True)
class ServerSettings:
    """One server's configuration as SiriDB reads it.

    ``server_name`` is SiriDB's ``server_name`` (``address:port`` of the
    server's back-end connections, default ``%HOSTNAME:9010``); the embedded
    server has no back-end port, so None (the default) names it by the
    address it listens on (``host:port``). ``list servers address, port``
    show its two parts. ``shard_compression`` and ``shard_auto_duration``
    are ``enable_shard_compression`` and ``enable_shard_auto_duration``:
    they decide the sizes and durations ``list shards`` reports.
    """

    server_name: Optional[str] = None
    ip_support: str = 'ALL'
    max_open_files: int = 32768
    db_path: str = DEFAULT_DB_PATH
    shard_compression: bool = True
    shard_auto_duration: bool = True

    def __post_init__(self) -> None:
        if self.ip_support not in IP_SUPPORT:
            raise ValueError(f'ip_support must be one of {", ".join(IP_SUPPORT)}, '
                             f'not {self.ip_support!r}')
        low, high = MAX_OPEN_FILES_RANGE
        if isinstance(self.max_open_files, bool) or \
                not isinstance(self.max_open_files, int) or \
                not low <= self.max_open_files <= high:
            raise ValueError(f'max_open_files must be an int {low}..{high}, '
                             f'not {self.max_open_files!r}')
        if self.server_name is not None:
            check_server_name(self.server_name)
        if not self.db_path:
            raise ValueError('db_path must not be empty')

    def name_for(self, host: str, port: int) -> str:
        """The server's name when it listens on ``host:port``."""
        return self.server_name if self.server_name is not None else f'{host}:{port}'

    def database_path(self, dbname: str) -> str:
        """``dbpath`` of a database (``buffer_path`` is its ``buffer/``)."""
        return f'{self.db_path.rstrip("/")}/{dbname}/'


def check_server_name(name: str) -> str:
    """``address:port`` with a port 1..65535 (an IPv6 address in brackets),
    as SiriDB requires of ``server_name``; ValueError otherwise."""
    address, sep, port = name.rpartition(':')
    if not sep or not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'server_name must be ADDRESS:PORT with a port 1..65535, '
                         f'not {name!r}')
    if ':' in address and not (address.startswith('[') and address.endswith(']')):
        raise ValueError(f'an IPv6 address in server_name goes in brackets: {name!r}')
    return name
