"""Settlement: every approved transfer as one durable state machine, from decision to final outcome.

```
approved -> broadcasting -> submitted -> mined -> confirmed
   |             |              |          |
   v             v              v          v
mismatch      dropped     replaced / dropped   failed (status 0)
(expired: a signed transaction that arrived, or would have gone out, after the approval expired)
```

- Write ahead: the record exists (``approved``, with the decision) before anything is signed, and
  the signed bytes are stored (``broadcasting``) before they are sent. A process that dies at any
  instant leaves a record that says what may have happened; ``Settlements.resume_all`` finds out
  at the next start and carries every unfinished settlement to a final state.
- Binding: a wallet's transaction settles only its own approval: ``lunark.chain.intent`` checks it
  field by field against the prepared transaction, and the store checks that its hash settled no
  other approval and its nonce carries no other live settlement. A signed transaction failing any
  check is never broadcast.
- The service, not the turn, owns tracking: an aborted turn or a restart never stops it. Each
  transition is stored first and only then emitted as the chat's ``tx_update`` (durable before
  visible).
- Spending: the amount reserved when the approval was asked is held at execution, committed at
  broadcast and released when nothing went out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from eth_typing import HexStr
from eth_utils.crypto import keccak
from hexbytes import HexBytes
from web3.exceptions import TransactionNotFound, Web3Exception

from lunark.chain.client import ChainClient, ChainClients
from lunark.chain.intent import (
    DecodedTx,
    check_transaction,
    decode_signed_transaction,
    describe_transaction,
    erc20_transfer_of,
    fetch_transaction,
)
from lunark.chain.signer import Signer
from lunark.chain.tracker import track_transaction
from lunark.chain.types import PreparedTx, TxProgress, TxStatus, prepared_from_state, to_units
from lunark.errors import ChainError, IntentMismatch, LunarkError, RpcUnavailable, SignerError, UnknownToken
from lunark.networks import Network, NetworkRegistry
from lunark.settlement.states import SettlementState, check_transition
from lunark.store.base import SettlementRecord, SpendEntry, Store

__all__ = ["Lease", "Settlements", "outcome_message"]

logger = logging.getLogger(__name__)

Sink = Callable[[SettlementRecord, dict[str, Any]], Awaitable[None]]
"""Where a settlement's ``tx_update`` events go (the server: the chat's log and rooms)."""

_RETRY_AFTER_RPC_ERROR = 2.0
_LEASE_POLL = 0.5


class Lease(Protocol):
    """Exclusive ownership of a name across server processes (``lunark.server.cluster``): a settlement
    is driven by one process at a time, and taken over when that process dies."""

    async def acquire(self, name: str) -> bool:
        """Take ``name``; False while another process (or driver) holds it."""
        ...

    def release(self, name: str) -> None:
        ...


def _now() -> datetime:
    return datetime.now(UTC)


def settlement_id(approval_id: str, call_id: str) -> str:
    return f"{approval_id}/{call_id}"


class Settlements:
    """Owns every settlement of one process: drives each to a final state, exactly once."""

    def __init__(
        self,
        store: Store,
        clients: ChainClients,
        registry: NetworkRegistry,
        *,
        signer: Signer | None = None,
        track_timeout: float = 300.0,
        verify_timeout: float = 30.0,
        fee_factor: Decimal = Decimal(2),
        poll_interval: float = 0.25,
    ) -> None:
        self.store = store
        self.clients = clients
        self.registry = registry
        self.signer = signer
        self.track_timeout = track_timeout
        self.verify_timeout = verify_timeout
        self.fee_factor = fee_factor
        self.poll_interval = poll_interval
        self.sink: Sink | None = None
        """Set by the server: every transition is published there. Without one, a waiting
        ``settle`` call forwards the events to its caller instead (library use)."""
        self.lease: Lease | None = None
        """Set by the server with several processes: each settlement is driven where its lease is
        held; other processes wait for its final state and take it over if its driver's process dies."""
        self._drivers: dict[str, asyncio.Task[SettlementRecord]] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}

    # -- entry points ------------------------------------------------------------------------

    async def open(
        self,
        *,
        approval_id: str,
        call_id: str,
        chat_id: str,
        prepared: PreparedTx,
        prepared_state: Mapping[str, Any],
        decision: Mapping[str, Any],
        expires_at: datetime,
        late: bool = False,
    ) -> SettlementRecord:
        """The settlement of one approved action, written ahead of any signing (idempotent).

        ``late``: evidence (a wallet's hash) that arrived after the approval expired; it is
        verified and followed like any other, so funds that moved are shown and counted."""
        intent = prepared.intent
        record = SettlementRecord(
            settlement_id=settlement_id(approval_id, call_id), approval_id=approval_id, call_id=call_id,
            chat_id=chat_id, owner=intent.sender.lower(), chain_id=intent.chain_id, state="approved",
            prepared=dict(prepared_state), decision=dict(decision), expires_at=expires_at, tx_hash=None,
            nonce=None, raw_tx=None, first_block=None, late=late,
            history=[{"state": "approved", "ts": round(_now().timestamp(), 3)}], updated_at=_now(), done=False,
        )
        return await self.store.open_settlement(record)

    async def settle(
        self, settlement_id: str, *, forward: Callable[[dict[str, Any]], None] | None = None
    ) -> SettlementRecord:
        """Wait for the settlement's final state, starting its driver if none runs.

        ``forward`` receives its ``tx_update`` events when no sink publishes them. Cancelling the
        caller (an aborted turn) never stops the driver.
        """
        if forward is not None and self.sink is None:
            self._listeners.setdefault(settlement_id, []).append(forward)
        try:
            return await asyncio.shield(self._driver(settlement_id))
        finally:
            if forward is not None and forward in self._listeners.get(settlement_id, []):
                self._listeners[settlement_id].remove(forward)
                if not self._listeners[settlement_id]:
                    del self._listeners[settlement_id]

    def start(self, settlement_id: str) -> None:
        """Drive a settlement in the background (its events go to the sink)."""
        self._driver(settlement_id)

    async def resume_all(self) -> int:
        """Start a driver for every settlement that is not final (after a restart); returns how many."""
        unfinished = await self.store.settlements(unfinished=True)
        for record in unfinished:
            self._driver(record.settlement_id)
        return len(unfinished)

    async def aclose(self) -> None:
        """Stop the drivers; the records stay as they are, and the next start resumes them."""
        drivers: list[asyncio.Task[Any]] = [*self._drivers.values(), *self._followers.values()]
        for task in drivers:
            task.cancel()
        for task in drivers:
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("settlement driver failed while stopping")

    # -- the state machine ---------------------------------------------------------------------

    def _driver(self, sid: str) -> asyncio.Task[SettlementRecord]:
        task = self._drivers.get(sid)
        if task is None:
            task = asyncio.create_task(self._drive(sid), name=f"lunark-settle-{sid}")
            self._drivers[sid] = task
            task.add_done_callback(lambda done: self._drivers.pop(sid, None) if self._drivers.get(sid) is done
                                   else None)
        return task

    async def _drive(self, sid: str) -> SettlementRecord:
        if self.lease is None:
            return await self._drive_owned(sid)
        name = f"settle:{sid}"
        while not await self.lease.acquire(name):
            # Another process drives it: wait for its final state, or for its lease to be free.
            record = await self.store.get_settlement(sid)
            if record is None:
                raise LunarkError(f"No settlement {sid!r}.", settlement_id=sid)
            if record.final:
                return record
            await asyncio.sleep(_LEASE_POLL)
        try:
            return await self._drive_owned(sid)
        finally:
            self.lease.release(name)

    async def _drive_owned(self, sid: str) -> SettlementRecord:
        record = await self.store.get_settlement(sid)
        if record is None:
            raise LunarkError(f"No settlement {sid!r}.", settlement_id=sid)
        prepared = prepared_from_state(record.prepared)
        network = self.registry.get(record.chain_id)
        client = self.clients.get(network)
        while not record.final:
            try:
                if record.state == "approved":
                    record = await self._bind(record, prepared, client, network)
                elif record.state == "broadcasting":
                    record = await self._broadcast(record, client, network)
                else:
                    record = await self._track(record, prepared, client, network)
            except (RpcUnavailable, OSError, TimeoutError, Web3Exception) as exc:
                # The node is away: the record still says where we are; look again shortly.
                logger.warning("settlement %s waits for the node: %s", sid, exc)
                await asyncio.sleep(_RETRY_AFTER_RPC_ERROR)
        if not record.done and sid not in self._followers:
            follower = asyncio.create_task(self._follow(record, client, network), name=f"lunark-follow-{sid}")
            self._followers[sid] = follower
            follower.add_done_callback(lambda _: self._followers.pop(sid, None))
        return record

    async def _follow(self, record: SettlementRecord, client: ChainClient, network: Network) -> None:
        """Follow what the wallet sent instead of the approved transaction, to its end: the chat
        says what it did on chain, and the spend ledger counts what it moved. With several
        processes, one follows it (its lease), and another takes over if that one dies."""
        name = f"follow:{record.settlement_id}"
        if self.lease is not None and not await self.lease.acquire(name):
            return
        try:
            await self._follow_owned(record, client, network)
        finally:
            if self.lease is not None:
                self.lease.release(name)

    async def _follow_owned(self, record: SettlementRecord, client: ChainClient, network: Network) -> None:
        assert record.tx_hash is not None
        reason = str((record.history[-1] if record.history else {}).get("reason") or "")
        while not record.done:
            try:
                tx = await fetch_transaction(client.w3, record.tx_hash, timeout=self.verify_timeout)
                async for update in track_transaction(
                    client.w3, network, record.tx_hash, sender=record.owner, nonce=tx.nonce,
                    first_block=record.first_block, timeout=self.track_timeout, poll_interval=self.poll_interval,
                ):
                    if update.status is TxStatus.SUBMITTED:
                        continue
                    onchain = str(update.status)
                    if update.status is TxStatus.CONFIRMED:
                        await self._count_sent(record, tx, network)
                        said = f"it was confirmed on chain: it {describe_transaction(tx, network=network)}"
                    elif update.status is TxStatus.MINED:
                        said = f"it was mined: it {describe_transaction(tx, network=network)}"
                    else:
                        said = f"on chain it ended {onchain}" + (f" ({update.reason})" if update.reason else "")
                    event = {**update.to_dict(), "status": "mismatch", "onchain": onchain,
                             "reason": f"{reason.rstrip('.')}. Not the approved transfer, but {said}."}
                    record = await self._store_advance(
                        record, SettlementState.MISMATCH, {k: v for k, v in event.items() if k != "status"},
                        done=update.status.is_final,
                    )
                    await self._emit(record, {"type": "tx_update", "call_id": record.call_id, **event})
                    if record.done:
                        break
            except ChainError as exc:  # the node no longer knows it: nothing moved
                record = await self._store_advance(
                    record, SettlementState.MISMATCH, {"onchain": "dropped", "reason": exc.message}, done=True)
            except (RpcUnavailable, OSError, TimeoutError, Web3Exception) as exc:
                logger.warning("settlement %s waits for the node: %s", record.settlement_id, exc)
                await asyncio.sleep(_RETRY_AFTER_RPC_ERROR)

    async def _count_sent(self, record: SettlementRecord, tx: DecodedTx, network: Network) -> None:
        """What a mismatched transaction from the user's account moved counts against daily caps."""
        today = _now().date()
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
            entry = SpendEntry(entry_id=f"{record.settlement_id}#sent:{asset}", address=record.owner, symbol=symbol,
                               decimals=decimals, amount=amount, day=today, expires_at=None)
            await self.store.reserve(entry, None, now=_now())
            await self.store.commit(entry.entry_id, tx.tx_hash)

    async def _advance(
        self, record: SettlementRecord, state: str, network: Network, *, event: Mapping[str, Any] | None = None,
        done: bool | None = None, **fields: Any,
    ) -> SettlementRecord:
        """Store the transition, then (durable before visible) emit it as a ``tx_update``."""
        evidence = {k: v for k, v in (event or {}).items() if k not in ("status",)}
        record = await self._store_advance(record, state, evidence, done=done, **fields)
        if event is not None:
            update = {"type": "tx_update", "call_id": record.call_id, **event}
            if record.late:
                update["late"] = True
            await self._emit(record, update)
        if record.final:
            await self._settle_spend(record)
        return record

    async def _store_advance(
        self, record: SettlementRecord, state: str, evidence: Mapping[str, Any], *, done: bool | None = None,
        **fields: Any,
    ) -> SettlementRecord:
        """Store a transition the state table allows (``IllegalTransition`` otherwise, nothing stored)."""
        target = check_transition(record.settlement_id, record.state, state)
        return await self.store.advance_settlement(record.settlement_id, target.value, evidence, done=done, **fields)

    async def _emit(self, record: SettlementRecord, event: dict[str, Any]) -> None:
        if self.sink is not None:
            await self.sink(record, event)
            return
        for listener in list(self._listeners.get(record.settlement_id, ())):
            listener(event)

    async def _settle_spend(self, record: SettlementRecord) -> None:
        if record.state in ("confirmed",) and record.tx_hash:
            await self.store.commit(record.settlement_id, record.tx_hash)
        elif record.state != "confirmed":
            await self.store.release(record.settlement_id)

    def _mismatch_event(self, record: SettlementRecord, network: Network, tx_hash: str | None,
                        reason: str, differences: Mapping[str, Any] | None = None) -> dict[str, Any]:
        event: dict[str, Any] = {"chain_id": network.chain_id, "status": "mismatch", "confirmations": 0,
                                 "reason": reason}
        if tx_hash:
            event["tx_hash"] = tx_hash
        if differences:
            event["differences"] = dict(differences)
        if tx_hash:
            event["explorer_url"] = network.explorer_tx_url(tx_hash)
        return event

    async def _refuse(self, record: SettlementRecord, network: Network, tx_hash: str | None, reason: str,
                      differences: Mapping[str, Any] | None = None, *, follow: bool = False) -> SettlementRecord:
        """End as ``mismatch``; with ``follow``, ``tx_hash`` (sent from the user's account by the
        wallet) is bound to this settlement and followed until it ends."""
        fields: dict[str, Any] = {}
        if follow and tx_hash:
            fields = {"tx_hash": tx_hash}
            await self.store.bind_hash(record.settlement_id, tx_hash)
        return await self._advance(record, "mismatch", network, done=not follow,
                                   event=self._mismatch_event(record, network, tx_hash, reason, differences), **fields)

    async def _check_binding(self, record: SettlementRecord, tx: DecodedTx, network: Network) -> str | None:
        """Why ``tx`` cannot settle this approval (store-level checks), or None."""
        bound = await self.store.bind_hash(record.settlement_id, tx.tx_hash)
        if bound != record.settlement_id:
            return (f"transaction {tx.tx_hash} already settled another approval; one transaction settles "
                    "one approval")
        other = await self.store.nonce_settling(record.chain_id, record.owner, tx.nonce, record.settlement_id)
        if other is not None:
            return f"nonce {tx.nonce} already carries another approved transfer"
        return None

    async def _bind(
        self, record: SettlementRecord, prepared: PreparedTx, client: ChainClient, network: Network
    ) -> SettlementRecord:
        decision = record.decision
        if decision.get("tx_hash"):
            tx_hash = str(decision["tx_hash"]).lower()
            try:
                # The approval is bound to this hash: a node that has not seen it yet is waited for (a
                # wallet may broadcast elsewhere first), as long as an unmined transaction would be.
                tx = await fetch_transaction(client.w3, tx_hash, timeout=max(self.verify_timeout, self.track_timeout))
            except ChainError as exc:
                return await self._advance(
                    record, "dropped", network,
                    event={**self._submitted(tx_hash, network), "status": "dropped",
                           "reason": f"the wallet's transaction was never seen on the network ({exc.message})"},
                )
            return await self._accept(record, prepared, tx, network, broadcast=None)
        if decision.get("signed_tx"):
            raw = str(decision["signed_tx"])
        else:
            if self.signer is None:
                return await self._refuse(
                    record, network, None,
                    "no local signer is configured here: approve with the wallet's tx_hash or signed_tx")
            try:
                raw = "0x" + bytes(await self.signer.sign_transaction(prepared)).hex()
            except SignerError as exc:
                return await self._refuse(record, network, None, exc.message)
        try:
            tx = decode_signed_transaction(raw)
        except LunarkError as exc:
            return await self._refuse(record, network, None, exc.message)
        return await self._accept(record, prepared, tx, network, broadcast=raw)

    async def _accept(
        self, record: SettlementRecord, prepared: PreparedTx, tx: DecodedTx, network: Network, *,
        broadcast: str | None,
    ) -> SettlementRecord:
        """Check ``tx`` binds to the approval; then (signed bytes) write ahead and broadcast, or
        (a wallet's broadcast) follow it."""
        bound = await self.store.hash_settling(tx.tx_hash)
        if bound is not None and bound != record.settlement_id:
            return await self._refuse(record, network, tx.tx_hash, (
                f"Transaction {tx.tx_hash} already settled another approval; one transaction settles one approval."))
        try:
            check_transaction(prepared, tx, fee_factor=self.fee_factor, network=network)
        except IntentMismatch as exc:
            # A wallet that broadcast something else from the user's account moved funds all the same:
            # follow it, so the chat and the ledger show what happened. Signed bytes are never sent.
            mine = broadcast is None and tx.sender.lower() == record.owner
            return await self._refuse(record, network, tx.tx_hash, exc.message, exc.differences, follow=mine)
        client = self.clients.get(network)
        if broadcast is None and tx.nonce > (following := await client.pending_nonce(record.owner)):
            # Out already, but behind a gap (an earlier transaction it was prepared behind was never
            # sent): it would go out whenever a later transaction of the user's filled it. Not accepted;
            # followed, so that if it does go out the chat says so and the ledger counts it.
            gap = (f"its nonce {tx.nonce} is above your account's next nonce {following}, so it waits in the "
                   f"node's pool and goes out only when another transaction of yours uses nonce {following}")
            return await self._refuse(
                record, network, tx.tx_hash,
                f"Transaction {tx.tx_hash} was not accepted: {gap}. Cancel it in your wallet (replace nonce "
                f"{tx.nonce}), or it may go out later.",
                {"nonce": {"expected": following, "actual": tx.nonce, "text": gap}}, follow=True)
        why = await self._check_binding(record, tx, network)
        if why is not None:
            return await self._refuse(record, network, tx.tx_hash, f"Transaction {tx.tx_hash} was refused: {why}.")
        first_block = int(await client.w3.eth.block_number)
        if broadcast is None:
            await self.store.commit(record.settlement_id, tx.tx_hash)
            return await self._advance(
                record, "submitted", network, event=self._submitted(tx.tx_hash, network),
                tx_hash=tx.tx_hash, nonce=tx.nonce, first_block=max(first_block - 256, 0),
            )
        if _now() >= record.expires_at:
            return await self._advance(
                record, "expired", network,
                event={**self._submitted(tx.tx_hash, network), "status": "dropped",
                       "reason": "the approval expired before the transaction went out; it was not sent"},
            )
        return await self._advance(
            record, "broadcasting", network, tx_hash=tx.tx_hash, nonce=tx.nonce, raw_tx=broadcast,
            first_block=first_block,
        )

    def _submitted(self, tx_hash: str, network: Network) -> dict[str, Any]:
        return TxProgress(tx_hash=tx_hash, chain_id=network.chain_id, status=TxStatus.SUBMITTED,
                        explorer_url=network.explorer_tx_url(tx_hash)).to_dict()

    async def _broadcast(self, record: SettlementRecord, client: ChainClient, network: Network) -> SettlementRecord:
        assert record.raw_tx is not None and record.tx_hash is not None
        raw = HexBytes(record.raw_tx)
        tx_hash = "0x" + keccak(raw).hex()
        if not await _known(client, tx_hash):
            if _now() >= record.expires_at:
                # Written ahead but never sent (the process stopped in between), and too late now.
                return await self._advance(
                    record, "dropped", network,
                    event={**self._submitted(tx_hash, network), "status": "dropped",
                           "reason": "the server stopped before broadcasting and the approval has since expired; "
                                     "nothing was sent"},
                )
            try:
                await client.send_raw_transaction(raw)
            except ChainError as exc:
                if not await _known(client, tx_hash):
                    return await self._advance(
                        record, "dropped", network,
                        event={**self._submitted(tx_hash, network), "status": "dropped",
                               "reason": "the node refused the transaction: "
                                         f"{exc.details.get('node_message') or exc.message}"},
                    )
        await self.store.commit(record.settlement_id, tx_hash)
        return await self._advance(record, "submitted", network, event=self._submitted(tx_hash, network))

    async def _track(
        self, record: SettlementRecord, prepared: PreparedTx, client: ChainClient, network: Network
    ) -> SettlementRecord:
        assert record.tx_hash is not None and record.nonce is not None
        updates = track_transaction(
            client.w3, network, record.tx_hash, sender=record.owner, nonce=record.nonce, intent=prepared.intent,
            first_block=record.first_block, timeout=self.track_timeout, poll_interval=self.poll_interval,
        )
        async for update in updates:
            event = update.to_dict()
            if update.status is TxStatus.SUBMITTED and record.state == "submitted":
                continue  # the tracker starts with it; it was emitted when the transaction went out
            fields: dict[str, Any] = {}
            if update.tx_hash.lower() != record.tx_hash:
                await self.store.bind_hash(record.settlement_id, update.tx_hash)
                fields["tx_hash"] = update.tx_hash.lower()
            record = await self._advance(record, str(update.status), network, event=event, **fields)
            if record.final:
                break
        return record


async def _known(client: ChainClient, tx_hash: str) -> bool:
    try:
        await client.w3.eth.get_transaction(HexStr(tx_hash))
    except TransactionNotFound:
        return False
    return True


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
