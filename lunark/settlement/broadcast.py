"""Broadcast: signed bytes written ahead (``broadcasting``) go out at most once.

The same bytes carry the same hash and nonce, so sending them again after a crash is harmless; the
node is asked first whether it has them, and bytes never sent are not sent once the approval expired."""

from __future__ import annotations

from datetime import UTC, datetime

from eth_utils.crypto import keccak
from hexbytes import HexBytes

from lunark.chain.client import ChainClient
from lunark.errors import ChainError
from lunark.store.base import SettlementRecord

__all__ = ["broadcast"]


async def broadcast(client: ChainClient, record: SettlementRecord) -> tuple[str, str | None]:
    """Send the record's signed bytes unless the node has them; returns their hash and, when they
    did not go out, why (the settlement is then ``dropped``)."""
    assert record.raw_tx is not None and record.tx_hash is not None
    raw = HexBytes(record.raw_tx)
    tx_hash = "0x" + keccak(raw).hex()
    if await client.knows_transaction(tx_hash):
        return tx_hash, None
    if datetime.now(UTC) >= record.expires_at:
        # Written ahead but never sent (the process stopped in between), and too late now.
        return tx_hash, ("the server stopped before broadcasting and the approval has since expired; "
                         "nothing was sent")
    try:
        await client.send_raw_transaction(raw)
    except ChainError as exc:
        if not await client.knows_transaction(tx_hash):
            return tx_hash, f"the node refused the transaction: {exc.details.get('node_message') or exc.message}"
    return tx_hash, None
