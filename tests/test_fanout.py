"""The fan-out's packet gives the same answers and the same bytes as python-socketio's own."""

from __future__ import annotations

from typing import Any

import pytest
from socketio import packet

from lunark.server.fanout import JsonPacket

SAMPLES: list[Any] = [
    None, 1, 1.5, "text", True, [], {},
    ["token", {"type": "token", "text": "hi", "seq": 3, "ts": 1.5, "usage": {"a": [1, 2, {"b": None}]}}],
    b"raw", bytearray(b"raw"), ["event", {"nested": [1, {"deep": b"\x00"}]}], {"a": {"b": [0, bytearray(1)]}},
]


@pytest.mark.parametrize("data", SAMPLES)
def test_binary_check_and_encoding_match_python_socketio(data: Any) -> None:
    assert JsonPacket.data_is_binary(data) is packet.Packet.data_is_binary(data)
    if not packet.Packet.data_is_binary(data):
        mine = JsonPacket(packet.EVENT, namespace="/", data=["e", data]).encode()
        assert mine == packet.Packet(packet.EVENT, namespace="/", data=["e", data]).encode()
