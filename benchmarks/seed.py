"""Set up a server's data directory before it starts: paused chats and long event logs.

Paused chats are made for real: the ``Agent`` is driven directly (not through the
socket path) with a ``ScriptedChatModel`` proposing a transfer, so each one ran
its model, prepared and simulated the transfer on Anvil and stopped at the
approval interrupt. To reach 10,000 quickly, the rest are copies of one of them
(its LangGraph checkpoints and event log, with the chat id and approval id made
unique), so the store holds 10,000 distinct paused runs. Only real ones are resumed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import string
from pathlib import Path
from typing import Any

from benchmarks.tokens import make_token
from lunark.ids import new_id

ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


APPROVAL_TTL_S = 86_400.0
"""Seeded approvals wait a day: a bench run must never see its 100,000 clones expire at once (they
share the template's expiry), which would measure an expiry storm instead of a resume."""


def settings_for(data_dir: Path, anvil_url: str, store_url: str | None = None) -> Any:
    from lunark.config import Settings

    return Settings.load(
        data_dir=data_dir,
        plugins=False,
        chain={"networks": [{"name": "anvil", "rpc_urls": [anvil_url]}], "track_timeout": 30, "verify_timeout": 10},
        server={"port": 0},
        approvals={"ttl_seconds": APPROVAL_TTL_S},
        **({"store": {"url": store_url}} if store_url else {}),
    )


async def seed_paused(
    data_dir: Path, anvil_url: str, real: int, total: int, *, store_url: str | None = None, concurrency: int = 8
) -> tuple[list[str], list[str]]:
    """``total`` chats of Alice waiting for approval of a transfer to Bob, in the SQLite files under
    ``data_dir`` or the Postgres database at ``store_url``: (the ``real`` ones' ids, the copies' ids)."""
    from langchain_core.messages import AIMessage

    from lunark.graph.agent import Agent
    from lunark.models.scripted import ScriptedChatModel
    from lunark.store.factory import open_store

    settings = settings_for(data_dir, anvil_url, store_url)
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (set-up, before anything is timed)
    store = await open_store(store_url, data_dir / "lunark.sqlite")
    proposal = AIMessage(
        content="",
        tool_calls=[{"name": "transfer", "args": {"to": BOB, "amount": "0.001"}, "id": "call_1", "type": "tool_call"}],
    )
    model = ScriptedChatModel(replies=[proposal] * real)
    ids: list[str] = []
    try:
        async with Agent.open(settings, model=model, environ={}, store=store) as agent:
            gate = asyncio.Semaphore(concurrency)

            async def one() -> None:
                async with gate:
                    chat = await store.create_chat(ALICE.lower(), 31337, title="send 0.001 ETH to Bob")
                    content = f"send 0.001 ETH to {BOB}"
                    await store.add_message(chat.chat_id, "user", content, client_message_id="seed")
                    events: list[tuple[str, dict[str, Any]]] = [
                        (
                            "message_start",
                            {
                                "type": "message_start",
                                "message_id": new_id("msg_"),
                                "role": "user",
                                "content": content,
                            },
                        )
                    ]
                    pending = None
                    async for event in agent.stream(chat.chat_id, content, user_address=ALICE, chain_id=31337):
                        events.append((event["type"], event))
                        if event["type"] == "pending_approval":
                            pending = event
                    assert pending is not None, f"no approval: {events[-3:]}"
                    await store.append_events(chat.chat_id, events)
                    ids.append(chat.chat_id)

            await asyncio.gather(*(one() for _ in range(real)))
    finally:
        await store.close()
    copies: list[str] = []
    if total > real:
        if store_url:
            copies = await asyncio.to_thread(clone_postgres, store_url, ids[0], total - real)
        else:
            copies = clone(data_dir, ids[0], total - real)
    return ids, copies


def _same_shape(id_: str) -> str:
    """A new random id with ``id_``'s prefix and length."""
    prefix = id_[: id_.index("_") + 1]
    return prefix + "".join(secrets.choice(string.digits + string.ascii_letters) for _ in id_[len(prefix):])


def clone(data_dir: Path, template: str, count: int) -> list[str]:
    """``count`` copies of the paused chat ``template``: new chat id and approval id, same everything
    else; returns their chat ids."""
    lunark_db = sqlite3.connect(data_dir / "lunark.sqlite")
    graph_db = sqlite3.connect(data_dir / "checkpoints.sqlite")
    try:
        chat = lunark_db.execute(
            "SELECT owner, chain_id, title, created_at FROM chats WHERE chat_id = ?", (template,)
        ).fetchone()
        messages = lunark_db.execute(
            "SELECT role, content, client_message_id, finish_reason, created_at FROM messages WHERE chat_id = ?",
            (template,),
        ).fetchall()
        events = lunark_db.execute(
            "SELECT seq, type, payload, ts FROM events WHERE chat_id = ?", (template,)
        ).fetchall()
        checkpoints = graph_db.execute(
            "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
            "FROM checkpoints WHERE thread_id = ?",
            (template,),
        ).fetchall()
        writes = graph_db.execute(
            "SELECT checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value "
            "FROM writes WHERE thread_id = ?",
            (template,),
        ).fetchall()
        approval = next(p for _, t, p, _ in events if t == "pending_approval")
        approval_id = json.loads(approval)["approval_id"]
        copies: list[str] = []
        approval_row = lunark_db.execute(
            "SELECT chat_id, owner, state, request, proposals, expires_at, decisions, by, updated_at "
            "FROM approvals WHERE approval_id = ?", (approval_id,),
        ).fetchone()
        old_t, old_a = template.encode(), approval_id.encode()
        lunark_db.execute("BEGIN")
        graph_db.execute("BEGIN")
        for _ in range(count):
            chat_id, new_a = _same_shape(template), _same_shape(approval_id)  # the blobs keep their lengths
            copies.append(chat_id)
            new_t, new_ab = chat_id.encode(), new_a.encode()

            def swap(blob: Any, new_t: bytes = new_t, new_ab: bytes = new_ab) -> Any:
                if isinstance(blob, bytes):
                    return blob.replace(old_t, new_t).replace(old_a, new_ab)
                if isinstance(blob, str):
                    return blob.replace(template, new_t.decode()).replace(approval_id, new_ab.decode())
                return blob

            lunark_db.execute(
                "INSERT INTO chats (chat_id, owner, chain_id, title, created_at) VALUES (?, ?, ?, ?, ?)",
                (chat_id, *chat),
            )
            lunark_db.executemany(
                "INSERT INTO messages (message_id, chat_id, role, content, client_message_id, finish_reason, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(new_id("msg_"), chat_id, *m) for m in messages],
            )
            lunark_db.executemany(
                "INSERT INTO events (chat_id, seq, type, payload, ts) VALUES (?, ?, ?, ?, ?)",
                [(chat_id, s, t, swap(p), ts) for s, t, p, ts in events],
            )
            lunark_db.execute(
                "INSERT INTO approvals (approval_id, chat_id, owner, state, request, proposals, expires_at, "
                "decisions, by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (new_a, *(swap(v) for v in approval_row)),
            )
            graph_db.executemany(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, "
                "checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (chat_id, ns, cid, parent, typ, swap(cp), swap(meta))
                    for ns, cid, parent, typ, cp, meta in checkpoints
                ],
            )
            graph_db.executemany(
                "INSERT INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, "
                "value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (chat_id, ns, cid, task, path, idx, ch, typ, swap(v))
                    for ns, cid, task, path, idx, ch, typ, v in writes
                ],
            )
        lunark_db.execute("COMMIT")
        graph_db.execute("COMMIT")
    finally:
        lunark_db.close()
        graph_db.close()
    return copies


async def seed_log(data_dir: Path, events: int, *, per_message: int = 500) -> tuple[str, int]:
    """One chat of Alice whose log holds ``events`` events (answers of ``per_message`` tokens)."""
    from lunark.store import SqliteStore

    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (set-up, before anything is timed)
    store = await SqliteStore.open(data_dir / "lunark.sqlite")
    try:
        chat = await store.create_chat(ALICE.lower(), 31337, title="a long chat")
        batch: list[tuple[str, dict[str, Any]]] = []
        written = 0
        index = 0
        while written + len(batch) < events:
            if index % per_message == 0:
                message_id = new_id("msg_")
                batch.append(
                    ("message_start", {"type": "message_start", "message_id": message_id, "role": "assistant"})
                )
            elif index % per_message == per_message - 1:
                batch.append(
                    (
                        "message_end",
                        {
                            "type": "message_end",
                            "message_id": message_id,
                            "finish_reason": "stop",
                            "usage": {"output_tokens": per_message - 2},
                        },
                    )
                )
            else:
                batch.append(("token", {"type": "token", "message_id": message_id, "text": make_token(index)}))
            index += 1
            if len(batch) == 1000:
                written += len(await store.append_events(chat.chat_id, batch))
                batch = []
        if batch:
            written += len(await store.append_events(chat.chat_id, batch))
        return chat.chat_id, await store.last_seq(chat.chat_id)
    finally:
        await store.close()


# Postgres: the store's tables and LangGraph's checkpoint tables, each keyed by the chat (thread) id.
_PG_TABLES = {
    "chats": "chat_id",
    "messages": "chat_id",
    "events": "chat_id",
    "approvals": "chat_id",
    "checkpoints": "thread_id",
    "checkpoint_blobs": "thread_id",
    "checkpoint_writes": "thread_id",
}
_PG_UNIQUE = {("messages", "message_id")}
"""Columns unique across chats that hold neither id: made unique per copy with a suffix."""


def clone_postgres(url: str, template: str, count: int) -> list[str]:
    """``clone`` in Postgres, in the database: one ``INSERT … SELECT`` per table over a table of new
    ids, every id replaced in text, JSON and binary columns alike (binary through hex, so the
    serialized checkpoints keep their lengths: the new ids have the old ones' shape)."""
    import psycopg

    with psycopg.connect(url, autocommit=False) as conn:
        approval_id = conn.execute("SELECT approval_id FROM approvals WHERE chat_id = %s", (template,)).fetchone()
        assert approval_id is not None, f"{template} has no approval"
        old_a = approval_id[0]
        conn.execute("CREATE TEMP TABLE copies (n INTEGER, chat_id TEXT, approval_id TEXT) ON COMMIT DROP")
        copies = [_same_shape(template) for _ in range(count)]
        with conn.cursor().copy("COPY copies (n, chat_id, approval_id) FROM STDIN") as copy:
            for n, chat_id in enumerate(copies):
                copy.write_row((n, chat_id, _same_shape(old_a)))
        old_t_hex, old_a_hex = template.encode().hex(), old_a.encode().hex()
        for table, key in _PG_TABLES.items():
            columns = conn.execute(
                "SELECT column_name, data_type, is_identity FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = current_schema() ORDER BY ordinal_position",
                (table,),
            ).fetchall()
            names, values = [], []
            for name, data_type, identity in columns:
                if identity == "YES":
                    continue
                column = f't."{name}"'
                if (table, name) in _PG_UNIQUE:
                    value = f"{column} || '-' || c.n"
                elif data_type in ("text", "character varying"):
                    value = f"replace(replace({column}, %(t)s, c.chat_id), %(a)s, c.approval_id)"
                elif data_type in ("jsonb", "json"):
                    value = (f"replace(replace({column}::text, %(t)s, c.chat_id), %(a)s, c.approval_id)"
                             f"::{data_type}")
                elif data_type == "bytea":
                    value = (f"decode(replace(replace(encode({column}, 'hex'), "
                             "%(th)s, encode(convert_to(c.chat_id, 'UTF8'), 'hex')), "
                             "%(ah)s, encode(convert_to(c.approval_id, 'UTF8'), 'hex')), 'hex')")
                else:
                    value = column
                names.append(f'"{name}"')
                values.append(value)
            conn.execute(
                f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(values)} "
                f"FROM {table} t CROSS JOIN copies c WHERE t.{key} = %(t)s",
                {"t": template, "a": old_a, "th": old_t_hex, "ah": old_a_hex},
            )
        conn.commit()
        conn.execute("ANALYZE")
    return copies
