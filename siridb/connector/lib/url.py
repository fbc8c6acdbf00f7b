"""Connection settings from one URL string (``SiriDBClient.from_url``).

Grammar::

    siridb://USER:PASSWORD@HOST[:PORT][,HOST[:PORT]...]/DBNAME[?OPTIONS]

    HOST      a name, an IPv4 address or an IPv6 address in brackets
    PORT      1..65535, default 9000
    OPTIONS   key=value pairs joined by '&':
      backup=HOST[:PORT][,HOST[:PORT]...]   backup servers (repeatable)
      weight=HOST[:PORT]:N[,...]            weight 1..9 of a listed server
      timeout, inactive_time, max_wait_retry   numbers (SiriDBClient arguments)
      keepalive                             true/false/1/0/yes/no

USER, PASSWORD and DBNAME are percent-decoded (write ``%40`` for ``@``,
``%3A`` for ``:``, ``%2F`` for ``/``). For a service account URL
(``parse_url(url, need_dbname=False)``) the path may be empty. The password
never appears in a repr or in an error message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple, Union
from urllib.parse import unquote

from .constants import DEFAULT_CLIENT_PORT
from .exceptions import URLError

__all__ = ['ConnectionURL', 'parse_url', 'URLError']

HostEntry = Union[Tuple[str, int], Tuple[str, int, Dict[str, Any]]]

_NUMBER_OPTIONS = {'timeout': float, 'inactive_time': float, 'max_wait_retry': float}
_BOOL_WORDS = {'true': True, '1': True, 'yes': True, 'on': True,
               'false': False, '0': False, 'no': False, 'off': False}


@dataclass(frozen=True)
class ConnectionURL:
    """A parsed SiriDB URL: what ``SiriDBClient(...)`` needs."""

    username: str
    password: str = field(repr=False)
    dbname: str
    hostlist: List[HostEntry]
    options: Dict[str, Any] = field(default_factory=dict)

    def client_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``SiriDBClient``."""
        return dict(username=self.username, password=self.password,
                    dbname=self.dbname, hostlist=list(self.hostlist), **self.options)


def _is_digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts '²' and other scripts)."""
    return text.isascii() and text.isdigit()


def _split_host(text: str, what: str) -> Tuple[str, int]:
    text = text.strip()
    if not text:
        raise URLError(f'empty {what}')
    if text.startswith('['):
        end = text.find(']')
        if end < 0:
            raise URLError(f'unclosed "[" in {what} {text!r}')
        host = text[1:end]
        rest = text[end + 1:]
        if rest and not rest.startswith(':'):
            raise URLError(f'unexpected {rest!r} after {what} {text!r}')
        port_text = rest[1:] if rest else ''
    else:
        host, sep, port_text = text.partition(':')
        if sep and not port_text:
            raise URLError(f'missing port after ":" in {what} {text!r}')
        if ':' in port_text:
            raise URLError(f'IPv6 addresses must be in brackets: {text!r}')
    if not host:
        raise URLError(f'missing host name in {what} {text!r}')
    if any(c in host for c in ' /?#@'):
        raise URLError(f'invalid host name {host!r}')
    port = DEFAULT_CLIENT_PORT
    if port_text:
        if not _is_digits(port_text) or not 0 < int(port_text) < 65536:
            raise URLError(f'invalid port {port_text!r} in {what} {text!r} '
                           '(expecting 1..65535)')
        port = int(port_text)
    return host, port


def _hosts(text: str, what: str) -> List[Tuple[str, int]]:
    return [_split_host(part, what) for part in text.split(',')]


def _decode(text: str, what: str) -> str:
    try:
        return unquote(text, errors='strict')
    except UnicodeDecodeError:
        raise URLError(f'the {what} is not valid percent-encoded UTF-8') from None


def parse_url(url: str, need_dbname: bool = True) -> ConnectionURL:
    """Parse a ``siridb://`` URL (grammar in the module docstring).

    Raises ``URLError`` (a ValueError) with a message naming what is wrong.
    """
    if not isinstance(url, str):
        raise URLError(f'a SiriDB URL must be a str, not {type(url).__name__}')
    scheme, sep, rest = url.partition('://')
    if not sep:
        raise URLError('not a URL: expecting siridb://user:password@host:port/dbname')
    if scheme.lower() != 'siridb':
        raise URLError(f'unsupported URL scheme {scheme!r} (expecting siridb://)')
    if '#' in rest:
        raise URLError('a SiriDB URL has no #fragment (percent-encode "#" as %23)')
    rest, _, query = rest.partition('?')
    # userinfo ends at the last '@' before the first '/'
    netloc_end = rest.find('/')
    netloc = rest if netloc_end < 0 else rest[:netloc_end]
    path = '' if netloc_end < 0 else rest[netloc_end + 1:]
    userinfo, at, hosts_text = netloc.rpartition('@')
    if not at:
        raise URLError('missing "user:password@" in the URL')
    user_raw, colon, password_raw = userinfo.partition(':')
    username = _decode(user_raw, 'user name')
    if not username:
        raise URLError('missing user name in the URL')
    if not colon:
        raise URLError(f'missing password for user {username!r} in the URL')
    password = _decode(password_raw, 'password')
    if not hosts_text:
        raise URLError('missing host in the URL')
    hosts = _hosts(hosts_text, 'host')
    dbname = _decode(path, 'database name')
    if '/' in dbname:
        raise URLError(f'unexpected "/" in database name {dbname!r}')
    if need_dbname and not dbname:
        raise URLError('missing database name: siridb://user:password@host:port/DBNAME')

    backups: List[Tuple[str, int]] = []
    weights: Dict[Tuple[str, int], int] = {}
    options: Dict[str, Any] = {}
    for item in query.split('&') if query else ():
        key, eq, value = item.partition('=')
        key = _decode(key, 'option name')
        value = _decode(value, f'option {key!r}')
        if not eq or not value:
            raise URLError(f'option {key!r} needs a value (key=value)')
        if key == 'backup':
            backups.extend(_hosts(value, 'backup host'))
        elif key == 'weight':
            for part in value.split(','):
                hostport, colon2, num = part.rpartition(':')
                if not colon2 or not _is_digits(num) or not 1 <= int(num) <= 9:
                    raise URLError(f'invalid weight {part!r} (expecting host:port:N, N 1..9)')
                weights[_split_host(hostport, 'weight host')] = int(num)
        elif key in _NUMBER_OPTIONS:
            try:
                number = float(value)
            except ValueError:
                raise URLError(f'option {key} must be a number, got {value!r}') from None
            if not number > 0 or number == float('inf'):
                raise URLError(f'option {key} must be a positive number, got {value!r}')
            options[key] = int(number) if number.is_integer() else number
        elif key == 'keepalive':
            if value.lower() not in _BOOL_WORDS:
                raise URLError(f'option keepalive must be true or false, got {value!r}')
            options[key] = _BOOL_WORDS[value.lower()]
        else:
            raise URLError(f'unknown option {key!r} (expecting backup, weight, '
                           'timeout, inactive_time, max_wait_retry or keepalive)')

    listed = hosts + backups
    for hp in weights:
        if hp not in listed:
            raise URLError(f'weight given for {hp[0]}:{hp[1]}, which is not a listed host')
    hostlist: List[HostEntry] = []
    seen = set()
    for hp in listed:
        if hp in seen:
            raise URLError(f'host {hp[0]}:{hp[1]} is listed twice')
        seen.add(hp)
        is_backup = hp in backups
        if is_backup or hp in weights:
            props: Dict[str, Any] = {'weight': weights.get(hp, 1), 'backup': is_backup}
            hostlist.append((hp[0], hp[1], props))
        else:
            hostlist.append(hp)
    return ConnectionURL(username, password, dbname, hostlist, options)
