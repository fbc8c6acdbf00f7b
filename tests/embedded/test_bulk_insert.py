"""Big INSERT bodies decoded in pieces (siridb.embedded.bulk) give exactly
what decoding the whole body gives: the same value, or a refusal."""
from __future__ import annotations

import random
from typing import Any, Tuple

import pytest
import qpack

from siridb.connector.lib.codec import DECODE_ERRORS, packb
from siridb.embedded import bulk
from siridb.embedded.store import Database


def whole(body: bytes) -> Tuple[str, Any]:
    """What decoding the whole body gives (qpack itself: these bodies do
    not nest deep, and unpack_body's deep-stack thread costs 50 ms each)."""
    if body[:1] >= b'\xfe':
        return 'error', 'WireError'
    try:
        return 'ok', qpack.unpackb(body, decode='utf-8')
    except DECODE_ERRORS:
        return 'error', 'WireError'


def stepped(body: bytes) -> Tuple[str, Any]:
    steps = bulk.decode_steps(body, -1, whole_up_to=0)
    try:
        while True:
            assert next(steps) == 0.0
    except StopIteration as stop:
        return 'ok', stop.value
    except Exception as exc:
        return 'error', type(exc).__name__


SHAPES = [
    {f's{i}': [[1, i]] for i in range(20_000)},
    {'long': [[i, i * 1.5] for i in range(40_000)]},
    {'long': [[i, i] for i in range(30_000)], 'text': [[1, 'a' * 150]],
     'strings': [[i, f'v{i}'] for i in range(20_000)], 'last': [[1, 1]]},
    [{'name': f's{i}', 'points': [[i, i]]} for i in range(10_000)],
    [{'points': [[i, 2 ** 40]], 'name': f's{i}'} for i in range(5_000)] +
    [{'name': 'q', 'points': [[j, j] for j in range(20_000)]}],
    {f'n{i}' * 30: [[j, -j] for j in range(7)] for i in range(3_000)},
    {'a': [[1, 2]], **{f's{i}': [[1, None]] for i in range(10_000)}},
    {'empty': [], **{f's{i}': [[i, 0.5]] for i in range(8_000)}},
    {'a': [[1, 2]] * 3, 'b': [[1, 2]] * 10},
    {f'{"x" * 300}{i}': [[1, [1, {'k': 2}]]] for i in range(500)},
]


@pytest.mark.parametrize('shape', range(len(SHAPES)))
def test_pieces_decode_to_the_whole(shape):
    body = packb(SHAPES[shape])
    assert stepped(body) == whole(body) == ('ok', SHAPES[shape])


def test_pieces_are_small():
    body = packb({**{f's{i}': [[1, i]] for i in range(20_000)},
                  'long': [[i, i] for i in range(50_000)]})
    sizes = [len(p) for p, _ in bulk.pieces(body)]
    assert len(sizes) > 10
    assert max(sizes) <= bulk.PIECE + 256


def test_duplicate_series_names_and_trailing_bytes_as_qpack_has_them():
    one = packb({f's{i}': [[1, i], [2, 3]] for i in range(3_000)})
    for body in (b'\xfd' + one[1:] + one[1:], one + b'\x05\x06',
                 b'\xfd' + one[1:] + b'\xff' + one):
        assert stepped(body) == whole(body)


def test_damaged_bodies_are_refused_like_the_whole():
    base = packb({f's{i}': [[1, i], [2, 3]] + (
        [[j, j] for j in range(6_000)] if i % 1_000 == 7 else [])
        for i in range(2_000)})  # three pieces, one of them of a long series
    rnd = random.Random(13)
    for k in range(60):
        body = bytearray(base)
        for _ in range(rnd.randint(1, 3)):
            body[rnd.randrange(len(body))] = rnd.randrange(256)
        if k % 3 == 0:
            body = body[:rnd.randrange(1, len(body) + 1)]
        assert stepped(bytes(body)) == whole(bytes(body)), k


def test_insert_and_apply_steps_store_every_point():
    db = Database('x', 'ms')
    data = {f's{i}': [[1, i], [2, i]] for i in range(5_000)}
    steps = bulk.insert_steps(db, data)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        chunks = stop.value
    steps = bulk.apply_steps(db, chunks)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        assert stop.value == 10_000
    assert len(db.series) == 5_000
    assert all(len(s) == 2 for s in db.series.values())


def test_edge_shapes_are_read_like_qpack_reads_them():
    entry = packb({'a': [[1, 2], [1, 2], [1, 2]]})[1:]  # name + points
    points = packb([[i, i] for i in range(10)])
    cases = [
        b'\xf5' + entry,                       # fixed map short of a pair
        b'\xf5' + entry + entry,               # fixed map, complete
        b'\xf5' + entry + entry + b'\x01',     # ... and a trailing byte
        b'\xf0' + packb({'name': 'a', 'points': [[1, 1]]}),  # array short
        b'\xfd' + entry + b'\x81b' + points[:-1],  # open list until the end
        b'\xfd' + entry + b'\x81b' + points[:-1] + b'\xff',  # closed by a map close
        b'\xfd' + entry + b'\x81b',            # a name without points
        b'\xfd' + entry + b'\xfe',             # an array close in a map
        b'\xfc\xfe', b'\xfd\xff', b'\xfd', b'\xf3', b'\xed',
    ]
    for body in cases:
        assert stepped(body) == whole(body), body.hex()
