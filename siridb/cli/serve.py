"""``siridb serve``: run the embedded server until SIGINT or SIGTERM.

Logs go to stderr, including a ``siridb serve: listening on HOST:PORT`` line
(with ``--port 0`` that line is how callers learn the port). A clean shutdown
exits 0.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
from typing import Dict, List, Optional

from .exitcodes import OK, UsageError
from .options import PRECISIONS

__all__ = ['run', 'parse_databases']

_DBNAME = re.compile(r'^[a-zA-Z][a-zA-Z0-9\-_]{0,18}[a-zA-Z0-9]$')


def parse_databases(specs: Optional[List[str]]) -> Dict[str, str]:
    """``name[:precision]`` items -> ``{name: precision}`` (default ``dbtest``, ms)."""
    if not specs:
        return {'dbtest': 'ms'}
    dbs: Dict[str, str] = {}
    for spec in specs:
        name, _, precision = spec.partition(':')
        precision = precision or 'ms'
        if not _DBNAME.match(name):
            raise UsageError(f'invalid database name: {name!r}')
        if precision not in PRECISIONS:
            raise UsageError(f'invalid time precision in {spec!r} (expecting s, ms, us or ns)')
        dbs[name] = precision
    return dbs


async def _serve(args: argparse.Namespace, databases: Dict[str, str]) -> int:
    from ..embedded import EmbeddedServer
    from ..embedded.limits import limits_for

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stopping.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not on Unix
            pass
    limits = limits_for(args.host,
                        max_connections=getattr(args, 'max_connections', None),
                        pre_auth_idle_timeout=getattr(args, 'pre_auth_timeout', None),
                        auth_fail_delay=getattr(args, 'auth_fail_delay', None))
    server = EmbeddedServer(host=args.host, port=args.port, databases=databases,
                            data_dir=args.data_dir, limits=limits)
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
    for opt in ('max_connections', 'pre_auth_timeout', 'auth_fail_delay'):
        if (getattr(args, opt, None) or 0) < 0:
            raise UsageError(f'--{opt.replace("_", "-")} must not be negative')
    logging.basicConfig(
        level=logging.DEBUG if (args.debug or args.verbose) else logging.INFO,
        format='%(asctime)s %(levelname)s %(name)s: %(message)s', stream=sys.stderr)
    return asyncio.run(_serve(args, databases))
