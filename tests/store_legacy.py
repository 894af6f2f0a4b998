"""The schemas the stores made before one numbering was shared by both databases (issue 20), kept
verbatim so that tests can make databases exactly as deployments have them and open them with
today's stores. Do not edit: these are history.
"""

SQLITE_V1 = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM schema_version);

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
"""
"""What the SQLite store made at version 1 (its start-up script, run on every open)."""

SQLITE_V2 = """
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
UPDATE schema_version SET version = 2;
"""

SQLITE_V3 = """
DROP INDEX IF EXISTS approvals_by_state;
CREATE INDEX IF NOT EXISTS approvals_by_expiry ON approvals (state, expires_at, approval_id);
UPDATE schema_version SET version = 3;
"""

POSTGRES_V1 = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);

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
INSERT INTO schema_version (version) VALUES (1);
"""
"""What the Postgres store made at its version 1 (everything of SQLite's version 2, plus last_seq)."""

POSTGRES_V2 = """
DROP INDEX IF EXISTS approvals_by_state;
CREATE INDEX IF NOT EXISTS approvals_by_expiry ON approvals (state, expires_at, approval_id);
UPDATE schema_version SET version = 2;
"""
