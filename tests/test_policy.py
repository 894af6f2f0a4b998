"""The spending policy and approval rules: deterministic checks outside the model."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from lunark.chain.types import TransferIntent
from lunark.errors import ConfigError, PolicyViolation
from lunark.tools.base import needs_approval
from lunark.tools.policy import InMemorySpendLedger, SpendingPolicy, utc_today
from lunark.tools.registry import ToolSet, amount_above, default_tools, parse_approval_rule
from lunark.tools.transfer import Transfer, TransferArgs

ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CAROL = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
MALLORY = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
TKN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def eth(amount: str, to: str = BOB) -> TransferIntent:
    raw = int(Decimal(amount).scaleb(18))
    return TransferIntent(chain_id=31337, sender=ALICE, recipient=to, amount=raw, symbol="ETH", decimals=18)  # type: ignore[arg-type]


def tkn(amount: str, symbol: str = "TKN", decimals: int = 18, to: str = BOB) -> TransferIntent:
    raw = int(Decimal(amount).scaleb(decimals))
    return TransferIntent(
        chain_id=31337, sender=ALICE, recipient=to, amount=raw, symbol=symbol, decimals=decimals, token=TKN  # type: ignore[arg-type]
    )


@pytest.fixture
def ledger() -> InMemorySpendLedger:
    return InMemorySpendLedger()


async def test_no_rules_allow_anything(ledger: InMemorySpendLedger) -> None:
    await SpendingPolicy().check(eth("1000000"), ledger)
    await SpendingPolicy.build().check(tkn("5"), ledger)


async def test_per_tx_cap(ledger: InMemorySpendLedger) -> None:
    policy = SpendingPolicy.build(per_tx_cap={"eth": "1", "TKN": 500})
    await policy.check(eth("1"), ledger)  # the cap itself is allowed
    await policy.check(tkn("500"), ledger)
    await policy.check(tkn("1000", symbol="OTHER"), ledger)  # no cap for OTHER, no "*"
    with pytest.raises(PolicyViolation) as caught:
        await policy.check(eth("1.000000000000000001"), ledger)
    error = caught.value
    assert error.code == "policy_violation"
    assert error.details["rule"] == "per_tx_cap"
    assert error.details["limit"] == "1" and error.details["symbol"] == "ETH"
    assert error.details["amount"] == "1.000000000000000001"
    assert "over the per-transaction limit of 1 ETH" in error.message
    with pytest.raises(PolicyViolation, match="501 TKN"):
        await policy.check(tkn("501"), ledger)


async def test_star_cap_covers_tokens_not_named(ledger: InMemorySpendLedger) -> None:
    policy = SpendingPolicy.build(per_tx_cap={"ETH": "2", "*": "10"})
    await policy.check(eth("2"), ledger)
    await policy.check(tkn("10", symbol="TUSD", decimals=6), ledger)
    with pytest.raises(PolicyViolation) as caught:
        await policy.check(tkn("10.5", symbol="TUSD", decimals=6), ledger)
    assert caught.value.details["limit"] == "10" and caught.value.details["symbol"] == "TUSD"
    with pytest.raises(PolicyViolation, match="limit of 2 ETH"):  # a named cap wins over "*"
        await policy.check(eth("2.5"), ledger)


async def test_daily_cap_counts_what_the_ledger_recorded(ledger: InMemorySpendLedger) -> None:
    policy = SpendingPolicy.build(daily_cap={"ETH": "1.5"})
    today = utc_today()
    await policy.check(eth("1.5"), ledger)
    await ledger.record(ALICE, "ETH", Decimal(1), "0xaa", today)
    await ledger.record(ALICE.lower(), "eth", Decimal(1), "0xAA", today)  # the same tx counts once
    assert await ledger.spent(ALICE, "ETH", today) == 1
    await policy.check(eth("0.5"), ledger)
    with pytest.raises(PolicyViolation) as caught:
        await policy.check(eth("0.6"), ledger)
    error = caught.value
    assert error.details["rule"] == "daily_cap"
    assert error.details["spent"] == "1" and error.details["limit"] == "1.5"
    assert "(1 already sent today, 0.5 left)" in error.message
    # Yesterday's spending and other senders do not count.
    await policy.check(eth("0.6"), ledger, day=today + timedelta(days=1))
    await ledger.record(BOB, "ETH", Decimal(100), "0xbb", today)
    assert await ledger.spent(ALICE, "ETH", today) == 1


async def test_daily_cap_with_transfers_pending_in_the_same_turn(ledger: InMemorySpendLedger) -> None:
    policy = SpendingPolicy.build(daily_cap={"ETH": "1.5", "*": "100"})
    day = date(2025, 1, 1)
    await policy.check(eth("1"), ledger, day=day)
    with pytest.raises(PolicyViolation) as caught:
        await policy.check(eth("1"), ledger, also_pending=Decimal(1), day=day)
    assert "(0 already sent today, 0.5 left)" in caught.value.message
    await policy.check(eth("0.5"), ledger, also_pending=Decimal(1), day=day)
    with pytest.raises(PolicyViolation, match="0 left"):
        await policy.check(tkn("1"), ledger, also_pending=Decimal(150), day=day)


async def test_deny_list_wins_over_allow_list(ledger: InMemorySpendLedger) -> None:
    policy = SpendingPolicy.build(allow=[BOB.lower(), MALLORY], deny=[MALLORY.lower()])
    await policy.check(eth("1", to=BOB), ledger)
    with pytest.raises(PolicyViolation) as caught:
        await policy.check(eth("1", to=MALLORY), ledger)
    assert caught.value.details == {"rule": "deny_list", "recipient": MALLORY}
    assert "deny list" in caught.value.message


async def test_allow_list(ledger: InMemorySpendLedger) -> None:
    policy = SpendingPolicy.build(allow=[BOB])
    await policy.check(tkn("1", to=BOB), ledger)
    with pytest.raises(PolicyViolation) as caught:
        await policy.check(tkn("1", to=CAROL), ledger)
    assert caught.value.details["rule"] == "allow_list"
    with pytest.raises(PolicyViolation, match="allow list"):
        await SpendingPolicy.build(allow=[]).check(eth("0.001"), ledger)


async def test_recipient_rules_come_before_amounts(ledger: InMemorySpendLedger) -> None:
    policy = SpendingPolicy.build(per_tx_cap={"ETH": "1"}, deny=[MALLORY])
    with pytest.raises(PolicyViolation) as caught:
        await policy.check(eth("5", to=MALLORY), ledger)
    assert caught.value.details["rule"] == "deny_list"


def test_a_bad_address_in_a_list_fails_to_build() -> None:
    with pytest.raises(ValueError):
        SpendingPolicy.build(deny=["0x1234"])


def args(amount: object, token: str | None = None) -> TransferArgs:
    return TransferArgs.model_validate({"to": BOB, "amount": amount, "token": token})


@pytest.mark.parametrize(
    ("amount", "token", "asks"),
    [
        ("0.1", None, False),  # native, at the limit
        ("0.1000001", None, True),
        (0.05, None, False),  # a float from the model
        ("50", "usdc", False),  # symbols in any case
        ("50.01", "USDC", True),
        ("1", "TKN", False),  # "*" covers tokens not named
        ("1.5", "tkn", True),
    ],
)
def test_amount_above_rule(amount: object, token: str | None, asks: bool) -> None:
    rule = amount_above({"native": "0.1", "USDC": Decimal(50), "*": 1})
    assert rule(args(amount, token)) is asks


def test_amount_above_fails_closed() -> None:
    rule = amount_above({"native": "0.1", "USDC": "50"})
    assert rule(args("0.01", "DAI")) is True, "a token without a limit needs approval"
    assert rule(args("0.01", "ETH")) is True, "the native symbol spelled out is not 'native'"
    for nonsense in ("lots", "NaN", "", "1e"):
        assert rule(args(nonsense)) is True, nonsense
    assert rule(args("Infinity")) is True


def test_needs_approval_with_the_transfer_tool() -> None:
    transfer = Transfer()
    assert needs_approval(transfer, args("0.01")) is True, "transfer always asks by default"
    rule = parse_approval_rule({"above": {"native": "0.1"}})
    assert needs_approval(transfer, args("0.01"), rule) is False
    assert needs_approval(transfer, args("0.2"), rule) is True
    tools = ToolSet(default_tools(), {"transfer": {"above": {"native": "0.1"}}, "get_balance": "always"})
    assert needs_approval(transfer, args("0.01"), tools.rule("transfer")) is False
    assert tools.rule("get_balance") == "always"
    assert tools.rule("switch_network") == "always"


def test_parse_approval_rule() -> None:
    assert parse_approval_rule("always") == "always"
    assert parse_approval_rule("never") == "never"

    def custom(_: object) -> bool:
        return True

    assert parse_approval_rule(custom) is custom


@pytest.mark.parametrize(
    "raw",
    [
        "sometimes",
        "Always",
        None,
        42,
        {"above": "0.1"},
        {"below": {"ETH": "1"}},
        {"above": {"native": "1"}, "also": 1},
        {"above": {"native": "lots"}},
        {"above": {"USDC": None}},
    ],
)
def test_parse_approval_rule_errors(raw: object) -> None:
    with pytest.raises(ConfigError, match="Approval rule"):
        parse_approval_rule(raw)


def test_toolset_refuses_rules_for_unknown_tools() -> None:
    with pytest.raises(ConfigError, match="unknown tool 'send_all'"):
        ToolSet(default_tools(), {"send_all": "never"})
    with pytest.raises(ConfigError, match="Approval rule"):
        ToolSet(default_tools(), {"transfer": "maybe"})
