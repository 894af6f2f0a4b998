"""Binding: which transaction a decision offers, and whether it may settle its approval.

A wallet's transaction settles only its own approval: ``lunark.chain.intent`` checks it field by
field against the prepared transaction, and the store checks that its hash settled no other
approval and its nonce carries no other live settlement. A signed transaction failing any check is
never broadcast."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lunark.chain.client import ChainClient
from lunark.chain.intent import DecodedTx, check_transaction, decode_signed_transaction
from lunark.chain.signer import Signer
from lunark.chain.types import PreparedTx
from lunark.errors import ChainError, IntentMismatch, LunarkError, SignerError
from lunark.networks import Network
from lunark.store.base import SettlementRecord, Store

__all__ = ["Offer", "Refusal", "Unseen", "let_go", "offer", "refusal"]


@dataclass(frozen=True)
class Offer:
    """The transaction a decision offers."""

    tx: DecodedTx
    raw: str | None
    """Signed bytes to broadcast; None: the wallet broadcast it itself (approved with its hash)."""


@dataclass(frozen=True)
class Unseen:
    """The wallet's hash the network never showed: nothing can be verified, nothing moved."""

    tx_hash: str
    reason: str


@dataclass(frozen=True)
class Refusal:
    """Why the offered transaction (or none) cannot settle the approval."""

    reason: str
    tx_hash: str | None = None
    differences: Mapping[str, Any] | None = None
    follow: bool = False
    """The wallet sent it from the user's account all the same: bind it and follow it to its end."""


async def offer(
    record: SettlementRecord, prepared: PreparedTx, client: ChainClient, signer: Signer | None, *, wait: float
) -> Offer | Unseen | Refusal:
    """The transaction the decision offers: the wallet's (by hash, waited for up to ``wait``
    seconds), its signed bytes, or the local signer's."""
    decision = record.decision
    if decision.get("tx_hash"):
        tx_hash = str(decision["tx_hash"]).lower()
        try:
            # The approval is bound to this hash: a node that has not seen it yet is waited for (a
            # wallet may broadcast elsewhere first), as long as an unmined transaction would be.
            tx = await client.transaction(tx_hash, timeout=wait)
        except ChainError as exc:
            return Unseen(tx_hash, f"the wallet's transaction was never seen on the network ({exc.message})")
        return Offer(tx, None)
    if decision.get("signed_tx"):
        raw = str(decision["signed_tx"])
    else:
        if signer is None:
            return Refusal("no local signer is configured here: approve with the wallet's tx_hash or signed_tx")
        try:
            raw = "0x" + bytes(await signer.sign_transaction(prepared)).hex()
        except SignerError as exc:
            return Refusal(exc.message)
    try:
        tx = decode_signed_transaction(raw)
    except LunarkError as exc:
        return Refusal(exc.message)
    return Offer(tx, raw)


async def refusal(
    store: Store, client: ChainClient, record: SettlementRecord, prepared: PreparedTx, offered: Offer,
    network: Network, *, fee_factor: Decimal,
) -> Refusal | None:
    """Why ``offered`` cannot settle this approval, or None (its hash is then bound to it)."""
    # A wallet's transaction is out already (the node has shown it, so its account's next nonce counts
    # it): that nonce is read while the store is asked about the hash, not after.
    nonce_read = asyncio.ensure_future(client.pending_nonce(record.owner)) if offered.raw is None else None
    try:
        return await _refusal(store, record, prepared, offered, network, fee_factor=fee_factor, nonce_read=nonce_read)
    finally:
        if nonce_read is not None:
            let_go(nonce_read)


async def _refusal(
    store: Store, record: SettlementRecord, prepared: PreparedTx, offered: Offer, network: Network, *,
    fee_factor: Decimal, nonce_read: asyncio.Future[int] | None,
) -> Refusal | None:
    tx = offered.tx
    bound = await store.hash_settling(tx.tx_hash)
    if bound is not None and bound != record.settlement_id:
        return Refusal(
            f"Transaction {tx.tx_hash} already settled another approval; one transaction settles one approval.",
            tx.tx_hash)
    try:
        check_transaction(prepared, tx, fee_factor=fee_factor, network=network)
    except IntentMismatch as exc:
        # A wallet that broadcast something else from the user's account moved funds all the same:
        # follow it, so the chat and the ledger show what happened. Signed bytes are never sent.
        mine = offered.raw is None and tx.sender.lower() == record.owner
        return Refusal(exc.message, tx.tx_hash, exc.differences, follow=mine)
    if nonce_read is not None and tx.nonce > (following := await nonce_read):
        # Out already, but behind a gap (an earlier transaction it was prepared behind was never
        # sent): it would go out whenever a later transaction of the user's filled it. Not accepted;
        # followed, so that if it does go out the chat says so and the ledger counts it.
        gap = (f"its nonce {tx.nonce} is above your account's next nonce {following}, so it waits in the "
               f"node's pool and goes out only when another transaction of yours uses nonce {following}")
        return Refusal(
            f"Transaction {tx.tx_hash} was not accepted: {gap}. Cancel it in your wallet (replace nonce "
            f"{tx.nonce}), or it may go out later.",
            tx.tx_hash, {"nonce": {"expected": following, "actual": tx.nonce, "text": gap}}, follow=True)
    why = await _store_refusal(store, record, tx)
    if why is not None:
        return Refusal(f"Transaction {tx.tx_hash} was refused: {why}.", tx.tx_hash)
    return None


async def _store_refusal(store: Store, record: SettlementRecord, tx: DecodedTx) -> str | None:
    """Why the store will not bind ``tx`` to this approval, or None (it is then bound)."""
    bound, other = await store.bind_transaction(
        record.settlement_id, tx.tx_hash, chain_id=record.chain_id, owner=record.owner, nonce=tx.nonce)
    if bound != record.settlement_id:
        return (f"transaction {tx.tx_hash} already settled another approval; one transaction settles "
                "one approval")
    if other is not None:
        return f"nonce {tx.nonce} already carries another approved transfer"
    return None


def let_go(read: asyncio.Future[Any]) -> None:
    """A read started ahead that is no longer needed: left to finish (a request cancelled midway
    gains nothing and costs the HTTP session its connection), its failure taken, never logged as an
    exception nobody retrieved."""
    read.add_done_callback(lambda done: None if done.cancelled() else done.exception())
