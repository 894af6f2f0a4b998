"""The spending policy and approval rules: deterministic checks outside the model."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from lunark.chain.types import PreparedTx, TransferIntent, prepared_to_state
from lunark.chain.validation import parse_amount
from lunark.errors import ConfigError, PolicyViolation
from lunark.tools.base import Proposal, ToolContext, needs_approval
from lunark.tools.policy import InMemorySpendLedger, SpendingPolicy, utc_today
from lunark.tools.registry import ToolSet, amount_above, default_tools, parse_approval_rule
from lunark.tools.transfer import Transfer, TransferArgs

ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CAROL = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
MALLORY = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
TKN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


NOW = datetime.now(UTC)
# Hours, not minutes: NOW is taken when the module is imported, and a check without `now=` reads the
# clock, so on a slow full run a reservation must not lapse before this module's tests get to run.
LATER = NOW + timedelta(hours=6)


def eth(amount: str, to: str = BOB, sender: str = ALICE) -> TransferIntent:
    raw = parse_amount(amount, 18)
    return TransferIntent(chain_id=31337, sender=sender, recipient=to, amount=raw, symbol="ETH", decimals=18)  # type: ignore[arg-type]


def tkn(amount: str, symbol: str = "TKN", decimals: int = 18, to: str = BOB) -> TransferIntent:
    raw = parse_amount(amount, decimals)
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


async def test_daily_cap_counts_committed_and_reserved_amounts(ledger: InMemorySpendLedger) -> None:
    policy = SpendingPolicy.build(daily_cap={"ETH": "1.5"})
    await policy.check(eth("1.5"), ledger)  # a plain check reserves nothing
    await policy.check(eth("1"), ledger, settlement_id="apr_1/c1", expires_at=LATER)
    await policy.check(eth("1"), ledger, settlement_id="apr_1/c1", expires_at=LATER)  # the same action counts once
    assert await ledger.counted(ALICE, "ETH", 18, utc_today(), now=NOW) == 10**18
    await ledger.commit("apr_1/c1", "0xaa")
    await policy.check(eth("0.5"), ledger)
    with pytest.raises(PolicyViolation) as caught:
        await policy.check(eth("0.6"), ledger, settlement_id="apr_2/c1", expires_at=LATER)
    error = caught.value
    assert error.details["rule"] == "daily_cap"
    assert error.details["spent"] == "1" and error.details["limit"] == "1.5"
    assert "(1 already sent or waiting for approval today, 0.5 left)" in error.message
    # Other senders do not count; a released reservation no longer does.
    await policy.check(eth("0.5", sender=BOB), ledger, settlement_id="apr_3/c1", expires_at=LATER)
    await policy.check(eth("0.5"), ledger, settlement_id="apr_4/c1", expires_at=LATER)
    with pytest.raises(PolicyViolation):
        await policy.check(eth("0.1"), ledger, settlement_id="apr_5/c1", expires_at=LATER)
    await ledger.release("apr_4/c1")
    await policy.check(eth("0.1"), ledger, settlement_id="apr_5/c1", expires_at=LATER)


async def test_the_former_names_of_the_settlement_id_still_work(ledger: InMemorySpendLedger) -> None:
    # A plugin written against the old names keeps working, warned, under the same one key.
    policy = SpendingPolicy.build(daily_cap={"ETH": "1"})
    with pytest.warns(DeprecationWarning):
        await policy.check(eth("1"), ledger, reservation="apr_1/c1", expires_at=LATER)
    await policy.check(eth("1"), ledger, settlement_id="apr_1/c1", expires_at=LATER)  # the same action
    with pytest.raises(PolicyViolation):
        await policy.check(eth("0.1"), ledger, settlement_id="apr_2/c1", expires_at=LATER)
    ctx = ToolContext(user_address=ALICE, chain_id=31337, registry=None, clients=None, policy=policy,  # type: ignore[arg-type]
                      ledger=ledger, approval_id="apr_1", call_id="c1")
    assert ctx.settlement_id == "apr_1/c1"
    with pytest.warns(DeprecationWarning):
        assert ctx.action_id == ctx.settlement_id
    assert replace(ctx, call_id=None).settlement_id is None


async def test_a_lapsed_reservation_frees_the_cap_and_is_taken_again_at_execution(
    ledger: InMemorySpendLedger,
) -> None:
    policy = SpendingPolicy.build(daily_cap={"ETH": "3"})
    soon = NOW + timedelta(seconds=1)
    await policy.check(eth("2"), ledger, settlement_id="apr_1/c1", expires_at=soon, now=NOW)
    with pytest.raises(PolicyViolation):  # two 2 ETH approvals can never both wait under a 3 ETH cap
        await policy.check(eth("2"), ledger, settlement_id="apr_2/c1", expires_at=LATER, now=NOW)
    after = soon + timedelta(seconds=1)
    await policy.check(eth("2"), ledger, settlement_id="apr_2/c1", expires_at=LATER, now=after)
    with pytest.raises(PolicyViolation):  # the first lapsed: executing it must fit under the cap again
        await policy.check(eth("2"), ledger, settlement_id="apr_1/c1", executing=True, now=after)
    await policy.check(eth("2"), ledger, settlement_id="apr_2/c1", executing=True, now=after)


async def test_caps_compare_base_units_without_rounding(ledger: InMemorySpendLedger) -> None:
    # 30 significant digits: a 28-digit Decimal context would round this onto the cap.
    cap = "1000000000000.000000000000000000"
    policy = SpendingPolicy.build(per_tx_cap={"TKN": cap}, daily_cap={"TKN": cap})
    await policy.check(tkn(cap), ledger)
    with pytest.raises(PolicyViolation, match="per-transaction"):
        await policy.check(tkn("1000000000000.000000000000000001"), ledger)
    await policy.check(tkn("1000000000000"), ledger, settlement_id="apr_1/c1", expires_at=LATER)
    with pytest.raises(PolicyViolation, match="daily limit"):
        await policy.check(tkn("0.000000000000000001"), ledger, settlement_id="apr_2/c1", expires_at=LATER)


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


def resolved(amount: str, token: str | None = None, symbol: str = "ETH", decimals: int = 18) -> Proposal:
    """What the transfer tool resolved a call to: the network's currency, or a known token contract."""
    intent = TransferIntent(
        chain_id=31337, sender=ALICE, recipient=BOB, amount=parse_amount(amount, decimals),  # type: ignore[arg-type]
        symbol=symbol, decimals=decimals, token=token,  # type: ignore[arg-type]
    )
    prepared = PreparedTx(intent=intent, nonce=0, gas=21000, max_fee_per_gas=1, max_priority_fee_per_gas=1)
    return Proposal(summary="", data={"prepared": prepared_to_state(prepared)})


@pytest.mark.parametrize(
    ("proposal", "asks"),
    [
        (resolved("0.1"), False),  # native, at the limit
        (resolved("0.100000000000000001"), True),  # one wei over: base units, no rounding
        (resolved("50", TKN, "USDC", 6), False),
        (resolved("50.000001", TKN, "USDC", 6), True),
        (resolved("1", TKN, "TKN"), False),  # "*" covers tokens not named
        (resolved("1.5", TKN, "TKN"), True),
    ],
)
def test_amount_above_judges_the_resolved_transfer(proposal: Proposal, asks: bool) -> None:
    rule = amount_above({"native": "0.1", "USDC": Decimal(50), "*": 1})
    assert rule.needs(proposal) is asks


def test_amount_above_reads_no_model_words() -> None:
    # The finding: token="ETH" from the model fell under "*" and 50 ETH ran without approval. What
    # counts is what the call resolved to: the network's currency, whatever the model called it.
    rule = amount_above({"native": "0.1", "*": "100"})
    assert needs_approval(Transfer(), args("50", "ETH"), rule, resolved("50")) is True
    strict = amount_above({"native": "0.1", "USDC": "50"})
    assert strict.needs(resolved("0.01", TKN, "DAI")) is True, "a token without a limit needs approval"
    assert strict.needs(Proposal(summary="no transfer")) is True, "nothing resolved: fail closed"
    assert needs_approval(Transfer(), args("0.01"), strict, None) is True


def test_needs_approval_with_the_transfer_tool() -> None:
    transfer = Transfer()
    assert needs_approval(transfer, args("0.01")) is True, "transfer always asks by default"
    rule = parse_approval_rule({"above": {"native": "0.1"}})
    assert needs_approval(transfer, args("0.01"), rule, resolved("0.01")) is False
    assert needs_approval(transfer, args("0.2"), rule, resolved("0.2")) is True
    tools = ToolSet(default_tools(), {"transfer": {"above": {"native": "0.1"}}, "get_balance": "always"})
    assert needs_approval(transfer, args("0.01"), tools.rule("transfer"), resolved("0.01")) is False
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
