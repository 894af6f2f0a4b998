"""Tracking: a transaction that is out, followed to its final state on chain.

The approved transfer is tracked (a wallet's speed-up settles under its new hash); what a wallet sent
instead of it is followed as a ``mismatch`` until it ends, so the chat says what it did and the spend
ledger counts what it moved."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from lunark.chain.client import ChainClient
from lunark.chain.intent import describe_transaction
from lunark.chain.types import PreparedTx, TxStatus
from lunark.networks import Network
from lunark.protocol import tx_update
from lunark.settlement.ledger import SettlementLedger
from lunark.settlement.states import SettlementState
from lunark.store.base import SettlementRecord, Store

__all__ = ["Advance", "Record", "follow", "track"]


class Advance(Protocol):
    """Store a transition, then emit its ``tx_update`` (``Settlements._advance``)."""

    def __call__(self, record: SettlementRecord, state: SettlementState, network: Network, *,
                 event: Mapping[str, Any] | None = None, **fields: Any) -> Awaitable[SettlementRecord]: ...


class Record(Protocol):
    """Store a transition only (``Settlements._store_advance``)."""

    def __call__(self, record: SettlementRecord, state: SettlementState, evidence: Mapping[str, Any], *,
                 done: bool | None = None) -> Awaitable[SettlementRecord]: ...


async def track(
    record: SettlementRecord, prepared: PreparedTx, client: ChainClient, network: Network, *, store: Store,
    advance: Advance, timeout: float, poll_interval: float,
) -> SettlementRecord:
    """Advance a ``submitted`` or ``mined`` settlement with each change of its transaction, until final."""
    assert record.tx_hash is not None and record.nonce is not None
    updates = client.track(
        record.tx_hash, sender=record.owner, nonce=record.nonce, intent=prepared.intent,
        first_block=record.first_block, timeout=timeout, poll_interval=poll_interval,
    )
    async for update in updates:
        event = update.to_dict()
        if update.status is TxStatus.SUBMITTED and record.state == SettlementState.SUBMITTED:
            continue  # the tracker starts with it; it was emitted when the transaction went out
        fields: dict[str, Any] = {}
        if update.tx_hash.lower() != record.tx_hash:
            await store.bind_hash(record.settlement_id, update.tx_hash)
            fields["tx_hash"] = update.tx_hash.lower()
        record = await advance(record, SettlementState(update.status.value), network, event=event, **fields)
        if record.final:
            break
    return record


async def follow(
    record: SettlementRecord, client: ChainClient, network: Network, *, ledger: SettlementLedger,
    step: Record, emit: Callable[[SettlementRecord, dict[str, Any]], Awaitable[None]], reason: str,
    verify_timeout: float, timeout: float, poll_interval: float,
) -> SettlementRecord:
    """One pass over what the wallet sent instead of the approved transaction (bound to the
    ``mismatch`` settlement): each of its steps is stored and emitted as the settlement's, and what
    it moved is counted once it is confirmed. ``reason`` is why it was refused. Node errors pass
    through (the caller retries)."""
    assert record.tx_hash is not None
    tx = await client.transaction(record.tx_hash, timeout=verify_timeout)
    async for update in client.track(
        record.tx_hash, sender=record.owner, nonce=tx.nonce, first_block=record.first_block, timeout=timeout,
        poll_interval=poll_interval,
    ):
        if update.status is TxStatus.SUBMITTED:
            continue
        onchain = str(update.status)
        if update.status is TxStatus.CONFIRMED:
            await ledger.moved(record, tx, network)
            said = f"it was confirmed on chain: it {describe_transaction(tx, network=network)}"
        elif update.status is TxStatus.MINED:
            said = f"it was mined: it {describe_transaction(tx, network=network)}"
        else:
            said = f"on chain it ended {onchain}" + (f" ({update.reason})" if update.reason else "")
        event = {**update.to_dict(), "status": "mismatch", "onchain": onchain,
                 "reason": f"{reason.rstrip('.')}. Not the approved transfer, but {said}."}
        record = await step(record, SettlementState.MISMATCH, {k: v for k, v in event.items() if k != "status"},
                            done=update.status.is_final)
        await emit(record, tx_update(record.call_id, event))
        if record.done:
            break
    return record
