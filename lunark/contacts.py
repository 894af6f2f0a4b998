"""Contacts: a per-user address book, and the rules its labels follow.

A label is what the user types instead of an address ("send 1 ETH to alice"), so it must never be
mistaken for anything else the recipient field accepts: it is a plain ASCII word (a letter, then
letters, digits, ``_`` or ``-``, at most 32), never a ``0x`` hex string and never a dotted ENS name.
ASCII only, so two labels cannot look alike while being different (no homoglyphs). Labels compare
case-insensitively: ``Alice`` and ``alice`` are one contact.

An owner's address has at most one label: saving an address under a new label renames it, so the
card can always name a contact's address the one way.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, Protocol

from lunark.errors import InvalidInput

if TYPE_CHECKING:
    from lunark.store.base import ContactRecord

__all__ = ["LABEL_MAX", "ContactBook", "check_label", "contact_named", "is_label", "labels_by_address"]

LABEL_MAX: Final = 32
_LABEL: Final = re.compile(rf"[A-Za-z][A-Za-z0-9_-]{{0,{LABEL_MAX - 1}}}")


def is_label(text: str) -> bool:
    """Whether ``text`` has the shape of a contact label (it may or may not be one of the user's)."""
    return bool(_LABEL.fullmatch(text)) and not re.fullmatch(r"0[xX][0-9a-fA-F]*", text)


def check_label(label: str) -> str:
    """``label`` without surrounding spaces, or ``InvalidInput`` saying what a label may be."""
    text = label.strip() if isinstance(label, str) else ""
    if not is_label(text):
        raise InvalidInput(
            f"{label!r} is not a valid contact label: use a letter followed by up to {LABEL_MAX - 1} letters, "
            "digits, '_' or '-' (no spaces, no dots, not an 0x address).",
            label=str(label)[:64],
        )
    return text


class ContactBook(Protocol):
    """The store's contact reads the tools use (``lunark.store.Store`` is one)."""

    async def list_contacts(self, owner: str) -> list[ContactRecord]: ...

    async def get_contact(self, owner: str, label: str) -> ContactRecord | None: ...


async def contact_named(book: ContactBook | None, owner: str, text: str) -> ContactRecord | None:
    """The owner's contact ``text`` names, ``None`` when ``text`` is not shaped like a label (an
    address, an ENS name: the caller resolves those), and ``InvalidInput`` for a label the owner has
    not saved: a word that names no one is never guessed at."""
    word = text.strip()
    if not is_label(word):
        return None
    found = None if book is None else await book.get_contact(owner, word)
    if found is None:
        raise InvalidInput(
            f"{word!r} is not one of your contacts, an 0x address or an ENS name. Save it first "
            f"(/contacts add {word} 0x...) or give the address.",
            label=word,
        )
    return found


async def labels_by_address(book: ContactBook | None, owner: str) -> dict[str, str]:
    """The owner's contacts as lowercase address -> label."""
    if book is None:
        return {}
    return {c.address.lower(): c.label for c in await book.list_contacts(owner)}
