"""Property tests (hypothesis) of the sans-IO codec: framing and payloads."""
from __future__ import annotations

import math
from typing import Any, List

import pytest
from _strategies import qpack_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siridb.connector.lib.codec import (
    HEADER,
    HEADER_SIZE,
    Decoder,
    Package,
    encode,
    pack,
    packb,
    unpack_body,
)
from siridb.connector.lib.exceptions import ProtocolError
from siridb.wire import WireError

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

packages = st.lists(st.builds(
    Package,
    pid=st.integers(0, 0xFFFF),
    tp=st.integers(0, 0xFF),
    body=st.binary(max_size=300),
    depth_bound=st.just(-1)), max_size=12)


def stream_of(pkgs: List[Package]) -> bytes:
    return b''.join(encode(p.pid, p.tp, p.body) for p in pkgs)


def split_at(data: bytes, cuts: List[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out = []
    prev = 0
    for p in points + [len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


@SETTINGS
@given(pkgs=packages, cuts=st.lists(st.integers(0, 10**6), max_size=40))
def test_any_packages_cut_anywhere_decode_the_same(
        pkgs: List[Package], cuts: List[int]) -> None:
    data = stream_of(pkgs)
    dec = Decoder()
    got: List[Package] = []
    for chunk in split_at(data, cuts):
        got.extend(dec.feed(chunk))
    assert got == pkgs
    assert dec.buffered == 0


@SETTINGS
@given(pkgs=packages)
def test_byte_by_byte_and_all_at_once_agree(pkgs: List[Package]) -> None:
    data = stream_of(pkgs)
    one = Decoder()
    got: List[Package] = []
    for i in range(len(data)):
        got.extend(one.feed(data[i:i + 1]))
    assert got == pkgs == Decoder().feed(data)


@SETTINGS
@given(pkgs=packages, tail=st.binary(min_size=1, max_size=HEADER_SIZE - 1))
def test_incomplete_tail_stays_buffered(pkgs: List[Package], tail: bytes) -> None:
    dec = Decoder()
    assert dec.feed(stream_of(pkgs) + tail) == pkgs
    assert dec.buffered == len(tail)


@SETTINGS
@given(data=st.binary(max_size=600), cuts=st.lists(st.integers(0, 10**6), max_size=20))
def test_any_bytes_give_packages_or_protocol_error(data: bytes, cuts: List[int]) -> None:
    dec = Decoder()
    failed = False
    try:
        for chunk in split_at(data, cuts):
            for pkg in dec.feed(chunk):
                assert 0 <= pkg.pid <= 0xFFFF and 0 <= pkg.tp <= 0xFF
                try:
                    pkg.data()
                except WireError:
                    pass
    except ProtocolError:
        failed = True
    if failed:  # a failed decoder refuses everything after
        with pytest.raises(ProtocolError):
            dec.feed(b'')


@SETTINGS
@given(body=st.binary(max_size=400))
def test_any_body_decodes_or_raises_protocol_error(body: bytes) -> None:
    try:
        unpack_body(body)
    except ProtocolError:
        pass


@SETTINGS
@given(body=st.binary(max_size=50), first=st.sampled_from([0xFE, 0xFF]))
def test_close_marker_bodies_never_reach_qpack(body: bytes, first: int) -> None:
    with pytest.raises(ProtocolError):
        unpack_body(bytes([first]) + body)


@SETTINGS
@given(pid=st.integers(0, 0xFFFF), tp=st.integers(0, 0xFF),
       check=st.integers(0, 0xFF), body=st.binary(max_size=20))
def test_bad_check_byte_is_a_protocol_error(pid: int, tp: int, check: int,
                                            body: bytes) -> None:
    raw = bytearray(encode(pid, tp, body))
    raw[7] = check
    dec = Decoder()
    if check == tp ^ 0xFF:
        assert dec.feed(bytes(raw)) == [Package(pid, tp, body)]
    else:
        with pytest.raises(ProtocolError):
            dec.feed(bytes(raw))


@SETTINGS
@given(length=st.integers(2**16 + 1, 2**32 - 1))
def test_oversized_length_is_refused_before_the_body(length: int) -> None:
    dec = Decoder(max_payload=2**16)
    header = HEADER.pack(length, 1, 0, 0xFF)
    with pytest.raises(ProtocolError):
        dec.feed(header)


# qpack-able values: ints within int64, finite floats, str, None, bool,
# lists and str-keyed maps (tuples come back as lists)
values = qpack_values(text=30, items=6, keys=10, leaves=30, nan=False)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@SETTINGS
@given(pid=st.integers(0, 0xFFFF), tp=st.integers(0, 0xFF), value=values)
def test_pack_then_decode_round_trips(pid: int, tp: int, value: Any) -> None:
    (pkg,) = Decoder().feed(pack(pid, tp, value))
    assert (pkg.pid, pkg.tp) == (pid, tp)
    assert same(pkg.data(), value)


@SETTINGS
@given(n=st.one_of(st.integers(max_value=-2**63 - 1), st.integers(min_value=2**63)))
def test_ints_beyond_64_bits_raise_overflow(n: int) -> None:
    with pytest.raises(OverflowError):
        packb(n)
    with pytest.raises(OverflowError):
        packb({'series': [[1, n]]})
