"""The sans-IO codec: header layout, incremental decoding, limits, hostile bodies."""
from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siridb.connector.lib import exceptions as ex
from siridb.connector.lib.codec import (
    HEADER_SIZE,
    MAX_PAYLOAD,
    Decoder,
    Package,
    encode,
    pack,
    packb,
    unpack_body,
)


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
