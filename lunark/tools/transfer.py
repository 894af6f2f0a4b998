"""``transfer``: send native currency or a known ERC-20 token, only with the user's approval.

Prepare validates (checksum address, amount > 0, token known on this network),
applies the spending policy, builds the unsigned EIP-1559 transaction and
simulates it, so a transfer that would fail is refused before anyone is asked.
Execute takes the user's decision: a wallet-broadcast ``tx_hash`` or a
``signed_tx`` is checked against the approved intent (any difference is a
``mismatch``, never success); with no signature only a configured local signer
signs. Then the transaction is tracked to confirmation, every step emitted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from eth_typing import ChecksumAddress, HexStr
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from pydantic import BaseModel, ConfigDict, Field, field_validator
from web3.exceptions import TransactionNotFound

from lunark.chain.client import ChainClient
from lunark.chain.intent import verify_signed_transaction, verify_transaction_hash
from lunark.chain.tracker import track_transaction
from lunark.chain.types import PreparedTx, TransferIntent, TxStatus, TxUpdate, to_units
from lunark.errors import ChainError, IntentMismatch, SignerError
from lunark.tools.base import ApprovalRule, Decision, Proposal, ToolContext
from lunark.tools.policy import utc_today

__all__ = ["Transfer", "TransferArgs", "prepared_from_state", "prepared_to_state"]


class TransferArgs(BaseModel):
    """Arguments of ``transfer``."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(description="Recipient address: 0x followed by 40 hexadecimal characters.")
    amount: str = Field(
        description="Amount in whole units as a decimal string, e.g. '0.5' for half an ETH. Never in wei.",
        max_length=80,
    )
    token: str | None = Field(
        default=None,
        description=(
            "Token symbol (e.g. 'USDC') or contract address of a token known on this network. "
            "Omit it to send the network's native currency (e.g. ETH)."
        ),
    )

    @field_validator("amount", mode="before")
    @classmethod
    def _number_as_text(cls, value: object) -> object:
        # Models often send 0.5 rather than "0.5"; the shortest repr is what they meant.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return repr(value)
        return value


def prepared_to_state(prepared: PreparedTx) -> dict[str, Any]:
    """A prepared transaction as plain JSON for the checkpoint."""
    intent = prepared.intent
    return {
        "chain_id": intent.chain_id,
        "sender": intent.sender,
        "recipient": intent.recipient,
        "amount": str(intent.amount),
        "symbol": intent.symbol,
        "decimals": intent.decimals,
        "token": intent.token,
        "nonce": prepared.nonce,
        "gas": prepared.gas,
        "max_fee_per_gas": str(prepared.max_fee_per_gas),
        "max_priority_fee_per_gas": str(prepared.max_priority_fee_per_gas),
    }


def prepared_from_state(raw: dict[str, Any]) -> PreparedTx:
    intent = TransferIntent(
        chain_id=int(raw["chain_id"]),
        sender=to_checksum_address(raw["sender"]),
        recipient=to_checksum_address(raw["recipient"]),
        amount=int(raw["amount"]),
        symbol=str(raw["symbol"]),
        decimals=int(raw["decimals"]),
        token=to_checksum_address(raw["token"]) if raw.get("token") else None,
    )
    return PreparedTx(
        intent=intent,
        nonce=int(raw["nonce"]),
        gas=int(raw["gas"]),
        max_fee_per_gas=int(raw["max_fee_per_gas"]),
        max_priority_fee_per_gas=int(raw["max_priority_fee_per_gas"]),
    )


def _short(address: str) -> str:
    return f"{address[:6]}…{address[-4:]}"


def _amount_text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


class Transfer:
    """Send native currency or a known ERC-20 token to an address."""

    name = "transfer"
    description = (
        "Send the network's native currency (e.g. ETH) or a known ERC-20 token from the user's "
        "wallet to an address, on the chat's current network. The user reviews and signs it first."
    )
    args_schema: type[BaseModel] = TransferArgs
    approval: ApprovalRule = "always"

    async def prepare(self, args: BaseModel, ctx: ToolContext) -> Proposal:
        a = cast(TransferArgs, args)
        network = ctx.network
        client = ctx.clients.get(network)
        token: ChecksumAddress | None = None
        if not network.is_native(a.token):
            # Only tokens the configuration knows: an arbitrary contract the model names could
            # claim any symbol. Fail closed.
            token = network.token(str(a.token)).address
        intent = await client.build_intent(ctx.user_address, a.to, a.amount, token)
        key = intent.symbol.upper()
        await ctx.policy.check(intent, ctx.ledger, also_pending=ctx.turn_spend.get(key, Decimal(0)))
        prepared = await client.prepare(intent)
        ctx.turn_spend[key] = ctx.turn_spend.get(key, Decimal(0)) + intent.human_amount
        fee = _amount_text(to_units(prepared.max_fee, network.decimals))
        # A fee in the same currency as the amount can be compared with it (a token's cannot, without a price).
        share = network.fee_warning_share
        costly = intent.token is None and prepared.max_fee > intent.amount * share
        warning = f"; the fee may be more than {_amount_text(share * 100)}% of the amount" if costly else ""
        return Proposal(
            summary=(
                f"Send {_amount_text(intent.human_amount)} {intent.symbol} to {intent.recipient} "
                f"on {network.display_name} (network fee at most {fee} {network.symbol}{warning})"
            ),
            description=(
                f"Transfer {_amount_text(intent.human_amount)} {intent.symbol} from "
                f"{_short(intent.sender)} to {_short(intent.recipient)}."
            ),
            tx=prepared.to_wire(),
            data={
                "prepared": prepared_to_state(prepared),
                "amount": _amount_text(intent.human_amount),
                "symbol": intent.symbol,
                "recipient": intent.recipient,
                "network": network.display_name,
                "max_fee": fee,
            },
        )

    async def execute(
        self, args: BaseModel, ctx: ToolContext, proposal: Proposal, decision: Decision | None
    ) -> dict[str, Any]:
        prepared = prepared_from_state(proposal.data["prepared"])
        intent = prepared.intent
        network = ctx.registry.get(intent.chain_id)
        client = ctx.clients.get(network)
        base = {
            "amount": proposal.data["amount"],
            "symbol": intent.symbol,
            "recipient": intent.recipient,
            "network": network.display_name,
            "chain_id": network.chain_id,
        }
        decision = decision or {}
        try:
            if decision.get("tx_hash"):
                tx_hash = str(decision["tx_hash"])
                decoded = await verify_transaction_hash(
                    client.w3, intent, tx_hash, timeout=ctx.verify_timeout
                )
            else:
                if decision.get("signed_tx"):
                    raw = HexBytes(str(decision["signed_tx"]))
                else:
                    if ctx.signer is None:
                        raise SignerError(
                            "No local signer is configured here: approve with the wallet's "
                            "tx_hash or signed_tx.",
                        )
                    raw = HexBytes(await ctx.signer.sign_transaction(prepared))
                decoded = verify_signed_transaction(intent, raw)
                tx_hash = await _broadcast(client, raw)
        except IntentMismatch as exc:
            update = TxUpdate(
                tx_hash=exc.tx_hash or str(decision.get("tx_hash") or ""),
                chain_id=network.chain_id,
                status=TxStatus.MISMATCH,
                reason=exc.message,
                explorer_url=network.explorer_tx_url(exc.tx_hash) if exc.tx_hash else None,
            )
            ctx.emit({"type": "tx_update", **update.to_dict()})
            return {**base, **update.to_dict(), "status": "mismatch", "differences": exc.differences}

        await ctx.ledger.record(intent.sender, intent.symbol, intent.human_amount, tx_hash, utc_today())
        last: TxUpdate | None = None
        async for update in track_transaction(
            client.w3, network, tx_hash, sender=intent.sender, nonce=decoded.nonce,
            timeout=ctx.track_timeout,
        ):
            ctx.emit({"type": "tx_update", **update.to_dict()})
            last = update
        assert last is not None  # the tracker always yields at least `submitted`
        return {**base, **last.to_dict()}


async def _broadcast(client: ChainClient, raw: HexBytes) -> str:
    """Send a signed transaction; sending one the node already has is not an error.

    The tools step re-runs after a crash, and re-signing the same prepared
    transaction yields the same bytes, hence the same hash.
    """
    tx_hash = "0x" + keccak(raw).hex()
    try:
        return await client.send_raw_transaction(raw)
    except ChainError as send_error:
        try:
            await client.w3.eth.get_transaction(HexStr(tx_hash))
        except TransactionNotFound:
            raise send_error from None
        return tx_hash
