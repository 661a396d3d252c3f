"""The request decoder every engine's server runs before touching buffer memory."""

from __future__ import annotations

import struct

import pytest

from reverie import _core

S = _core.WireStatus
TOKEN = 0x1234_5678_9ABC
HEADER = _core.WIRE_REQUEST_HEADER_BYTES


def decode(data: bytes, token: int = TOKEN, max_count: int = 64, owner_size: int = 100):
    status, request_id, slots = _core.wire_decode_request(data, token, max_count, owner_size)
    return status, request_id, slots


def test_round_trip():
    data = _core.wire_encode_request(TOKEN, 42, [0, 7, 99])
    assert len(data) == HEADER + 3 * 4 == 52
    assert decode(data) == (S.ok, 42, [0, 7, 99])
    assert decode(_core.wire_encode_request(TOKEN, 43, [])) == (S.ok, 43, [])  # a size query


def test_header_layout_is_fixed():
    data = _core.wire_encode_request(TOKEN, 5, [3])
    magic, version, flags, token, request_id, count, rank, size = struct.unpack_from("<IHHQQIiQ", data)
    # rank -1 and size 0: a hand-made request says nothing about its sender's buffer
    assert (magic, version, flags, token, request_id, count, rank, size) == (
        0x51525652,
        2,
        0,
        TOKEN,
        5,
        1,
        -1,
        0,
    )
    assert _core.WIRE_REPLY_BYTES == 32


@pytest.mark.parametrize(
    ("mutate", "want", "has_id"),
    [
        (lambda d: d[:-1], S.malformed, True),  # truncated slot
        (lambda d: d[:HEADER], S.malformed, True),  # slots missing
        (lambda d: d + b"\0\0\0\0", S.malformed, True),  # trailing bytes
        (lambda d: d[: HEADER - 1], S.malformed, False),  # header truncated
        (lambda d: b"", S.malformed, False),
        (lambda d: b"RVRX" + d[4:], S.malformed, False),  # wrong magic
        (lambda d: d[:4] + b"\x01\x00" + d[6:], S.malformed, False),  # another version
        (lambda d: d[:24] + struct.pack("<I", 3) + d[28:], S.malformed, True),  # count says 3, 2 sent
        (lambda d: d[:24] + struct.pack("<I", 2**32 - 1) + d[28:], S.too_many, True),  # count huge
    ],
)
def test_malformed_requests_are_rejected(mutate, want, has_id):
    status, request_id, slots = decode(mutate(_core.wire_encode_request(TOKEN, 9, [1, 2])))
    assert status == want and slots == []
    assert (request_id == 9) if has_id else (request_id is None)


def test_wrong_token_is_rejected():
    assert decode(_core.wire_encode_request(TOKEN + 1, 9, [1])) == (S.bad_token, 9, [])


def test_slots_must_exist_on_the_owner():
    assert decode(_core.wire_encode_request(TOKEN, 9, [0, 99]), owner_size=100)[0] == S.ok
    assert decode(_core.wire_encode_request(TOKEN, 9, [0, 100]), owner_size=100)[0] == S.bad_slot
    assert decode(_core.wire_encode_request(TOKEN, 9, [2**32 - 1]), owner_size=100)[0] == S.bad_slot
    assert decode(_core.wire_encode_request(TOKEN, 9, [0]), owner_size=0)[0] == S.bad_slot


def test_count_is_bounded_by_what_the_owner_serves():
    assert decode(_core.wire_encode_request(TOKEN, 9, [0] * 64), max_count=64)[0] == S.ok
    assert decode(_core.wire_encode_request(TOKEN, 9, [0] * 65), max_count=64)[0] == S.too_many
