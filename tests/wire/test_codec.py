"""The sans-IO codec: header layout, incremental decoding, limits, hostile bodies."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from typing import Any

import pytest
from _paths import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from siridb.connector.lib import exceptions as ex
from siridb.connector.lib.codec import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    SAFE_BODY_SIZE,
    Decoder,
    Package,
    encode,
    pack,
    packb,
    unpack_body,
)
from siridb.connector.lib.validate import pack_insert
from siridb.wire import WireError


def test_header_layout() -> None:
    data = pack(0x1234, 65, {'error_msg': 'x'})
    length, pid, tp, check = struct.unpack_from('<IHBB', data)
    assert (length, pid, tp, check) == (len(data) - 8, 0x1234, 65, 65 ^ 0xFF)
    assert HEADER_SIZE == 8
    assert encode(1, 3) == struct.pack('<IHBB', 0, 1, 3, 3 ^ 0xFF)


def test_roundtrip_and_package_data() -> None:
    [pkg] = Decoder().feed(pack(7, 0, {'a': [[1, 1.5], [2, 'é']]}))
    assert pkg == Package(7, 0, pkg.body)
    assert pkg.data() == {'a': [[1, 1.5], [2, 'é']]}
    assert Package(1, 3, b'').data() is None


def test_one_byte_chunks_and_coalesced() -> None:
    stream = b''.join(pack(i, 0, ['q', i]) for i in range(50))
    dec = Decoder()
    got = []
    for i in range(len(stream)):
        got += dec.feed(stream[i:i + 1])
    assert [p.data() for p in got] == [['q', i] for i in range(50)]
    assert dec.buffered == 0
    assert [p.pid for p in Decoder().feed(stream)] == list(range(50))


@given(st.lists(st.binary(max_size=300), max_size=20), st.data())
@settings(max_examples=150, deadline=None)
def test_any_split_gives_the_same_packages(bodies: list, data: st.DataObject) -> None:
    stream = b''.join(encode(i, 0, b) for i, b in enumerate(bodies))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    dec = Decoder()
    got = []
    prev = 0
    for c in cuts + [len(stream)]:
        got += dec.feed(stream[prev:c])
        prev = c
    assert [(p.pid, p.body) for p in got] == list(enumerate(bodies))


def test_bad_check_byte_and_decoder_stays_failed() -> None:
    dec = Decoder()
    with pytest.raises(ex.ProtocolError, match='check byte'):
        dec.feed(struct.pack('<IHBB', 0, 1, 0, 0))
    with pytest.raises(ex.ProtocolError):
        dec.feed(pack(1, 0))


def test_payload_limit() -> None:
    with pytest.raises(ex.ProtocolError, match='too large'):
        Decoder().feed(struct.pack('<IHBB', MAX_PAYLOAD + 1, 1, 0, 0xFF))
    # exactly the limit is accepted (header only fed: waits for the body)
    dec = Decoder()
    assert dec.feed(struct.pack('<IHBB', MAX_PAYLOAD, 1, 0, 0xFF)) == []
    small = Decoder(max_payload=10)
    with pytest.raises(ex.ProtocolError):
        small.feed(encode(1, 0, b'x' * 11))


@pytest.mark.parametrize('body', [b'\xfe', b'\xff', b'\xfe\x01', b'\xff\x00\x00'])
def test_close_marker_bodies_never_reach_qpack(body: bytes) -> None:
    with pytest.raises(ex.ProtocolError):
        unpack_body(body)


@pytest.mark.parametrize('body', [b'\xf4\x81', b'\x85ab', b'\xfd\x82\xc3\x28'])
def test_garbage_bodies_are_protocol_errors(body: bytes) -> None:
    with pytest.raises(ex.ProtocolError):
        unpack_body(body)


def test_packb_int_overflow_is_overflow_error() -> None:
    with pytest.raises(OverflowError):
        packb(2 ** 64)
    assert packb(2 ** 63 - 1)


def _child(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a child interpreter: a regression (C stack overflow in
    qpack) kills only the child."""
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120, cwd=str(ROOT))


@pytest.mark.parametrize('expr,expected', [
    ("b'\\xee' * 300_000 + b'\\x00'", 'list'),
    ("b'\\xfc' * 300_000", 'list'),
    ("b'\\xfd\\x81a' * 300_000 + b'\\x00'", 'dict'),
    ("b'\\xee' * 41_000_000", 'ProtocolError'),
])
def test_deeply_nested_bodies_do_not_crash(expr: str, expected: str) -> None:
    proc = _child(
        'from siridb.connector.lib.codec import unpack_body\n'
        'from siridb.connector.lib.exceptions import ProtocolError\n'
        f'body = {expr}\n'
        'try:\n'
        '    print(type(unpack_body(body)).__name__)\n'
        'except ProtocolError:\n'
        '    print("ProtocolError")\n')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == expected


@given(st.integers(0, 3_000_000), st.integers(0, 3_000_000), st.integers(0, 7_000_000))
@settings(max_examples=30, deadline=None)
def test_the_nesting_scan_stops_early_but_never_misjudges(
        markers: int, plain: int, limit: int) -> None:
    from siridb.wire import decode as codec
    body = b'\x00' * plain + b'\xee' * markers + b'\x00' * plain
    found = codec._containers(body, limit)
    assert (found > limit) == (markers > limit)
    assert found <= markers


def _markers(body: bytes) -> int:
    """Container markers (empty ones included), counted the plain way."""
    return sum(1 for b in body if 0xED <= b <= 0xF8 or b in (0xFC, 0xFD))


def test_empty_containers_count_as_containers() -> None:
    # an empty array nests nothing but costs a 56-byte list for one byte:
    # the count bounds how many containers a body makes, not only its depth
    from siridb.wire import decode as codec
    assert codec._containers(b'\xed\xf3' * 1000, 10) > 10
    assert codec._containers(b'\xed\xf3' * 1000, 5000) == 2000
    assert codec._containers(b'\xee\xf4\xfc\xfd\x00\x81a' * 3, 100) == 12
    assert codec.tighten_depth_bound(codec.MAX_DEPTH + 4, b'\xed\xf3\x00\xee') \
        == codec.MAX_DEPTH + 3
    assert codec.tighten_depth_bound(100, b'\x00' * 40, 50) == 60
    assert codec.tighten_depth_bound(60, b'\x00' * 40, 60) == 60  # no longer read


@given(st.binary(min_size=2, max_size=3000), st.lists(st.integers(0, 3000), max_size=12),
       st.integers(0, 3000), st.booleans())
@settings(max_examples=200, deadline=None)
def test_the_decoder_bounds_nesting_of_a_body_it_gathers(
        body: bytes, cuts: list[int], limit: int, replies: bool) -> None:
    # a body gathered chunk by chunk carries an upper bound of its nesting
    # that sorts it like the full scan does, whatever the chunking
    from siridb.wire import decode as codec
    mp = pytest.MonkeyPatch()
    mp.setattr(codec, 'MAX_DEPTH', limit)
    mp.setattr(Decoder, 'BIG_BODY', 1)
    try:
        data = encode(5, 0, body)
        points = sorted({c % len(data) for c in cuts} | {HEADER_SIZE + 1})
        dec = Decoder(replies=replies)
        got: list[Package] = []
        for a, b in zip([0] + points, points + [len(data)]):
            got += dec.feed(data[a:b])
    finally:
        mp.undo()
    [pkg] = got
    assert pkg.body == body
    assert pkg.depth_bound >= _markers(body)
    assert (pkg.depth_bound > limit) == (_markers(body) > limit)
    if replies:  # bounded down to the reply limit as well
        reply_limit = min(limit, len(body) // codec.REPLY_BYTES_PER_CONTAINER)
        assert (pkg.depth_bound > reply_limit) == (_markers(body) > reply_limit)


#: MAX_DEPTH for the two tests of big bodies below: with the real one
#: (6.7 million) a body must be over 6.7 MB (800,000 points, 12 MB) to be
#: longer than the bound and so be scanned; the code reads the bound at run
#: time, and a smaller one keeps every path (a fresh thread, several scan
#: slices) at a body of 250,000 points (3.7 MB)
SMALL_MAX_DEPTH = 2_000_000
SMALL_MAX_DEPTH_POINTS = 250_000


def test_a_gathered_big_reply_is_not_scanned_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from siridb.wire import decode as codec
    monkeypatch.setattr(codec, 'MAX_DEPTH', SMALL_MAX_DEPTH)
    data = {'s': [[i, i * 0.25] for i in range(SMALL_MAX_DEPTH_POINTS)]}
    wire = pack(9, 0, data)
    assert len(wire) > codec.MAX_DEPTH
    assert len(wire) > codec.FRESH_THREAD_BODY + 2 * codec._SCAN_SLICE
    rescans: list[int] = []
    real = codec._containers
    monkeypatch.setattr(codec, '_containers',
                        lambda b, limit: rescans.append(len(b)) or real(b, limit))
    dec = Decoder()
    got: list[Package] = []
    for pos in range(0, len(wire), 262_144):  # as a transport hands it over
        got += dec.feed(wire[pos:pos + 262_144])
    [pkg] = got
    assert 0 <= pkg.depth_bound <= codec.MAX_DEPTH
    assert pkg.data() == data
    assert rescans == []
    # the same body without the decoder's bound is scanned, and decodes alike
    assert unpack_body(pkg.body) == data
    assert rescans == [len(pkg.body)]


def test_a_gathered_hostile_reply_is_refused() -> None:
    from siridb.wire import decode as codec
    wire = encode(3, 0, b'\xee' * (codec.MAX_DEPTH + 1) + b'\x00')
    dec = Decoder()
    got: list[Package] = []
    for pos in range(0, len(wire), 1 << 20):
        got += dec.feed(wire[pos:pos + (1 << 20)])
    [pkg] = got
    assert pkg.depth_bound == codec.MAX_DEPTH + 1
    with pytest.raises(WireError, match='nested too deep'):
        pkg.data()  # a wire-level object: the codec's error


def test_big_bodies_are_scanned_for_their_nesting_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from siridb.wire import decode as codec
    monkeypatch.setattr(codec, 'MAX_DEPTH', SMALL_MAX_DEPTH)
    data = {'s': [[i, i * 0.25] for i in range(SMALL_MAX_DEPTH_POINTS)]}
    body = packb(data)
    assert len(body) > codec.MAX_DEPTH
    assert len(body) > codec.FRESH_THREAD_BODY + 2 * codec._SCAN_SLICE
    assert unpack_body(body) == data  # few markers: decoded
    scanned: list[int] = []

    def all_markers(b: bytes, limit: int) -> int:
        scanned.append(len(b))
        return len(b)  # as if every byte opened a container

    monkeypatch.setattr(codec, '_containers', all_markers)
    with pytest.raises(ex.ProtocolError, match='nested too deep'):
        unpack_body(body)
    assert scanned == [len(body)]


def test_a_big_body_decodes_when_no_fresh_thread_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from siridb.wire import decode as codec
    real_stack_size = codec.threading.stack_size
    fell_back: list[int] = []

    def no_big_stacks(*size: int) -> int:
        if size and size[0] == codec.DEEP_STACK_SIZE:
            raise ValueError('size not valid')  # as under ulimit -v, say
        return real_stack_size(*size)

    def run_deep(fn: Any, *args: Any) -> Any:
        fell_back.append(len(args[0]))
        return fn(*args)

    monkeypatch.setattr(codec.threading, 'stack_size', no_big_stacks)
    monkeypatch.setattr(codec, 'run_deep', run_deep)
    data = {'s': [[i, i] for i in range(150_000)]}
    body = packb(data)
    assert len(body) > codec.FRESH_THREAD_BODY
    assert unpack_body(body) == data
    assert fell_back == [len(body)]


def test_deep_big_body_on_the_fresh_thread_does_not_crash() -> None:
    # 1.2 million levels in a 1.2 MB body: decoded on a fresh thread with
    # the big stack, in a child so a regression kills only the child
    proc = _child(
        'from siridb.connector.lib.codec import unpack_body\n'
        "r = unpack_body(b'\\xee' * 1_200_000 + b'\\x00')\n"
        'depth = 0\n'
        'while isinstance(r, list):\n'
        '    r = r[0]\n'
        '    depth += 1\n'
        'print(depth)\n')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == '1200000'


@pytest.mark.slow
def test_deepest_body_the_scan_lets_through_decodes() -> None:
    # just under MAX_DEPTH markers: the worst a hostile reply can make the
    # client decode, ~2 s and ~1.2 GB
    proc = _child(
        'from siridb.connector.lib.codec import unpack_body, MAX_DEPTH\n'
        "r = unpack_body(b'\\xee' * (MAX_DEPTH - 1) + b'\\x00')\n"
        'print(type(r).__name__)\n')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == 'list'


def test_deeply_nested_inserts_do_not_crash() -> None:
    proc = _child(
        'from siridb.connector.lib.validate import pack_insert\n'
        'from siridb.connector.lib.exceptions import InsertDataError\n'
        'from siridb.connector.lib.codec import unpack_body\n'
        'x = []\n'
        'for _ in range(300_000):\n'
        '    x = [x]\n'
        'try:\n'
        '    pack_insert({"s": [[1, x]]})\n'
        'except InsertDataError as exc:\n'
        '    print("refused", "nothing was sent" in str(exc))\n'
        'loop = []\n'
        'loop.append(loop)\n'
        'try:\n'
        '    pack_insert({"s": [[1, loop]]})\n'
        'except InsertDataError as exc:\n'
        '    print("refused", "refers to itself" in str(exc))\n')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split('\n')[:2] == ['refused True', 'refused True']


def test_pack_insert_matches_packb_on_both_paths() -> None:
    small = {'a': [[1, 1.5], [2, 'x']], 'b': [[3, -4]]}
    big = {'a': [[i, i * 0.5] for i in range(1000)]}
    listed = [{'name': 'a', 'points': [[1, 2]]}]
    for data in (small, big, listed, {}, []):
        assert pack_insert(data) == packb(data)


def test_big_bodies_decode_like_small_ones() -> None:
    data = {'s': [[i, i * 0.25] for i in range(20_000)]}
    body = packb(data)
    assert len(body) > SAFE_BODY_SIZE
    assert unpack_body(body) == data
    with pytest.raises(ex.ProtocolError):
        unpack_body(body[:-5] + b'\xe7\xff\xff\xff\xff')


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
def test_big_body_decoding_works_in_a_forked_child() -> None:
    """The big-stack decoder thread does not survive a fork: a child starts
    its own instead of waiting forever on the parent's."""
    proc = _child(
        'import os\n'
        'from siridb.connector.lib.codec import packb, unpack_body\n'
        'body = packb({"s": [[i, i * 0.5] for i in range(10000)]})\n'
        'assert unpack_body(body)["s"][1] == [1, 0.5]\n'
        'pid = os.fork()\n'
        'if pid == 0:\n'
        '    os._exit(0 if unpack_body(body)["s"][2] == [2, 1.0] else 1)\n'
        'print(os.waitpid(pid, 0)[1])\n')
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == '0'


def test_packages_before_a_fault_travel_on_the_error() -> None:
    good = [pack(1, 0, ['a', None]), pack(2, 3)]
    bad = struct.pack('<IHBB', 0, 3, 0, 0x12)
    dec = Decoder()
    with pytest.raises(ex.ProtocolError) as info:
        dec.feed(b''.join(good) + bad + b'rest')
    assert [(p.pid, p.tp) for p in info.value.packages] == [(1, 0), (2, 3)]
    assert info.value.packages[0].data() == ['a', None]
    with pytest.raises(ex.ProtocolError) as again:
        dec.feed(b'')
    assert again.value.packages == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 700_000), min_size=1, max_size=4),
       st.lists(st.integers(1, 3_000_000), max_size=12), st.randoms())
def test_big_bodies_collected_over_chunks_decode_the_same(sizes, cuts, rnd) -> None:
    """Bodies above Decoder.BIG_BODY are gathered as chunks and joined once;
    any split of a stream with big and small packages gives the same packages."""
    bodies = [bytes(rnd.getrandbits(8) for _ in range(16)) * (n // 16) for n in sizes]
    stream = b''.join(encode(i, 0, b) for i, b in enumerate(bodies))
    points = sorted({c % (len(stream) + 1) for c in cuts})
    dec = Decoder()
    got = []
    prev = 0
    for c in points + [len(stream)]:
        got += dec.feed(stream[prev:c])
        prev = c
    assert [(p.pid, p.body) for p in got] == list(enumerate(bodies))
    assert dec.buffered == 0


def test_corrupt_header_right_after_a_big_body_keeps_the_body() -> None:
    big = encode(1, 0, b'\xee' * (Decoder.BIG_BODY + 10))
    dec = Decoder()
    assert dec.feed(big[:1000]) == []
    assert dec.buffered == 1000 - HEADER_SIZE
    with pytest.raises(ex.ProtocolError) as info:
        dec.feed(big[1000:] + struct.pack('<IHBB', 0, 2, 0, 0x01))
    assert [p.pid for p in info.value.packages] == [1]
    assert len(info.value.packages[0].body) == Decoder.BIG_BODY + 10
