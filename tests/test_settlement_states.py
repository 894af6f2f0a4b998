"""The settlement's state table: every move a settlement makes is one the table allows, and any other
is refused before it is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lunark.chain.client import ChainClients
from lunark.errors import LunarkError
from lunark.networks import ANVIL_CHAIN_ID, NetworkRegistry
from lunark.settlement import TRANSITIONS, IllegalTransition, Settlements, SettlementState
from lunark.store import SettlementRecord, SqliteStore
from lunark.store.base import FINAL_STATES

S = SettlementState
ALICE = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


def test_the_table_walks_from_approved_to_every_state_and_ends_only_in_final_ones() -> None:
    assert set(TRANSITIONS) == set(S)
    seen, frontier = {S.APPROVED}, [S.APPROVED]
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    assert seen == set(S), "every state is reachable from approved"
    assert {s.value for s in S if s.is_final} == FINAL_STATES
    for state, following in TRANSITIONS.items():
        if state.is_final:
            # A final state moves nowhere; what the wallet sent instead of the approval is followed
            # as a mismatch, recording each of its steps.
            assert following <= {S.MISMATCH} and (not following or state is S.MISMATCH), state
        else:
            assert any(s.is_final for s in following) or following & {S.SUBMITTED}, state
    # Nothing goes back to before the decision, and nothing signed goes back to being unsent.
    assert not any(S.APPROVED in following for following in TRANSITIONS.values())
    assert not any(S.BROADCASTING in following for state, following in TRANSITIONS.items() if state != S.APPROVED)


@pytest.fixture
async def settlements(tmp_path: Path) -> AsyncIterator[Settlements]:
    store = await SqliteStore.open(tmp_path / "lunark.sqlite")
    registry = NetworkRegistry.default()
    clients = ChainClients(registry)
    try:
        yield Settlements(store, clients, registry)
    finally:
        await clients.close()
        await store.close()


async def open_one(settlements: Settlements) -> SettlementRecord:
    now = datetime.now(UTC)
    return await settlements.store.open_settlement(SettlementRecord(
        settlement_id="apr_1/c1", approval_id="apr_1", call_id="c1", chat_id="chat_1", owner=ALICE,
        chain_id=ANVIL_CHAIN_ID, state="approved", prepared={}, decision={"type": "approve"},
        expires_at=now + timedelta(minutes=10), tx_hash=None, nonce=None, raw_tx=None, first_block=None,
        late=False, history=[{"state": "approved", "ts": 1.5}], updated_at=now))


async def test_an_illegal_transition_is_refused_and_never_stored(settlements: Settlements) -> None:
    record = await open_one(settlements)
    network = settlements.registry.get(ANVIL_CHAIN_ID)
    with pytest.raises(IllegalTransition) as refused:
        await settlements._advance(record, S.CONFIRMED, network)
    assert refused.value.code == "internal"
    assert refused.value.to_dict()["message"] == "Settlement apr_1/c1 cannot move from approved to confirmed."
    stored = await settlements.store.get_settlement("apr_1/c1")
    assert stored is not None and (stored.state, stored.done) == ("approved", False)

    # A legal one is stored as the table's value, and the table holds from there.
    record = await settlements._advance(record, S.BROADCASTING, network, tx_hash="0x" + "ab" * 32, nonce=0)
    assert (record.state, type(record.state)) == ("broadcasting", str)
    with pytest.raises(IllegalTransition):
        await settlements._advance(record, S.MINED, network)
    stored = await settlements.store.get_settlement("apr_1/c1")
    assert stored is not None and stored.state == "broadcasting"


async def test_the_publisher_is_connected_once_and_before_any_settlement_is_driven(settlements: Settlements) -> None:
    async def sink(record: SettlementRecord, event: dict[str, Any]) -> None:
        pass

    settlements.connect(sink)
    assert settlements.sink is sink and settlements.lease is None
    with pytest.raises(LunarkError, match="already connected") as twice:
        settlements.connect(sink)
    assert twice.value.code == "internal"

    late = Settlements(settlements.store, settlements.clients, settlements.registry)
    record = await open_one(late)
    late.start(record.settlement_id)
    try:
        with pytest.raises(LunarkError, match="before any settlement is driven"):
            late.connect(sink)
        assert late.sink is None
    finally:
        await late.aclose()
