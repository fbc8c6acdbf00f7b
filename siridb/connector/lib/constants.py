"""Time precision constants, as accepted by ``query(..., time_precision=...)``."""

SECOND = 0
MILLISECOND = 1
MICROSECOND = 2
NANOSECOND = 3

DEFAULT_CLIENT_PORT = 9000

#: Precision names used by the server (``show time_precision``) by constant.
PRECISION_NAMES = ('s', 'ms', 'us', 'ns')

#: Number of units per second for each precision constant.
PRECISION_FACTORS = (1, 1000, 1000_000, 1000_000_000)

#: the range of an integer value (and of a timestamp below 's' precision)
INT64_MIN = -2 ** 63
INT64_MAX = 2 ** 63 - 1

#: the pool's error when no server can be asked (the request was not sent)
NO_CONNECTIONS = 'No available connections found'
