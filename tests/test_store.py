"""Each database's own side of the store: its files, its schema table, and the schemas deployments
already have, opened by today's store with every record intact.

What every store does is the contract, tests/test_store_contract.py.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import store_legacy as legacy

import lunark.store
from lunark.errors import ConfigError
from lunark.store import SCHEMA_VERSION, ApprovalRecord, ChatRecord, PostgresStore, SpendEntry, SqliteStore, Store

ALICE = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
TX1 = "0x" + "ab" * 32
DAY = date(2025, 1, 2)
CREATED = datetime(2025, 1, 2, 12, tzinfo=UTC)
LATER = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
"""When the stored nonce, session and approval expire."""
_SETTLEMENT_COLUMNS = (
    "settlement_id, approval_id, call_id, chat_id, owner, chain_id, state, done, prepared, decision, expires_at, "
    "tx_hash, nonce, raw_tx, first_block, late, history, updated_at"
)


def test_public_names() -> None:
    assert sorted(lunark.store.__all__) == sorted(
        ["SCHEMA_VERSION", "ApprovalRecord", "ChatRecord", "ContactRecord", "EventRecord", "MessageRecord",
         "OpenAnswer", "PostgresStore", "Role",
         "SettlementRecord", "SpendEntry", "SqliteStore", "Store", "TransactionRecord", "advisory_key",
         "open_checkpointer", "open_store"]
    )


async def test_sqlite_schema_version_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "lunark.db"
    await (await SqliteStore.open(path)).close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(ConfigError):
        await SqliteStore.open(path)


async def test_memory_database(tmp_path: Path) -> None:
    async with await SqliteStore.open(":memory:") as store:
        chat = await store.create_chat(ALICE, 1)
        assert (await store.append_event(chat.chat_id, "status", {})).seq == 1
        assert await store.healthy()


async def test_postgres_schema_version_is_recorded_and_a_newer_one_refused(pg_url: str) -> None:
    async with await PostgresStore.open(pg_url), await PostgresStore.open(pg_url):  # twice: idempotent
        pass
    with psycopg.connect(pg_url, autocommit=True) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        raw.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(ConfigError, match="newer"):
        await PostgresStore.open(pg_url)
    with pytest.raises(ConfigError, match="Cannot connect"):
        await PostgresStore.open("postgresql://postgres@127.0.0.1:1/nothing", timeout=1)


# -- databases made by earlier stores --------------------------------------------------------------

def _chat_side(created: str, later: str) -> str:
    """Messages, the event log, a transaction, a nonce and a session of ``chat_old``, as both stores
    wrote them."""
    event = '{{"text":"{0}","type":"status","chat_id":"chat_old","seq":{1},"ts":1.5}}'
    history = '[{"status":"submitted","ts":1.0},{"status":"mined","ts":2.0}]'
    return f"""
INSERT INTO messages (message_id, chat_id, role, content, client_message_id, finish_reason, created_at)
    VALUES ('msg_1', 'chat_old', 'user', 'send 1 ETH', 'c1', NULL, '{created}'),
           ('msg_2', 'chat_old', 'assistant', 'Done.', NULL, 'stop', '{created}');
INSERT INTO events VALUES ('chat_old', 1, 'status', '{event.format("a", 1)}', 1.5),
                          ('chat_old', 2, 'status', '{event.format("b", 2)}', 1.5);
INSERT INTO transactions (chat_id, tx_hash, call_id, chain_id, status, history, updated_at)
    VALUES ('chat_old', '{TX1}', 'call_1', 31337, 'mined', '{history}', '{created}');
INSERT INTO nonces VALUES ('n1', '{later}');
INSERT INTO sessions VALUES ('h1', '{ALICE}', '{later}');
"""


def _money_side(created: str, later: str, false: str, amount: str) -> str:
    """A pending approval, a submitted settlement with its hash, a committed spend."""
    return f"""
INSERT INTO approvals VALUES ('apr_old', 'chat_old', '{ALICE}', 'pending', '{{"approval_id":"apr_old"}}',
    '[{{"call_id":"c1"}}]', '{later}', NULL, NULL, '{created}');
INSERT INTO settlements ({_SETTLEMENT_COLUMNS}, created_at) VALUES ('apr_1/c1', 'apr_1', 'c1',
    'chat_old', '{ALICE}', 31337, 'submitted', {false}, '{{"to":"0xb"}}', '{{"type":"approve"}}', '{later}', '{TX1}',
    3, NULL, 100, {false}, '[{{"state":"approved","ts":1.5}}]', '{created}', '{created}');
INSERT INTO settlement_hashes VALUES ('{TX1}', 'apr_1/c1');
INSERT INTO ledger VALUES ('apr_1/c1', '{ALICE}', 'ETH', 18, {amount}, '{DAY.isoformat()}', 'committed',
    NULL, '{TX1}', '{created}');
"""


def _sqlite_rows(version: int) -> str:
    """Rows as the SQLite store of that version wrote them (text times, integer booleans, text amounts)."""
    created, later = CREATED.isoformat(timespec="microseconds"), LATER.isoformat(timespec="microseconds")
    rows = f"INSERT INTO chats VALUES ('chat_old', '{ALICE}', 31337, 'Old', '{created}');" + _chat_side(created, later)
    return rows + (_money_side(created, later, "0", "'250000000000000000'") if version >= 2 else "")


def _postgres_rows() -> str:
    """Rows as the Postgres store of its versions 1 and 2 wrote them (the same tables at both)."""
    created, later = CREATED.isoformat(), LATER.isoformat()
    return (
        "INSERT INTO chats (chat_id, owner, chain_id, title, created_at, last_seq) "
        f"VALUES ('chat_old', '{ALICE}', 31337, 'Old', '{created}', 2);"
        + _chat_side(created, later) + _money_side(created, later, "FALSE", "250000000000000000")
    )


async def _everything_is_there(store: Store, *, money: bool) -> None:
    """What the earlier store kept reads back whole, and the store goes on from it."""
    now = datetime.now(UTC)
    assert await store.get_chat("chat_old") == ChatRecord(
        chat_id="chat_old", owner=ALICE, chain_id=31337, created_at=CREATED, title="Old")
    messages = await store.list_messages("chat_old")
    assert [(m.message_id, m.content, m.finish_reason, m.created_at) for m in messages] == [
        ("msg_1", "send 1 ETH", None, CREATED), ("msg_2", "Done.", "stop", CREATED)]
    assert await store.add_message("chat_old", "user", "again", client_message_id="c1") == (messages[0], False)
    logged = await store.events_after("chat_old", 0)
    assert [(e.seq, e.payload["text"]) for e in logged] == [(1, "a"), (2, "b")]
    assert await store.last_seq("chat_old") == 2
    assert (await store.append_event("chat_old", "status", {"text": "c"})).seq == 3
    (tx,) = await store.list_transactions("chat_old")
    assert (tx.tx_hash, tx.status, [h["status"] for h in tx.history]) == (TX1, "mined", ["submitted", "mined"])
    tx = await store.record_tx_update("chat_old", "call_1", {"tx_hash": TX1, "chain_id": 31337, "status": "confirmed"})
    assert [h["status"] for h in tx.history] == ["submitted", "mined", "confirmed"]
    assert await store.get_session("h1", now) == ALICE
    assert await store.consume_nonce("n1", now)
    if not money:
        return
    stored = await store.get_approval("apr_old")
    assert stored == ApprovalRecord(
        approval_id="apr_old", chat_id="chat_old", owner=ALICE, state="pending", request={"approval_id": "apr_old"},
        proposals=[{"call_id": "c1"}], expires_at=LATER, decisions=None, by=None)
    assert await store.next_expiry() == LATER
    assert [a.approval_id for a in await store.due_approvals(LATER)] == ["apr_old"]
    assert await store.claim_approval("apr_old", [{"type": "approve"}], "user") is not None
    settlement = await store.get_settlement("apr_1/c1")
    assert settlement is not None
    assert (settlement.state, settlement.tx_hash, settlement.nonce, settlement.first_block, settlement.done,
            settlement.late, settlement.history) == ("submitted", TX1, 3, 100, False, False,
                                                     [{"state": "approved", "ts": 1.5}])
    assert [s.settlement_id for s in await store.settlements(unfinished=True)] == ["apr_1/c1"]
    assert await store.hash_settling(TX1) == "apr_1/c1"
    assert (await store.advance_settlement("apr_1/c1", "confirmed", {"block_number": 5})).done
    assert await store.counted(ALICE, "ETH", 18, DAY, now=now) == 25 * 10**16
    assert await store.reserve(
        SpendEntry(settlement_id="apr_2/c1", address=ALICE, symbol="ETH", decimals=18, amount=10**18, day=DAY,
                   expires_at=LATER), 10**18, now=now) == 25 * 10**16


def _sqlite_schema(path: Path) -> list[tuple[str, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    return [(kind, name, table, " ".join((sql or "").split())) for kind, name, table, sql in rows]


@pytest.mark.parametrize("version", [1, 2, 3])
async def test_a_sqlite_database_of_an_earlier_store_opens_with_its_records(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.db"
    scripts = [legacy.SQLITE_V1, legacy.SQLITE_V2, legacy.SQLITE_V3][:version]
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.executescript("".join(scripts) + _sqlite_rows(version))
        raw.commit()
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(version,)]
    async with await SqliteStore.open(path) as store:
        await _everything_is_there(store, money=version >= 2)
    with contextlib.closing(sqlite3.connect(path)) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    # The migrated file has exactly the schema a new one gets.
    await (await SqliteStore.open(tmp_path / "new.db")).close()
    assert _sqlite_schema(path) == _sqlite_schema(tmp_path / "new.db")


def _postgres_schema(url: str) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(url, autocommit=True) as raw:
        return {
            "columns": raw.execute(
                "SELECT table_name, ordinal_position, column_name, data_type, is_nullable, column_default, "
                "is_identity, numeric_precision FROM information_schema.columns WHERE table_schema = 'public' "
                "ORDER BY 1, 2").fetchall(),
            "indexes": raw.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1").fetchall(),
            "constraints": raw.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2").fetchall(),
        }


@pytest.fixture
def another_pg_url(postgres: Any) -> Iterator[str]:
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.mark.parametrize("version", [1, 2])
async def test_a_postgres_database_of_an_earlier_store_opens_with_its_records(
    pg_url: str, another_pg_url: str, version: int
) -> None:
    # Postgres counted its versions on its own before: its 1 and 2 are the shared 2 and 3.
    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute(("".join([legacy.POSTGRES_V1, legacy.POSTGRES_V2][:version]) + _postgres_rows()).encode())
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(version,)]
    async with await PostgresStore.open(pg_url) as store:
        await _everything_is_there(store, money=True)
    async with await PostgresStore.open(pg_url):  # again: nothing left to migrate
        pass
    with psycopg.connect(pg_url, autocommit=True) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    await (await PostgresStore.open(another_pg_url)).close()
    assert _postgres_schema(pg_url) == _postgres_schema(another_pg_url)


def test_old_postgres_version_numbers_are_read_in_the_shared_numbering() -> None:
    from lunark.store.dialect import POSTGRES, SQLITE
    from lunark.store.schema import pending

    assert [version for version, _ in pending(POSTGRES, 2, "db")[1]] == [4, 5, 6, 7, 8]  # its old 2 is the shared 3
    assert pending(POSTGRES, 2, "db")[0] == 3
    assert [version for version, _ in pending(POSTGRES, 1, "db")[1]] == [3, 4, 5, 6, 7, 8]
    assert [version for version, _ in pending(POSTGRES, 0, "db")[1]] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert [version for version, _ in pending(SQLITE, 1, "db")[1]] == [2, 3, 4, 5, 6, 7, 8]
    with pytest.raises(ConfigError, match="newer"):
        pending(SQLITE, SCHEMA_VERSION + 1, "db")


def _v6_audit_record() -> dict[str, Any]:
    from lunark.audit import GENESIS, AuditRecord

    return AuditRecord.link(
        seq=1, prev=GENESIS, address=ALICE, kind="card", at="2026-12-07T03:00:00.000000Z", chat_id="chat_1",
        approval_id="apr_1", call_id="call_1", fingerprint="ab" * 32, body={"summary": "Send 1 ETH"},
    ).to_json()


async def _the_trail_goes_on(store: Store, card: dict[str, Any]) -> None:
    from lunark.audit import chain_problems

    await store.put_contact(ALICE, "bob", "0x70997970C51812dc3A010C7d01b50e0d17dc79C8")
    records = [r.to_json() for r in await store.audit_records(ALICE)]
    assert records[0] == card and [r["kind"] for r in records] == ["card", "contact"]
    assert records[1]["chat_id"] is None and chain_problems(records) == []


async def test_a_sqlite_trail_of_schema_6_takes_contact_records_and_keeps_its_own(tmp_path: Path) -> None:
    from lunark.store.dialect import SQLITE
    from lunark.store.schema import pending

    path, card = tmp_path / "v6.db", _v6_audit_record()
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.executescript("CREATE TABLE schema_version (version INTEGER NOT NULL);"
                          "INSERT INTO schema_version (version) VALUES (6);"
                          + "".join(ddl for version, ddl in pending(SQLITE, 0, "db")[1] if version <= 6))
        raw.execute("INSERT INTO audit VALUES (:address, :seq, :kind, :at, :chat_id, :approval_id, :call_id, "
                    ":fingerprint, :body, :prev, :hash)", {**card, "body": '{"summary":"Send 1 ETH"}'})
        raw.commit()
    async with await SqliteStore.open(path) as store:
        await _the_trail_goes_on(store, card)
    await (await SqliteStore.open(tmp_path / "new.db")).close()
    assert _sqlite_schema(path) == _sqlite_schema(tmp_path / "new.db")


async def test_a_postgres_trail_of_schema_6_takes_contact_records_and_keeps_its_own(
    pg_url: str, another_pg_url: str
) -> None:
    from lunark.store.dialect import POSTGRES
    from lunark.store.schema import pending

    card = _v6_audit_record()
    with psycopg.connect(pg_url, autocommit=True) as raw:
        raw.execute(("CREATE TABLE schema_version (version INTEGER NOT NULL);"
                     "INSERT INTO schema_version (version) VALUES (6);"
                     + "".join(ddl for version, ddl in pending(POSTGRES, 0, "db")[1] if version <= 6)).encode())
        raw.execute("INSERT INTO audit VALUES (%(address)s, %(seq)s, %(kind)s, %(at)s, %(chat_id)s, %(approval_id)s, "
                    "%(call_id)s, %(fingerprint)s, %(body)s, %(prev)s, %(hash)s)",
                    {**card, "body": '{"summary":"Send 1 ETH"}'})
    async with await PostgresStore.open(pg_url) as store:
        await _the_trail_goes_on(store, card)
    with psycopg.connect(pg_url, autocommit=True) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    await (await PostgresStore.open(another_pg_url)).close()
    assert _postgres_schema(pg_url) == _postgres_schema(another_pg_url)
