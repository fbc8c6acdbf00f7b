"""Time precision constants, as accepted by ``query(..., time_precision=...)``.

The precision tables (names by constant, units per second) and the range of
an integer value are defined once in ``siridb.wire.units`` and re-exported
here for 2.1.6 code.
"""
from ...wire.units import INT64_MAX, INT64_MIN, PRECISION_FACTORS, PRECISION_NAMES

__all__ = ['SECOND', 'MILLISECOND', 'MICROSECOND', 'NANOSECOND', 'DEFAULT_CLIENT_PORT',
           'PRECISION_NAMES', 'PRECISION_FACTORS', 'INT64_MIN', 'INT64_MAX']

SECOND = 0
MILLISECOND = 1
MICROSECOND = 2
NANOSECOND = 3

DEFAULT_CLIENT_PORT = 9000
