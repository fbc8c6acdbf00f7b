"""Client-side constants: time precisions, the default port, the int64 range.

The one definition of each on the client side (connector and CLI import them).
"""

SECOND = 0
MILLISECOND = 1
MICROSECOND = 2
NANOSECOND = 3

DEFAULT_CLIENT_PORT = 9000

#: Precision names used by the server (``show time_precision``) by constant.
PRECISION_NAMES = ('s', 'ms', 'us', 'ns')

#: The precision constant (0..3) of each name.
PRECISION_BY_NAME = {name: i for i, name in enumerate(PRECISION_NAMES)}

#: Number of units per second for each precision constant.
PRECISION_FACTORS = (1, 1000, 1000_000, 1000_000_000)

#: the range of an integer value (and of a timestamp below 's' precision)
INT64_MIN = -2 ** 63
INT64_MAX = 2 ** 63 - 1

#: the largest timestamp a database stores, by precision name (seconds are
#: unsigned 32-bit, finer precisions int64)
MAX_TIMESTAMPS = {'s': 2 ** 32 - 1, 'ms': INT64_MAX, 'us': INT64_MAX, 'ns': INT64_MAX}
