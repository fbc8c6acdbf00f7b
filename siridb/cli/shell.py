"""``siridb shell``: an interactive query prompt.

Line editing and history come from stdlib readline when available; with
statements piped in, there are no prompts and a failed statement makes the
exit code 1. A
statement ends at the end of a line unless the line ends with a backslash or
a quote or parenthesis is still open. Ctrl-C cancels the running query (the
prompt stays), or clears the statement being typed; Ctrl-D quits.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from typing import IO, TYPE_CHECKING, Any, List, Optional

from ..connector.lib.exceptions import PoolError, SiriDBError
from .connect import open_client, time_precision_arg
from .exitcodes import OK, REQUEST_ERROR, describe
from .options import PRECISIONS, ConnectionSettings, connection_settings
from .output import render, write

if TYPE_CHECKING:
    from ..connector import SiriDBClient

__all__ = ['run', 'statement_complete', 'Shell']

HELP = """\
Type a SiriDB query and press Enter, e.g.  select * from "cpu"  or  list series
A line ending with \\ continues on the next line (so does an open quote or parenthesis).
  \\timing [on|off]         show how long each query takes
  \\format table|json|csv   output format
  \\precision s|ms|us|ns|off  time precision of returned timestamps
  \\iso [on|off]            timestamps as ISO 8601 datetimes
  \\help                    this text
  \\quit                    quit (or Ctrl-D)
Ctrl-C cancels a running query, or clears the statement being typed.
"""


#: a SiriDB regex literal: quotes and parentheses inside it do not count
_REGEX = re.compile(r'/(?:[^/\\]|\\.)*/', re.S)


def statement_complete(text: str) -> bool:
    """True when ``text`` is a whole statement: no open quote, backtick or
    parenthesis (outside ``/regex/`` literals), and the last line does not end
    with a backslash."""
    if text.rstrip(' \t').endswith('\\'):
        return False
    quote: Optional[str] = None
    depth = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = None  # a doubled quote re-opens at once: still balanced
        elif ch in '"\'`':
            quote = ch
        elif ch == '/':
            m = _REGEX.match(text, i)  # without a closing '/' it is a division
            if m is not None:
                i = m.end()
                continue
        elif ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
        i += 1
    return quote is None and depth <= 0


def _on_off(arg: str, current: bool) -> bool:
    if arg in ('on', 'true', '1'):
        return True
    if arg in ('off', 'false', '0'):
        return False
    return not current


class Shell:
    """The prompt loop; queries run on ``loop`` one at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, client: SiriDBClient,
                 settings: ConnectionSettings, args: argparse.Namespace,
                 out: IO[str], err: IO[str]) -> None:
        self.loop = loop
        self.client = client
        self.settings = settings
        self.out = out
        self.err = err
        self.fmt: str = args.format or 'table'
        self.precision: Optional[str] = args.precision
        self.iso: bool = args.iso
        self.timing = False
        self.interactive = sys.stdin.isatty()
        self.failed = 0

    def _run(self, coro: Any) -> Any:
        """Run ``coro``; Ctrl-C meanwhile cancels it (raises CancelledError)."""
        task = self.loop.create_task(coro)
        try:
            self.loop.add_signal_handler(signal.SIGINT, task.cancel)
            try:
                return self.loop.run_until_complete(task)
            finally:
                self.loop.remove_signal_handler(signal.SIGINT)
        except KeyboardInterrupt:
            # Ctrl-C just before the handler was installed: the same as during
            task.cancel()
            with contextlib.suppress(BaseException):
                self.loop.run_until_complete(task)
            raise asyncio.CancelledError from None

    def execute(self, statement: str) -> bool:
        """Run one statement and print its result or error; True on success."""
        start = time.perf_counter()
        try:
            result = self._run(self._query(statement))
            iso_precision = None
            if self.iso:
                iso_precision = self.precision or self._get_db_precision()
        except asyncio.CancelledError:
            write(self.err, 'Query cancelled.\n')
            return False
        except (SiriDBError, OSError, asyncio.TimeoutError) as exc:
            write(self.err, f'ERROR: {describe(exc)}\n')
            return False
        elapsed = time.perf_counter() - start
        write(self.out, render(result, self.fmt, iso_precision))
        if self.timing:
            write(self.out, f'Time: {elapsed * 1000:.3f} ms\n')
        return True

    async def _query(self, statement: str) -> Any:
        """The query's result; after the connection was lost while the shell sat
        at the prompt, wait for the pool to reconnect and try once more."""
        precision = time_precision_arg(self.precision)
        timeout = self.settings.timeout
        try:
            return await self.client.query(statement, time_precision=precision,
                                           timeout=timeout)
        except (PoolError, ConnectionError):
            if self.client.is_closed:
                raise
            write(self.err, 'Reconnecting...\n')
            await self.client.wait_connected(timeout)
            return await self.client.query(statement, time_precision=precision,
                                           timeout=timeout)

    def _get_db_precision(self) -> str:
        precision: str = self._run(self.client.time_precision(self.settings.timeout))
        return precision

    def command(self, line: str) -> bool:
        """Handle a backslash command; False means quit."""
        name, _, arg = line.strip()[1:].partition(' ')
        arg = arg.strip().lower()
        if name in ('q', 'quit', 'exit'):
            return False
        if name in ('?', 'h', 'help'):
            write(self.out, HELP)
        elif name == 'timing':
            self.timing = _on_off(arg, self.timing)
            write(self.out, f'Timing is {"on" if self.timing else "off"}.\n')
        elif name == 'iso':
            self.iso = _on_off(arg, self.iso)
            write(self.out, f'ISO timestamps are {"on" if self.iso else "off"}.\n')
        elif name == 'format' and arg in ('table', 'json', 'csv'):
            self.fmt = arg
            write(self.out, f'Output format is {arg}.\n')
        elif name == 'precision' and (arg in PRECISIONS or arg in ('off', 'none')):
            self.precision = arg if arg in PRECISIONS else None
            write(self.out, f'Time precision is {self.precision or "the database default"}.\n')
        else:
            write(self.err, f'Unknown or incomplete command: \\{line.strip()[1:]} '
                            '(try \\help)\n')
        return True

    def loop_forever(self) -> None:
        """Read statements until EOF or \\quit."""
        buffer: List[str] = []
        db = self.settings.dbname
        if self.interactive:
            write(self.out, f'Connected to {db}. Type \\help for help, \\quit to quit.\n')
        while True:
            prompt = ''
            if self.interactive:
                prompt = f'{db}> ' if not buffer else ' ' * (len(db) - 2) + '...> '
            try:
                line = input(prompt)
            except EOFError:
                if self.interactive:
                    write(self.out, '\n')
                break
            except KeyboardInterrupt:
                write(self.out, '\n')
                buffer.clear()
                continue
            if not buffer and line.strip().startswith('\\'):
                if not self.command(line):
                    break
                continue
            buffer.append(line)
            text = '\n'.join(buffer)
            if not statement_complete(text):
                if buffer[-1].rstrip(' \t').endswith('\\'):
                    buffer[-1] = buffer[-1].rstrip(' \t')[:-1]
                continue
            buffer.clear()
            statement = text.strip()
            while statement.endswith(';'):
                statement = statement[:-1].rstrip()
            if statement and not self._execute_interruptible(statement):
                self.failed += 1

    def _execute_interruptible(self, statement: str) -> bool:
        """``execute``, where a Ctrl-C that lands outside the query (just after
        the line was read) also only cancels this statement."""
        try:
            return self.execute(statement)
        except KeyboardInterrupt:
            write(self.err, 'Query cancelled.\n')
            return False


def _setup_history(path: Optional[str]) -> Optional[str]:
    """Load readline history; the file to save it to at exit (None: no readline)."""
    try:
        import readline
    except ImportError:  # pragma: no cover - e.g. Windows without pyreadline
        return None
    history = path or os.path.join(os.path.expanduser('~'), '.siridb_history')
    readline.set_history_length(1000)
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    return history


def _save_history(history: Optional[str]) -> None:
    if history is None:
        return
    import readline
    with contextlib.suppress(OSError):
        readline.write_history_file(history)


def run(args: argparse.Namespace) -> int:
    """Connect, then read and run statements until EOF."""
    settings = connection_settings(args)
    loop = asyncio.new_event_loop()
    try:
        opener = open_client(settings)
        client = loop.run_until_complete(opener.__aenter__())
        history = _setup_history(args.history) if sys.stdin.isatty() else None
        shell = Shell(loop, client, settings, args, sys.stdout, sys.stderr)
        try:
            shell.loop_forever()
        finally:
            _save_history(history)
            loop.run_until_complete(opener.__aexit__(None, None, None))
    finally:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    # Statements piped in (a script): failing ones make the exit code 1.
    return REQUEST_ERROR if shell.failed and not shell.interactive else OK
