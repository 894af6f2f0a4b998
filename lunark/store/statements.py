"""Every statement of the store, written once, and the row mappers that read their results.

Parameters are named (``:chat_id``); the braces are dialect macros (``lunark.store.dialect``). A
mapper reads the columns its ``*_COLUMNS`` list names, in that order, with the dialect's decoders
(SQLite hands back text where Postgres hands back ``timestamptz`` and ``jsonb``).

The event log's appends are not here: each database numbers them its own way (group commit, in
``lunark.store.sqlite`` and ``lunark.store.postgres``).
"""

from __future__ import annotations

from typing import Any, cast

from lunark.store.dialect import Dialect
from lunark.store.records import (
    ApprovalRecord,
    ChatRecord,
    ContactRecord,
    MessageRecord,
    Role,
    SettlementRecord,
    TransactionRecord,
)

# chats

CHAT_COLUMNS = "chat_id, owner, chain_id, title, created_at"
INSERT_CHAT = f"INSERT INTO chats ({CHAT_COLUMNS}) VALUES (:chat_id, :owner, :chain_id, :title, :created_at)"
GET_CHAT = f"SELECT {CHAT_COLUMNS} FROM chats WHERE chat_id = :chat_id"
LIST_CHATS = (
    f"SELECT {CHAT_COLUMNS} FROM chats WHERE owner = :owner ORDER BY created_at DESC, {{rowid}} DESC LIMIT :limit"
)
SET_CHAT_NETWORK = "UPDATE chats SET chain_id = :value WHERE chat_id = :chat_id RETURNING chat_id"
SET_CHAT_TITLE = "UPDATE chats SET title = :value WHERE chat_id = :chat_id RETURNING chat_id"

# messages

MESSAGE_COLUMNS = "message_id, chat_id, role, content, client_message_id, finish_reason, created_at"
INSERT_MESSAGE = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) "
    "VALUES (:message_id, :chat_id, :role, :content, :client_message_id, :finish_reason, :created_at) "
    "ON CONFLICT (chat_id, client_message_id) DO NOTHING RETURNING id"
)
MESSAGE_BY_CLIENT_ID = (
    f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = :chat_id AND client_message_id = :client_message_id"
)
LIST_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = :chat_id ORDER BY id"

# the event log (read side)

EVENTS_AFTER = (
    "SELECT seq, type, payload, ts FROM events WHERE chat_id = :chat_id AND seq > :after ORDER BY seq LIMIT :limit"
)

# the audit trail (lunark.audit)

AUDIT_COLUMNS = "seq, address, kind, at, chat_id, approval_id, call_id, fingerprint, body, prev, hash"
AUDIT_HEAD = "SELECT seq, hash FROM audit WHERE address = :address ORDER BY seq DESC LIMIT 1"
INSERT_AUDIT = (
    f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (:seq, :address, :kind, :at, :chat_id, :approval_id, :call_id, "
    ":fingerprint, :body, :prev, :hash)"
)
AUDIT_RECORDS = (
    f"SELECT {AUDIT_COLUMNS} FROM audit WHERE address = :address AND seq > :after ORDER BY seq LIMIT :limit"
)

# transactions

TX_COLUMNS = "chat_id, call_id, tx_hash, chain_id, status, history, updated_at"
# One statement: the upsert appends to the stored history, so no read-modify-write.
RECORD_TX_UPDATE = (
    "INSERT INTO transactions (chat_id, tx_hash, call_id, chain_id, status, history, updated_at) "
    "VALUES (:chat_id, :tx_hash, :call_id, :chain_id, :status, {json_list:entry}, :now) "
    "ON CONFLICT (chat_id, tx_hash) DO UPDATE SET call_id = excluded.call_id, chain_id = excluded.chain_id, "
    "status = excluded.status, history = {json_push:transactions.history:entry}, updated_at = excluded.updated_at "
    f"RETURNING {TX_COLUMNS}"
)
LIST_TRANSACTIONS = f"SELECT {TX_COLUMNS} FROM transactions WHERE chat_id = :chat_id ORDER BY id"

# the spend ledger, in base units
#
# Its column ``entry_id`` holds the key of one entry: the approved action's ``settlement_id`` for the
# amount the approval reserved, ``{settlement_id}#sent:{asset}`` for what a mismatched transaction of
# that settlement moved instead (``ledger_key``). The column keeps its name from before settlements
# had records, so that no migration renames it.


def ledger_key(settlement_id: str, moved: str = "") -> str:
    """The ledger's ``entry_id`` for a settlement's amount, or for what it ``moved`` of an asset."""
    return f"{settlement_id}#sent:{moved}" if moved else settlement_id


COUNTED = (
    "SELECT amount, decimals FROM ledger WHERE address = :address AND symbol = :symbol AND day = :day "
    "AND entry_id <> :skip "
    "AND (state = 'committed' OR (state = 'reserved' AND (expires_at IS NULL OR expires_at > :now)))"
)
LEDGER_ENTRY = "SELECT state, expires_at FROM ledger WHERE entry_id = :key{for_update}"
INSERT_RESERVATION = (
    "INSERT INTO ledger (entry_id, address, symbol, decimals, amount, day, state, expires_at, updated_at) "
    "VALUES (:key, :address, :symbol, :decimals, :amount, :day, 'reserved', :expires_at, :now)"
)
RENEW_RESERVATION = (
    "UPDATE ledger SET state = 'reserved', expires_at = :expires_at, updated_at = :now WHERE entry_id = :key"
)
COMMIT_SPEND = (
    "UPDATE ledger SET state = 'committed', expires_at = NULL, tx_hash = :tx_hash, updated_at = :now "
    "WHERE entry_id = :key"
)
RELEASE_SPEND = "UPDATE ledger SET state = 'released', updated_at = :now WHERE entry_id = :key"

# approvals

APPROVAL_COLUMNS = 'approval_id, chat_id, owner, state, request, proposals, expires_at, decisions, "by"'
PUT_APPROVAL = (
    f"INSERT INTO approvals ({APPROVAL_COLUMNS}, updated_at) VALUES (:approval_id, :chat_id, :owner, :state, "
    "{json:request}, {json:proposals}, :expires_at, {json:decisions}, :by, :now) ON CONFLICT DO NOTHING "
    "RETURNING approval_id"
)
GET_APPROVAL = f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE approval_id = :approval_id"
CLAIM_APPROVAL = (
    "UPDATE approvals SET state = 'decided', decisions = {json:decisions}, \"by\" = :by, updated_at = :now "
    f"WHERE approval_id = :approval_id AND state = 'pending' RETURNING {APPROVAL_COLUMNS}"
)
FINISH_APPROVAL = (
    "UPDATE approvals SET state = CASE WHEN \"by\" = 'timeout' THEN 'expired' ELSE 'done' END, updated_at = :now "
    "WHERE approval_id = :approval_id AND state = 'decided'"
)
REOPEN_APPROVAL = (
    "UPDATE approvals SET state = 'pending', decisions = NULL, \"by\" = NULL, updated_at = :now "
    "WHERE approval_id = :approval_id AND state IN ('decided', 'done')"
)
APPROVALS_IN = (
    f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE state IN (SELECT value FROM {{json_each:states}}) "
    "ORDER BY updated_at"
)
_DUE = f"SELECT {APPROVAL_COLUMNS} FROM approvals WHERE state = 'pending' AND expires_at <= :now"
_DUE_ORDER = " ORDER BY expires_at, approval_id LIMIT :limit"
DUE_APPROVALS = _DUE + _DUE_ORDER
DUE_APPROVALS_AFTER = _DUE + " AND (expires_at, approval_id) > (:after_expires_at, :after_id)" + _DUE_ORDER
NEXT_EXPIRY = "SELECT min(expires_at) FROM approvals WHERE state = 'pending'"

# settlements

SETTLEMENT_COLUMNS = (
    "settlement_id, approval_id, call_id, chat_id, owner, chain_id, state, done, prepared, decision, expires_at, "
    "tx_hash, nonce, raw_tx, first_block, late, history, updated_at"
)
SETTLEMENT_FIELDS = frozenset({"tx_hash", "nonce", "raw_tx", "first_block"})
"""What ``advance_settlement`` may set besides the state."""
OPEN_SETTLEMENT = (
    f"INSERT INTO settlements ({SETTLEMENT_COLUMNS}, created_at) VALUES (:settlement_id, :approval_id, :call_id, "
    ":chat_id, :owner, :chain_id, :state, :done, {json:prepared}, {json:decision}, :expires_at, :tx_hash, :nonce, "
    ":raw_tx, :first_block, :late, {json:history}, :now, :now) ON CONFLICT DO NOTHING"
)
SETTLEMENTS = f"SELECT {SETTLEMENT_COLUMNS} FROM settlements"
GET_SETTLEMENT = f"{SETTLEMENTS} WHERE settlement_id = :settlement_id"
SETTLEMENTS_ORDER = " ORDER BY created_at, {rowid}"
UNFINISHED = "done = FALSE"
# `/*fields*/` becomes `, tx_hash = :tx_hash, ...` for the fields given (names from SETTLEMENT_FIELDS only).
ADVANCE_SETTLEMENT = (
    "UPDATE settlements SET state = :state, done = :done, history = {json_push:history:entry}, "
    f"updated_at = :now/*fields*/ WHERE settlement_id = :settlement_id AND {UNFINISHED} "
    f"RETURNING {SETTLEMENT_COLUMNS}"
)
BIND_HASH = (
    "INSERT INTO settlement_hashes (tx_hash, settlement_id) VALUES (:tx_hash, :settlement_id) "
    "ON CONFLICT (tx_hash) DO UPDATE SET tx_hash = excluded.tx_hash RETURNING settlement_id"
)
HASH_SETTLING = "SELECT settlement_id FROM settlement_hashes WHERE tx_hash = :tx_hash"
NONCE_SETTLING = (
    "SELECT settlement_id FROM settlements WHERE chain_id = :chain_id AND owner = :owner AND nonce = :nonce "
    "AND settlement_id <> :settlement_id "
    "AND state NOT IN ('mismatch', 'expired', 'dropped', 'replaced', 'failed') LIMIT 1"
)

# sign-in

ADD_NONCE = "INSERT INTO nonces (nonce, expires_at) VALUES (:nonce, :expires_at)"
# One DELETE both takes the nonce (so a second consume finds nothing) and sweeps expired ones, which
# unauthenticated nonce requests would otherwise pile up.
CONSUME_NONCE = "DELETE FROM nonces WHERE nonce = :nonce OR expires_at <= :now RETURNING nonce, expires_at"
ADD_SESSION = "INSERT INTO sessions (token_hash, address, expires_at) VALUES (:token_hash, :address, :expires_at)"
GET_SESSION = "SELECT address FROM sessions WHERE token_hash = :token_hash AND expires_at > :now"
DELETE_SESSION = "DELETE FROM sessions WHERE token_hash = :token_hash RETURNING address"
DELETE_SESSIONS = "DELETE FROM sessions WHERE lower(address) = :address RETURNING token_hash"
STORED_SESSIONS = "SELECT token_hash FROM sessions WHERE token_hash IN (SELECT value FROM {json_each:token_hashes})"

HEALTH = "SELECT 1"

# contacts (lunark.contacts)

# answers being written (Runner.recover_answers)

OPEN_ANSWER = (
    "INSERT INTO open_answers (chat_id, message_id, since_seq) VALUES (:chat_id, :message_id, :since_seq) "
    "ON CONFLICT (chat_id) DO UPDATE SET message_id = excluded.message_id, since_seq = excluded.since_seq"
)
CLOSE_ANSWER = "DELETE FROM open_answers WHERE chat_id = :chat_id"
OPEN_ANSWERS = "SELECT chat_id, message_id, since_seq FROM open_answers"
OPEN_ANSWERS_OF = OPEN_ANSWERS + " WHERE chat_id = :chat_id"

CONTACT_COLUMNS = "owner, label, address, created_at"
# An address has one label per owner: saving it under another renames it (the old row goes first).
UNLABEL_ADDRESS = (
    "DELETE FROM contacts WHERE owner = :owner AND address = :address AND label_key <> :label_key "
    "RETURNING created_at, label"
)
PUT_CONTACT = (
    "INSERT INTO contacts (owner, label_key, label, address, created_at) "
    "VALUES (:owner, :label_key, :label, :address, :created_at) "
    "ON CONFLICT (owner, label_key) DO UPDATE SET label = excluded.label, address = excluded.address, "
    "created_at = CASE WHEN contacts.address = excluded.address THEN contacts.created_at "
    "ELSE excluded.created_at END "
    f"RETURNING {CONTACT_COLUMNS}"
)
DELETE_CONTACT = "DELETE FROM contacts WHERE owner = :owner AND label_key = :label_key RETURNING label, address"
LIST_CONTACTS = f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE owner = :owner ORDER BY label_key"
GET_CONTACT = f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE owner = :owner AND label_key = :label_key"


# row mappers

def chat(d: Dialect, row: Any) -> ChatRecord:
    return ChatRecord(chat_id=row[0], owner=row[1], chain_id=row[2], title=row[3], created_at=d.time(row[4]))


def message(d: Dialect, row: Any) -> MessageRecord:
    return MessageRecord(
        message_id=row[0], chat_id=row[1], role=cast(Role, row[2]), content=row[3],
        client_message_id=row[4], finish_reason=row[5], created_at=d.time(row[6]),
    )


def transaction(d: Dialect, row: Any) -> TransactionRecord:
    return TransactionRecord(
        chat_id=row[0], call_id=row[1], tx_hash=row[2], chain_id=row[3], status=row[4],
        history=d.json(row[5]), updated_at=d.time(row[6]),
    )


def approval(d: Dialect, row: Any) -> ApprovalRecord:
    return ApprovalRecord(
        approval_id=row[0], chat_id=row[1], owner=row[2], state=row[3], request=d.json(row[4]),
        proposals=d.json(row[5]), expires_at=d.time(row[6]),
        decisions=None if row[7] is None else d.json(row[7]), by=row[8],
    )


def settlement(d: Dialect, row: Any) -> SettlementRecord:
    return SettlementRecord(
        settlement_id=row[0], approval_id=row[1], call_id=row[2], chat_id=row[3], owner=row[4], chain_id=row[5],
        state=row[6], prepared=d.json(row[8]), decision=d.json(row[9]), expires_at=d.time(row[10]),
        tx_hash=row[11], nonce=row[12], raw_tx=row[13], first_block=row[14], late=bool(row[15]),
        history=d.json(row[16]), updated_at=d.time(row[17]), done=bool(row[7]),
    )


def contact(d: Dialect, row: Any) -> ContactRecord:
    return ContactRecord(owner=row[0], label=row[1], address=row[2], created_at=d.time(row[3]))
