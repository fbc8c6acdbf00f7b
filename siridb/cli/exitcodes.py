"""Exit codes of the ``siridb`` command and the mapping from errors to them.

0 ok, 1 query/insert error (the server rejected the request), 2 usage (bad
arguments or input files), 3 connection or authentication failure.
"""
from __future__ import annotations

import asyncio
import socket

from ..connector.lib.exceptions import (
    AuthenticationError,
    PoolError,
    ServiceError,
    SiriDBError,
)

__all__ = ['OK', 'REQUEST_ERROR', 'USAGE', 'CONNECTION', 'CliError', 'UsageError',
           'ConnectError', 'exit_code_for', 'describe']

OK = 0
REQUEST_ERROR = 1
USAGE = 2
CONNECTION = 3

#: service error texts that mean bad service credentials, not a bad request
_SERVICE_AUTH_TEXTS = ('cannot find service account', 'incorrect password for service account')


class CliError(Exception):
    """An error the command reports as one line on stderr, with its exit code."""

    code = REQUEST_ERROR

    def __init__(self, msg: str, code: int = 0) -> None:
        super().__init__(msg)
        if code:
            self.code = code


class UsageError(CliError):
    """Bad arguments, a missing password, an unreadable input file."""

    code = USAGE


class ConnectError(CliError):
    """No server could be reached or authentication failed."""

    code = CONNECTION


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an error raised while running a command."""
    if isinstance(exc, CliError):
        return exc.code
    if isinstance(exc, (AuthenticationError, PoolError)):
        return CONNECTION
    if isinstance(exc, ServiceError):
        if str(exc).startswith(_SERVICE_AUTH_TEXTS):
            return CONNECTION
        return REQUEST_ERROR
    if isinstance(exc, (ConnectionError, asyncio.TimeoutError, TimeoutError)):
        return CONNECTION
    if isinstance(exc, SiriDBError):
        return REQUEST_ERROR
    if isinstance(exc, socket.gaierror):  # the host name does not resolve
        return CONNECTION
    return REQUEST_ERROR


def describe(exc: BaseException) -> str:
    """One line for stderr: what went wrong, without a traceback."""
    if isinstance(exc, CliError):
        return str(exc)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, SiriDBError):
        return f'{type(exc).__name__}: {text}'
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f'timed out{": " + str(exc) if str(exc) else ""}'
    if isinstance(exc, (ConnectionError, socket.gaierror)):
        return f'cannot connect: {text}'
    return f'{type(exc).__name__}: {text}'
