"""What a chat holds: the chat, its messages, its numbered event log (read here, appended by the
backend), its transactions, and the answers being written in it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from lunark.errors import InvalidInput, NotFound
from lunark.ids import new_id
from lunark.store import statements as q
from lunark.store.dialect import Conflict, dumps, refused
from lunark.store.eventlog import appended
from lunark.store.operations import Operation, Query
from lunark.store.records import ChatRecord, EventRecord, MessageRecord, OpenAnswer, Role, TransactionRecord
from lunark.store.sql._core import SqlCore

__all__ = ["ChatsSql"]


class ChatsSql(SqlCore):
    """Chats, their messages, event log, transactions and the answers being written."""

    async def create_chat(
        self, owner: str, chain_id: int, *, chat_id: str | None = None, title: str | None = None
    ) -> ChatRecord:
        record = ChatRecord(
            chat_id=chat_id or new_id("chat_"), owner=owner.lower(), chain_id=chain_id,
            created_at=datetime.now(UTC), title=title,
        )
        try:
            await self._fetch(q.INSERT_CHAT, {
                "chat_id": record.chat_id, "owner": record.owner, "chain_id": chain_id, "title": title,
                "created_at": self.dialect.when(record.created_at),
            })
        except Conflict as exc:
            raise InvalidInput(f"A chat {record.chat_id!r} already exists.", chat_id=record.chat_id) from exc
        return record

    async def get_chat(self, chat_id: str) -> ChatRecord | None:
        rows = await self._fetch(q.GET_CHAT, {"chat_id": chat_id})
        return q.chat(self.dialect, rows[0]) if rows else None

    async def list_chats(self, owner: str, *, limit: int = 100) -> list[ChatRecord]:
        rows = await self._fetch(q.LIST_CHATS, {"owner": owner.lower(), "limit": limit})
        return [q.chat(self.dialect, row) for row in rows]

    async def _update_chat(self, sql: str, chat_id: str, value: Any) -> None:
        if not await self._fetch(sql, {"chat_id": chat_id, "value": value}):
            raise NotFound(f"No chat {chat_id!r}.", chat_id=chat_id)

    async def set_chat_network(self, chat_id: str, chain_id: int) -> None:
        await self._update_chat(q.SET_CHAT_NETWORK, chat_id, chain_id)

    async def set_chat_title(self, chat_id: str, title: str) -> None:
        await self._update_chat(q.SET_CHAT_TITLE, chat_id, title)

    # messages

    async def add_message(
        self,
        chat_id: str,
        role: str,
        content: str,
        *,
        message_id: str | None = None,
        client_message_id: str | None = None,
        finish_reason: str | None = None,
    ) -> tuple[MessageRecord, bool]:
        if role not in ("user", "assistant"):
            raise InvalidInput(f"A message's role is 'user' or 'assistant', not {role!r}.", role=role)
        record = MessageRecord(
            message_id=message_id or new_id("msg_"), chat_id=chat_id, role=cast(Role, role),
            content=content, client_message_id=client_message_id, finish_reason=finish_reason,
            created_at=datetime.now(UTC),
        )
        params = {
            "message_id": record.message_id, "chat_id": chat_id, "role": role, "content": content,
            "client_message_id": client_message_id, "finish_reason": finish_reason,
            "created_at": self.dialect.when(record.created_at),
        }

        def insert() -> Operation[tuple[MessageRecord, bool]]:
            try:
                inserted = yield Query(q.INSERT_MESSAGE, params)
            except Conflict as exc:
                raise refused(exc, chat_id) from exc
            if inserted:
                return record, True
            # The unique index refused a second copy (a concurrent one waited for the first's commit).
            rows = yield Query(q.MESSAGE_BY_CLIENT_ID, {"chat_id": chat_id, "client_message_id": client_message_id})
            return q.message(self.dialect, rows[0]), False

        return await self._perform(insert())

    async def list_messages(self, chat_id: str) -> list[MessageRecord]:
        rows = await self._fetch(q.LIST_MESSAGES, {"chat_id": chat_id})
        return [q.message(self.dialect, row) for row in rows]

    # the event log

    async def append_events(
        self, chat_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> list[EventRecord]:
        """Number and log ``events``. Appends are group-committed in the order they were asked for:
        the ones that arrive while a batch commits go together in the next transaction, so the log
        costs one commit per batch, not per event."""
        return await appended(self.append_events_soon, chat_id, events)

    async def append_event(self, chat_id: str, type: str, payload: dict[str, Any]) -> EventRecord:
        return (await self.append_events(chat_id, [(type, payload)]))[0]

    async def events_after(
        self, chat_id: str, after_seq: int, *, limit: int | None = None
    ) -> list[EventRecord]:
        rows = await self._fetch(q.EVENTS_AFTER, {
            "chat_id": chat_id, "after": after_seq, "limit": self.dialect.no_limit if limit is None else limit,
        })
        return [
            EventRecord(chat_id=chat_id, seq=row[0], type=row[1], payload=json.loads(row[2]), ts=row[3])
            for row in rows
        ]

    async def last_seq(self, chat_id: str) -> int:
        rows = await self._fetch(self.LAST_SEQ, {"chat_id": chat_id})
        return int(rows[0][0]) if rows else 0

    # transactions

    async def record_tx_update(
        self, chat_id: str, call_id: str, update: Mapping[str, Any]
    ) -> TransactionRecord:
        try:
            tx_hash = str(update["tx_hash"]).lower()
            chain_id = int(update["chain_id"])
            status = str(update["status"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"A transaction update needs tx_hash, chain_id and status ({exc!r}).") from exc
        entry = dumps({**update, "ts": update.get("ts", time.time())})
        try:
            rows = await self._fetch(q.RECORD_TX_UPDATE, {
                "chat_id": chat_id, "tx_hash": tx_hash, "call_id": call_id, "chain_id": chain_id,
                "status": status, "entry": entry, "now": self.dialect.now(),
            })
        except Conflict as exc:
            raise refused(exc, chat_id) from exc
        return q.transaction(self.dialect, rows[0])

    async def list_transactions(self, chat_id: str) -> list[TransactionRecord]:
        rows = await self._fetch(q.LIST_TRANSACTIONS, {"chat_id": chat_id})
        return [q.transaction(self.dialect, row) for row in rows]

    # answers being written (Runner.recover_answers)

    async def open_answer(self, chat_id: str, message_id: str, *, since_seq: int = 0) -> None:
        await self._fetch(q.OPEN_ANSWER, {"chat_id": chat_id, "message_id": message_id, "since_seq": since_seq})

    async def close_answer(self, chat_id: str) -> None:
        await self._fetch(q.CLOSE_ANSWER, {"chat_id": chat_id})

    async def open_answers(self, chat_id: str | None = None) -> list[OpenAnswer]:
        rows = await (self._fetch(q.OPEN_ANSWERS) if chat_id is None
                      else self._fetch(q.OPEN_ANSWERS_OF, {"chat_id": chat_id}))
        return [OpenAnswer(chat_id=str(r[0]), message_id=str(r[1]), since_seq=int(r[2])) for r in rows]
