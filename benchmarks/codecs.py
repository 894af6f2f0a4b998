"""JSON codecs for python-socketio (``socketio.AsyncServer(json=...)``)."""

from __future__ import annotations

from typing import Any

import orjson


class OrjsonCodec:
    """orjson behind the ``json`` module interface python-socketio calls (``dumps``/``loads``)."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return orjson.loads(data)


def codec(name: str) -> Any:
    if name == "orjson":
        return OrjsonCodec
    if name == "json":
        return None  # python-socketio's default (the standard library)
    raise ValueError(f"unknown codec {name!r}")
