"""Differential test of the query parser against the real server's answers.

The recorded transcripts (tests/conformance/*.jsonl, from a real SiriDB 2.0.55) are
the oracle: for every query they hold, the parser must accept exactly what the real
server accepted and refuse the rest with the real server's exact "Query error at
position N. Expecting ..." text. grammar.jsonl holds valid statements of every kind
and each of them cut short token by token, so this covers the Expecting lists of
every prefix the transcripts know.

Statements generated from those (the answer of the real server follows from the
recorded one, because its parser skips whitespace the same way everywhere):
- a space doubled before the error position moves the position by one and keeps
  the Expecting list; after it, changes nothing;
- trailing whitespace keeps an accepted statement accepted;
- a character no element starts with, after an accepted statement, is refused at
  its position with end_of_statement among the expected;
- a keyword of an accepted statement in capitals is refused (keywords are
  case-sensitive) at or before the keyword;
- every keyword of the grammar that starts no statement, and every prefix of one that
  does, is refused at position 0 with the start-of-statement list;
- an accepted statement cut before a space parses or is refused at its end, expecting
  the keyword the statement goes on with.
"""
from __future__ import annotations

import random
import re
from typing import Dict, List, Optional, Tuple

import pytest
from _conformance_helpers import HERE, records

from siridb.embedded.context import QueryFailure
from siridb.embedded.query.parser import MAX_DEPTH_ERROR, parse

_POS = re.compile(r'Query error at position (\d+)\. Expecting (.*)\Z', re.S)
#: answers given while parsing (the rest come from running a parsed statement)
_PARSE_TEXTS = (MAX_DEPTH_ERROR,)
#: answers the embedded parser gives that the real server gives after parsing
_LATER_TEXTS = ("Max depth reached in 'where' expression!",)


def _oracle() -> Dict[str, Optional[str]]:
    """query text -> the real server's parse error text (None: it parsed)."""
    out: Dict[str, Optional[str]] = {}
    for path in sorted(HERE.glob('*.jsonl')):
        for rec in records(path.stem):
            req = rec.get('request')
            if req is None or req['tp'] != 0 or rec['response'] is None:
                continue
            payload = req['payload']
            if not isinstance(payload, list) or not payload:
                continue
            query = payload[0]
            if isinstance(query, dict) and '__bytes__' in query:
                try:
                    query = bytes.fromhex(query['__bytes__']).decode('utf-8')
                except UnicodeDecodeError:
                    continue
            if not isinstance(query, str) or rec['name'] == 'query too long':
                continue
            reply = rec['response']['payload']
            msg = reply.get('error_msg') if isinstance(reply, dict) else None
            if isinstance(msg, str) and (_POS.match(msg) or msg in _PARSE_TEXTS):
                out[query] = msg
            else:
                out[query] = None
    return out


ORACLE = _oracle()
ACCEPTED = sorted(q for q, e in ORACLE.items() if e is None)
REFUSED = sorted((q, e) for q, e in ORACLE.items() if e is not None)


def _answer(query: str) -> Optional[str]:
    """The parser's answer: None when it parses, else its error text."""
    try:
        parse(query)
    except QueryFailure as exc:
        return None if exc.msg in _LATER_TEXTS else exc.msg
    return None


def test_the_oracle_is_large() -> None:
    # grammar.jsonl alone holds ~1900 statements, about half of them refused
    assert len(ACCEPTED) > 900 and len(REFUSED) > 800


def test_accepts_what_the_real_server_accepts() -> None:
    wrong = [(q, _answer(q)) for q in ACCEPTED if _answer(q) is not None]
    assert wrong == []


def test_refuses_with_the_real_servers_texts() -> None:
    wrong = [(q, want, _answer(q)) for q, want in REFUSED if _answer(q) != want]
    assert wrong == []


def _plain(query: str) -> bool:
    """No quotes, regular expressions, comments or operators that look like them:
    doubling a space anywhere changes no token."""
    return not re.search(r"""['"`/#]""", query)


def _spaces(query: str) -> List[int]:
    return [i for i, c in enumerate(query) if c == ' ']


def test_a_doubled_space_moves_the_error_by_one() -> None:
    checked = 0
    for query, want in REFUSED:
        m = _POS.match(want)
        if m is None or not _plain(query):
            continue
        pos, expecting = int(m.group(1)), m.group(2)
        for i in _spaces(query):
            text = query[:i] + ' ' + query[i:]
            shifted = pos + 1 if i < pos else pos
            assert _answer(text) == \
                f'Query error at position {shifted}. Expecting {expecting}', text
            checked += 1
    assert checked > 1000


def test_whitespace_keeps_accepted_statements_accepted() -> None:
    checked = 0
    for query in ACCEPTED:
        if not _plain(query):
            continue
        assert _answer(query + ' \t\n') is None, query
        for i in _spaces(query):
            assert _answer(query[:i] + '  ' + query[i:]) is None, query
        checked += 1
    assert checked > 300


def test_junk_after_a_statement_is_refused_there() -> None:
    checked = 0
    for query in ACCEPTED:
        if query.rstrip() != query or '#' in query or not query:
            continue
        got = _answer(query + ' @')
        assert got is not None and got.startswith(
            f'Query error at position {len(query) + 1}. Expecting '), (query, got)
        assert 'end_of_statement' in got, (query, got)
        checked += 1
    assert checked > 800


def test_prefixes_of_accepted_statements_expect_their_continuation() -> None:
    """Cut an accepted statement before a space: the rest is missing, so the prefix
    parses or is refused at its very end, and a keyword that continues the statement
    is among the expected elements there."""
    checked = 0
    for query in ACCEPTED:
        if not _plain(query):
            continue
        for i in _spaces(query):
            prefix, rest = query[:i], query[i:].lstrip(' ')
            if not prefix.strip() or prefix.endswith(' '):
                continue
            got = _answer(prefix)
            if got is None:
                continue
            m = _POS.match(got)
            assert m is not None and int(m.group(1)) == len(prefix), (prefix, got)
            word = re.match(r'[a-z_]+(?![\w(])', rest)
            if word is not None:
                named = re.search(rf'(?:^|, | or ){word.group()}(?=,|$| or )', m.group(2))
                assert named is not None, (prefix, word.group(), got)
            checked += 1
    assert checked > 1000


def _keywords(query: str) -> List[Tuple[int, str]]:
    """Lower-case words outside quotes, backticks and regular expressions."""
    out = []
    query = query.split('#', 1)[0]  # not in a comment
    masked = re.sub(r"""'[^']*'|"[^"]*"|`[^`]*`|/[^/]*/""",
                    lambda m: ' ' * len(m.group()), query)
    for m in re.finditer(r'[a-z_]+', masked):
        if not (m.start() and masked[m.start() - 1].isdigit()):  # not 1h, 5m
            out.append((m.start(), m.group()))
    return out


def test_capitalised_keywords_are_refused() -> None:
    rng = random.Random(18)
    checked = 0
    for query in ACCEPTED:
        words = _keywords(query)
        if not words:
            continue
        start, word = rng.choice(words)
        text = query[:start] + word.upper() + query[start + len(word):]
        got = _answer(text)
        m = _POS.match(got or '')
        assert m is not None and int(m.group(1)) <= start, (text, got)
        checked += 1
    assert checked > 500


#: the real server's answer for a statement no element takes at position 0 (grammar.jsonl
#: holds it for an unterminated string; any first word no statement starts with gets
#: the same list, because nothing was taken before it)
START = ORACLE["'2015"]
_STARTERS = ('select', 'list', 'count', 'alter', 'create', 'drop', 'grant', 'revoke',
             'show', 'help', 'timeit', 'now')


def _grammar_keywords() -> List[str]:
    """Every keyword the embedded grammar knows (its tables, in one list)."""
    from siridb.embedded.query import parser as p
    words = set(p.FN_ORDER[1:]) | set(p.ACCESS_ORDER) | set(p.SHOW_PROPS) | \
        set(p.LOG_LEVELS) | set(p.HELP_TOPICS)
    for cols in p.COLUMN_ORDER.values():
        words.update(cols)
    for spec in p.WHERE_ORDER.values():
        for props, _ in spec:
            words.update(props)
    words.update(('where', 'from', 'after', 'before', 'between', 'head', 'tail', 'merge',
                  'union', 'difference', 'intersection', 'symmetric_difference', 'limit',
                  'prefix', 'suffix', 'using', 'as', 'and', 'or', 'set', 'to', 'user',
                  'group', 'tag', 'series', 'true', 'false', 'nan', 'inf'))
    return sorted(w for w in words if w not in _STARTERS)


def test_start_list_is_known() -> None:
    assert START is not None and START.startswith('Query error at position 0. Expecting ')


@pytest.mark.parametrize('word', _grammar_keywords())
def test_a_keyword_no_statement_starts_with_is_refused_at_0(word: str) -> None:
    assert _answer(word) == START
    assert _answer(word + ' x') == START


@pytest.mark.parametrize('query', ['select', 'list', 'count', 'show', 'alter',
                                   'create', 'drop', 'grant', 'revoke', 'help', 'timeit'])
def test_every_prefix_of_a_statement_keyword_is_answered(query: str) -> None:
    """Cutting the first keyword short gives the start-of-statement list."""
    for n in range(1, len(query)):
        assert _answer(query[:n]) == START, query[:n]
