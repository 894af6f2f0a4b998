"""Identifiers: a type prefix and 12 random base-62 characters (71 bits), e.g. ``msg_4fKq9ZbT0aWx``.

Every token event carries its chat's and its message's id, so their length is paid on every
token of every answer; 71 random bits keep a collision between two ids of one deployment below
one in a million until it holds about 10^8 of them, and the store's unique keys refuse one
rather than merge two.
"""

from __future__ import annotations

import os
import secrets
import string
import threading

__all__ = ["new_id", "settlement_id"]

_ALPHABET = string.digits + string.ascii_letters
_LENGTH = 12
_SPAN = len(_ALPHABET) ** _LENGTH
"""62^12: the ids there are. 72 random bits below it are one uniformly drawn id (drawn again
otherwise, 1 time in 3), read as 12 base-62 digits."""

_random = bytearray()
"""Bytes from the OS's random source not used yet: one system call per ~450 ids, not one (or one
per character) per id; a system call to the random source took ~60 us on a loaded machine."""


_lock = threading.Lock()


def _forget_random() -> None:
    _random.clear()  # a forked child must not hand out its parent's next ids


os.register_at_fork(after_in_child=_forget_random)


def _random_bytes(count: int) -> bytes:
    with _lock:  # never the same bytes to two threads
        if len(_random) < count:
            _random.extend(secrets.token_bytes(4096))
        taken = bytes(_random[:count])
        del _random[:count]
    return taken


def new_id(prefix: str) -> str:
    """``prefix`` and 12 random characters from ``[0-9A-Za-z]``."""
    while (value := int.from_bytes(_random_bytes(9), "big")) >= _SPAN:
        pass
    digits = []
    for _ in range(_LENGTH):
        value, digit = divmod(value, 62)
        digits.append(_ALPHABET[digit])
    return prefix + "".join(digits)


def settlement_id(approval_id: str, call_id: str) -> str:
    """``"{approval_id}/{call_id}"``: the one key of an approved action, wherever it is kept (its
    spend reservation, its settlement record, its ``settle:`` lock), from the moment the approval is
    asked. The wire never carries it; clients name the action by ``approval_id`` and ``call_id``."""
    return f"{approval_id}/{call_id}"
