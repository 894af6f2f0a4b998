"""Strict parsing of what users and models type: addresses and amounts.

Everything here is exact and refuses rather than guesses: a mistyped address
or an ambiguous amount is an ``InvalidInput`` with a message that says how to
fix it, never a silently "corrected" value.

    parse_address("0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266")   # checksummed
    parse_amount("1.5", 6)                                         # 1500000
    format_amount(1500000, 6)                                      # "1.5"
"""

from __future__ import annotations

import re
from decimal import Decimal

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address

from lunark.errors import InvalidAddress, InvalidAmount

__all__ = ["MAX_UINT256", "format_amount", "parse_address", "parse_amount"]

MAX_UINT256 = 2**256 - 1
"""The largest amount a transaction or an ERC-20 balance can carry."""

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")
_PLAIN_DECIMAL = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
# Longer than any uint256 with 77 decimals written out; refuse before doing arithmetic on it.
_MAX_AMOUNT_CHARS = 160
_ZERO_ADDRESS = "0x" + "0" * 40


def parse_address(value: str, *, field: str = "address") -> ChecksumAddress:
    """``value`` as a checksummed address.

    All-lowercase and all-uppercase hex are accepted (they carry no checksum);
    mixed case must be a valid EIP-55 checksum, because a wrong one usually
    means a typo. The zero address is refused: funds sent there are burned.
    """
    if not isinstance(value, str):
        raise InvalidAddress(
            f"{field} must be a 0x-prefixed hex string, got {type(value).__name__}.",
            value=repr(value),
        )
    text = value.strip()
    if not text.startswith(("0x", "0X")):
        raise InvalidAddress(
            f"{field} {text!r} is not an address: an address starts with 0x "
            "followed by 40 hex characters.",
            value=text,
        )
    body = text[2:]
    if len(body) != 40 or not _HEX40.fullmatch(body):
        raise InvalidAddress(
            f"{field} {text!r} is not an address: expected 0x followed by 40 hex characters, "
            f"got {len(body)} characters{'' if _is_hex(body) else ' including non-hex ones'}.",
            value=text,
        )
    checksummed = to_checksum_address("0x" + body.lower())
    if body != body.lower() and body != body.upper() and body != checksummed[2:]:
        raise InvalidAddress(
            f"{field} {text!r} has an invalid checksum (mixed-case letters do not match "
            "EIP-55); it may contain a typo. Copy the address again from its source.",
            value=text,
        )
    if checksummed == _ZERO_ADDRESS:
        raise InvalidAddress(
            f"{field} is the zero address; funds sent there are lost forever.",
            value=text,
        )
    return ChecksumAddress(checksummed)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def parse_amount(value: str | int | Decimal, decimals: int, *, symbol: str = "") -> int:
    """A positive human amount (``"0.5"``, ``2``, ``Decimal("1.25")``) in smallest units.

    Strings must be plain decimal notation with ``.`` as the decimal point: no
    thousands separators, exponents, signs or special values. Floats are refused
    because they cannot hold most decimal amounts exactly. An amount with more
    fractional digits than the token has is refused, never rounded.
    """
    unit = f" {symbol}" if symbol else ""
    number = _to_decimal(value, unit)
    if not number.is_finite():
        raise InvalidAmount(f"Amount {value!s} is not a finite number.", value=str(value))
    if number <= 0:
        raise InvalidAmount(
            f"Amount must be greater than zero, got {value!s}{unit}.", value=str(value)
        )
    _, digit_tuple, exponent = number.as_tuple()
    if not isinstance(exponent, int):  # NaN/inf were refused above; this keeps the types honest
        raise InvalidAmount(f"Amount {value!s} is not a finite number.", value=str(value))
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - len(digits)
    places = max(0, -exponent)
    if places > decimals:
        raise InvalidAmount(
            f"Amount {value!s}{unit} has {places} decimal places but{unit or ' the token'} "
            f"has only {decimals}; round it to at most {decimals} decimal places.",
            value=str(value),
        )
    # exponent + decimals >= 0 here. Compare magnitudes before building the integer,
    # so that Decimal("1e999999999") costs nothing.
    scale = exponent + decimals
    raw = int(digits) * 10**scale if len(digits) + scale <= 78 else MAX_UINT256 + 1
    if raw > MAX_UINT256:
        raise InvalidAmount(
            f"Amount {value!s}{unit} is too large to transfer (above 2^256 - 1 smallest units).",
            value=str(value),
        )
    return raw


def _to_decimal(value: object, unit: str) -> Decimal:
    # bool is an int subclass: True must not mean "1 token".
    if isinstance(value, bool):
        raise InvalidAmount(f"Amount must be a number, got {value!r}.", value=str(value))
    if isinstance(value, float):
        example = format(Decimal(str(value)), "f") if abs(value) < 1e15 else "1000.5"
        raise InvalidAmount(
            f"Amount {value!r} is a float, which cannot represent most decimal amounts exactly; "
            f"pass it as a string such as {example!r}.",
            value=repr(value),
        )
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        return value
    if not isinstance(value, str):
        raise InvalidAmount(
            f"Amount must be a decimal string or an integer, got {type(value).__name__}.",
            value=repr(value),
        )
    text = value.strip()
    if not text:
        raise InvalidAmount(f"Amount is empty; give a number such as '0.5'{unit}.", value=value)
    if len(text) > _MAX_AMOUNT_CHARS:
        raise InvalidAmount(
            f"Amount is too long ({len(text)} characters).", value=text[:40] + "..."
        )
    if _PLAIN_DECIMAL.fullmatch(text):
        return Decimal(text)
    if text.startswith("-"):
        raise InvalidAmount(f"Amount must be greater than zero, got {text}{unit}.", value=text)
    if "," in text or "_" in text or " " in text:
        raise InvalidAmount(
            f"Amount {text!r} contains a separator; write it without thousands separators and "
            "with '.' as the decimal point, e.g. '1000.25'.",
            value=text,
        )
    if re.fullmatch(r"[+]?[0-9.]+[eE][+-]?[0-9]+", text):
        raise InvalidAmount(
            f"Amount {text!r} uses exponent notation; write it out in plain decimals "
            f"(e.g. {_plain(text)!r}).",
            value=text,
        )
    raise InvalidAmount(
        f"Amount {text!r} is not a number; write it in plain decimals such as '0.5'{unit}.",
        value=text,
    )


def _plain(text: str) -> str:
    number = Decimal(text.lstrip("+"))
    return format(number, "f") if number.adjusted() < _MAX_AMOUNT_CHARS else "a plain number"


def format_amount(raw: int, decimals: int) -> str:
    """``raw`` smallest units as an exact decimal string without trailing zeros.

    >>> format_amount(1500000, 6)
    '1.5'
    """
    sign = "-" if raw < 0 else ""
    whole, fraction = divmod(abs(raw), 10**decimals)
    digits = str(fraction).rjust(decimals, "0").rstrip("0") if decimals else ""
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"
