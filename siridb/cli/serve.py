"""``siridb serve``: run the embedded server until SIGINT or SIGTERM.

Logs go to stderr, including a ``siridb serve: listening on HOST:PORT`` line
(with ``--port 0`` that line is how callers learn the port). A clean shutdown
exits 0.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Dict, List, Optional

from .exitcodes import OK, UsageError
from .options import PRECISIONS

__all__ = ['run', 'parse_databases']


def parse_databases(specs: Optional[List[str]]) -> Dict[str, str]:
    """``name[:precision]`` items -> ``{name: precision}`` (default ``dbtest``, ms)."""
    from ..embedded.store import check_db_name
    if not specs:
        return {'dbtest': 'ms'}
    dbs: Dict[str, str] = {}
    for spec in specs:
        name, _, precision = spec.partition(':')
        precision = precision or 'ms'
        try:
            check_db_name(name)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if precision not in PRECISIONS:
            raise UsageError(f'invalid time precision in {spec!r} (expecting s, ms, us or ns)')
        dbs[name] = precision
    return dbs


async def _serve(args: argparse.Namespace, databases: Dict[str, str]) -> int:
    from ..embedded import EmbeddedServer

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stopping.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
            pass
    server = EmbeddedServer(host=args.host, port=args.port, databases=databases,
                            data_dir=args.data_dir, recover=args.recover)
    try:
        await server.start()
        names = ', '.join(f'{n} ({p})' for n, p in databases.items())
        print(f'siridb serve: listening on {server.host}:{server.port}, databases: {names}',
              file=sys.stderr, flush=True)
        await stopping.wait()
        print('siridb serve: shutting down', file=sys.stderr, flush=True)
    finally:
        await server.stop()
        for sig in handled:
            loop.remove_signal_handler(sig)
    print('siridb serve: stopped', file=sys.stderr, flush=True)
    return OK


def run(args: argparse.Namespace) -> int:
    """Run the embedded server in the foreground."""
    databases = parse_databases(args.db)
    if not 0 <= args.port < 65536:
        raise UsageError('--port must be 0..65535')
    logging.basicConfig(
        level=logging.DEBUG if (args.debug or args.verbose) else logging.INFO,
        format='%(asctime)s %(levelname)s %(name)s: %(message)s', stream=sys.stderr)
    return asyncio.run(_serve(args, databases))
