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
import secrets
import sqlite3
import string
from pathlib import Path
from typing import Any

from benchmarks.tokens import make_token
from lunark.ids import new_id

ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def settings_for(data_dir: Path, anvil_url: str) -> Any:
    from lunark.config import Settings

    return Settings.load(
        data_dir=data_dir,
        plugins=False,
        chain={"networks": [{"name": "anvil", "rpc_urls": [anvil_url]}], "track_timeout": 30, "verify_timeout": 10},
        server={"port": 0},
    )


async def seed_paused(data_dir: Path, anvil_url: str, real: int, total: int, *, concurrency: int = 8) -> list[str]:
    """``total`` chats of Alice waiting for approval of a transfer to Bob; returns the ``real`` ones' ids."""
    from langchain_core.messages import AIMessage

    from lunark.graph.agent import Agent
    from lunark.models.scripted import ScriptedChatModel
    from lunark.store.sqlite import SqliteStore

    settings = settings_for(data_dir, anvil_url)
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (set-up, before anything is timed)
    store = await SqliteStore.open(data_dir / "lunark.sqlite")
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
    if total > real:
        clone(data_dir, ids[0], total - real)
    return ids


def _same_shape(id_: str) -> str:
    """A new random id with ``id_``'s prefix and length."""
    prefix = id_[: id_.index("_") + 1]
    return prefix + "".join(secrets.choice(string.digits + string.ascii_letters) for _ in id_[len(prefix):])


def clone(data_dir: Path, template: str, count: int) -> None:
    """``count`` copies of the paused chat ``template``: new chat id and approval id, same everything else."""
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
        import json

        approval_id = json.loads(approval)["approval_id"]
        old_t, old_a = template.encode(), approval_id.encode()
        lunark_db.execute("BEGIN")
        graph_db.execute("BEGIN")
        for _ in range(count):
            chat_id, new_a = _same_shape(template), _same_shape(approval_id)  # the blobs keep their lengths
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


async def seed_log(data_dir: Path, events: int, *, per_message: int = 500) -> tuple[str, int]:
    """One chat of Alice whose log holds ``events`` events (answers of ``per_message`` tokens)."""
    from lunark.store.sqlite import SqliteStore

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
