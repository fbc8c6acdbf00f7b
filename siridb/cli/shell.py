"""``siridb shell``: an interactive query prompt.

Line editing, history (a statement of several lines is one entry) and Tab
completion (``siridb.cli.complete``) come from stdlib readline when available;
results taller than the terminal go through a pager (``siridb.cli.pager``).
With statements piped in, there are no prompts, errors name the input line
and a failed statement makes the exit code 1. A statement ends at the end of
a line unless the line ends with a backslash or a quote or parenthesis is
still open. Ctrl-C cancels the running query (the prompt stays), or clears
the statement being typed; Ctrl-D, ``exit`` or ``quit`` quits (Ctrl-D on a
continuation prompt says the unfinished statement was dropped).
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
from typing import IO, TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ..connector.lib.constants import PRECISION_NAMES
from ..connector.lib.exceptions import PoolError, SiriDBError
from .connect import open_client, time_precision_arg
from .exitcodes import OK, REQUEST_ERROR, describe
from .options import ConnectionSettings, connection_settings
from .output import render, write
from .pager import show
from .query import strip_statement

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
  \\pager [on|off]          long results through $PAGER (default less) on a terminal
  \\help                    this text
  \\quit                    quit (or exit, quit, Ctrl-D)
Tab completes keywords, series, groups and tags. Ctrl-C cancels a running
query, or clears the statement being typed.
"""


#: words that leave the shell (as \\quit does), with or without a trailing ';'
_QUIT_WORDS = ('exit', 'quit')
#: said when input ends in the middle of a statement
_DROPPED = 'Unfinished statement dropped (input ended before it was complete).'
#: how long completion reuses the names it asked for, and how long it waits
NAMES_TTL = 10.0
NAMES_TIMEOUT = 2.0
_NAME_QUERIES = {'series': 'list series name limit 1000', 'groups': 'list groups name',
                 'tags': 'list tags name'}

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
        self.pager = self.interactive and out.isatty()
        self.failed = 0
        self.readline = False  # history entries are added by hand (see enable_readline)
        self._names: Dict[str, Tuple[float, List[str]]] = {}

    def enable_readline(self) -> None:
        """Tab completion, and history entries made per statement rather than
        per line (readline must be importable)."""
        import readline

        from .complete import WORD_DELIMS, Completer
        readline.set_auto_history(False)
        readline.set_completer(Completer(self.names).complete)
        readline.set_completer_delims(WORD_DELIMS)
        readline.parse_and_bind('tab: complete')
        self.readline = True

    def remember(self, entry: str) -> None:
        """Add ``entry`` to the line-editing history (one entry per statement)."""
        if self.readline and entry.strip():
            import readline
            readline.add_history(entry)

    def names(self, kind: str) -> List[str]:
        """Series, group or tag names for completion; asked again after
        ``NAMES_TTL`` seconds, and [] when the server does not answer quickly."""
        now = time.monotonic()
        cached = self._names.get(kind)
        if cached is not None and now - cached[0] < NAMES_TTL:
            return cached[1]
        query = _NAME_QUERIES[kind]
        try:
            result = self.loop.run_until_complete(
                self.client.query(query, timeout=NAMES_TIMEOUT))
            names = [str(row[0]) for row in result.get(kind, [])]
        except Exception:  # noqa: BLE001 - completion offers nothing rather than fail
            names = []
        self._names[kind] = (now, names)
        return names

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

    def _error(self, text: str, line: Optional[int]) -> None:
        """An error on stderr; in a script it names the statement's input line."""
        where = f'line {line}: ' if line is not None and not self.interactive else ''
        write(self.err, f'{where}{text}\n')

    def execute(self, statement: str, line: Optional[int] = None) -> bool:
        """Run one statement and print its result or error; True on success.
        ``line``: the input line the statement starts on (named in errors)."""
        start = time.perf_counter()
        try:
            result = self._run(self._query(statement))
            iso_precision = None
            if self.iso:
                iso_precision = self.precision or self._get_db_precision()
        except asyncio.CancelledError:
            self._error('Query cancelled.', line)
            return False
        except (SiriDBError, OSError, asyncio.TimeoutError) as exc:
            self._error(f'ERROR: {describe(exc)}', line)
            return False
        elapsed = time.perf_counter() - start
        show(render(result, self.fmt, iso_precision), self.out, self.pager)
        if self.timing:
            write(self.out, f'Time: {elapsed * 1000:.3f} ms\n')
        return True

    async def _query(self, statement: str) -> Any:
        """The query's result; after the connection was lost while the shell sat
        at the prompt, reconnect at once (not after the pool's backoff delay)
        and try once more."""
        precision = time_precision_arg(self.precision)
        timeout = self.settings.timeout
        try:
            return await self.client.query(statement, time_precision=precision,
                                           timeout=timeout)
        except (PoolError, ConnectionError) as exc:
            if self.client.is_closed:
                raise
            write(self.err, 'Reconnecting...\n')
            errors = await self.client.connect(timeout)
            if all(e is not None for e in errors):
                raise exc from next(e for e in errors if e is not None)
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
        elif name == 'pager':
            self.pager = _on_off(arg, self.pager)
            write(self.out, f'Pager is {"on" if self.pager else "off"}.\n')
        elif name == 'precision' and (arg in PRECISION_NAMES or arg in ('off', 'none')):
            self.precision = arg if arg in PRECISION_NAMES else None
            write(self.out, f'Time precision is {self.precision or "the database default"}.\n')
        else:
            write(self.err, f'Unknown or incomplete command: \\{line.strip()[1:]} '
                            '(try \\help)\n')
        return True

    def loop_forever(self) -> None:
        """Read statements until EOF, \\quit, exit or quit."""
        buffer: List[str] = []
        lineno = 0  # input lines read
        first = 0   # the input line the buffered statement starts on
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
                if buffer:
                    if self.interactive:
                        write(self.out, '\n')
                    else:
                        self.failed += 1
                    self._error(_DROPPED, first)
                elif self.interactive:
                    write(self.out, '\n')
                break
            except KeyboardInterrupt:
                write(self.out, '\n')
                buffer.clear()
                continue
            lineno += 1
            if not buffer:
                first = lineno
                word = strip_statement(line).lower()
                if word in _QUIT_WORDS:
                    self.remember(line.strip())
                    break
                if line.strip().startswith('\\'):
                    self.remember(line.strip())
                    if not self.command(line):
                        break
                    continue
            buffer.append(line)
            text = '\n'.join(buffer)
            if not statement_complete(text):
                if buffer[-1].rstrip(' \t').endswith('\\'):
                    buffer[-1] = buffer[-1].rstrip(' \t')[:-1]
                continue
            # one history entry per statement, however many lines it took
            self.remember(' '.join(part.strip() for part in buffer if part.strip()))
            buffer.clear()
            statement = strip_statement(text)
            if statement and not self._execute_interruptible(statement, first):
                self.failed += 1

    def _execute_interruptible(self, statement: str, line: Optional[int] = None) -> bool:
        """``execute``, where a Ctrl-C that lands outside the query (just after
        the line was read) also only cancels this statement."""
        try:
            return self.execute(statement, line)
        except KeyboardInterrupt:
            self._error('Query cancelled.', line)
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
        if history is not None:
            shell.enable_readline()
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
