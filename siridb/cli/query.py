"""``siridb query``: run one query and print its result."""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Optional, Tuple

from .connect import open_client, time_precision_arg
from .exitcodes import OK
from .options import ConnectionSettings, connection_settings
from .output import render, write

__all__ = ['run', 'run_query', 'strip_statement']


def strip_statement(text: str) -> str:
    """``text`` without surrounding blanks and trailing ``;`` (the shell and
    ``siridb query`` accept a statement ending in ``;`` as psql does)."""
    statement = text.strip()
    while statement.endswith(';'):
        statement = statement[:-1].rstrip()
    return statement


async def run_query(settings: ConnectionSettings, query: str, precision: Optional[str],
                    iso: bool) -> Tuple[Any, Optional[str]]:
    """The result of ``query`` and, with ``iso``, the precision its timestamps are in."""
    async with open_client(settings) as client:
        result = await client.query(query, time_precision=time_precision_arg(precision),
                                    timeout=settings.timeout)
        iso_precision = None
        if iso:
            iso_precision = precision or await client.time_precision(settings.timeout)
    return result, iso_precision


def run(args: argparse.Namespace) -> int:
    settings = connection_settings(args)
    result, iso_precision = asyncio.run(
        run_query(settings, strip_statement(args.query), args.precision, args.iso))
    fmt = args.format or ('table' if sys.stdout.isatty() else 'json')
    write(sys.stdout, render(result, fmt, iso_precision))
    return OK
