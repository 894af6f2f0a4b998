"""The fan-out's packet gives the same answers and the same bytes as python-socketio's own."""

from __future__ import annotations

import json
from typing import Any

import pytest
from socketio import packet

from lunark.server.fanout import JsonPacket, event_packet

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


EVENTS: list[dict[str, Any]] = [
    {"type": "token", "message_id": "msg_abc", "text": " Hi", "chat_id": "chat_1", "seq": 7, "ts": 1732900000.125},
    {"type": "token", "text": 'q" \\ \n\t\u2028 é 中 \U0001F600', "chat_id": "c", "seq": 1, "ts": 2.5},
    {"type": "message_end", "message_id": "m", "usage": {"output_tokens": 3, "ttft_ms": None}, "seq": 9, "ts": 3.0},
]


@pytest.mark.parametrize("event", EVENTS)
@pytest.mark.parametrize("namespace", ["/", "/chat"])
def test_an_event_packet_framed_around_the_logged_json_is_python_socketios_packet(
    event: dict[str, Any], namespace: str
) -> None:
    expected = packet.Packet(packet.EVENT, namespace=namespace, data=[event["type"], event]).encode()
    logged = json.dumps(event, separators=(",", ":"), ensure_ascii=False)  # as SqliteStore logs it
    assert event_packet(event["type"], event, namespace, logged) == expected
    assert event_packet(event["type"], event, namespace) == expected
