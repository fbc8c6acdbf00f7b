"""Exceptions of the driver: one base class and a registry keyed by response type.

Every public exception of the package is defined here (the modules that raise
them import them from here), so ``siridb.connector.lib.exceptions`` is the one
place to import them from.

Every class that siridb-connector 2.1.6 exported keeps its name here, and every
error that 2.1.6 raised as a builtin (``RuntimeError``, ``TimeoutError``,
``ConnectionError``) is raised as a class that still derives from that builtin,
so old ``except`` clauses keep catching what they caught before.
"""
from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Type

from ...wire.errors import WireError
from . import protomap as pm

if TYPE_CHECKING:  # only for annotations: session.py imports this module
    from .session import Point, Rejected

__all__ = [
    'SiriDBError', 'QueryError', 'InsertError', 'ServerError', 'PoolError',
    'AuthenticationError', 'UserAuthError', 'NotAuthenticatedError',
    'InvalidCredentialsError', 'UnknownDatabaseError', 'ServiceError',
    'ServiceInvalidRequestError', 'ErrorMessage', 'GenericError',
    'LoadingDatabaseError', 'FileError', 'UnknownResponseError',
    'ProtocolError', 'ConnectionLostError', 'RequestTimeoutError',
    'ClientClosedError', 'InsertDataError', 'TooManyRequestsError',
    'RequestTooLargeError', 'SessionError', 'BufferFullError',
    'SessionClosedError', 'RejectedPointsError', 'FlushTimeoutError', 'URLError',
    'error_for_response', 'ERROR_CLASSES', 'Failover', 'is_retriable', 'failover_of',
    'InsertForwardError', 'outcome_known',
]


class Failover(enum.Enum):
    """What the pool does with a request that failed with an error."""

    RAISE = 'raise'                    #: hand the error to the caller
    OTHER_SERVER = 'other server'      #: mark the server inactive, send to another now
    WAIT = 'wait'                      #: wait ``pool_retry_interval``, send again


class SiriDBError(Exception):
    """Base class of every error this package raises.

    ``tp`` is the server response type (``None`` for client-side errors) and
    ``error_msg`` the server's text; ``str(exc) == error_msg``.
    The retry policy lives on the classes, read through ``is_retriable`` and
    ``failover_of`` by the pool and the write session alike: ``retriable``
    says that the same request may succeed when sent again (a write session
    resends it after a backoff), ``failover`` what the pool itself does
    within the caller's deadline, ``outcome_known`` whether the error says
    what the server did with the request (a reply, or a refusal before
    sending): False when it may have been applied in part or whole.
    """

    retriable = False
    failover = Failover.RAISE
    outcome_known = True

    def __init__(self, error_msg: str = '', tp: Optional[int] = None) -> None:
        super().__init__(error_msg)
        self.error_msg = error_msg
        self.tp = tp

    def __str__(self) -> str:
        return self.error_msg

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.error_msg!r}, tp={self.tp!r})'

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.error_msg, self.tp))


class QueryError(SiriDBError):
    """The server rejected a query (response type 65)."""


class InsertError(SiriDBError):
    """The server rejected an insert (response type 66)."""


class InsertForwardError(InsertError):
    """An insert reply 66 after the receiving server stored its own pool's
    part: forwarding the rest to another pool failed ("Error occurred while
    sending points to at least '<server>'") or the server failed inside
    ("Critical error occurred on '<server>'"). Part of the points may be
    stored: the outcome is unknown; sending the points again may succeed.
    Still an ``InsertError`` (as 2.1.6 raised it)."""

    retriable = True
    outcome_known = False  # part stored; the pool raises it (failover RAISE)


class ServerError(SiriDBError):
    """The server is not running or cannot handle the request (type 67).

    SiriDB answers an insert so before storing any of it: nothing stored."""

    retriable = True
    failover = Failover.OTHER_SERVER


class PoolError(SiriDBError):
    """A pool lacks an online server (type 68), or no connection is usable.

    Either way nothing was stored: SiriDB answers an insert with 68 before
    storing any of it, and without a connection nothing was sent."""

    retriable = True
    failover = Failover.WAIT


class AuthenticationError(SiriDBError):
    """Authentication failed or was missing (types 71, 72, 73)."""


class NotAuthenticatedError(AuthenticationError):
    """A request was sent before a successful AUTH (type 71)."""


class InvalidCredentialsError(AuthenticationError):
    """Unknown user or wrong password (type 72)."""


class UnknownDatabaseError(AuthenticationError):
    """The database named in AUTH does not exist on the server (type 73)."""


class UserAuthError(AuthenticationError):
    """The user lacks the right for this request (type 69)."""


class ServiceError(SiriDBError):
    """A service (type 32) request failed (type 96)."""


class ServiceInvalidRequestError(ServiceError):
    """A service request had a wrong shape or unknown option (type 97)."""


class ErrorMessage(SiriDBError, RuntimeError):
    """A generic server error with a message (type 64)."""


class GenericError(SiriDBError, RuntimeError):
    """A generic server error without a message (type 70)."""


class LoadingDatabaseError(SiriDBError, RuntimeError):
    """The database is still loading (type 74)."""

    retriable = True
    outcome_known = False  # SiriDB 2.0.55 has no such reply to an insert: unknown


class FileError(SiriDBError, RuntimeError):
    """A file request failed (type 75)."""


class UnknownResponseError(SiriDBError, RuntimeError):
    """The server answered with a response type this driver does not know."""


class ConnectionLostError(SiriDBError, ConnectionError):
    """The connection is closed or was lost before the reply arrived."""

    retriable = True
    failover = Failover.OTHER_SERVER
    outcome_known = False  # sent, no reply


class ProtocolError(ConnectionLostError, WireError):
    """A received package was corrupt; the connection is closed.

    The client's meaning of the codec's ``WireError``. When raised by the
    decoder, ``packages`` holds the intact packages that arrived in the same
    chunk before the fault.
    """


class ClientClosedError(PoolError, ConnectionError):
    """The client or connection was closed by the caller.

    Also a ``PoolError``: 2.1.6 raised ``PoolError('No available connections
    found')`` for a request after ``close()``, so ``except PoolError`` code keeps
    working; still a ``ConnectionError`` as before."""

    # closed by the caller: nothing to retry, unlike a server's PoolError
    retriable = False
    failover = Failover.RAISE
    outcome_known = False  # a request in flight is abandoned without its reply


class InsertDataError(InsertError, ValueError):
    """Insert data refused before sending: it cannot be packed (an int outside
    int64, an unsupported type) or is larger than the server accepts."""


class RequestTooLargeError(SiriDBError, ValueError):
    """A request payload above the server's 40 MiB limit, refused before
    sending (the server would drop the connection without a reply)."""


class TooManyRequestsError(SiriDBError, RuntimeError):
    """All 65,536 request ids of a connection are waiting for a reply."""

    retriable = True


# -- write sessions (siridb.connector.lib.session)

class SessionError(SiriDBError):
    """Base of the write session errors."""


class BufferFullError(SessionError):
    """``on_full='error'`` and the points do not fit: none of them were taken."""


class SessionClosedError(SessionError):
    """The session is closed (or closing): no points are taken any more."""


class RejectedPointsError(SessionError):
    """The server rejected some points; ``rejected`` lists them with the
    error. Every other point was written."""

    def __init__(self, rejected: List[Rejected]) -> None:
        self.rejected = rejected
        n = sum(len(r.points) for r in rejected)
        super().__init__(f'the server rejected {n} point(s): '
                         + '; '.join(str(r) for r in rejected[:5]))

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.rejected,))


class FlushTimeoutError(SessionError, TimeoutError):
    """``close(timeout=...)`` ran out of time; ``points`` were not confirmed
    written (some of them may have been, at-least-once)."""

    def __init__(self, points: List[Point], last_error: Optional[BaseException]) -> None:
        self.points = points
        self.last_error = last_error
        super().__init__(f'{len(points)} point(s) not confirmed written; '
                         f'last error: {last_error}')

    def __reduce__(self) -> Tuple[Any, ...]:
        return (type(self), (self.points, self.last_error))


# -- configuration

class URLError(ValueError):
    """A SiriDB URL that cannot be parsed; the text never holds the password."""


_timeout_bases: Tuple[type, ...] = (SiriDBError, asyncio.TimeoutError)
if not issubclass(asyncio.TimeoutError, TimeoutError):  # Python < 3.11
    _timeout_bases += (TimeoutError,)

RequestTimeoutError: Type[SiriDBError] = type(
    'RequestTimeoutError', _timeout_bases, {
        '__doc__': 'No reply arrived within the timeout (also a TimeoutError).',
        '__module__': __name__,
        # the caller's deadline is spent: the pool raises, a caller with its
        # own deadline per attempt (the write session) sends again
        'retriable': True,
        'outcome_known': False,  # sent, no reply in time
    })


def is_retriable(exc: BaseException) -> bool:
    """Whether the request that failed with ``exc`` may succeed when sent
    again: the class's ``retriable`` for this package's errors; for others,
    connection and OS errors and timeouts are, anything else is not."""
    if isinstance(exc, SiriDBError):
        return exc.retriable
    return isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError))


def outcome_known(exc: BaseException) -> bool:
    """Whether a request that failed with ``exc`` is known to have done
    nothing but what the error says (a refusal: resend it after a backoff,
    no check needed): the class's ``outcome_known`` for this package's
    errors; others (a socket error, a timeout) are unknown."""
    if isinstance(exc, SiriDBError):
        return exc.outcome_known
    return False


def failover_of(exc: BaseException) -> Failover:
    """What the pool does after ``exc``: the class's ``failover`` for this
    package's errors; another server for other connection errors (a refused
    or reset socket); raise anything else."""
    if isinstance(exc, SiriDBError):
        return exc.failover
    if isinstance(exc, ConnectionError):
        return Failover.OTHER_SERVER
    return Failover.RAISE


#: response type -> exception class
ERROR_CLASSES: Dict[int, Type[SiriDBError]] = {
    pm.CPROTO_ERR_MSG: ErrorMessage,
    pm.CPROTO_ERR_QUERY: QueryError,
    pm.CPROTO_ERR_INSERT: InsertError,
    pm.CPROTO_ERR_SERVER: ServerError,
    pm.CPROTO_ERR_POOL: PoolError,
    pm.CPROTO_ERR_USER_ACCESS: UserAuthError,
    pm.CPROTO_ERR: GenericError,
    pm.CPROTO_ERR_NOT_AUTHENTICATED: NotAuthenticatedError,
    pm.CPROTO_ERR_AUTH_CREDENTIALS: InvalidCredentialsError,
    pm.CPROTO_ERR_AUTH_UNKNOWN_DB: UnknownDatabaseError,
    pm.CPROTO_ERR_LOADING_DB: LoadingDatabaseError,
    pm.CPROTO_ERR_FILE: FileError,
    pm.CPROTO_ERR_SERVICE: ServiceError,
    pm.CPROTO_ERR_SERVICE_INVALID_REQUEST: ServiceInvalidRequestError,
}

#: response type -> (fixed start of the server's text, the class it means):
#: SiriDB 2.0.55's insert replies after its own pool's part was stored
#: (src/siri/db/insert.c); the server name in the text varies
_REFINED: Dict[int, Tuple[Tuple[str, Type[SiriDBError]], ...]] = {
    pm.CPROTO_ERR_INSERT: (
        ('Error occurred while sending points to at least ', InsertForwardError),
        ('Critical error occurred on ', InsertForwardError),
    ),
}

#: texts for error types whose reply carries no message
_DEFAULT_TEXTS: Dict[int, str] = {
    pm.CPROTO_ERR: 'Server returned an error without a message.',
    pm.CPROTO_ERR_NOT_AUTHENTICATED: 'This connection is not authenticated.',
    pm.CPROTO_ERR_AUTH_CREDENTIALS: 'Invalid credentials',  # 2.1.6's texts exactly
    pm.CPROTO_ERR_AUTH_UNKNOWN_DB: 'Unknown database',
    pm.CPROTO_ERR_LOADING_DB: 'Error loading the database.',
    pm.CPROTO_ERR_FILE: 'Error retrieving a file.',
    pm.CPROTO_ERR_SERVICE_INVALID_REQUEST: 'Invalid service request.',
}


def error_for_response(tp: int, data: Any) -> SiriDBError:
    """The exception for a reply of type ``tp`` with decoded payload ``data``.

    The message is the server's ``error_msg`` when there is one, else a fixed
    text per type; a text that starts as one in ``_REFINED`` names a subclass
    (an insert of unknown outcome: ``InsertForwardError``); unknown error
    types fall back to ``SiriDBError`` and unknown non-error types to
    ``UnknownResponseError``.
    """
    msg = None
    if isinstance(data, dict):
        msg = data.get('error_msg')
    if not isinstance(msg, str):
        msg = _DEFAULT_TEXTS.get(tp)
    cls = ERROR_CLASSES.get(tp)
    if isinstance(msg, str):
        for start, refined in _REFINED.get(tp, ()):
            if msg.startswith(start):
                cls = refined
                break
    if cls is None:
        if pm.is_error(tp):
            cls = SiriDBError
            msg = msg or f'Server returned unknown error type {tp}.'
        else:
            cls = UnknownResponseError
            msg = f'Server returned unknown response type {tp}.'
    return cls(msg or '', tp)
