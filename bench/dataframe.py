"""Time ``results.to_dataframe`` on a nanosecond select result (pandas needed).

    python bench/dataframe.py [--series 10] [--points 20000] [--repeat 5]

Builds a select map of ``--series`` series with ``--points`` float points each
(nanosecond timestamps) and prints the best time of ``--repeat`` conversions.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from siridb.connector.lib.results import to_dataframe  # noqa: E402

BASE_NS = 1_447_250_938_000_000_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--series', type=int, default=10)
    ap.add_argument('--points', type=int, default=20_000)
    ap.add_argument('--repeat', type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(1)
    result: Dict[str, List[Any]] = {
        f's{i}': [[BASE_NS + j * 1000 + i, rng.random()] for j in range(args.points)]
        for i in range(args.series)}
    best = float('inf')
    for _ in range(args.repeat):
        start = time.perf_counter()
        df = to_dataframe(result, 'ns')
        best = min(best, time.perf_counter() - start)
    assert len(df) == args.series * args.points
    print(f'to_dataframe: {len(df):,} points in {best:.3f} s (best of {args.repeat})')


if __name__ == '__main__':
    main()
