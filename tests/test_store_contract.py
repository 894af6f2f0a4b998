"""The store contract: what every ``Store`` does, on SQLite (a real file) and on Postgres (a real
server, tests/services.py) alike: ordering, idempotency, atomicity, durability.

Every test here takes ``store`` or ``backend`` and so runs on both, so a behaviour cannot differ
between them. What is one database's own (its files, its schema table, migrating its old schemas)
is in tests/test_store.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from eth_utils.address import to_checksum_address

from lunark.audit import chain_problems
from lunark.chain.types import TransferIntent
from lunark.chain.validation import parse_amount
from lunark.errors import InvalidInput, LunarkError, NotFound, PolicyViolation
from lunark.store import ApprovalRecord, PostgresStore, SettlementRecord, SpendEntry, SqliteStore, Store
from lunark.tools.policy import SpendingPolicy, SpendLedger

ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TX1 = "0x" + "ab" * 32
TX2 = "0x" + "cd" * 32
DAY = date(2025, 1, 2)
NOW = datetime(2025, 1, 2, 12, tzinfo=UTC)


def entry(
    settlement_id: str, amount: str, *, address: str = ALICE, symbol: str = "ETH", decimals: int = 18, day: date = DAY,
    expires_at: datetime | None = None,
) -> SpendEntry:
    return SpendEntry(settlement_id=settlement_id, address=address, symbol=symbol, decimals=decimals,
                      amount=parse_amount(amount, decimals), day=day, expires_at=expires_at)


@dataclass
class Backend:
    """One database of one kind; ``open`` makes another store on it (a restart, or another process)."""

    name: str
    open: Callable[[], Awaitable[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        path = tmp_path / "data" / "lunark.db"
        return Backend("sqlite", lambda: SqliteStore.open(path))
    url = request.getfixturevalue("pg_url")
    return Backend("postgres", lambda: PostgresStore.open(url))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()



async def test_satisfies_store_and_spend_ledger(store: Store) -> None:
    as_store: Store = store
    ledger: SpendLedger = store
    assert isinstance(as_store, Store)
    policy = SpendingPolicy.build(daily_cap={"ETH": "1.5"})
    intent = TransferIntent(
        chain_id=31337, sender=to_checksum_address(ALICE), recipient=to_checksum_address(BOB), amount=10**18,
        symbol="ETH", decimals=18,
    )
    later = datetime.now(UTC) + timedelta(minutes=5)
    await policy.check(intent, ledger, settlement_id="apr_1/c1", expires_at=later)
    with pytest.raises(PolicyViolation) as caught:
        await policy.check(intent, ledger, settlement_id="apr_2/c1", expires_at=later)
    assert caught.value.rule == "daily_cap"
    assert caught.value.details["spent"] == "1"


async def test_chats_crud_and_ownership(store: Store) -> None:
    first = await store.create_chat(ALICE, 31337)
    assert re.fullmatch(r"chat_[0-9A-Za-z]{12}", first.chat_id)
    assert first.owner == ALICE.lower()
    assert first.created_at.tzinfo is not None and first.title is None
    second = await store.create_chat(ALICE.lower(), 1, chat_id="chat_mine", title="Rent")
    await store.create_chat(BOB, 31337)

    assert await store.get_chat(second.chat_id) == second
    assert await store.get_chat("chat_nobody") is None
    assert [c.chat_id for c in await store.list_chats(ALICE.upper().replace("0X", "0x"))] == [
        second.chat_id, first.chat_id,
    ]
    assert [c.chat_id for c in await store.list_chats(ALICE, limit=1)] == [second.chat_id]
    assert all(c.owner == BOB.lower() for c in await store.list_chats(BOB))
    assert await store.list_chats("0x" + "00" * 20) == []

    await store.set_chat_network(first.chat_id, 31338)
    await store.set_chat_title(first.chat_id, "Paying Bob")
    changed = await store.get_chat(first.chat_id)
    assert changed is not None
    assert (changed.chain_id, changed.title, changed.created_at) == (31338, "Paying Bob", first.created_at)

    with pytest.raises(InvalidInput):
        await store.create_chat(BOB, 1, chat_id="chat_mine")
    with pytest.raises(NotFound):
        await store.set_chat_title("chat_nobody", "x")
    with pytest.raises(NotFound):
        await store.set_chat_network("chat_nobody", 1)


async def test_messages_in_order_and_idempotent(store: Store) -> None:
    chat = await store.create_chat(ALICE, 31337)
    user, created = await store.add_message(chat.chat_id, "user", "send 1 ETH", client_message_id="c1")
    assert created and re.fullmatch(r"msg_[0-9A-Za-z]{12}", user.message_id)
    again, created_again = await store.add_message(chat.chat_id, "user", "other text", client_message_id="c1")
    assert (again, created_again) == (user, False)
    reply, _ = await store.add_message(
        chat.chat_id, "assistant", "Done.", message_id="msg_reply", finish_reason="stop"
    )
    # No client id: never deduplicated.
    await store.add_message(chat.chat_id, "user", "hi")
    await store.add_message(chat.chat_id, "user", "hi")
    # The same client id in another chat is another message.
    other = await store.create_chat(ALICE, 31337)
    _, created_elsewhere = await store.add_message(other.chat_id, "user", "x", client_message_id="c1")
    assert created_elsewhere

    listed = await store.list_messages(chat.chat_id)
    assert [m.content for m in listed] == ["send 1 ETH", "Done.", "hi", "hi"]
    assert listed[1] == reply and reply.finish_reason == "stop"

    with pytest.raises(InvalidInput):
        await store.add_message(chat.chat_id, "system", "x")
    with pytest.raises(InvalidInput):
        await store.add_message(chat.chat_id, "assistant", "x", message_id="msg_reply")
    with pytest.raises(NotFound):
        await store.add_message("chat_nobody", "user", "x")


async def test_concurrent_adds_with_one_client_id_make_one_message(store: Store) -> None:
    chat = await store.create_chat(ALICE, 31337)
    results = await asyncio.gather(
        *(store.add_message(chat.chat_id, "user", f"try {i}", client_message_id="same") for i in range(20))
    )
    assert sum(created for _, created in results) == 1
    assert len({record.message_id for record, _ in results}) == 1
    assert len(await store.list_messages(chat.chat_id)) == 1


async def test_seq_contiguous_under_concurrent_appends(store: Store) -> None:
    chat = await store.create_chat(ALICE, 31337)
    other = await store.create_chat(BOB, 31337)
    records = await asyncio.gather(
        *(store.append_event(chat.chat_id, "token", {"message_id": "m", "text": str(i)}) for i in range(50)),
        store.append_event(other.chat_id, "status", {"text": "thinking"}),
    )
    assert sorted(r.seq for r in records[:50]) == list(range(1, 51))
    assert records[50].seq == 1
    logged = await store.events_after(chat.chat_id, 0)
    assert [e.seq for e in logged] == list(range(1, 51))
    assert sorted(e.payload["text"] for e in logged) == sorted(str(i) for i in range(50))
    assert await store.last_seq(chat.chat_id) == 50
    assert await store.last_seq(other.chat_id) == 1


async def test_batches_are_numbered_in_order_and_stamped(store: Store) -> None:
    chat = await store.create_chat(ALICE, 31337)
    assert await store.last_seq(chat.chat_id) == 0
    assert await store.append_events(chat.chat_id, []) == []
    batch = await store.append_events(
        chat.chat_id,
        [("message_start", {"message_id": "m", "role": "assistant"}), ("token", {"message_id": "m", "text": "Hi"})],
    )
    assert [(r.seq, r.type) for r in batch] == [(1, "message_start"), (2, "token")]
    assert batch[1].payload == {
        "message_id": "m", "text": "Hi", "type": "token", "chat_id": chat.chat_id, "seq": 2, "ts": batch[1].ts,
    }
    assert await store.events_after(chat.chat_id, 0) == batch

    # A batch that cannot be stored leaves nothing behind and uses up no seq.
    with pytest.raises(InvalidInput):
        await store.append_events(chat.chat_id, [("status", {"text": "ok"}), ("status", {"bad": object()})])
    assert (await store.append_event(chat.chat_id, "status", {"text": "next"})).seq == 3
    with pytest.raises(NotFound):
        await store.append_event("chat_nobody", "status", {})


async def test_one_refused_append_does_not_sink_the_others_committed_with_it(store: Store) -> None:
    # Concurrent appends are committed together: one that cannot be stored is refused alone.
    chats = [await store.create_chat(ALICE, 31337) for _ in range(3)]
    asked = [
        store.append_events(chat.chat_id, [("token", {"message_id": "m", "text": f"{n}.{i}"}) for i in range(3)])
        for n in range(4) for chat in chats
    ]
    results = await asyncio.gather(
        *asked[:5],
        store.append_event("chat_nobody", "status", {"text": "lost"}),
        store.append_events(chats[0].chat_id, [("status", {"text": "ok"}), ("status", {"bad": object()})]),
        *asked[5:],
        return_exceptions=True,
    )
    assert isinstance(results[5], NotFound) and isinstance(results[6], InvalidInput)
    assert not [r for r in results[:5] + results[7:] if isinstance(r, BaseException)]
    for chat in chats:
        logged = await store.events_after(chat.chat_id, 0)
        # Numbered in the order they were asked for, none of the refused batch's events among them.
        assert [e.seq for e in logged] == list(range(1, 13))
        assert [e.payload["text"] for e in logged] == [f"{n}.{i}" for n in range(4) for i in range(3)]


async def test_the_log_keeps_any_text_exactly_as_the_wire_carries_it(
    backend: Backend, store: Store, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    texts = ["plain", 'a quote " and a \\ backslash', "emoji \U0001F600, 中文, é", "line\nbreak\ttab\u2028sep",
             "\x00nul\x1f", '{"json": [1, "x"]}', "'; DROP TABLE events; --"]
    chats = [await store.create_chat(ALICE, 31337) for _ in range(2)]
    records = await asyncio.gather(*(  # concurrent: committed together, in one batch
        store.append_events(chat.chat_id, [("token", {"message_id": "m", "text": t}), ("status", {"text": t})])
        for t in texts for chat in chats
    ))
    for chat in chats:
        logged = await store.events_after(chat.chat_id, 0)
        mine = sorted((r for batch in records for r in batch if r.chat_id == chat.chat_id), key=lambda r: r.seq)
        assert [e.seq for e in logged] == list(range(1, 2 * len(texts) + 1))
        assert [e.payload for e in logged] == [r.payload for r in mine]
        assert [e.payload["text"] for e in logged] == [t for t in texts for _ in range(2)]
    ids = [chat.chat_id for chat in chats]
    if backend.name == "sqlite":
        with contextlib.closing(sqlite3.connect(tmp_path / "data" / "lunark.db")) as db:
            stored = [row[0] for row in db.execute(
                "SELECT payload FROM events WHERE chat_id IN (?, ?) ORDER BY chat_id, seq", ids)]
    else:
        import psycopg

        with psycopg.connect(request.getfixturevalue("pg_url"), autocommit=True) as raw:
            stored = [row[0] for row in raw.execute(
                "SELECT payload FROM events WHERE chat_id = ANY(%s) ORDER BY chat_id, seq", (ids,))]
    assert [json.loads(text) for text in stored] == sorted(
        (r.payload for batch in records for r in batch), key=lambda p: (p["chat_id"], p["seq"]))
    assert all(text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False) for text in stored)
    # What the records carry for the senders is the logged text itself.
    assert sorted(str(r.text) for batch in records for r in batch) == sorted(stored)


async def test_close_finishes_the_appends_already_asked_for(backend: Backend) -> None:
    store = await backend.open()
    chat = await store.create_chat(ALICE, 31337)
    pending = [asyncio.ensure_future(store.append_event(chat.chat_id, "status", {"text": str(i)})) for i in range(20)]
    await asyncio.sleep(0)
    await store.close()
    assert [r.seq for r in await asyncio.gather(*pending)] == list(range(1, 21))
    with pytest.raises(LunarkError, match="closed"):
        await store.append_event(chat.chat_id, "status", {"text": "late"})
    reopened = await backend.open()
    assert await reopened.last_seq(chat.chat_id) == 20
    await reopened.close()


async def test_cancelled_append_leaves_the_log_consistent(store: Store) -> None:
    chat = await store.create_chat(ALICE, 31337)
    await store.append_event(chat.chat_id, "status", {"text": "a"})
    for _ in range(5):
        task = asyncio.create_task(store.append_event(chat.chat_id, "status", {"text": "maybe"}))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    last = await store.append_event(chat.chat_id, "status", {"text": "z"})
    seqs = [e.seq for e in await store.events_after(chat.chat_id, 0)]
    assert seqs == list(range(1, last.seq + 1))


async def test_two_stores_on_one_database_keep_seq_contiguous(backend: Backend) -> None:
    # Two connections to one file, or two processes' pools on one Postgres database.
    one, two = await backend.open(), await backend.open()
    try:
        chat = await one.create_chat(ALICE, 31337)
        await asyncio.gather(
            *(s.append_events(chat.chat_id, [("token", {"text": "a"}), ("token", {"text": "b"})])
              for _ in range(15) for s in (one, two))
        )
        assert [e.seq for e in await two.events_after(chat.chat_id, 0)] == list(range(1, 61))
        assert [e.seq for e in await one.events_after(chat.chat_id, 0)] == list(range(1, 61))
        assert await one.last_seq(chat.chat_id) == await two.last_seq(chat.chat_id) == 60
    finally:
        await one.close()
        await two.close()


async def test_events_after_returns_exactly_the_later_ones(store: Store) -> None:
    chat = await store.create_chat(ALICE, 31337)
    for i in range(10):
        await store.append_event(chat.chat_id, "token", {"message_id": "m", "text": str(i)})
    later = await store.events_after(chat.chat_id, 7)
    assert [(e.seq, e.payload["text"]) for e in later] == [(8, "7"), (9, "8"), (10, "9")]
    assert [e.seq for e in await store.events_after(chat.chat_id, 2, limit=3)] == [3, 4, 5]
    assert await store.events_after(chat.chat_id, 10) == []
    assert await store.events_after("chat_nobody", 0) == []


async def test_open_answers_are_one_per_chat_and_outlive_the_process(backend: Backend) -> None:
    """What the runner records while an answer is written (lunark.server.runner): a process that
    dies leaves it for whoever opens the store next (Runner.recover_answers)."""
    async with contextlib.AsyncExitStack() as stack:
        first = await backend.open()
        stack.push_async_callback(first.close)
        one = await first.create_chat(ALICE, 31337)
        two = await first.create_chat(ALICE, 31337)
        await first.open_answer(one.chat_id, "")  # the turn began, its answer not yet
        await first.open_answer(one.chat_id, "msg_1")  # replaces: one answer per chat
        await first.open_answer(two.chat_id, "msg_2", since_seq=7)
        await first.open_answer(two.chat_id, "msg_2", since_seq=9)
    async with contextlib.AsyncExitStack() as stack:
        second = await backend.open()
        stack.push_async_callback(second.close)
        found = sorted(await second.open_answers(), key=lambda a: a.message_id)
        assert [(a.chat_id, a.message_id, a.since_seq) for a in found] == [
            (one.chat_id, "msg_1", 0), (two.chat_id, "msg_2", 9)]
        assert [a.message_id for a in await second.open_answers(two.chat_id)] == ["msg_2"]
        await second.close_answer(one.chat_id)
        await second.close_answer(one.chat_id)  # closing twice is harmless
        assert [a.chat_id for a in await second.open_answers()] == [two.chat_id]
        assert await second.open_answers(one.chat_id) == []


async def test_everything_survives_close_and_reopen(backend: Backend) -> None:
    expires = datetime.now(UTC) + timedelta(hours=1)
    async with contextlib.AsyncExitStack() as stack:
        first = await backend.open()
        stack.push_async_callback(first.close)
        chat = await first.create_chat(ALICE, 31337, title="t")
        message, _ = await first.add_message(chat.chat_id, "user", "hello", client_message_id="c1")
        events = await first.append_events(chat.chat_id, [("status", {"text": "a"}), ("status", {"text": "b"})])
        tx = await first.record_tx_update(
            chat.chat_id, "call_1", {"tx_hash": TX1, "chain_id": 31337, "status": "submitted"}
        )
        await first.reserve(entry("apr_1/c1", "0.25"), None, now=NOW)
        await first.commit("apr_1/c1", TX1)
        await first.add_nonce("n1", expires)
        await first.add_session("h1", ALICE, expires)
    assert not await first.healthy()

    async with contextlib.AsyncExitStack() as stack:
        second = await backend.open()
        stack.push_async_callback(second.close)
        assert await second.get_chat(chat.chat_id) == chat
        assert await second.list_messages(chat.chat_id) == [message]
        assert await second.add_message(chat.chat_id, "user", "hello", client_message_id="c1") == (message, False)
        assert await second.events_after(chat.chat_id, 0) == events
        assert (await second.append_event(chat.chat_id, "status", {"text": "c"})).seq == 3
        assert await second.list_transactions(chat.chat_id) == [tx]
        assert await second.counted(ALICE, "ETH", 18, DAY, now=NOW) == 25 * 10**16
        assert await second.consume_nonce("n1", datetime.now(UTC))
        assert await second.get_session("h1", datetime.now(UTC)) == ALICE




async def test_tx_updates_build_a_history(store: Store) -> None:
    chat = await store.create_chat(ALICE, 31337)
    for status in ("submitted", "mined"):
        await store.record_tx_update(chat.chat_id, "call_1", {"tx_hash": TX1, "chain_id": 31337, "status": status})
    await store.record_tx_update(chat.chat_id, "call_2", {"tx_hash": TX2, "chain_id": 31337, "status": "submitted"})
    final = await store.record_tx_update(
        chat.chat_id, "call_1",
        {"tx_hash": TX1.upper().replace("0X", "0x"), "chain_id": 31337, "status": "confirmed",
         "confirmations": 2, "block_number": 7, "ts": 123.5},
    )
    assert (final.tx_hash, final.call_id, final.status) == (TX1, "call_1", "confirmed")
    assert [h["status"] for h in final.history] == ["submitted", "mined", "confirmed"]
    assert all(isinstance(h["ts"], float) for h in final.history)
    assert final.history[-1]["ts"] == 123.5 and final.history[-1]["block_number"] == 7
    listed = await store.list_transactions(chat.chat_id)
    assert [(t.tx_hash, t.status, len(t.history)) for t in listed] == [(TX1, "confirmed", 3), (TX2, "submitted", 1)]
    assert listed[0] == final
    assert await store.list_transactions("chat_nobody") == []

    with pytest.raises(InvalidInput):
        await store.record_tx_update(chat.chat_id, "call_3", {"tx_hash": TX2, "status": "mined"})
    with pytest.raises(NotFound):
        await store.record_tx_update("chat_nobody", "c", {"tx_hash": TX1, "chain_id": 1, "status": "submitted"})


async def test_spend_ledger_counts_per_address_symbol_and_day_in_base_units(store: Store) -> None:
    assert await store.counted(ALICE, "ETH", 18, DAY, now=NOW) == 0
    assert await store.reserve(entry("a/1", "0.1"), None, now=NOW) is None
    assert await store.reserve(entry("a/2", "0.2", address=ALICE.lower(), symbol="eth"), None, now=NOW) is None
    assert await store.reserve(entry("a/1", "0.1"), None, now=NOW) is None  # the same action again
    await store.reserve(entry("a/3", "500", symbol="TKN"), None, now=NOW)
    await store.reserve(entry("a/4", "7", address=BOB), None, now=NOW)
    await store.reserve(entry("a/5", "3", day=DAY + timedelta(days=1)), None, now=NOW)
    assert await store.counted(ALICE, "eth", 18, DAY, now=NOW) == 3 * 10**17
    assert await store.counted(ALICE, "TKN", 18, DAY, now=NOW) == 500 * 10**18
    assert await store.counted(BOB, "ETH", 18, DAY, now=NOW) == 7 * 10**18
    assert await store.counted(ALICE, "ETH", 18, DAY + timedelta(days=1), now=NOW) == 3 * 10**18
    # A cap refuses atomically, and says what was counted; released and lapsed entries stop counting.
    assert await store.reserve(entry("a/6", "0.8"), 10**18, now=NOW) == 3 * 10**17
    await store.release("a/2")
    assert await store.reserve(entry("a/6", "0.8"), 10**18, now=NOW) is None
    lapsing = entry("a/7", "1", day=DAY, expires_at=NOW + timedelta(seconds=1))
    assert await store.reserve(lapsing, None, now=NOW) is None
    later = NOW + timedelta(seconds=2)
    assert await store.counted(ALICE, "ETH", 18, DAY, now=later) == 9 * 10**17
    # Held at execution: taken again under the cap, then without expiry.
    assert await store.hold(lapsing, 10**18, now=later) == 9 * 10**17
    await store.release("a/6")
    assert await store.hold(lapsing, 2 * 10**18, now=later) is None
    assert await store.counted(ALICE, "ETH", 18, DAY, now=later + timedelta(days=1)) == 11 * 10**17
    # Mixed decimals of one symbol add up exactly, rounded up (a cap fails closed).
    await store.reserve(entry("a/8", "0.000001", symbol="TUSD", decimals=6), None, now=NOW)
    await store.reserve(entry("a/9", "0.0000015", symbol="TUSD", decimals=18), None, now=NOW)
    assert await store.counted(ALICE, "TUSD", 6, DAY, now=NOW) == 3


async def test_what_a_mismatched_transaction_moved_is_kept_apart_from_the_settlements_reservation(
    store: Store,
) -> None:
    # One key per approved action (its settlement_id): its reservation, and beside it what a wallet
    # sent instead, which its release gives nothing back of.
    await store.reserve(entry("apr_1/c1", "0.5"), None, now=NOW)
    moved = replace(entry("apr_1/c1", "0.25"), moved="native")
    assert await store.reserve(moved, None, now=NOW) is None
    await store.commit("apr_1/c1", TX1, moved="native")
    assert await store.counted(ALICE, "ETH", 18, DAY, now=NOW) == 75 * 10**16
    await store.release("apr_1/c1")
    assert await store.counted(ALICE, "ETH", 18, DAY, now=NOW) == 25 * 10**16
    assert await store.reserve(moved, None, now=NOW) is None  # committed stays committed
    assert await store.counted(ALICE, "ETH", 18, DAY, now=NOW) == 25 * 10**16


async def test_nonce_is_consumed_once(store: Store) -> None:
    now = datetime.now(UTC)
    await store.add_nonce("n1", now + timedelta(minutes=5))
    assert await store.consume_nonce("n1", now)
    assert not await store.consume_nonce("n1", now)
    assert not await store.consume_nonce("never-issued", now)

    await store.add_nonce("n2", now + timedelta(minutes=5))
    results = await asyncio.gather(*(store.consume_nonce("n2", now) for _ in range(10)))
    assert results.count(True) == 1

    await store.add_nonce("old", now + timedelta(minutes=5))
    assert not await store.consume_nonce("old", now + timedelta(minutes=6))
    with pytest.raises(InvalidInput):
        await store.add_nonce("n3", datetime(2030, 1, 1))  # no time zone


async def test_sessions_expire(store: Store) -> None:
    now = datetime.now(UTC)
    await store.add_session("hash1", ALICE, now + timedelta(hours=1))
    assert await store.get_session("hash1", now) == ALICE
    assert await store.get_session("hash1", now + timedelta(hours=1)) is None
    assert await store.get_session("unknown", now) is None
    with pytest.raises(InvalidInput):
        await store.add_session("hash1", BOB, now + timedelta(hours=1))


async def test_stored_sessions_tells_which_sessions_a_logout_ended(store: Store) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    for hashed, owner in (("h1", ALICE), ("h2", ALICE), ("h3", BOB)):
        await store.add_session(hashed, owner, later)
    assert await store.stored_sessions(["h1", "h2", "h3", "unknown"]) == {"h1", "h2", "h3"}
    assert await store.delete_session("h1") == ALICE
    assert await store.stored_sessions(["h1", "h2", "h3"]) == {"h2", "h3"}
    assert await store.delete_sessions(ALICE.lower()) == 1
    assert await store.stored_sessions(["h1", "h2", "h3"]) == {"h3"}
    assert await store.stored_sessions([]) == set()


async def test_health_and_close(backend: Backend) -> None:
    store = await backend.open()
    assert await store.healthy()
    await store.close()
    await store.close()
    assert not await store.healthy()


def approval(approval_id: str, chat_id: str, *, expires_at: datetime | None = None) -> ApprovalRecord:
    return ApprovalRecord(
        approval_id=approval_id, chat_id=chat_id, owner=ALICE, state="pending",
        request={"approval_id": approval_id, "action_requests": [{"call_id": "c1", "name": "transfer"}]},
        proposals=[{"call_id": "c1", "proposal": {"data": {"amount": "1"}}}],
        expires_at=expires_at or datetime.now(UTC) + timedelta(minutes=10), decisions=None, by=None,
    )


def settlement(settlement_id: str, *, chat_id: str = "chat_x", nonce: int | None = None) -> SettlementRecord:
    approval_id, call_id = settlement_id.split("/")
    return SettlementRecord(
        settlement_id=settlement_id, approval_id=approval_id, call_id=call_id, chat_id=chat_id, owner=ALICE,
        chain_id=31337, state="approved", prepared={"to": BOB, "value": "1"}, decision={"type": "approve"},
        expires_at=datetime.now(UTC) + timedelta(minutes=10), tx_hash=None, nonce=nonce, raw_tx=None,
        first_block=None, late=False, history=[{"state": "approved", "ts": 1.5}], updated_at=datetime.now(UTC),
    )


async def test_approvals_are_claimed_once_whoever_asks(backend: Backend) -> None:
    one, two = await backend.open(), await backend.open()  # two processes on one database
    try:
        chat = await one.create_chat(ALICE, 31337)
        record = approval("apr_1", chat.chat_id)
        await one.put_approval(record)
        await one.put_approval(replace(record, state="done"))  # again: no change
        stored = await two.get_approval("apr_1")
        assert stored == replace(record, owner=ALICE.lower())
        assert await two.get_approval("apr_nobody") is None

        decisions = [{"type": "approve"}]
        claims = await asyncio.gather(*(s.claim_approval("apr_1", decisions, "user") for _ in range(5)
                                        for s in (one, two)))
        won = [c for c in claims if c is not None]
        assert len(won) == 1 and won[0].state == "decided" and won[0].decisions == decisions and won[0].by == "user"
        assert await one.claim_approval("apr_nobody", decisions, "user") is None
        assert [a.approval_id for a in await two.approvals(["decided"])] == ["apr_1"]
        await two.finish_approval("apr_1")
        done = await one.get_approval("apr_1")
        assert done is not None and (done.state, done.decisions) == ("done", decisions)

        await one.put_approval(approval("apr_2", chat.chat_id))
        assert await one.claim_approval("apr_2", [{"type": "reject"}], "timeout") is not None
        await one.finish_approval("apr_2")
        await one.finish_approval("apr_2")  # only a decided one moves
        assert [a.state for a in await one.approvals(["expired", "done", "pending"])] == ["done", "expired"]
    finally:
        await one.close()
        await two.close()


async def test_due_approvals_come_soonest_first_a_page_at_a_time(store: Store) -> None:
    chat = await store.create_chat(ALICE, 31337)
    now = datetime.now(UTC)
    assert await store.next_expiry() is None and await store.due_approvals(now) == []
    for n, minutes in enumerate([-3, 5, -1, -2, -2]):  # two due at the same moment: ordered by id
        await store.put_approval(approval(f"apr_{n}", chat.chat_id, expires_at=now + timedelta(minutes=minutes)))
    assert await store.next_expiry() == now - timedelta(minutes=3)

    first = await store.due_approvals(now, limit=2)
    assert [a.approval_id for a in first] == ["apr_0", "apr_3"]
    rest = await store.due_approvals(now, limit=2, after=first[-1])
    assert [a.approval_id for a in rest] == ["apr_4", "apr_2"]
    assert await store.due_approvals(now, limit=2, after=rest[-1]) == []

    # Only pending ones are due, and the next expiry moves on when they are decided.
    for approval_id in ("apr_0", "apr_3", "apr_4"):
        await store.claim_approval(approval_id, [{"type": "reject"}], "timeout")
    assert [a.approval_id for a in await store.due_approvals(now)] == ["apr_2"]
    assert await store.next_expiry() == now - timedelta(minutes=1)
    assert [a.approval_id for a in await store.due_approvals(now + timedelta(minutes=6))] == ["apr_2", "apr_1"]


async def test_the_expiry_clock_works_a_backlog_off_a_page_at_a_time(store: Store) -> None:
    """After an outage, every approval is due at once; each expiry starts a turn, so the clock hands
    over a page per pass, going on after the last one, and the ones its runner leaves due (their
    chat busy) do not hold the rest back."""
    from lunark.server.expiry import ExpiryClock

    chat = await store.create_chat(ALICE, 31337)
    past = datetime.now(UTC) - timedelta(hours=1)
    for n in range(25):
        await store.put_approval(approval(f"apr_{n:02}", chat.chat_id, expires_at=past + timedelta(seconds=n)))
    handed: list[str] = []

    async def expire(record: ApprovalRecord) -> None:  # as the runner does, except for a busy chat
        handed.append(record.approval_id)
        if record.approval_id not in ("apr_00", "apr_01"):
            await store.claim_approval(record.approval_id, [{"type": "reject"}], "timeout")

    clock = ExpiryClock(store, expire, page=10)
    assert [await clock.expire_due() for _ in range(3)] == [10, 10, 5]
    assert handed == [f"apr_{n:02}" for n in range(25)], "each once, soonest first, a page per pass"
    handed.clear()
    assert await clock.expire_due() == 2 and handed == ["apr_00", "apr_01"]  # left due: looked at again
    assert await store.next_expiry() == past


async def test_settlements_are_written_once_and_final_states_stay(store: Store) -> None:
    first = await store.open_settlement(settlement("apr_1/c1", nonce=None))
    assert first.state == "approved" and not first.final and first.history == [{"state": "approved", "ts": 1.5}]
    again = await store.open_settlement(replace(settlement("apr_1/c1"), state="confirmed"))
    assert again == first  # written once: the stored one comes back
    assert await store.get_settlement("apr_9/c9") is None

    moved = await store.advance_settlement("apr_1/c1", "broadcasting", {"why": "signed"}, tx_hash=TX1, nonce=7,
                                           raw_tx="0x02", first_block=100)
    assert (moved.state, moved.tx_hash, moved.nonce, moved.raw_tx, moved.first_block) == (
        "broadcasting", TX1, 7, "0x02", 100)
    assert [h["state"] for h in moved.history] == ["approved", "broadcasting"] and moved.history[1]["why"] == "signed"
    done = await store.advance_settlement("apr_1/c1", "confirmed", {"block_number": 5})
    assert done.final and done.state == "confirmed"
    stays = await store.advance_settlement("apr_1/c1", "dropped", {})
    assert stays == done
    with pytest.raises(InvalidInput):
        await store.advance_settlement("apr_1/c1", "mined", {}, owner="0x0")
    with pytest.raises(NotFound):
        await store.advance_settlement("apr_9/c9", "mined", {})

    second = await store.open_settlement(settlement("apr_2/c1", chat_id="chat_y"))
    assert [s.settlement_id for s in await store.settlements()] == ["apr_1/c1", "apr_2/c1"]
    assert [s.settlement_id for s in await store.settlements(unfinished=True)] == [second.settlement_id]
    assert [s.settlement_id for s in await store.settlements(chat_id="chat_y")] == [second.settlement_id]


async def test_a_hash_and_a_nonce_settle_one_approval(store: Store) -> None:
    await store.open_settlement(settlement("apr_1/c1"))
    await store.open_settlement(settlement("apr_2/c1"))
    # Two settlements claim one hash at once (in any letter case): both are told the same winner.
    bound = await asyncio.gather(store.bind_hash("apr_1/c1", TX1), store.bind_hash("apr_2/c1", "0x" + TX1[2:].upper()))
    winner = bound[0]
    assert bound == [winner, winner] and winner in ("apr_1/c1", "apr_2/c1")
    assert await store.bind_hash(winner, TX1) == winner
    assert await store.hash_settling(TX1.upper().replace("0X", "0x")) == winner
    assert await store.hash_settling(TX2) is None

    await store.advance_settlement("apr_1/c1", "submitted", {}, tx_hash=TX1, nonce=3)
    # Each settlement binds a hash of its own for the same (owner, nonce): the second is bound, and
    # told which settlement holds the nonce; the nonce is not asked about for a hash bound elsewhere.
    mine, theirs = "0x" + "a1" * 32, "0x" + "b2" * 32
    assert await store.bind_transaction("apr_1/c1", mine, chain_id=31337, owner=ALICE, nonce=3) == ("apr_1/c1", None)
    assert await store.bind_transaction("apr_2/c1", theirs, chain_id=31337, owner=ALICE, nonce=3) == (
        "apr_2/c1", "apr_1/c1")
    assert await store.bind_transaction("apr_2/c1", mine, chain_id=31337, owner=ALICE, nonce=3) == ("apr_1/c1", None)
    assert await store.bind_transaction("apr_2/c1", theirs, chain_id=1, owner=ALICE, nonce=3) == ("apr_2/c1", None)
    await store.advance_settlement("apr_1/c1", "replaced", {})
    assert await store.bind_transaction("apr_2/c1", theirs, chain_id=31337, owner=ALICE.lower(), nonce=3) == (
        "apr_2/c1", None)


async def test_reservations_under_a_cap_are_atomic_across_stores(backend: Backend) -> None:
    one, two = await backend.open(), await backend.open()
    try:
        # Ten actions of 0.3 ETH asked at once through two processes against a 1 ETH daily cap.
        results = await asyncio.gather(*(
            s.reserve(entry(f"apr_{i}/c1", "0.3"), 10**18, now=NOW) for i in range(10) for s in ((one, two)[i % 2],)
        ))
        assert sum(result is None for result in results) == 3
        assert all(result is None or result == 9 * 10**17 for result in results)
        assert await two.counted(ALICE, "ETH", 18, DAY, now=NOW) == 9 * 10**17
    finally:
        await one.close()
        await two.close()


# contacts

CAROL = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


async def test_contacts_are_saved_listed_looked_up_and_deleted_per_owner(backend: Backend) -> None:
    store = await backend.open()
    try:
        saved = await store.put_contact(ALICE.upper().replace("0X", "0x"), "Bob", BOB.lower())
        assert (saved.owner, saved.label, saved.address) == (ALICE.lower(), "Bob", BOB)
        await store.put_contact(ALICE, "carol", CAROL)
        assert [(c.label, c.address) for c in await store.list_contacts(ALICE)] == [("Bob", BOB), ("carol", CAROL)]
        # A label is one contact whatever its case.
        found = await store.get_contact(ALICE.lower(), "BOB")
        assert found is not None and found.address == BOB and found.created_at == saved.created_at
        # Nobody else sees them, or can delete them.
        assert await store.list_contacts(BOB) == []
        assert await store.get_contact(BOB, "bob") is None
        assert await store.delete_contact(BOB, "bob") is False
    finally:
        await store.close()
    store = await backend.open()  # durable across a restart
    try:
        assert [c.label for c in await store.list_contacts(ALICE)] == ["Bob", "carol"]
        assert await store.delete_contact(ALICE, "bOb") is True
        assert await store.delete_contact(ALICE, "bob") is False
        assert [c.label for c in await store.list_contacts(ALICE)] == ["carol"]
    finally:
        await store.close()


async def test_putting_a_contact_again_repoints_the_label_or_renames_the_address(store: Store) -> None:
    first = await store.put_contact(ALICE, "bob", BOB)
    # The same label (another case) for another address: one contact, pointing at the new address.
    moved = await store.put_contact(ALICE, "BOB", CAROL)
    assert [(c.label, c.address) for c in await store.list_contacts(ALICE)] == [("BOB", CAROL)]
    assert moved.created_at >= first.created_at
    # The same address under a new label: renamed, still one contact, saved when it first was.
    renamed = await store.put_contact(ALICE, "carol", CAROL)
    assert [(c.label, c.address) for c in await store.list_contacts(ALICE)] == [("carol", CAROL)]
    assert renamed.created_at == moved.created_at
    assert await store.get_contact(ALICE, "bob") is None
    # Saving it again changes nothing; another owner may use the same label and address.
    await store.put_contact(ALICE, "carol", CAROL)
    await store.put_contact(BOB, "carol", CAROL)
    assert len(await store.list_contacts(ALICE)) == 1 and len(await store.list_contacts(BOB)) == 1


@pytest.mark.parametrize("label", ["", " ", "al ice", "alice.eth", "0xabc", "1alice", "a" * 33, "alíce"])
async def test_a_malformed_contact_label_is_refused(store: Store, label: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid contact label"):
        await store.put_contact(ALICE, label, BOB)
    assert await store.list_contacts(ALICE) == []


@pytest.mark.parametrize("address", ["0x1234", BOB.replace("C8", "c8"), "0x" + "0" * 40, "bob.eth"])
async def test_a_malformed_contact_address_is_refused(store: Store, address: str) -> None:
    with pytest.raises(InvalidInput):
        await store.put_contact(ALICE, "bob", address)
    assert await store.list_contacts(ALICE) == []


async def test_concurrent_saves_of_one_address_leave_one_contact(store: Store) -> None:
    await asyncio.gather(*(store.put_contact(ALICE, f"bob{i}", BOB) for i in range(8)))
    contacts = await store.list_contacts(ALICE)
    assert len(contacts) == 1 and contacts[0].address == BOB
    # Each save is one link of the owner's audit chain, unbroken, the last naming what was kept.
    records = [r.to_json() for r in await store.audit_records(ALICE)]
    assert len(records) == 8 and chain_problems(records) == []
    assert records[-1]["body"]["label"] == contacts[0].label


async def test_every_contact_change_is_a_record_of_the_owners_audit_chain(backend: Backend) -> None:
    store = await backend.open()
    try:
        await store.put_contact(ALICE, "bob", BOB)
        await store.put_contact(ALICE, "bob", BOB)  # nothing changes: nothing recorded
        await store.put_contact(ALICE, "Bob", CAROL)  # the label respelled and pointed elsewhere
        await store.put_contact(ALICE, "carol", CAROL)  # the address renamed
        assert await store.delete_contact(ALICE, "bob") is False  # nothing to delete: nothing recorded
        await store.put_contact(BOB, "alice", ALICE)  # another owner's chain
    finally:
        await store.close()
    store = await backend.open()  # durable, and the chain goes on after a restart
    try:
        assert await store.delete_contact(ALICE, "CAROL") is True
        records = await store.audit_records(ALICE)
        assert [(r.seq, r.kind, r.chat_id, r.approval_id, r.call_id, r.fingerprint) for r in records] == [
            (seq, "contact", None, None, None, None) for seq in range(1, 5)
        ]
        assert [r.body for r in records] == [
            {"action": "put", "label": "bob", "address": BOB},
            {"action": "put", "label": "Bob", "address": CAROL, "previous": [{"label": "bob", "address": BOB}]},
            {"action": "put", "label": "carol", "address": CAROL, "previous": [{"label": "Bob", "address": CAROL}]},
            {"action": "delete", "label": "carol", "address": CAROL},
        ]
        assert chain_problems([r.to_json() for r in records]) == []
        [theirs] = await store.audit_records(BOB)
        assert theirs.seq == 1 and theirs.body == {"action": "put", "label": "alice", "address": ALICE}
    finally:
        await store.close()
