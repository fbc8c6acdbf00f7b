"""What following SiriDB's shards costs the embedded server.

    PYTHONPATH=. python bench/shards.py [--series 20000] [--points 1000000]

Prints (1) the time per series of an insert of one point into each of
``--series`` number series, with and without the shard bookkeeping, and (2) the
time of ``count shards size`` over ``--points`` number points (and 2% string
points), the first time and again (each series' part is kept until it changes).
"""
from __future__ import annotations

import argparse
import time
import timeit
from typing import Any, Dict

import siridb.embedded.insert as insert_module
from siridb.embedded.context import QueryContext, ServerInfo
from siridb.embedded.insert import insert
from siridb.embedded.query import execute
from siridb.embedded.store import Database

T0 = 1447200000


def _no_note(*args: Any) -> None:
    """Notes nothing (the insert path without the bookkeeping)."""


def insert_cost(n_series: int) -> None:
    payload: Dict[str, Any] = {f's{i}': [[T0, 1]] for i in range(n_series)}

    def per_series() -> float:
        db = Database('bench', 's')
        insert(db, payload)
        return min(timeit.repeat(lambda: insert(db, payload), number=1, repeat=5)) / n_series

    with_book = per_series()
    real = insert_module.note_shards
    insert_module.note_shards = _no_note
    try:
        without = per_series()
    finally:
        insert_module.note_shards = real
    print(f'insert, 1 point into each of {n_series} series: {with_book * 1e6:.2f} us per '
          f'series with the shard book, {without * 1e6:.2f} us without '
          f'({(with_book / without - 1) * 100:+.0f}%)')


def count_cost(points: int) -> None:
    db = Database('bench', 's')
    per_insert = 100 * 500
    for r in range(max(1, points // per_insert)):
        insert(db, {f'n{i}': [[T0 + r * 5000 + k * 10, k] for k in range(500)]
                    for i in range(100)})
    for r in range(10):
        insert(db, {f'l{i}': [[T0 + r * 100 + k, f'message {k} of {r}'] for k in range(10)]
                    for i in range(points // 5000)})
    ctx = QueryContext(db, db.users['iris'], ServerInfo('localhost:9310'))
    total = sum(len(s) for s in db.series.values())
    for what in ('first', 'again'):
        started = time.perf_counter()
        res = execute(ctx, 'count shards size', None)
        print(f'count shards size over {total} points ({what}): '
              f'{time.perf_counter() - started:.3f} s ({res})')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--series', type=int, default=20000)
    p.add_argument('--points', type=int, default=1000_000)
    args = p.parse_args()
    insert_cost(args.series)
    count_cost(args.points)


if __name__ == '__main__':
    main()
