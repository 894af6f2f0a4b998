"""Tokens that carry their own send time, so per-token latency is read at the client.

A token is 7 characters, about the size of a model token with its leading space:
``" " + index (2 base-62 digits) + send time (4 base-62 digits, 10 µs units)``.
Both are modular (3,844 tokens, 147 s), which is plenty to check order and to
measure latencies far below the wrap. The send time is ``time.monotonic()``:
CLOCK_MONOTONIC, one clock for every process on the machine (Node's
``process.hrtime`` reads the same one), so the model's process stamps and the
client's process measures.
"""

from __future__ import annotations

import time

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
INDEX_MOD = 62**2
TIME_MOD = 62**4  # in 10 µs units: 147.8 s
TOKEN_LEN = 7


def _enc(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        out.append(ALPHABET[digit])
    return "".join(reversed(out))


def _dec(text: str) -> int:
    value = 0
    for c in text:
        value = value * 62 + _VALUE[c]
    return value


def now10() -> int:
    """Monotonic time in 10 µs units."""
    return int(time.monotonic() * 100_000)


def make_token(index: int, t10: int | None = None) -> str:
    return " " + _enc(index % INDEX_MOD, 2) + _enc((now10() if t10 is None else t10) % TIME_MOD, 4)


def parse(text: str) -> list[tuple[int, int]]:
    """(index mod INDEX_MOD, send time mod TIME_MOD) of each token in a (coalesced) text."""
    return [(_dec(text[i + 1 : i + 3]), _dec(text[i + 3 : i + 7])) for i in range(0, len(text), TOKEN_LEN)]


def latency_s(sent_mod: int, received10: int) -> float:
    return ((received10 - sent_mod) % TIME_MOD) / 100_000
