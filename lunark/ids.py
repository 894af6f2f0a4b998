"""Identifiers: a type prefix and 12 random base-62 characters (71 bits), e.g. ``msg_4fKq9ZbT0aWx``.

Every token event carries its chat's and its message's id, so their length is paid on every
token of every answer; 71 random bits keep a collision between two ids of one deployment below
one in a million until it holds about 10^8 of them, and the store's unique keys refuse one
rather than merge two.
"""

from __future__ import annotations

import secrets
import string

__all__ = ["new_id"]

_ALPHABET = string.digits + string.ascii_letters
_LENGTH = 12


def new_id(prefix: str) -> str:
    """``prefix`` and 12 random characters from ``[0-9A-Za-z]``."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
