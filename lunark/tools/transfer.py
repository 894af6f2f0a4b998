"""``transfer``: send native currency or a known ERC-20 token, only with the user's approval.

Prepare validates (checksum address, amount > 0, token known on this network), applies the
spending policy (reserving the amount against daily caps until the approval expires), builds
the unsigned EIP-1559 transaction and simulates it, so a transfer that would fail is refused
before anyone is asked. Execute hands the approved transfer to the settlement service
(``lunark.settlement``), which writes it ahead, binds the wallet's transaction to it (any
difference is a ``mismatch``, never success), broadcasts and tracks it; execute only waits
for the final outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from eth_typing import ChecksumAddress
from pydantic import BaseModel, ConfigDict, Field, field_validator
from web3.exceptions import Web3Exception

from lunark.chain.ens import primary_name, resolve_recipient
from lunark.chain.intent import decode_signed_transaction
from lunark.chain.preview import BalancePreview, preview_differences, unexpected_movement
from lunark.chain.types import PreparedTx, TransferIntent, prepared_from_state, prepared_to_state, to_units
from lunark.contacts import contact_named, labels_by_address
from lunark.errors import LunarkError, NonceGap, PreviewChanged, SignerError, SimulationFailed
from lunark.settlement import outcome_message
from lunark.store.base import SettlementRecord
from lunark.tools.amounts import amount_for_share, share_of
from lunark.tools.base import ApprovalRule, Decision, Proposal, ToolContext
from lunark.tools.recipient import (
    CardWarning,
    counterparties,
    has_code,
    refuse_unrecoverable,
    transfer_warnings,
)

if TYPE_CHECKING:
    from lunark.chain.client import ChainClient

logger = logging.getLogger(__name__)

__all__ = ["Transfer", "TransferArgs", "prepared_from_state", "prepared_to_state", "settlement_result"]


class TransferArgs(BaseModel):
    """Arguments of ``transfer``."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(
        description="Recipient: a 0x address (0x followed by 40 hexadecimal characters), an ENS name "
        "such as alice.eth, or the label of one of the user's contacts such as alice, exactly as the user "
        "wrote it. A name or label is resolved for the user, who sees both it and its address.",
        max_length=255,
    )
    amount: str = Field(
        description=(
            "Amount in whole units as a decimal string, e.g. '0.5' for half an ETH. Never in wei. "
            "Or a share of the balance: 'all' (or 'max'), 'half', a percentage like '25%', a fraction "
            "like '1/3'; it is computed from the live balance (leaving the network fee, for the native "
            "currency) and the user approves the exact amount."
        ),
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
        symbol = network.symbol
        if not network.is_native(a.token):
            # Only tokens the configuration knows: an arbitrary contract the model names could
            # claim any symbol. Fail closed.
            known = network.token(str(a.token))
            token, symbol = known.address, known.symbol
        # Funds that can never come back are refused before anything else (and before any reservation).
        refuse_unrecoverable(a.to.strip(), symbol, token)
        # A contact label or an ENS name is resolved here, once: the card shows the label or name and
        # the address it resolved to, and that address is what gets approved and signed, whatever
        # the name points to later. A bare word is a label (ENS names have a dot): one the user never
        # saved is refused, never guessed at.
        book = await labels_by_address(ctx.history, ctx.user_address)
        contact = await contact_named(ctx.history, ctx.user_address, a.to)
        name: str | None
        if contact is not None:
            to, name = contact.address, contact.label
        else:
            to, name = await resolve_recipient(client, a.to)
            # What the user typed is what the card names: an ENS name stays the ENS name, a bare
            # address that is a contact gets the contact's label.
            name = name or book.get(to.strip().lower())
        ens = name is not None and contact is None and "." in name
        if name:
            refuse_unrecoverable(to, symbol, token)  # a name can point anywhere, a burn address too
        if (share := share_of(a.amount)) is not None:
            # "all", "half", "25%": the exact figure, from the live balance; the card shows it.
            a.amount = await amount_for_share(client, ctx.user_address, to, share, token=token)
        intent = await client.build_intent(ctx.user_address, to, a.amount, token)
        named = await _name_warnings(client, name, intent.recipient) if name and ens else ()
        # Checked, and the amount reserved against the daily cap across all of the user's chats,
        # before anyone is asked; the reservation lapses with the approval.
        await ctx.policy.check(intent, ctx.ledger, settlement_id=ctx.settlement_id, expires_at=ctx.expires_at)
        # The recipient checks only read (the store, the node): they run while the transaction is
        # built and simulated, so the card waits for the slowest of them, not for all in turn.
        checks = asyncio.ensure_future(_recipient_warnings(intent, ctx, client, book))
        key = (intent.chain_id, intent.sender.lower())
        try:
            # After any transaction this approval already holds from the same account: each gets its own
            # nonce, so all of them can go out, one after the other.
            prepared = await client.prepare(intent, nonce_at_least=ctx.nonces.get(key))
            # The exact transaction, simulated: the card shows what it changes, not what we hope it does.
            preview = await client.preview(prepared, queued=key in ctx.nonces)
            warnings = (*await checks, *named)
        except BaseException:
            checks.cancel()
            if ctx.settlement_id is not None:
                await ctx.ledger.release(ctx.settlement_id)
            raise
        ctx.nonces[key] = prepared.nonce + 1
        units = {asset: client.units(asset) for _, asset, _ in preview.moved}
        unexpected = unexpected_movement(intent, preview, {a: u for a, u in units.items() if u is not None})
        fee = _amount_text(to_units(prepared.max_fee, network.decimals))
        # A fee in the same currency as the amount can be compared with it (a token's cannot, without a price).
        warn_share = network.fee_warning_share
        costly = intent.token is None and prepared.max_fee > intent.amount * warn_share
        warning = f"; the fee may be more than {_amount_text(warn_share * 100)}% of the amount" if costly else ""
        recipient = f"{name} ({intent.recipient})" if name else intent.recipient
        return Proposal(
            summary=(
                f"Send {_amount_text(intent.human_amount)} {intent.symbol} to {recipient} "
                f"on {network.display_name} (network fee at most {fee} {network.symbol}{warning})"
            ),
            description=(
                f"Transfer {_amount_text(intent.human_amount)} {intent.symbol} from "
                f"{_short(intent.sender)} to {name + ' ' if name else ''}{_short(intent.recipient)}."
            ),
            recipient_name=name,
            tx=prepared.to_wire(),
            preview=preview.to_wire(),
            warnings=warnings + ((CardWarning.from_dict(unexpected),) if unexpected else ()),
            data={
                "prepared": prepared_to_state(prepared),
                "preview": preview.to_state(),
                "amount": _amount_text(intent.human_amount),
                "symbol": intent.symbol,
                "recipient": intent.recipient,
                **({"recipient_name": name} if name else {}),
                "network": network.display_name,
                "max_fee": fee,
            },
        )

    async def execute(
        self, args: BaseModel, ctx: ToolContext, proposal: Proposal, decision: Decision | None
    ) -> dict[str, Any]:
        """Hand the approved transfer to the settlement service and wait for its final outcome.

        The service writes the settlement ahead of any signing, checks the wallet's transaction
        against what was approved, broadcasts and tracks it; this call only waits (an abort
        stops the waiting, never the settlement)."""
        prepared = prepared_from_state(proposal.data["prepared"])
        if ctx.nonce_floor is not None and ctx.nonce_floor < prepared.nonce:
            # An earlier transaction of the approval is not sent: this one takes the nonce it would have.
            prepared = replace(prepared, nonce=ctx.nonce_floor)
        intent = prepared.intent
        network = ctx.registry.get(intent.chain_id)
        base = {
            "amount": proposal.data["amount"],
            "symbol": intent.symbol,
            "recipient": intent.recipient,
            **({"recipient_name": proposal.recipient_name} if proposal.recipient_name else {}),
            "network": network.display_name,
            "chain_id": network.chain_id,
        }
        decision = dict(decision or {})
        if ctx.settlements is None or ctx.settlement_id is None or ctx.approval_id is None or ctx.call_id is None:
            raise SignerError("This agent has no settlement service; it cannot execute transfers.")
        if decision.get("tx_hash"):
            # The wallet's transaction is read while the settlement is written ahead, not after it.
            ctx.clients.get(intent.chain_id).read_ahead(str(decision["tx_hash"]))
        written = await ctx.settlements.store.get_settlement(ctx.settlement_id)
        if written is None and not decision.get("tx_hash"):
            # Checked again before we sign or broadcast anything: a reservation that lapsed is taken
            # anew under the cap. (A wallet that broadcast itself has already moved the funds: the
            # settlement records and counts it instead.) A settlement already written is this step
            # run again after a crash: it was checked (and re-simulated) then, and may be sent by
            # now; its spend may be committed or released, which a second hold must not undo.
            await ctx.policy.check(intent, ctx.ledger, settlement_id=ctx.settlement_id, executing=True)
            prepared = await _next_in_line(ctx, prepared, decision)
        recheck: asyncio.Task[list[str]] | None = None
        if decision.get("tx_hash"):
            # The wallet already broadcast it: nothing can stop it, so the re-check only has to be told, and
            # runs alongside the settlement rather than in front of it.
            recheck = asyncio.create_task(_recheck(ctx, prepared, proposal, decision["tx_hash"]))
        elif written is None and (changed := await _recheck(ctx, prepared, proposal, None)):
            raise PreviewChanged(
                f"Simulated again before signing, this transfer would not do what the card showed: "
                f"{'; '.join(changed)}. Nothing was signed or sent; decide again on the fresh card.",
                differences=changed,
            )
        prepared_state = {**proposal.data["prepared"], "nonce": prepared.nonce}
        if proposal.data.get("preview") is not None:
            prepared_state["preview"] = proposal.data["preview"]
        record = await ctx.settlements.open(
            approval_id=ctx.approval_id, call_id=ctx.call_id, chat_id=ctx.chat_id, prepared=prepared,
            prepared_state=prepared_state, decision=decision,
            expires_at=ctx.expires_at or datetime.now(UTC),
        )
        try:
            final = await ctx.settlements.settle(record.settlement_id, forward=ctx.emit, opened=record)
            changed = await recheck if recheck is not None else []
        finally:
            if recheck is not None and not recheck.done():
                recheck.cancel()
        result = settlement_result(final, base)
        if changed:
            # Told with the outcome (the tool result is kept in the chat's log), never hidden.
            logger.warning("settlement %s: the wallet's transaction no longer matched its card: %s",
                           record.settlement_id, "; ".join(changed))
            result["preview_changed"] = changed
            result["message"] += (" Simulated again when your wallet reported it, it did not match the card: "
                                  + "; ".join(changed) + ".")
        return result


async def _next_in_line(ctx: ToolContext, prepared: PreparedTx, decision: Decision) -> PreparedTx:
    """The transaction the server is to sign or broadcast, checked to be next in line for the account.

    One above the account's next nonce would wait in the node's pool, and go out whenever a later
    transaction of the user's filled the gap: it is never sent (``NonceGap``; the call gets a fresh
    card). The local signer signs at the account's next nonce when that is higher than the prepared
    one (another transaction took it meanwhile), as a wallet re-nonces upward. A wallet's broadcast
    (``tx_hash``) is out already: the settlement checks it (``lunark.settlement.binding.refusal``).
    """
    intent = prepared.intent
    client = ctx.clients.get(intent.chain_id)
    following = await client.pending_nonce(intent.sender)
    if decision.get("signed_tx"):
        try:
            nonce = decode_signed_transaction(str(decision["signed_tx"])).nonce
        except LunarkError:
            return prepared  # not a transaction at all: the settlement refuses it and says why
    else:
        nonce = max(prepared.nonce, following)
        prepared = replace(prepared, nonce=nonce)
    if nonce > following:
        raise NonceGap(
            f"This transfer's nonce {nonce} is above your account's next nonce {following}: an earlier "
            f"transaction it was prepared behind was not sent, so it would wait in the node's pool and go "
            "out whenever a later transaction of yours used that nonce. Nothing was signed or sent; decide "
            "again on the fresh card, which has the right nonce.",
            nonce=nonce, next_nonce=following, chain_id=intent.chain_id,
        )
    return prepared


async def _recheck(ctx: ToolContext, prepared: PreparedTx, proposal: Proposal, tx_hash: Any) -> list[str]:
    """The transfer simulated again now, against the card's preview: the differences in words.

    A wallet's broadcast transaction is simulated on top of the block before the one that holds
    it (where it was mined), so its own effects are not mistaken for a change.
    """
    raw = proposal.data.get("preview")
    if not raw:
        return []
    shown = BalancePreview.from_state(raw)
    if not shown.simulated:
        return []
    client = ctx.clients.get(prepared.intent.chain_id)
    block: int | None = None
    try:
        if tx_hash:
            # Read first: a transaction not mined after this block was read is not in it.
            block = await client.block_number()
            mined = await client.mined_block(str(tx_hash))
            if mined is not None:
                block = mined - 1
        # A wallet's transaction may share its block with earlier ones of the same approval (a batch):
        # on top of the block before, its nonce is not the next yet, so it is simulated at the next one.
        now = await client.preview(prepared, block=block, queued=bool(tx_hash), movements_only=True)
    except SimulationFailed as exc:
        return [f"it would now fail ({exc.reason or exc.message})"]
    except (LunarkError, Web3Exception, OSError) as exc:
        if not tx_hash:
            raise  # nothing is signed without the re-check: the decision fails closed
        return [f"it could not be simulated again ({exc})"]
    return preview_differences(shown, now)


async def _name_warnings(client: ChainClient, name: str, address: str) -> tuple[CardWarning, ...]:
    """``ens_reverse_mismatch`` when the address does not name itself ``name`` (its primary name, the
    reverse record verified forward): a name anyone can point at any address proves nothing about who
    holds it, while an address's own primary name is set by its holder."""
    primary = await primary_name(client, address)
    if primary == name:
        return ()
    if primary is None:
        message = (
            f"{name} points to {address}, but that address has no primary ENS name: nothing on chain says "
            f"its holder calls itself {name}. Check the address with the recipient."
        )
    else:
        message = (
            f"{name} points to {address}, but that address's primary ENS name is {primary}, not {name}. "
            "Check that this is who you mean to pay."
        )
    return (CardWarning("ens_reverse_mismatch", "warning", message),)


async def _recipient_warnings(
    intent: TransferIntent, ctx: ToolContext, client: ChainClient, contacts: Mapping[str, str]
) -> list[CardWarning]:
    """The recipient checks of one card: history, look-alikes, contract (``lunark.tools.recipient``);
    the node's reads and the store's run together. ``contacts``: the user's, address -> label."""
    policy = ctx.policy.recipients

    async def contract() -> bool:
        # Only native transfers: paying a token to a contract (a multisig, an exchange) is routine.
        return intent.token is None and await has_code(client, intent.recipient)

    history, is_contract = await asyncio.gather(
        counterparties(ctx.history, client, intent.sender, policy), contract()
    )
    return transfer_warnings(
        intent, history, network_name=ctx.network.display_name, is_contract=is_contract, policy=policy,
        contacts=contacts,
    )


def settlement_result(record: SettlementRecord, base: dict[str, Any]) -> dict[str, Any]:
    """The tool result of a settled transfer: its outcome as the chat saw it, and in plain words."""
    last = record.history[-1] if record.history else {}
    evidence = {k: v for k, v in last.items() if k not in ("state", "ts", "status", "type", "call_id")}
    status = "dropped" if record.state == "expired" else record.state
    out = {**base, **evidence, "status": status, "message": outcome_message(record, last)}
    if record.tx_hash:
        out["tx_hash"] = record.tx_hash
    return out
