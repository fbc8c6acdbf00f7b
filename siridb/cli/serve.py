"""``siridb serve``: run the embedded server until SIGINT or SIGTERM.

The same server as ``python -m siridb.embedded``: the options come from its
``server_parser`` and the serving from its ``serve``; this command differs
only in announcing on stderr, with the other logs: a
``siridb serve: listening on HOST:PORT, databases: ...`` line (with
``--port 0`` that line is how callers learn the port). A clean shutdown exits 0.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING

from .exitcodes import OK, CliError, UsageError

if TYPE_CHECKING:
    from ..embedded import EmbeddedServer

__all__ = ['run']


def _announce(server: EmbeddedServer) -> None:
    names = ', '.join(f'{db.name} ({db.precision})' for db in server.store.databases.values())
    named = f' as {server.name}' if server.name != server.listening_on else ''
    print(f'siridb serve: listening on {server.listening_on}{named}, databases: {names}',
          file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the embedded server in the foreground."""
    from ..embedded.__main__ import args_error, serve, setup_logging
    from ..embedded.persist import DataDirError, DataDirInUse

    error = args_error(args)
    if error:
        raise UsageError(error)
    setup_logging('debug' if (args.debug or args.verbose) else args.log_level)
    try:
        asyncio.run(serve(args, _announce))
    except (DataDirInUse, DataDirError) as exc:
        raise CliError(str(exc)) from None
    print('siridb serve: stopped', file=sys.stderr, flush=True)
    return OK
