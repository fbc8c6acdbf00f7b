"""Running the real ``siridb`` command: ``python -m siridb`` in subprocesses
(the embedded server via ``siridb serve``, one-shot commands, the shell on a
pseudo-terminal), or its ``main`` in this process for one-shot commands whose
output and exit code are what a test checks (no interpreter start per call)."""
from __future__ import annotations

import io
import logging
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
LISTEN_RE = re.compile(r'siridb serve: listening on (\S+):(\d+),')


def cli_env(**extra: Optional[str]) -> Dict[str, str]:
    """The environment for a CLI subprocess: repo on PYTHONPATH, default password."""
    env = dict(os.environ)
    env['PYTHONPATH'] = str(ROOT)
    env['SIRIDB_PASSWORD'] = 'siri'
    env['SIRIDB_SERVICE_PASSWORD'] = 'siri'
    env.pop('SIRIDB_NEW_PASSWORD', None)
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(*args: str, input: Optional[str] = None, timeout: float = 30,
            env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m siridb ARGS`` to completion (stdin is a pipe, not a tty)."""
    return subprocess.run(
        [sys.executable, '-m', 'siridb', *args], cwd=ROOT, env=env or cli_env(),
        input=input if input is not None else '', capture_output=True, text=True,
        timeout=timeout)


def run_main(*args: str, input: Optional[str] = None,
             env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess[str]:
    """``siridb ARGS`` in this process: ``siridb.cli.main`` (what the console
    script and ``python -m siridb`` call) with ``env`` as the environment
    (default ``cli_env()``), ``input`` on stdin and stdout/stderr captured;
    none of them a terminal, as with ``run_cli``. Same result type as ``run_cli``."""
    from siridb.cli import main

    stdin = io.TextIOWrapper(io.BytesIO((input or '').encode()), encoding='utf-8')
    stdout, stderr = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    # main sets up logging as for a process of its own: undone afterwards
    loggers = [logging.getLogger(), logging.getLogger('siridb')]
    saved_logging = [(lg, lg.level, lg.handlers[:]) for lg in loggers]
    os.environ.clear()
    os.environ.update(env or cli_env())
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    try:
        try:
            code = main(list(args))
        except SystemExit as exc:  # main returns its code; a stray exit counts too
            code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        os.environ.clear()
        os.environ.update(saved_env)
        for lg, level, handlers in saved_logging:
            lg.setLevel(level)
            lg.handlers[:] = handlers
        stdin.close()
    return subprocess.CompletedProcess(['siridb', *args], code, stdout.getvalue(),
                                       stderr.getvalue())


class ServeProcess:
    """``siridb serve`` in a subprocess, logging to a file; ``.port`` once it listens."""

    def __init__(self, log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'siridb', 'serve', '--port', '0', *args],
            cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=self._log)
        self.host = '127.0.0.1'
        self.port = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.log())
            if m:
                self.port = int(m.group(2))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.close()
        raise RuntimeError(f'siridb serve did not start:\n{self.log()}')

    @property
    def addr(self) -> str:
        return f'{self.host}:{self.port}'

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return int(s.getsockname()[1])


class PtyProcess:
    """``python -m siridb ARGS`` on a pseudo-terminal (it is the controlling tty,
    so Ctrl-C typed on it interrupts the child like in a real terminal)."""

    def __init__(self, args: List[str], env: Dict[str, str],
                 python: Optional[List[str]] = None) -> None:
        """``python``: the interpreter arguments before ``ARGS`` (default
        ``-m siridb``; e.g. ``-c CODE`` that sets something, then runs ``main``)."""
        argv = [sys.executable, *(python or ['-m', 'siridb']), *args]
        pid, fd = pty.fork()
        if pid == 0:  # child
            try:
                os.chdir(ROOT)
                os.execve(sys.executable, argv, env)
            finally:
                os._exit(127)
        self.pid = pid
        self.fd = fd
        self.buffer = ''
        self.status: Optional[int] = None

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def read_some(self, timeout: float) -> bool:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            raise EOFError(self.buffer) from None
        if not data:
            raise EOFError(self.buffer)
        self.buffer += data.decode(errors='replace')
        return True

    def expect(self, pattern: str, timeout: float = 15) -> str:
        """Wait until ``pattern`` (a regex) shows up; return the text up to and
        including it and drop that from the buffer."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.buffer)
            if m:
                before = self.buffer[:m.end()]
                self.buffer = self.buffer[m.end():]
                return before
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f'timed out waiting for {pattern!r}; got:\n{self.buffer}')
            try:
                self.read_some(left)
            except EOFError:
                raise AssertionError(
                    f'terminal closed waiting for {pattern!r}; got:\n{self.buffer}') from None

    def wait(self, timeout: float = 15) -> int:
        """Exit code of the child, reading its output meanwhile."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise AssertionError(f'child did not exit; output:\n{self.buffer}')
            try:
                self.read_some(0.05)
            except EOFError:
                time.sleep(0.02)
        try:  # what the child wrote just before exiting
            while self.read_some(0):
                pass
        except EOFError:
            pass
        return self.status

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.status = -9
        os.close(self.fd)


def spawn_shell(addr: str, home: Path, *, wait: bool = True,
                python: Optional[List[str]] = None, **env: str) -> PtyProcess:
    """``siridb shell --db dbtest --host ADDR`` on a pseudo-terminal, with
    ``home`` as HOME and the history file there, no pager unless ``PAGER`` is
    given; ``wait``: return at the first prompt."""
    args = ['shell', '--db', 'dbtest', '--host', addr, '--history', str(home / 'history')]
    sh = PtyProcess(args, cli_env(**{'HOME': str(home), 'PAGER': '', **env}), python)
    if wait:
        try:
            sh.expect(r'dbtest> ')
        except BaseException:
            sh.close()
            raise
    return sh
