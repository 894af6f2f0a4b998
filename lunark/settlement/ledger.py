"""The spend ledger as settlement sees it: what an approved transfer counts against the daily caps.

The amount reserved when the approval was asked (and held at execution, ``lunark.tools.transfer``)
is spent once the transfer went out and released when nothing did; what a wallet sent instead of
the approval is counted as it was."""

from __future__ import annotations

from datetime import UTC, datetime

from lunark.chain.intent import DecodedTx, erc20_transfer_of
from lunark.errors import UnknownToken
from lunark.networks import Network
from lunark.store.base import SettlementRecord, SpendEntry, Store

__all__ = ["SettlementLedger"]


class SettlementLedger:
    """A settlement's ledger entries are found by its ``settlement_id`` (and what it ``moved``)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def went_out(self, settlement_id: str, tx_hash: str) -> None:
        """The transfer is on the network: its held amount is spent, whatever happens next."""
        await self.store.commit(settlement_id, tx_hash)

    async def closed(self, record: SettlementRecord) -> None:
        """The settlement is final: spent if it was confirmed, otherwise given back."""
        if record.state == "confirmed" and record.tx_hash:
            await self.store.commit(record.settlement_id, record.tx_hash)
        elif record.state != "confirmed":
            await self.store.release(record.settlement_id)

    async def moved(self, record: SettlementRecord, tx: DecodedTx, network: Network) -> None:
        """What a mismatched transaction from the user's account moved counts against daily caps."""
        now = datetime.now(UTC)
        moved: list[tuple[str, str, int, int]] = []
        if tx.value:
            moved.append(("native", network.symbol, network.decimals, tx.value))
        transfer = erc20_transfer_of(tx.data)
        if transfer is not None and tx.to is not None:
            try:
                token = network.token(tx.to)
            except UnknownToken:
                token = None
            if token is not None:
                moved.append((token.address, token.symbol, token.decimals, transfer[1]))
        for asset, symbol, decimals, amount in moved:
            entry = SpendEntry(settlement_id=record.settlement_id, moved=asset, address=record.owner, symbol=symbol,
                               decimals=decimals, amount=amount, day=now.date(), expires_at=None)
            await self.store.reserve(entry, None, now=now)
            await self.store.commit(record.settlement_id, tx.tx_hash, moved=asset)
