"""What comes in from outside is bounded before it is parsed: one place for HTTP and Socket.IO.

Every JSON text a client sends (an HTTP body, a Socket.IO packet, the auth object of a
Socket.IO CONNECT) goes through ``JsonCodec.loads``, which refuses it *before* ``json.loads``
runs when it is too large, nested too deeply, carries a number or a string that is too long,
or a lone UTF-16 surrogate; ``NaN`` and ``Infinity`` are refused too. Depth matters most:
``py_ecc`` (imported by eth-account) raises Python's recursion limit to 100,000, and the C
JSON decoder then overflows the C stack on ``[`` x 100,000 and kills the process with SIGSEGV.
The check here needs no recursion at all, and ``restore_recursion_limit`` puts the limit
back, so even a parse that skipped the check raises ``RecursionError`` instead of crashing.

The checks work on the text with regular expressions (C speed, linear): strings are cut
out first, so a bracket or digit inside a string counts for nothing, then what is left is
measured. The tokenization matches the decoder's up to the first error the decoder would
report, so nothing the check passes can make the decoder go deeper than ``max_depth``.

``RateLimiter`` is the token bucket behind the ``rate_limited`` error code.

    codec = JsonCodec(LimitsSettings())
    codec.loads(b'{"content": "hi"}')        # {'content': 'hi'}
    codec.loads("[" * 100_000)               # InputRejected(reason="too_deep")
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from lunark.config import LimitsSettings, RateLimit, RateLimitSettings
from lunark.errors import InvalidInput, RateLimited

__all__ = [
    "SANE_RECURSION_LIMIT",
    "InputRejected",
    "JsonCodec",
    "Limiters",
    "RateLimiter",
    "restore_recursion_limit",
]

SANE_RECURSION_LIMIT = 1000
"""CPython's default: deep enough for any code Lunark runs, shallow enough for the C stack."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_PAIR = re.compile(r"\[\]|\{\}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_NUMBER_CHARS = "0-9eE+\\-."


class InputRejected(InvalidInput):
    """Input refused by a limit before it was parsed; ``reason`` says which.

    ``too_large``, ``too_deep``, ``number_too_long``, ``string_too_long``, ``bad_unicode``,
    ``not_json``.
    """


def restore_recursion_limit() -> None:
    """Put Python's recursion limit back to a value the C stack can hold.

    py_ecc sets 100,000 at import (for its own pairing code, which Lunark never calls), so
    deep input in any C-implemented recursive parser would overflow the C stack.
    """
    if sys.getrecursionlimit() > SANE_RECURSION_LIMIT:
        sys.setrecursionlimit(SANE_RECURSION_LIMIT)


def _reject_constant(name: str) -> Any:
    raise InputRejected(f"{name} is not a JSON number; send a finite number.", reason="not_json")


class JsonCodec:
    """``json``-module-like (``loads`` / ``dumps``) with every limit of ``LimitsSettings``.

    python-socketio takes it as its packets' ``json``; the HTTP mirror parses bodies with it.
    """

    def __init__(self, limits: LimitsSettings) -> None:
        self.limits = limits
        self._long_number = re.compile(f"[{_NUMBER_CHARS}]{{{limits.max_number_chars + 1},}}")

    @staticmethod
    def dumps(obj: Any, **kwargs: Any) -> str:
        return json.dumps(obj, **kwargs)

    def loads(self, text: str | bytes | bytearray, **_: Any) -> Any:
        """Parse one JSON text within the limits; ``InputRejected`` otherwise."""
        limits = self.limits
        if len(text) > limits.max_body_bytes:
            raise InputRejected(
                f"The JSON is {len(text)} bytes; at most {limits.max_body_bytes} are accepted.",
                reason="too_large", limit=limits.max_body_bytes,
            )
        if isinstance(text, bytes | bytearray):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise InputRejected("The body is not valid UTF-8.", reason="bad_unicode") from None
        self.check(text)
        try:
            value = json.loads(text, parse_constant=_reject_constant)
        except RecursionError:  # unreachable after check(); a parse must never take the process down
            raise InputRejected("The JSON is nested too deeply.", reason="too_deep") from None
        except ValueError as exc:
            if isinstance(exc, InputRejected):
                raise
            raise InputRejected(f"The body is not valid JSON: {exc}.", reason="not_json") from None
        if _SURROGATE_ESCAPE.search(text):
            try:
                json.dumps(value, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise InputRejected(
                    "The JSON holds a lone UTF-16 surrogate (e.g. \\udfff), which is not a character.",
                    reason="bad_unicode",
                ) from None
        return value

    def check(self, text: str) -> None:
        """Refuse ``text`` if its strings, numbers or nesting break a limit (no parse)."""
        limits = self.limits
        strings = _STRING.findall(text)
        if strings and max(map(len, strings)) - 2 > limits.max_string_chars:
            raise InputRejected(
                f"A string in the JSON is longer than {limits.max_string_chars} characters.",
                reason="string_too_long", limit=limits.max_string_chars,
            )
        skeleton = _STRING.sub('""', text) if strings else text
        if self._long_number.search(skeleton):
            raise InputRejected(
                f"A number in the JSON is longer than {limits.max_number_chars} characters.",
                reason="number_too_long", limit=limits.max_number_chars,
            )
        brackets = _NOT_BRACKET.sub("", skeleton)
        opened = brackets.count("[") + brackets.count("{")
        if opened <= limits.max_depth:
            return
        # Each pass removes the innermost pairs: what is left after max_depth passes is deeper
        # than max_depth (or does not match, which the decoder would refuse anyway).
        for _ in range(limits.max_depth):
            brackets = _PAIR.sub("", brackets)
            if not brackets:
                return
        raise InputRejected(
            f"The JSON is nested deeper than {limits.max_depth} levels (or its brackets do not match).",
            reason="too_deep", limit=limits.max_depth,
        )


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token buckets per key: ``check(key)`` takes one token or raises ``RateLimited``.

    A bucket holds ``burst`` tokens and refills at ``per_minute``. Keys are whatever the
    caller limits by (a client address, a signed-in account). At most ``max_keys`` buckets
    are kept, least recently used first out, so a flood of new keys cannot grow memory.
    """

    def __init__(self, name: str, rule: RateLimit, *, max_keys: int = 100_000,
                 clock: Any = time.monotonic) -> None:
        self.name = name
        self.rule = rule
        self._rate = rule.per_minute / 60.0
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    def check(self, key: Hashable) -> None:
        if self.rule.per_minute <= 0:
            return  # off
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.rule.burst), stamp=now)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.rule.burst), bucket.tokens + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        retry_after = max(1, math.ceil((1.0 - bucket.tokens) / self._rate))
        raise RateLimited(
            f"Too many {self.name} requests; try again in {retry_after} s.",
            retry_after=retry_after, limit=self.name,
        )


class Limiters:
    """The server's rate limiters, one per kind of request (``limits.rate`` in the settings)."""

    def __init__(self, rate: RateLimitSettings) -> None:
        self.sign_in = RateLimiter("sign-in", rate.sign_in)
        self.create_chat = RateLimiter("new chat", rate.create_chat)
        self.message = RateLimiter("message", rate.message)
        self.decision = RateLimiter("decision", rate.decision)
        self.join = RateLimiter("join_chat", rate.join)
