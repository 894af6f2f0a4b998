"""``Settlements``: the service that drives every settlement of a process to its final state.

It writes ahead (the record exists, ``approved`` with the decision, before anything is signed; the
signed bytes are stored, ``broadcasting``, before they are sent), holds each settlement's lease, and
stores each transition (checked against ``states.TRANSITIONS``) before emitting it as the chat's
``tx_update`` (durable before visible). What happens at each step is its modules' business: ``binding``,
``broadcast``, ``tracking``, the ``ledger`` and the ``outcome`` text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from web3.exceptions import Web3Exception

from lunark.chain.client import ChainClient, ChainClients
from lunark.chain.signer import Signer
from lunark.chain.types import PreparedTx, prepared_from_state
from lunark.errors import ChainError, LunarkError, RpcUnavailable
from lunark.ids import settlement_id
from lunark.networks import Network, NetworkRegistry
from lunark.protocol import tx_update
from lunark.settlement import binding, tracking
from lunark.settlement.binding import Refusal
from lunark.settlement.broadcast import broadcast
from lunark.settlement.ledger import SettlementLedger
from lunark.settlement.outcome import mismatch_event, submitted_event
from lunark.settlement.states import SettlementState, check_transition
from lunark.store.base import SettlementRecord, Store

__all__ = ["Lease", "Settlements", "settlement_id"]

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
        sink: Sink | None = None,
        lease: Lease | None = None,
    ) -> None:
        """``sink``: where every transition is published (the server: the chat's log and rooms);
        without one, a waiting ``settle`` call forwards the events to its caller instead (library
        use). ``lease``: with several server processes, each settlement is driven where its lease
        is held; other processes wait for its final state and take it over if its driver's process
        dies. Both may instead be given once, later, by ``connect``."""
        self.store = store
        self.ledger = SettlementLedger(store)
        self.clients = clients
        self.registry = registry
        self.signer = signer
        self.track_timeout = track_timeout
        self.verify_timeout = verify_timeout
        self.fee_factor = fee_factor
        self.poll_interval = poll_interval
        self._sink = sink
        self._lease = lease
        self._drivers: dict[str, asyncio.Task[SettlementRecord]] = {}
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._listeners: dict[str, list[Callable[[dict[str, Any]], None]]] = {}

    @property
    def sink(self) -> Sink | None:
        return self._sink

    @property
    def lease(self) -> Lease | None:
        return self._lease

    def connect(self, sink: Sink, *, lease: Lease | None = None) -> None:
        """Publish every transition to ``sink`` (and drive under ``lease``), for a service built
        before its publisher (the server builds the agent first). Once only, and before any
        settlement is driven: a driver started without them would publish nowhere but to its
        waiting caller and drive without the lease, so a late or second connection is refused."""
        if self._sink is not None or self._lease is not None:
            raise LunarkError("The settlement service is already connected to its publisher.")
        if self._drivers or self._followers:
            raise LunarkError("The settlement service must be connected before any settlement is driven.",
                              driving=sorted([*self._drivers, *self._followers]))
        self._sink, self._lease = sink, lease

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
            chat_id=chat_id, owner=intent.sender.lower(), chain_id=intent.chain_id,
            state=SettlementState.APPROVED.value,
            prepared=dict(prepared_state), decision=dict(decision), expires_at=expires_at, tx_hash=None,
            nonce=None, raw_tx=None, first_block=None, late=late,
            history=[{"state": SettlementState.APPROVED.value, "ts": round(_now().timestamp(), 3)}],
            updated_at=_now(), done=False,
        )
        return await self.store.open_settlement(record)

    async def settle(
        self, settlement_id: str, *, forward: Callable[[dict[str, Any]], None] | None = None,
        opened: SettlementRecord | None = None,
    ) -> SettlementRecord:
        """Wait for the settlement's final state, starting its driver if none runs.

        ``forward`` receives its ``tx_update`` events when no sink publishes them. ``opened``: the
        record ``open`` just returned, so a driver started here need not read it back (one process
        only: with a lease, the record is read once the lease is held). Cancelling the caller (an
        aborted turn) never stops the driver.
        """
        if forward is not None and self.sink is None:
            self._listeners.setdefault(settlement_id, []).append(forward)
        try:
            return await asyncio.shield(self._driver(settlement_id, opened))
        finally:
            if forward is not None and forward in self._listeners.get(settlement_id, []):
                self._listeners[settlement_id].remove(forward)
                if not self._listeners[settlement_id]:
                    del self._listeners[settlement_id]

    def start(self, settlement_id: str) -> None:
        """Drive a settlement in the background (its events go to the sink)."""
        self._driver(settlement_id)

    async def resume_all(self, *, owns: Callable[[str], bool] | None = None) -> int:
        """Start a driver for every settlement that is not final (after a restart), of the chats
        ``owns`` says are this process's (all by default); returns how many."""
        unfinished = [r for r in await self.store.settlements(unfinished=True) if owns is None or owns(r.chat_id)]
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

    def _driver(self, sid: str, opened: SettlementRecord | None = None) -> asyncio.Task[SettlementRecord]:
        task = self._drivers.get(sid)
        if task is None:
            task = asyncio.create_task(self._drive(sid, opened), name=f"lunark-settle-{sid}")
            self._drivers[sid] = task
            task.add_done_callback(lambda done: self._drivers.pop(sid, None) if self._drivers.get(sid) is done
                                   else None)
        return task

    async def _drive(self, sid: str, opened: SettlementRecord | None = None) -> SettlementRecord:
        if self.lease is None:
            return await self._drive_owned(sid, opened)
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

    async def _drive_owned(self, sid: str, opened: SettlementRecord | None = None) -> SettlementRecord:
        record = opened if opened is not None and opened.settlement_id == sid else await self.store.get_settlement(sid)
        if record is None:
            raise LunarkError(f"No settlement {sid!r}.", settlement_id=sid)
        prepared = prepared_from_state(record.prepared)
        network = self.registry.get(record.chain_id)
        client = self.clients.get(network)
        while not record.final:
            try:
                if record.state == SettlementState.APPROVED:
                    record = await self._bind(record, prepared, client, network)
                elif record.state == SettlementState.BROADCASTING:
                    record = await self._broadcast(record, client, network)
                else:
                    record = await tracking.track(
                        record, prepared, client, network, store=self.store, advance=self._advance,
                        timeout=self.track_timeout, poll_interval=self.poll_interval,
                    )
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
        reason = str((record.history[-1] if record.history else {}).get("reason") or "")
        while not record.done:
            try:
                record = await tracking.follow(
                    record, client, network, ledger=self.ledger, step=self._store_advance, emit=self._emit,
                    reason=reason, verify_timeout=self.verify_timeout, timeout=self.track_timeout,
                    poll_interval=self.poll_interval,
                )
            except ChainError as exc:  # the node no longer knows it: nothing moved
                record = await self._store_advance(
                    record, SettlementState.MISMATCH, {"onchain": "dropped", "reason": exc.message}, done=True)
            except (RpcUnavailable, OSError, TimeoutError, Web3Exception) as exc:
                logger.warning("settlement %s waits for the node: %s", record.settlement_id, exc)
                await asyncio.sleep(_RETRY_AFTER_RPC_ERROR)

    async def _advance(
        self, record: SettlementRecord, state: SettlementState, network: Network, *,
        event: Mapping[str, Any] | None = None, done: bool | None = None, **fields: Any,
    ) -> SettlementRecord:
        """Store the transition, then (durable before visible) emit it as a ``tx_update``."""
        evidence = {k: v for k, v in (event or {}).items() if k not in ("status",)}
        record = await self._store_advance(record, state, evidence, done=done, **fields)
        if event is not None:
            await self._emit(record, tx_update(record.call_id, event, late=record.late))
        if record.final:
            await self.ledger.closed(record)
        return record

    async def _store_advance(
        self, record: SettlementRecord, state: SettlementState, evidence: Mapping[str, Any], *,
        done: bool | None = None, **fields: Any,
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

    async def _refuse(self, record: SettlementRecord, network: Network, refused: Refusal) -> SettlementRecord:
        """End as ``mismatch``; with ``follow``, its transaction (sent from the user's account by the
        wallet) is bound to this settlement and followed until it ends."""
        fields: dict[str, Any] = {}
        if refused.follow and refused.tx_hash:
            fields = {"tx_hash": refused.tx_hash}
            await self.store.bind_hash(record.settlement_id, refused.tx_hash)
        return await self._advance(
            record, SettlementState.MISMATCH, network, done=not refused.follow,
            event=mismatch_event(network, refused.tx_hash, refused.reason, refused.differences), **fields)

    async def _bind(
        self, record: SettlementRecord, prepared: PreparedTx, client: ChainClient, network: Network
    ) -> SettlementRecord:
        """``approved``: bind the decision's transaction, then (signed bytes) write ahead for the
        broadcast, or (a wallet's broadcast) track it."""
        offered = await binding.offer(record, prepared, client, self.signer,
                                      wait=max(self.verify_timeout, self.track_timeout))
        if isinstance(offered, binding.Unseen):
            return await self._advance(
                record, SettlementState.DROPPED, network,
                event={**submitted_event(offered.tx_hash, network), "status": "dropped", "reason": offered.reason},
            )
        if isinstance(offered, binding.Refusal):
            return await self._refuse(record, network, offered)
        # Where a search for a transaction that takes the nonce starts: read while the checks run.
        block_read = asyncio.ensure_future(client.block_number())
        try:
            refused = await binding.refusal(self.store, client, record, prepared, offered, network,
                                            fee_factor=self.fee_factor)
        except BaseException:
            binding.let_go(block_read)
            raise
        if refused is not None:
            binding.let_go(block_read)
            return await self._refuse(record, network, refused)
        tx = offered.tx
        first_block = await block_read
        if offered.raw is None:
            await self.ledger.went_out(record.settlement_id, tx.tx_hash)
            return await self._advance(
                record, SettlementState.SUBMITTED, network, event=submitted_event(tx.tx_hash, network),
                tx_hash=tx.tx_hash, nonce=tx.nonce, first_block=max(first_block - 256, 0),
            )
        if _now() >= record.expires_at:
            return await self._advance(
                record, SettlementState.EXPIRED, network,
                event={**submitted_event(tx.tx_hash, network), "status": "dropped",
                       "reason": "the approval expired before the transaction went out; it was not sent"},
            )
        return await self._advance(
            record, SettlementState.BROADCASTING, network, tx_hash=tx.tx_hash, nonce=tx.nonce, raw_tx=offered.raw,
            first_block=first_block,
        )

    async def _broadcast(self, record: SettlementRecord, client: ChainClient, network: Network) -> SettlementRecord:
        tx_hash, dropped = await broadcast(client, record)
        if dropped is not None:
            return await self._advance(
                record, SettlementState.DROPPED, network,
                event={**submitted_event(tx_hash, network), "status": "dropped", "reason": dropped},
            )
        await self.ledger.went_out(record.settlement_id, tx_hash)
        return await self._advance(record, SettlementState.SUBMITTED, network, event=submitted_event(tx_hash, network))
