"""What differs between SQLite and Postgres in the store's SQL, and nothing else.

The store's statements (``lunark.store.statements``) are written once, with named parameters
(``:chat_id``) and a few macros in braces for what the two databases spell differently:

- ``{json:name}``: a JSON-valued parameter (text in SQLite, ``jsonb`` in Postgres);
- ``{json_list:name}``: a one-element JSON array holding that value;
- ``{json_push:column:name}``: ``column``'s array with that value appended;
- ``{json_each:name}``: the elements of a JSON array parameter, as a one-column ``value`` table;
- ``{rowid}``: the column that orders rows as they were inserted;
- ``{for_update}``: lock the rows read, where the database has row locks.

``Dialect.compile`` expands the macros and rewrites the parameters into the driver's style; values
cross with ``when``/``day``/``amount`` (in) and ``time``/``json`` (out). Nothing here imports a
driver: the executors (``lunark.store.sqlite``, ``lunark.store.postgres``) turn their drivers'
integrity errors into ``Conflict``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, ClassVar

from lunark.errors import InvalidInput, LunarkError, NotFound

__all__ = ["POSTGRES", "SQLITE", "Conflict", "Dialect", "dumps", "refused"]

_MACRO = re.compile(r"\{(\w+)((?::[\w.]+)*)\}")
_PARAM = re.compile(r"(?<![:\w]):(\w+)")


class Conflict(InvalidInput):
    """A statement broke a constraint: ``foreign_key`` when what it refers to does not exist,
    else a unique key (the row is already stored) or a check."""

    def __init__(self, detail: str, *, foreign_key: bool) -> None:
        super().__init__(f"Refused by the database ({detail}).")
        self.detail = detail
        self.foreign_key = foreign_key


def refused(conflict: Conflict, chat_id: str) -> LunarkError:
    """What a write to a chat says when it is refused: the chat is unknown, or the row exists."""
    if conflict.foreign_key:
        return NotFound(f"No chat {chat_id!r}.", chat_id=chat_id)
    return InvalidInput(f"Already stored ({conflict.detail}).", chat_id=chat_id)


def dumps(value: Any) -> str:
    """Compact JSON, as the log and the JSON columns keep it; what JSON cannot hold is refused."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Not storable as JSON: {exc}.") from exc


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{value!r} has no time zone; pass an aware datetime (e.g. in UTC).")
    return value.astimezone(UTC)


class Dialect:
    """One database's spelling of the store's SQL and of its values. Stateless: one instance each."""

    name: ClassVar[str]
    no_limit: ClassVar[int | None]
    """The ``LIMIT`` parameter that means no limit."""

    @cache  # noqa: B019 - two instances for the life of the process: the cache is the point
    def compile(self, sql: str) -> str:
        """``sql`` with its macros expanded and its parameters in the driver's style (cached)."""
        return self._params(_MACRO.sub(lambda m: self._macro(m[1], m[2].split(":")[1:]), sql))

    def _macro(self, name: str, args: list[str]) -> str:
        expand = getattr(self, f"_{name}", None)
        if expand is None:
            raise LunarkError(f"No SQL macro {{{name}}}.")
        return str(expand(*args))

    def _params(self, sql: str) -> str:
        return sql

    # values in

    def when(self, value: datetime) -> Any:
        """A timezone-aware datetime as the database keeps it (naive ones are refused)."""
        return _aware(value)

    def now(self) -> Any:
        return datetime.now(UTC)

    def day(self, value: date) -> Any:
        return value

    def amount(self, value: int) -> Any:
        return value

    # values out

    def time(self, value: Any) -> datetime:
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def json(self, value: Any) -> Any:
        return value


class SqliteDialect(Dialect):
    """SQLite: JSON as text, datetimes as fixed-width UTC ISO 8601 text (so text order is time order),
    days and amounts as text (amounts in base units can exceed 64 bits)."""

    name = "sqlite"
    no_limit = -1

    def _json(self, param: str) -> str:
        return f":{param}"

    def _json_list(self, param: str) -> str:
        return f"json_array(json(:{param}))"

    def _json_push(self, column: str, param: str) -> str:
        return f"json_insert({column}, '$[#]', json(:{param}))"

    def _json_each(self, param: str) -> str:
        return f"json_each(:{param})"

    def _rowid(self) -> str:
        return "rowid"

    def _for_update(self) -> str:
        return ""  # a transaction holds the database's one write lock (BEGIN IMMEDIATE)

    def when(self, value: datetime) -> str:
        return _aware(value).isoformat(timespec="microseconds")

    def now(self) -> str:
        return datetime.now(UTC).isoformat(timespec="microseconds")

    def day(self, value: date) -> str:
        return value.isoformat()

    def amount(self, value: int) -> str:
        return str(value)

    def time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def json(self, value: Any) -> Any:
        return json.loads(value)


class PostgresDialect(Dialect):
    """Postgres through psycopg: ``%(name)s`` parameters, ``jsonb`` and ``timestamptz`` columns."""

    name = "postgres"
    no_limit = None

    def _params(self, sql: str) -> str:
        return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))

    def _json(self, param: str) -> str:
        return f":{param}::jsonb"

    def _json_list(self, param: str) -> str:
        return f"jsonb_build_array(:{param}::jsonb)"

    def _json_push(self, column: str, param: str) -> str:
        return f"{column} || jsonb_build_array(:{param}::jsonb)"

    def _json_each(self, param: str) -> str:
        return f"jsonb_array_elements_text(:{param}::jsonb)"

    def _rowid(self) -> str:
        return "id"

    def _for_update(self) -> str:
        return " FOR UPDATE"


SQLITE = SqliteDialect()
POSTGRES = PostgresDialect()
