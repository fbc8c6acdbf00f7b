"""Client-side constants: time precisions, the default port, the int64 range.

The precision tables and the range of an integer value are defined once in
``siridb.wire.units`` (shared with the embedded server) and re-exported here,
under the names the client and 2.1.6 code use.
"""
from ...wire.units import (
    INT64_MAX,
    INT64_MIN,
    MAX_TIMESTAMP,
    PRECISION_FACTORS,
    PRECISION_INDEX,
    PRECISION_NAMES,
)

__all__ = ['SECOND', 'MILLISECOND', 'MICROSECOND', 'NANOSECOND', 'DEFAULT_CLIENT_PORT',
           'PRECISION_NAMES', 'PRECISION_BY_NAME', 'PRECISION_FACTORS', 'MAX_TIMESTAMPS',
           'INT64_MIN', 'INT64_MAX', 'NO_CONNECTIONS']

SECOND = 0
MILLISECOND = 1
MICROSECOND = 2
NANOSECOND = 3

DEFAULT_CLIENT_PORT = 9000

#: the precision constant (0..3) of each name
PRECISION_BY_NAME = PRECISION_INDEX
#: the largest timestamp a database stores, by precision name
MAX_TIMESTAMPS = MAX_TIMESTAMP

#: the pool's error when no server can be asked (the request was not sent)
NO_CONNECTIONS = 'No available connections found'
