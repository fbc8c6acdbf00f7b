"""Opening driver clients for the commands, and small helpers around them.

This is the one place where the CLI meets the driver: the pool client, the
database's time precision, URL parsing, write sessions and the service API.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional

from ..connector.lib.constants import PRECISION_BY_NAME
from ..connector.lib.exceptions import AuthenticationError
from .exitcodes import ConnectError, UsageError
from .options import ConnectionSettings

if TYPE_CHECKING:
    from ..connector import SiriDBClient

__all__ = ['open_client', 'parse_url', 'time_precision_arg']


def time_precision_arg(name: Optional[str]) -> Optional[int]:
    """``--precision`` name -> the driver's time_precision constant (None: as stored)."""
    return None if name is None else PRECISION_BY_NAME[name]


def _first_failure(failures: List[BaseException]) -> BaseException:
    """The most telling failure: an authentication error beats a network one."""
    for exc in failures:
        if isinstance(exc, AuthenticationError):
            return exc
    return failures[0]


@contextlib.asynccontextmanager
async def open_client(settings: ConnectionSettings) -> AsyncIterator[SiriDBClient]:
    """A connected pool client; raises when no server accepted the connection."""
    from ..connector import SiriDBClient

    options: Dict[str, Any] = {'keepalive': True, **settings.options}
    client = SiriDBClient(settings.username, settings.password, settings.dbname,
                          settings.hostlist(), timeout=settings.timeout, **options)
    try:
        results = await client.connect(timeout=settings.timeout)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures and len(failures) == len(results):
            exc = _first_failure(failures)
            if isinstance(exc, AuthenticationError):
                raise exc
            hosts = ', '.join(str(h) for h in settings.hosts)
            text = str(exc) or type(exc).__name__
            raise ConnectError(f'cannot connect to {hosts}: {text}') from exc
        yield client
    finally:
        client.close()
        await client.wait_closed()


def parse_url(url: str, need_dbname: bool = True) -> Dict[str, Any]:
    """``username``, ``password`` (None when the URL has none), ``dbname`` and
    ``hostlist`` from a ``siridb://`` URL; the password may be left out."""
    from ..connector.lib.url import parse_url as parse

    scheme, sep, rest = url.partition('://')
    netloc, slash, path = rest.partition('/')
    userinfo, at, hosts = netloc.rpartition('@')
    has_password = not at or ':' in userinfo
    if not has_password:  # siridb://user@host/db: password from env or prompt
        url = f'{scheme}{sep}{userinfo}:@{hosts}{slash}{path}'
    try:
        parsed = parse(url, need_dbname=need_dbname)
    except ValueError as exc:
        raise UsageError(f'invalid --url: {exc}') from None
    return {'username': parsed.username,
            'password': parsed.password if has_password else None,
            'dbname': parsed.dbname, 'hostlist': list(parsed.hostlist),
            'options': dict(parsed.options)}
