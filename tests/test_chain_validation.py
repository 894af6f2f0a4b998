"""Addresses and amounts as users and models type them: exact, strict, actionable."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lunark.chain.validation import MAX_UINT256, format_amount, parse_address, parse_amount
from lunark.errors import InvalidAddress, InvalidAmount, InvalidInput

CHECKSUMMED = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


# -- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        CHECKSUMMED,
        CHECKSUMMED.lower(),
        "0x" + CHECKSUMMED[2:].upper(),
        "0X" + CHECKSUMMED[2:].lower(),
        f"  {CHECKSUMMED}\n",
    ],
)
def test_parse_address_accepts_and_checksums(value: str) -> None:
    assert parse_address(value) == CHECKSUMMED


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        # one letter's case flipped: a mixed-case address with a broken checksum
        ("0xF39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "checksum"),
        ("0x" + "0" * 40, "zero address"),
        ("0x1234", "40 hex characters"),
        (CHECKSUMMED[2:], "starts with 0x"),
        ("0xg39fd6e51aad88f6f4ce6ab8827279cfffb92266", "non-hex"),
        (CHECKSUMMED + "00", "40 hex characters"),
        ("", "starts with 0x"),
        ("vitalik.eth", "starts with 0x"),
    ],
)
def test_parse_address_rejects(value: str, fragment: str) -> None:
    with pytest.raises(InvalidAddress, match=fragment) as info:
        parse_address(value, field="recipient")
    assert "recipient" in info.value.message
    assert info.value.code == "invalid_input"
    assert isinstance(info.value, InvalidInput)


def test_parse_address_rejects_non_strings() -> None:
    with pytest.raises(InvalidAddress, match="hex string"):
        parse_address(0x1234)  # type: ignore[arg-type]


# -- amounts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "decimals", "expected"),
    [
        ("0.5", 18, 5 * 10**17),
        ("1.5", 6, 1_500_000),
        ("1", 6, 1_000_000),
        (" 1 ", 6, 1_000_000),
        ("0.000001", 6, 1),
        ("1.50", 1, 15),  # trailing zeros beyond the token's decimals are harmless
        (".5", 2, 50),
        ("5.", 2, 500),
        (3, 18, 3 * 10**18),
        (Decimal("2.25"), 6, 2_250_000),
        (Decimal("1E+3"), 0, 1000),  # a Decimal is a value, not notation
        ("1000000000000", 18, 10**30),
        ("7", 0, 7),
        (format_amount(MAX_UINT256, 18), 18, MAX_UINT256),
    ],
)
def test_parse_amount_exact(value: str | int | Decimal, decimals: int, expected: int) -> None:
    assert parse_amount(value, decimals) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("-1", "greater than zero"),
        ("-0.5", "greater than zero"),
        (-3, "greater than zero"),
        (Decimal("-1"), "greater than zero"),
        ("0", "greater than zero"),
        ("0.000", "greater than zero"),
        (0, "greater than zero"),
        ("0.0000001", "7 decimal places but TUSD has only 6"),
        (Decimal("1.0000001"), "round it to at most 6"),
        ("abc", "not a number"),
        ("1.2.3", "not a number"),
        ("0x10", "not a number"),
        ("+1", "not a number"),
        ("1e3", "exponent"),
        ("1E-3", "exponent"),
        ("1,000.25", "thousands separators"),
        ("0,5", "thousands separators"),
        ("1 000", "separator"),
        ("1_000", "separator"),
        ("", "empty"),
        ("   ", "empty"),
        ("NaN", "not a number"),
        ("inf", "not a number"),
        ("Infinity", "not a number"),
        (Decimal("NaN"), "finite"),
        (Decimal("Infinity"), "finite"),
        (True, "must be a number"),
        (False, "must be a number"),
        (0.1, "float"),
        (1.0, "float"),
        ("٣", "not a number"),  # non-ASCII digits
        ("1" + "0" * 80, "too large"),
        (10**80, "too large"),
        (Decimal("1e999999999"), "too large"),
        ("9" * 500, "too long"),
        (None, "decimal string or an integer"),
    ],
)
def test_parse_amount_rejects(value: object, fragment: str) -> None:
    with pytest.raises(InvalidAmount, match=fragment):
        parse_amount(value, 6, symbol="TUSD")  # type: ignore[arg-type]


def test_parse_amount_float_message_suggests_a_string() -> None:
    with pytest.raises(InvalidAmount, match=r"string such as '0\.1'"):
        parse_amount(0.1, 18)  # type: ignore[arg-type]


def test_parse_amount_too_many_decimals_without_symbol() -> None:
    with pytest.raises(InvalidAmount, match="the token has only 0"):
        parse_amount("1.5", 0)


def test_parse_amount_huge_negative_exponent_is_cheap() -> None:
    with pytest.raises(InvalidAmount, match="decimal places"):
        parse_amount(Decimal("1e-999999999"), 18)


def test_amount_errors_carry_the_value() -> None:
    with pytest.raises(InvalidAmount) as info:
        parse_amount("1e3", 18)
    assert info.value.to_dict() == {
        "code": "invalid_input",
        "message": info.value.message,
        "value": "1e3",
    }


# -- formatting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decimals", "expected"),
    [
        (1_500_000, 6, "1.5"),
        (0, 6, "0"),
        (0, 0, "0"),
        (1, 18, "0.000000000000000001"),
        (10**18, 18, "1"),
        (123, 0, "123"),
        (1_000_000_100, 6, "1000.0001"),
        (-1_500_000, 6, "-1.5"),
        (
            MAX_UINT256,
            18,
            "115792089237316195423570985008687907853269984665640564039457.584007913129639935",
        ),
    ],
)
def test_format_amount(raw: int, decimals: int, expected: str) -> None:
    assert format_amount(raw, decimals) == expected


@pytest.mark.parametrize("text", ["1", "0.5", "1000.000001", "0.000001", "123456789.123456"])
def test_format_and_parse_round_trip(text: str) -> None:
    assert format_amount(parse_amount(text, 6), 6) == text
