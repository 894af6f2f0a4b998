"""A turn job on the wire, between a relay and a turn worker (local: ``lunark.server.workers``; in a
cluster: ``lunark.server.jobs``): frames, a chat as a job carries it, the runner call a job names
(``perform``), and a worker's ``LunarkError`` brought back with its code and fields."""

from __future__ import annotations

import asyncio
import importlib
import json
import struct
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lunark.approvals import parse_time
from lunark.errors import ConfigError, LunarkError
from lunark.store import ChatRecord

if TYPE_CHECKING:
    from lunark.server.runner import Runner

__all__ = ["chat_record", "error_from", "load_factory", "owner_of", "perform", "read_frame", "wire_chat",
           "write_frame"]

_HEADER = struct.Struct(">I")


# -- frames ------------------------------------------------------------------------------------


def write_frame(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    """Queue one frame (synchronous: frames leave in the order they are written)."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    writer.write(_HEADER.pack(len(body)) + body)


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None at the end of the stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        message: dict[str, Any] = json.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return message


def owner_of(chat_id: str, count: int) -> int:
    """The worker that runs ``chat_id``'s turns: the same for every process and every start."""
    return zlib.crc32(chat_id.encode()) % count


def wire_chat(chat: ChatRecord) -> dict[str, Any]:
    return {"chat_id": chat.chat_id, "owner": chat.owner, "chain_id": chat.chain_id,
            "created_at": chat.created_at.isoformat(), "title": chat.title}


def chat_record(data: dict[str, Any]) -> ChatRecord:
    created_at = parse_time(data["created_at"])
    assert created_at is not None, "wire_chat writes it"
    return ChatRecord(chat_id=data["chat_id"], owner=data["owner"], chain_id=int(data["chain_id"]),
                      created_at=created_at, title=data.get("title"))


def load_factory(path: str) -> Callable[[], Any]:
    """``"module:callable"``, imported."""
    module, _, name = path.partition(":")
    if not module or not name:
        raise ConfigError(f"A model factory is named 'module:callable', not {path!r}.")
    factory: Callable[[], Any] = getattr(importlib.import_module(module), name)
    return factory


def _error_classes() -> dict[str, type[LunarkError]]:
    """The most general error class of each code (``InvalidInput`` for ``invalid_input``, ...)."""
    found: dict[str, type[LunarkError]] = {}
    queue: list[type[LunarkError]] = [LunarkError]
    while queue:
        cls = queue.pop(0)
        found.setdefault(cls.code, cls)
        queue.extend(cls.__subclasses__())
    return found


_ERRORS = _error_classes()


def error_from(data: dict[str, Any]) -> LunarkError:
    """The ``LunarkError`` a worker raised, from its ``to_dict()``: same code, message and fields."""
    details = {k: v for k, v in data.items() if k not in ("code", "message")}
    code = str(data.get("code") or "internal")
    cls = _ERRORS.get(code, LunarkError)
    error = cls.__new__(cls)
    LunarkError.__init__(error, str(data.get("message") or "Internal error."), **details)
    if cls.code != code:  # a code no class carries: kept as sent
        error.code = code  # type: ignore[misc]
    return error


async def perform(runner: Runner, method: str, args: dict[str, Any]) -> Any:
    """A job's call on ``runner`` (a turn worker's, local or in a cluster)."""
    if method == "send_message":
        return await runner.send_message(chat_record(args["chat"]), args["content"], args["client_message_id"])
    if method == "call_tool":
        return await runner.call_tool(chat_record(args["chat"]), args["name"], dict(args["args"]))
    if method == "continue_message":
        return await runner.continue_message(chat_record(args["chat"]), args["message_id"])
    if method == "resume":
        return await runner.resume(chat_record(args["chat"]), args["approval_id"], args["decisions"],
                                   by=args.get("by", "user"))
    if method == "abort":
        return await runner.abort(args["chat_id"])
    if method == "check_pending":
        return await runner.check_pending(chat_record(args["chat"]))
    if method == "pending_approval":
        return await runner.pending_approval(args["chat_id"])
    if method == "tools":
        return await runner.tools()
    raise LunarkError(f"Turn workers have no job {method!r}.")
