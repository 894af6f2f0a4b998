"""Variants of Lunark applied to a server process at start (``serve.py --patch NAME``), so a change
is measured against the code as it is, in the same run (``python -m benchmarks --ab NAME``).
A change already made is measured against the commit before it with ``--rev REV`` instead.

- ``orjson``: python-socketio's JSON codec swapped for orjson (same as ``--codec orjson``).
- ``asyncio-loop``: the server runs on the standard asyncio loop instead of uvloop (set by
  ``serve.py`` before the loop starts), to measure what uvloop brings.
- ``no-gc-freeze``: the server does not ``gc.freeze()`` its start-up objects as ``lunark serve`` does
  (nor schedule its collections).
- ``no-gc-schedule``: start-up objects frozen, but full collections left to Python's own thresholds
  instead of ``lunark.server.collector`` (what ``lunark serve`` did before it).
- ``switch-5ms``: Python's own GIL switch interval (5 ms) instead of ``lunark serve``'s 1 ms.
"""

from __future__ import annotations

from typing import Any

PATCHES = ("orjson", "asyncio-loop", "no-gc-freeze", "no-gc-schedule", "switch-5ms")


def orjson_codec() -> None:
    import socketio

    from benchmarks.codecs import OrjsonCodec

    original = socketio.AsyncServer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("json", OrjsonCodec)
        original(self, *args, **kwargs)

    socketio.AsyncServer.__init__ = init  # type: ignore[method-assign]


def apply(names: list[str]) -> None:
    known = {
        "orjson": orjson_codec,
        "asyncio-loop": lambda: None,
        "no-gc-freeze": lambda: None,
        "no-gc-schedule": lambda: None,
        "switch-5ms": lambda: None,
    }
    for name in filter(None, names):
        if name not in known:
            raise ValueError(f"unknown patch {name!r}; known: {', '.join(PATCHES)}")
        known[name]()
