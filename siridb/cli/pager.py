"""Showing long output through a pager when the shell runs on a terminal.

The pager is ``$PAGER`` (empty: none), else ``less`` (with ``LESS=FRX`` unless
set: quit when the text fits, keep colours, leave the text on screen), else
``more``; output shorter than the terminal is printed as it is.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
from typing import IO, Dict, Optional

from .output import write

__all__ = ['pager_command', 'show']


def pager_command() -> Optional[str]:
    """The pager to run (a shell command), or None for none."""
    pager = os.environ.get('PAGER')
    if pager is not None:
        return pager.strip() or None
    for name in ('less', 'more'):
        if shutil.which(name):
            return name
    return None


def _default_sigint() -> None:
    """In the pager's process: Ctrl-C as usual (ignoring it would be inherited)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def show(text: str, out: IO[str], use_pager: bool) -> None:
    """Write ``text`` to ``out``, through the pager when ``use_pager`` and the
    text has more lines than the terminal shows."""
    command = pager_command() if use_pager else None
    rows = shutil.get_terminal_size().lines
    if command is None or text.count('\n') <= rows - 1:  # fits above the prompt
        write(out, text)
        return
    env: Dict[str, str] = dict(os.environ)
    env.setdefault('LESS', 'FRX')
    out.flush()
    # Ctrl-C belongs to the pager while it runs (less uses it to stop a search)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        subprocess.run(command, shell=True, input=text, text=True, env=env, check=False,
                       preexec_fn=_default_sigint)
    except OSError:
        write(out, text)
    finally:
        signal.signal(signal.SIGINT, previous)
