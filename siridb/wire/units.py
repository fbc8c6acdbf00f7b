"""Numeric limits and time precisions of SiriDB, shared by client and server.

The one definition of the signed 64-bit range (integer values, timestamps)
and of the precision tables (names, constants 0..3, units per second, the
largest timestamp each accepts); both sides import them from here.
"""
from __future__ import annotations

from typing import Dict, Tuple

__all__ = [
    'INT64_MIN', 'INT64_MAX', 'UINT32_MAX', 'PRECISION_NAMES', 'PRECISION_FACTORS',
    'PRECISION_INDEX', 'PRECISION_UNITS', 'MAX_TIMESTAMP',
]

#: the range of an integer value (and of a timestamp below 's' precision)
INT64_MIN = -2 ** 63
INT64_MAX = 2 ** 63 - 1
#: the largest timestamp of a database in 's' precision (32-bit on the server)
UINT32_MAX = 2 ** 32 - 1

#: precision names by constant (0 = 's' .. 3 = 'ns'), as ``show time_precision``
PRECISION_NAMES: Tuple[str, ...] = ('s', 'ms', 'us', 'ns')
#: units per second by precision constant
PRECISION_FACTORS: Tuple[int, ...] = (1, 1000, 1000_000, 1000_000_000)
#: precision name -> constant (0..3)
PRECISION_INDEX: Dict[str, int] = {name: i for i, name in enumerate(PRECISION_NAMES)}
#: precision name -> units per second
PRECISION_UNITS: Dict[str, int] = dict(zip(PRECISION_NAMES, PRECISION_FACTORS))
#: precision name -> the largest timestamp the server accepts (inclusive)
MAX_TIMESTAMP: Dict[str, int] = {
    name: UINT32_MAX if name == 's' else INT64_MAX for name in PRECISION_NAMES}
