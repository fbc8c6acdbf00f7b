"""The ``siridb`` command: query, shell, import, export, admin and serve.

``main(argv)`` parses the arguments, runs one command and returns its exit
code (see ``siridb.cli.exitcodes``); each command lives in its own module and
is imported only when it runs, so ``siridb --help`` stays fast.
"""
from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback
from typing import List, Optional

from .exitcodes import USAGE, describe, exit_code_for

__all__ = ['main']

#: command name -> module holding its ``run(args) -> int``
_COMMANDS = {
    'query': 'query',
    'shell': 'shell',
    'import': 'importer',
    'export': 'export',
    'admin': 'admin',
    'serve': 'serve',
}


def _setup_logging(verbose: bool) -> None:
    """Driver logs on stderr with ``-v``; otherwise silent (errors are reported
    once, as the command's message)."""
    if verbose:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format='%(levelname)s %(name)s: %(message)s')
        return
    logger = logging.getLogger('siridb')
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``siridb`` command with ``argv`` (default ``sys.argv[1:]``)."""
    from .options import build_parser
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(serve_options='serve' in argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error
        return exc.code if isinstance(exc.code, int) else USAGE
    verbose = bool(getattr(args, 'verbose', False))
    if args.command != 'serve':
        _setup_logging(verbose)
    module = importlib.import_module(f'.{_COMMANDS[args.command]}', __name__)
    try:
        code: int = module.run(args)
    except KeyboardInterrupt:
        print('siridb: interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into `head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except Exception as exc:  # noqa: BLE001 - every error becomes a message and an exit code
        if verbose:
            traceback.print_exc()
        print(f'siridb: {describe(exc)}', file=sys.stderr)
        return exit_code_for(exc)
    return code
