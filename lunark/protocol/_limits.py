"""Sizes, patterns and the JSON check every client payload passes."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator

MAX_CONTENT_CHARS = 8000
"""Longest user message, in characters."""
MAX_DECISIONS = 16
"""Most decisions in one ``resume_decisions`` (one per action request)."""
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
"""Chat, approval and client message ids: short, and safe in room names, paths and logs."""

_ADDRESS = r"^0x[0-9a-fA-F]{40}$"
_HASH = r"^0x[0-9a-fA-F]{64}$"
# JSON-RPC quantity: 0x, no leading zeros (what hex() gives and wallets accept).
_QUANTITY = r"^0x(0|[1-9a-fA-F][0-9a-fA-F]*)$"
_DATA = r"^0x([0-9a-fA-F]{2})*$"
_HEX = r"^0x([0-9a-fA-F]{2})+$"
TX_HASH_PATTERN = _HASH
"""A transaction hash on the wire: ``0x`` and 64 hexadecimal digits."""


MAX_ARGS_DEPTH = 8
"""Deepest nesting of an edit's ``args`` (a tool's arguments are flat or nearly so)."""
MAX_ARGS_CHARS = 16_384
"""Largest edit ``args``, as compact JSON."""
_MAX_INT = 10**78  # uint256 has 78 digits


def _valid_unicode(text: str) -> str:
    """Refuse lone UTF-16 surrogates: they are no character, and no store or wire can encode them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text must be valid Unicode (it holds a lone surrogate such as \\udfff)") from None
    return text


Text = Annotated[str, AfterValidator(_valid_unicode)]
"""A string from outside: valid Unicode, so it can be stored, checkpointed and sent."""


def check_json_value(value: Any, *, max_depth: int = MAX_ARGS_DEPTH, max_chars: int = MAX_ARGS_CHARS) -> None:
    """Raise ``ValueError`` unless ``value`` is plain JSON within bounds: nesting, size, valid
    Unicode in keys and strings, integers of at most 78 digits, finite numbers. No recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise ValueError(f"nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        raise ValueError("object keys must be strings")
                    _valid_unicode(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            _valid_unicode(item)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) >= _MAX_INT:
                raise ValueError("integers must have at most 78 digits")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("numbers must be finite")
        else:
            raise ValueError(f"{type(item).__name__} is not a JSON value")
    if len(json.dumps(value, separators=(",", ":"), ensure_ascii=False)) > max_chars:
        raise ValueError(f"larger than {max_chars} characters as JSON")
