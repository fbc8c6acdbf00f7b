"""What a hostile (or just big) reply costs the client: time and peak memory.

    python bench/hostile_replies.py                 # the default table, each case in a child
    python bench/hostile_replies.py KIND MIB        # one case in this process

Each reply body is handed to ``Decoder(replies=True).feed`` in 256 KiB chunks, as a
transport does, and decoded as the client protocol does
(``unpack_body(..., reply=True)``). Kinds: ``empty`` (an open array of empty
arrays: the attack of issue 13), ``deep+ints`` (the deepest nesting the
reply bound lets through, the rest small negative ints), ``wide+ints`` (the
most empty arrays it lets through, one between every two ints), ``ints``
(only small negative ints: no containers at all) and ``select`` (a
legitimate reply of points ``[ts, float]`` of that size). Peak memory is the
growth of the process's peak RSS over the decode (the chunks are built
first); each case runs in a fresh child so that peaks do not mix.
"""
from __future__ import annotations

import resource
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from siridb.connector.lib.codec import (  # noqa: E402
    Decoder,
    Package,
    container_limit,
    encode,
    unpack_body,
)

_POINT = struct.Struct('<BBqBd').pack

KINDS = ('empty', 'deep+ints', 'wide+ints', 'ints', 'select')
DEFAULT = [('empty', 40), ('empty', 8), ('deep+ints', 8), ('wide+ints', 8), ('ints', 8),
           ('select', 8)]


def body_of(kind: str, size: int) -> bytes:
    if kind == 'empty':
        return b'\xfc' + b'\xed' * (size - 1)
    limit = container_limit(size) - 1  # the open array adds one marker
    if kind == 'deep+ints':
        return b'\xee' * limit + b'\xfc' + b'\x49' * (size - limit - 1)
    if kind == 'wide+ints':
        return b'\xfc' + b'\xed\x49' * limit + b'\x49' * (size - 2 * limit - 1)
    if kind == 'ints':
        return b'\xfc' + b'\x49' * (size - 1)
    if kind == 'select':
        # {'s': [[int64 ts, double], ...]} built as bytes (19 bytes a point),
        # so that no Python objects raise the peak before the decode
        head = b'\xf4\x81s\xfc'
        return head + b''.join(
            b''.join(_POINT(0xEF, 0xEB, 1_700_000_000_000 + i, 0xEC, i * 0.25)
                     for i in range(start, min(start + 10_000, (size - 4) // 19)))
            for start in range(0, (size - 4) // 19, 10_000))
    raise SystemExit(f'unknown kind {kind!r}; one of {", ".join(KINDS)}')


def one(kind: str, mib: float) -> str:
    wire = encode(1, 0, body_of(kind, int(mib * 2**20)))
    chunks = [wire[p:p + 262_144] for p in range(0, len(wire), 262_144)]
    del wire
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    dec = Decoder(replies=True)
    got: List[Package] = []
    for chunk in chunks:
        got += dec.feed(chunk)
    t1 = time.perf_counter()
    try:
        unpack_body(got[0].body, depth_bound=got[0].depth_bound, reply=True)
        outcome = 'decoded'
    except Exception as exc:  # the outcome is what is measured
        outcome = f'{type(exc).__name__}'
    t2 = time.perf_counter()
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0) / 1024
    return (f'| {kind} | {mib:g} | {outcome} | {t1 - t0:.2f} | {t2 - t1:.2f} | '
            f'{grew:,.0f} |')


def main() -> None:
    if len(sys.argv) == 3:
        print(one(sys.argv[1], float(sys.argv[2])))
        return
    print('| reply | MiB | outcome | gather s | decode s | peak RSS growth MiB |')
    print('|---|---:|---|---:|---:|---:|')
    for kind, mib in DEFAULT:
        proc = subprocess.run([sys.executable, __file__, kind, str(mib)],
                              capture_output=True, text=True, check=True)
        print(proc.stdout.strip())


if __name__ == '__main__':
    main()
