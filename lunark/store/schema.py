"""The schema, by version: one numbering for both databases, DDL per database where types differ.

Version 1 is the chat side (chats, messages, the event log, transactions, sign-in), 2 the money path
(approvals, settlements, the hashes that settle them, the spend ledger in base units), 3 the index
the expiry clock pages by, 4 the audit trail, 5 the contacts (``lunark.contacts``), 6 the answers
being written (``Runner.recover_answers``), 7 contact changes in the audit trail, 8 the turn-job
queue of a cluster's workers (``lunark.server.jobs``; Postgres only: workers on SQLite are local). Column
types differ (text vs ``timestamptz``, ``jsonb``, ``boolean``, identity columns), so 1, 2 and 5 are
written per database, and so is 7 (SQLite cannot alter a check constraint: it copies the table);
what is the same is written once.

Postgres databases made before the numbering was shared carry their own numbers: its old 1 held
everything of SQLite's 2, its old 2 was 3. Lunark never writes a version below 3 on Postgres (it
migrates in one transaction to the newest), so a 1 or 2 found there is read in the old numbering.
"""

from __future__ import annotations

from lunark.errors import ConfigError
from lunark.store.dialect import Dialect

__all__ = ["SCHEMA_VERSION", "pending"]

SCHEMA_VERSION = 8
"""The schema this code writes; a database with a newer one is refused."""

LEGACY_POSTGRES = {1: 2, 2: 3}
"""Postgres versions written before the numbering was shared, and the shared version each is."""

_SQLITE: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS chats (
    chat_id    TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    chain_id   INTEGER NOT NULL,
    title      TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS chats_by_owner ON chats (owner, created_at);

CREATE TABLE IF NOT EXISTS messages (
    id                INTEGER PRIMARY KEY,
    message_id        TEXT NOT NULL UNIQUE,
    chat_id           TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    role              TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content           TEXT NOT NULL,
    client_message_id TEXT,
    finish_reason     TEXT,
    created_at        TEXT NOT NULL
);
-- NULLs are distinct in a UNIQUE index: only messages with a client id are deduplicated.
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id ON messages (chat_id, client_message_id);

CREATE TABLE IF NOT EXISTS events (
    chat_id TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL CHECK (seq > 0),
    type    TEXT NOT NULL,
    payload TEXT NOT NULL,
    ts      REAL NOT NULL,
    PRIMARY KEY (chat_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS transactions (
    id         INTEGER PRIMARY KEY,
    chat_id    TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    tx_hash    TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    chain_id   INTEGER NOT NULL,
    status     TEXT NOT NULL,
    history    TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (chat_id, tx_hash)
);

-- Whole-unit decimals, superseded by `ledger` (version 2) and no longer read.
CREATE TABLE IF NOT EXISTS spend (
    tx_hash TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    symbol  TEXT NOT NULL,
    day     TEXT NOT NULL,
    amount  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_by_day ON spend (address, symbol, day);

CREATE TABLE IF NOT EXISTS nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires_at);

CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
""",
    2: """
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    chat_id     TEXT NOT NULL,
    owner       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'decided', 'done', 'expired')),
    request     TEXT NOT NULL,
    proposals   TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    decisions   TEXT,
    by          TEXT,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_state ON approvals (state);

CREATE TABLE IF NOT EXISTS settlements (
    settlement_id TEXT PRIMARY KEY,
    approval_id   TEXT NOT NULL,
    call_id       TEXT NOT NULL,
    chat_id       TEXT NOT NULL,
    owner         TEXT NOT NULL,
    chain_id      INTEGER NOT NULL,
    state         TEXT NOT NULL,
    done          INTEGER NOT NULL DEFAULT 0,
    prepared      TEXT NOT NULL,
    decision      TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    tx_hash       TEXT,
    nonce         INTEGER,
    raw_tx        TEXT,
    first_block   INTEGER,
    late          INTEGER NOT NULL DEFAULT 0,
    history       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS settlements_by_chat ON settlements (chat_id, created_at);
CREATE INDEX IF NOT EXISTS settlements_unfinished ON settlements (done);
CREATE INDEX IF NOT EXISTS settlements_by_nonce ON settlements (chain_id, owner, nonce);

-- Every hash that ever carried a settlement (a speed-up adds one): a hash settles one approval.
CREATE TABLE IF NOT EXISTS settlement_hashes (
    tx_hash       TEXT PRIMARY KEY,
    settlement_id TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS ledger (
    entry_id   TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    decimals   INTEGER NOT NULL,
    amount     TEXT NOT NULL,
    day        TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released')),
    expires_at TEXT,
    tx_hash    TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_day ON ledger (address, symbol, day);
""",
    # contacts: a user's address book. label_key is the label lowercased: labels are unique per owner
    # whatever their case, and so are addresses (a new label for an address renames it).
    5: """
CREATE TABLE IF NOT EXISTS contacts (
    owner      TEXT NOT NULL,
    label_key  TEXT NOT NULL,
    label      TEXT NOT NULL,
    address    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (owner, label_key)
);
CREATE UNIQUE INDEX IF NOT EXISTS contacts_by_address ON contacts (owner, address);
""",
    # Contact changes in the audit trail: a fourth kind, which belongs to no chat or approval.
    7: """
CREATE TABLE audit_v7 (
    address     TEXT NOT NULL,
    seq         BIGINT NOT NULL CHECK (seq > 0),
    kind        TEXT NOT NULL CHECK (kind IN ('card', 'decision', 'outcome', 'contact')),
    at          TEXT NOT NULL,
    chat_id     TEXT,
    approval_id TEXT,
    call_id     TEXT,
    fingerprint TEXT,
    body        TEXT NOT NULL,
    prev        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (address, seq)
);
INSERT INTO audit_v7 (address, seq, kind, at, chat_id, approval_id, call_id, fingerprint, body, prev, hash)
    SELECT address, seq, kind, at, chat_id, approval_id, call_id, fingerprint, body, prev, hash FROM audit;
DROP TABLE audit;
ALTER TABLE audit_v7 RENAME TO audit;
""",
    # The turn-job queue is a cluster's (Postgres): local workers take their jobs over a socket.
    8: "SELECT 1;",
}

_POSTGRES: dict[int, str] = {
    # Each chat row carries its last_seq: appends from any process number themselves under its row lock.
    1: """
CREATE TABLE IF NOT EXISTS chats (
    id         BIGINT GENERATED ALWAYS AS IDENTITY,
    chat_id    TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    chain_id   BIGINT NOT NULL,
    title      TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    last_seq   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS chats_by_owner ON chats (owner, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS messages (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id        TEXT NOT NULL UNIQUE,
    chat_id           TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    role              TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content           TEXT NOT NULL,
    client_message_id TEXT,
    finish_reason     TEXT,
    created_at        TIMESTAMPTZ NOT NULL
);
-- NULLs are distinct in a UNIQUE index: only messages with a client id are deduplicated.
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_client_id ON messages (chat_id, client_message_id);

CREATE TABLE IF NOT EXISTS events (
    chat_id TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL CHECK (seq > 0),
    type    TEXT NOT NULL,
    payload TEXT NOT NULL,
    ts      DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (chat_id, seq)
);

CREATE TABLE IF NOT EXISTS transactions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chat_id    TEXT NOT NULL REFERENCES chats (chat_id) ON DELETE CASCADE,
    tx_hash    TEXT NOT NULL,
    call_id    TEXT NOT NULL,
    chain_id   BIGINT NOT NULL,
    status     TEXT NOT NULL,
    history    JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    UNIQUE (chat_id, tx_hash)
);

CREATE TABLE IF NOT EXISTS nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS nonces_by_expiry ON nonces (expires_at);

CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
""",
    2: """
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    chat_id     TEXT NOT NULL,
    owner       TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'decided', 'done', 'expired')),
    request     JSONB NOT NULL,
    proposals   JSONB NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    decisions   JSONB,
    "by"        TEXT,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_by_state ON approvals (state, expires_at);

CREATE TABLE IF NOT EXISTS settlements (
    id            BIGINT GENERATED ALWAYS AS IDENTITY,
    settlement_id TEXT PRIMARY KEY,
    approval_id   TEXT NOT NULL,
    call_id       TEXT NOT NULL,
    chat_id       TEXT NOT NULL,
    owner         TEXT NOT NULL,
    chain_id      BIGINT NOT NULL,
    state         TEXT NOT NULL,
    done          BOOLEAN NOT NULL DEFAULT FALSE,
    prepared      JSONB NOT NULL,
    decision      JSONB NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    tx_hash       TEXT,
    nonce         BIGINT,
    raw_tx        TEXT,
    first_block   BIGINT,
    late          BOOLEAN NOT NULL DEFAULT FALSE,
    history       JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS settlements_by_chat ON settlements (chat_id, created_at, id);
CREATE INDEX IF NOT EXISTS settlements_unfinished ON settlements (done) WHERE NOT done;
CREATE INDEX IF NOT EXISTS settlements_by_nonce ON settlements (chain_id, owner, nonce);

-- Every hash that ever carried a settlement (a speed-up adds one): a hash settles one approval.
CREATE TABLE IF NOT EXISTS settlement_hashes (
    tx_hash       TEXT PRIMARY KEY,
    settlement_id TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS ledger (
    entry_id   TEXT PRIMARY KEY,
    address    TEXT NOT NULL,
    symbol     TEXT NOT NULL,
    decimals   INTEGER NOT NULL,
    amount     NUMERIC(78, 0) NOT NULL,
    day        DATE NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('reserved', 'committed', 'released')),
    expires_at TIMESTAMPTZ,
    tx_hash    TEXT,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_day ON ledger (address, symbol, day);
""",
    # contacts: a user's address book. label_key is the label lowercased: labels are unique per owner
    # whatever their case, and so are addresses (a new label for an address renames it).
    5: """
CREATE TABLE IF NOT EXISTS contacts (
    owner      TEXT NOT NULL,
    label_key  TEXT NOT NULL,
    label      TEXT NOT NULL,
    address    TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (owner, label_key)
);
CREATE UNIQUE INDEX IF NOT EXISTS contacts_by_address ON contacts (owner, address);
""",
    # Contact changes in the audit trail: a fourth kind, which belongs to no chat or approval.
    7: """
ALTER TABLE audit DROP CONSTRAINT IF EXISTS audit_kind_check;
ALTER TABLE audit ADD CONSTRAINT audit_kind_check CHECK (kind IN ('card', 'decision', 'outcome', 'contact'));
ALTER TABLE audit ALTER COLUMN chat_id DROP NOT NULL, ALTER COLUMN approval_id DROP NOT NULL;
""",
    # The turn-job queue of a cluster's workers (lunark.server.jobs): a relay inserts a job, a worker
    # takes the oldest of a chat with no earlier one open (FOR UPDATE SKIP LOCKED) and writes its result.
    8: """
CREATE TABLE IF NOT EXISTS lunark_jobs (
    id         BIGSERIAL PRIMARY KEY,
    chat_id    TEXT,
    method     TEXT NOT NULL,
    args       JSONB NOT NULL,
    relay      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    done_at    TIMESTAMPTZ,
    result     JSONB
);
CREATE INDEX IF NOT EXISTS lunark_jobs_open ON lunark_jobs (chat_id, id) WHERE done_at IS NULL;
""",
}

_SHARED: dict[int, str] = {
    # Pending approvals by expiry, so that finding the due ones (and the next one due) reads only
    # those, however many wait (lunark.server.expiry).
    3: """
DROP INDEX IF EXISTS approvals_by_state;
CREATE INDEX IF NOT EXISTS approvals_by_expiry ON approvals (state, expires_at, approval_id);
""",
    # The audit trail (lunark.audit): each user's hash chain. Text throughout, body included, so a
    # record reads back exactly as it was hashed; no foreign key, so it outlives any chat.
    4: """
CREATE TABLE IF NOT EXISTS audit (
    address     TEXT NOT NULL,
    seq         BIGINT NOT NULL CHECK (seq > 0),
    kind        TEXT NOT NULL CHECK (kind IN ('card', 'decision', 'outcome')),
    at          TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    approval_id TEXT NOT NULL,
    call_id     TEXT,
    fingerprint TEXT,
    body        TEXT NOT NULL,
    prev        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    PRIMARY KEY (address, seq)
);
""",
    # Answers being written, one per chat, so that whoever takes a chat over after a crash closes
    # the one a dead process left open (lunark.server.runner, Runner.recover_answers).
    6: """
CREATE TABLE IF NOT EXISTS open_answers (
    chat_id    TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    since_seq  BIGINT NOT NULL
);
""",
}

_BY_DIALECT = {"sqlite": _SQLITE, "postgres": _POSTGRES}


def pending(dialect: Dialect, version: int, where: str) -> tuple[int, list[tuple[int, str]]]:
    """The shared version a database recording ``version`` is at, and the migrations (``(version it
    makes, DDL)``, in order) that bring it to ``SCHEMA_VERSION``. A newer database is refused:
    ``where`` names it in the message."""
    if dialect.name == "postgres":
        version = LEGACY_POSTGRES.get(version, version)
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"The database {where} has schema version {version}, newer than this Lunark's {SCHEMA_VERSION}; "
            "upgrade Lunark or use another database.",
            version=version,
        )
    ddl = {**_BY_DIALECT[dialect.name], **_SHARED}
    return version, [(target, ddl[target]) for target in sorted(ddl) if target > version]
