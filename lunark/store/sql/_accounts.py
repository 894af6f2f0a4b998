"""What belongs to a user rather than a chat: sign-in nonces and sessions, and the address book."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from lunark.audit import contact_entry
from lunark.chain.validation import parse_address
from lunark.contacts import check_label
from lunark.errors import InvalidInput
from lunark.store import statements as q
from lunark.store.dialect import Conflict, dumps
from lunark.store.operations import Lock, Operation, Query
from lunark.store.records import ContactRecord
from lunark.store.sql._audit import AuditSql
from lunark.store.sql._core import SqlCore

__all__ = ["ContactsSql", "SignInSql"]


class SignInSql(SqlCore):
    """Sign-in nonces and sessions."""

    async def add_nonce(self, nonce: str, expires_at: datetime) -> None:
        try:
            await self._fetch(q.ADD_NONCE, {"nonce": nonce, "expires_at": self.dialect.when(expires_at)})
        except Conflict as exc:
            raise InvalidInput("That nonce was already issued.") from exc

    async def consume_nonce(self, nonce: str, now: datetime) -> bool:
        when = self.dialect.when(now)
        rows = await self._fetch(q.CONSUME_NONCE, {"nonce": nonce, "now": when})
        return any(row[0] == nonce and row[1] > when for row in rows)

    async def add_session(self, token_hash: str, address: str, expires_at: datetime) -> None:
        try:
            await self._fetch(q.ADD_SESSION, {
                "token_hash": token_hash, "address": address, "expires_at": self.dialect.when(expires_at),
            })
        except Conflict as exc:
            raise InvalidInput("A session with that token already exists.") from exc

    async def get_session(self, token_hash: str, now: datetime) -> str | None:
        return await self._text(q.GET_SESSION, {"token_hash": token_hash, "now": self.dialect.when(now)})

    async def delete_session(self, token_hash: str) -> str | None:
        return await self._text(q.DELETE_SESSION, {"token_hash": token_hash})

    async def delete_sessions(self, address: str) -> int:
        return len(await self._fetch(q.DELETE_SESSIONS, {"address": address.lower()}))

    async def stored_sessions(self, token_hashes: Sequence[str]) -> set[str]:
        rows = await self._fetch(q.STORED_SESSIONS, {"token_hashes": dumps(list(token_hashes))})
        return {str(row[0]) for row in rows}


class ContactsSql(AuditSql):
    """Each user's address book, every change audited."""

    async def put_contact(self, owner: str, label: str, address: str) -> ContactRecord:
        label = check_label(label)
        checked = parse_address(address, field="The contact's address")
        owner = owner.lower()
        params = {
            "owner": owner, "label_key": label.lower(), "label": label, "address": checked,
            "created_at": self.dialect.when(datetime.now(UTC)),
        }

        def put() -> Operation[ContactRecord]:
            # Under the owner's lock: two saves of one address under two labels cannot both rename it.
            yield Lock(f"contacts:{owner}")
            held = yield Query(q.GET_CONTACT, params)
            renamed = yield Query(q.UNLABEL_ADDRESS, params)
            if renamed:  # a rename keeps when the address was first saved
                params["created_at"] = renamed[0][0]
            rows = yield Query(q.PUT_CONTACT, params)
            # What the save replaced: the label's earlier address (or spelling), the address's earlier label.
            previous = [{"label": str(row[1]), "address": str(row[2])} for row in held
                        if (row[1], row[2]) != (label, checked)]
            previous += [{"label": str(row[1]), "address": checked} for row in renamed]
            if previous or not held:  # saving what is already saved changes nothing, and is not recorded
                yield from self._audit([contact_entry(owner, "put", label, checked, previous)])
            return q.contact(self.dialect, rows[0])

        return await self._perform(put(), transaction=True)

    async def delete_contact(self, owner: str, label: str) -> bool:
        params = {"owner": owner.lower(), "label_key": label.strip().lower()}

        def delete() -> Operation[bool]:
            rows = yield Query(q.DELETE_CONTACT, params)
            for deleted, address in rows:
                yield from self._audit([contact_entry(owner, "delete", str(deleted), str(address))])
            return bool(rows)

        return await self._perform(delete(), transaction=True)

    async def list_contacts(self, owner: str) -> list[ContactRecord]:
        rows = await self._fetch(q.LIST_CONTACTS, {"owner": owner.lower()})
        return [q.contact(self.dialect, row) for row in rows]

    async def get_contact(self, owner: str, label: str) -> ContactRecord | None:
        rows = await self._fetch(q.GET_CONTACT, {"owner": owner.lower(), "label_key": label.strip().lower()})
        return q.contact(self.dialect, rows[0]) if rows else None

