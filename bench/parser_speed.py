"""Parse speed of the embedded server's query parser on the recorded statements.

    PYTHONPATH=. python bench/parser_speed.py [--rounds 5]

Parses every query of tests/conformance/grammar.jsonl shorter than 300 characters
(valid statements and statements cut short, as the real server received them) and
prints the statements parsed per second. Used to choose between the hand-written
parser and a pyleri grammar (issue 18).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import List

from siridb.embedded.context import QueryFailure
from siridb.embedded.query.parser import parse

CORPUS = pathlib.Path(__file__).parent.parent / 'tests' / 'conformance' / 'grammar.jsonl'


def statements() -> List[str]:
    """The query texts of the corpus (the very long ones left out)."""
    out = []
    with open(CORPUS, encoding='utf-8') as fh:
        for line in fh:
            rec = json.loads(line)
            req = rec.get('request')
            if req and req['tp'] == 0 and isinstance(req['payload'][0], str) and \
                    len(req['payload'][0]) < 300:
                out.append(req['payload'][0])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rounds', type=int, default=5)
    args = ap.parse_args()
    queries = statements()
    started = time.perf_counter()
    for _ in range(args.rounds):
        for query in queries:
            try:
                parse(query)
            except QueryFailure:
                pass
    elapsed = time.perf_counter() - started
    print(f'{len(queries)} statements x {args.rounds}: '
          f'{len(queries) * args.rounds / elapsed:,.0f} statements/s')


if __name__ == '__main__':
    main()
