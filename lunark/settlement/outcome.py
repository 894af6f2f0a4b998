"""What a settlement says: the ``tx_update`` evidence it emits, and its outcome in plain words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lunark.chain.types import TxProgress, TxStatus, prepared_from_state, to_units
from lunark.networks import Network
from lunark.store.base import SettlementRecord

__all__ = ["mismatch_event", "outcome_message", "submitted_event"]


def submitted_event(tx_hash: str, network: Network) -> dict[str, Any]:
    """The ``tx_update`` of a transaction that is out (or would have been)."""
    return TxProgress(tx_hash=tx_hash, chain_id=network.chain_id, status=TxStatus.SUBMITTED,
                      explorer_url=network.explorer_tx_url(tx_hash)).to_dict()


def mismatch_event(network: Network, tx_hash: str | None, reason: str,
                   differences: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``tx_update`` of a transaction refused as not the approved one (or of none at all)."""
    event: dict[str, Any] = {"chain_id": network.chain_id, "status": "mismatch", "confirmations": 0,
                             "reason": reason}
    if tx_hash:
        event["tx_hash"] = tx_hash
    if differences:
        event["differences"] = dict(differences)
    if tx_hash:
        event["explorer_url"] = network.explorer_tx_url(tx_hash)
    return event


def outcome_message(record: SettlementRecord, last: Mapping[str, Any] | None = None) -> str:
    """What happened, in plain words, for the model and the chat."""
    prepared = prepared_from_state(record.prepared)
    intent = prepared.intent
    amount = format(to_units(intent.amount, intent.decimals).normalize(), "f")
    what = f"{amount} {intent.symbol} to {intent.recipient}"
    evidence = last or (record.history[-1] if record.history else {})
    reason = str(evidence.get("reason") or "").rstrip(".")
    tx = f" (transaction {record.tx_hash})" if record.tx_hash else ""
    state = record.state
    if state == "confirmed":
        block = evidence.get("block_number")
        return f"Sent {what}{tx}; confirmed" + (f" in block {block}." if block is not None else ".")
    if state == "mined":
        return f"Sent {what}{tx}; mined, waiting for confirmations."
    if state in ("submitted", "broadcasting", "approved"):
        return f"The transfer of {what}{tx} is on its way; not confirmed yet."
    if state == "failed":
        return f"The transfer of {what} failed on chain{tx}: {reason or 'reverted'}. Nothing was sent; only the fee."
    if state == "replaced":
        return f"The transfer of {what} did not go through{tx}: {reason or 'another transaction took its nonce'}."
    if state == "dropped":
        return f"The transfer of {what} was not sent{tx}: {reason or 'it was dropped'}."
    if state == "expired":
        return f"The transfer of {what} was not sent: {reason or 'the approval expired'}."
    if state == "mismatch" and not (record.tx_hash or evidence.get("tx_hash")):
        # Refused before any transaction existed (no signer here, bytes that are no transaction):
        # saying the wallet signed something else would be untrue.
        return f"Nothing was signed, so the transfer of {what} was not sent: {reason}."
    if state == "mismatch" and set(evidence.get("differences") or ()) == {"nonce"}:
        return f"Your wallet's transaction for {what} was not accepted: {reason}."
    if state == "mismatch":
        return f"Your wallet signed something else: it was not accepted as the transfer of {what}: {reason}."
    return f"The transfer of {what} is {state}{tx}."
