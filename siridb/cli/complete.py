"""Tab completion for the shell from what the query parser expects next.

The embedded server's parser records, at the furthest position it reached,
the names of the elements it expected there (the same list as in its
"Expecting ..." errors). Parsing the text before the word being completed,
followed by a character no element matches, gives what may come next:
keywords are offered as they are, and where series may be named, the
database's series (``"name"``), groups and tags (`` `name` ``).
"""
from __future__ import annotations

import re
from typing import Callable, List, Optional

__all__ = ['expected_next', 'Completer', 'WORD_DELIMS']

#: readline splits the line into words at these characters
WORD_DELIMS = ' \t\n(),'

#: a character no element of the grammar matches: the parse stops in front of it
_PROBE = '\x01'
_KEYWORD = re.compile(r'[a-z_]+$')
#: names the parser gives to value elements rather than words to type
_VALUES = frozenset(('single_quote_str', 'double_quote_str', 'grave_str', 'integer',
                     'float', 'number', 'regex', 'uuid', 'topic', 'end_of_statement'))


def expected_next(head: str) -> Optional[List[str]]:
    """The names of the elements that may follow ``head`` (a statement's
    start), or None when ``head`` itself has a syntax error."""
    from ..embedded.context import QueryFailure
    from ..embedded.query.parser import Parser

    parser = Parser(head + _PROBE)
    try:
        parser.statement()
    except QueryFailure:
        pass
    if parser.err_pos != len(head):
        return None
    return list(parser.expected)


class Completer:
    """A readline completer; ``names(kind)`` gives the database's ``'series'``,
    ``'groups'`` or ``'tags'`` names (asked once per completed word)."""

    def __init__(self, names: Callable[[str], List[str]]) -> None:
        self.names = names
        self._matches: List[str] = []

    def candidates(self, line: str, begin: int) -> List[str]:
        """Completions for the word of ``line`` that starts at ``begin``."""
        head, word = line[:begin], line[begin:]
        expected = expected_next(head)
        if not expected:
            return []
        out = {e for e in expected if _KEYWORD.match(e) and e not in _VALUES
               and e.startswith(word)}
        # series may be named where the parser also takes '*'/'all' (selections)
        if 'double_quote_str' in expected and ('all' in expected or '*' in expected):
            if word.startswith('`'):
                quoted = [f'`{n}`' for n in self.names('groups') + self.names('tags')]
            else:
                quoted = [f'"{n}"' for n in self.names('series')]
            # a bare word matches the names too: readline puts the quoted name in its place
            out.update(q for q in quoted if q.startswith(word) or q[1:].startswith(word))
        return sorted(out)

    def complete(self, text: str, state: int) -> Optional[str]:
        """The readline protocol: ``state`` 0 computes, later states page."""
        if state == 0:
            import readline
            line = readline.get_line_buffer()
            begin = readline.get_begidx()
            try:
                # Python's readline appends nothing to a completed word: add the space
                self._matches = [c + ' ' for c in self.candidates(line, begin)]
            except Exception:  # noqa: BLE001 - a completer must never break the prompt
                self._matches = []
        return self._matches[state] if state < len(self._matches) else None
