"""The HTTP mirror of the protocol, Server-Sent Events, sign-in and health.

Errors are JSON ``{"error": {"code", "message", ...}}`` with a status that fits
the code; nothing answers with an HTML error page or a bare 500.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from lunark.errors import InvalidInput, LunarkError, Unauthorized
from lunark.protocol import (
    HTTP_STATUS,
    ID_PATTERN,
    CallTool,
    ContinueMessage,
    ResumeDecisions,
    SendMessage,
    WalletChanged,
)
from lunark.server.auth import Authenticator
from lunark.server.hub import Hub
from lunark.server.service import ChatService
from lunark.store.base import EventRecord, Store

__all__ = ["STATUS", "routes"]

logger = logging.getLogger(__name__)

STATUS: dict[str, int] = {str(code): status for code, status in HTTP_STATUS.items()}
"""The HTTP status of each error code (``lunark.protocol.HTTP_STATUS``)."""

M = TypeVar("M", bound=BaseModel)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(code: str, message: str, **details: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **details}}, status=STATUS.get(code, 500))


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LunarkError as exc:
        body = exc.to_dict()
        return web.json_response({"error": body}, status=STATUS.get(exc.code, 500))
    except web.HTTPRequestEntityTooLarge:
        return _error("invalid_input", "The request body is too large.")
    except web.HTTPException as exc:
        if exc.status >= 400:
            code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "invalid_input"}.get(
                exc.status, "invalid_input" if exc.status < 500 else "internal"
            )
            return web.json_response({"error": {"code": code, "message": exc.reason}}, status=exc.status)
        raise
    except Exception:
        logger.exception("HTTP handler failed: %s %s", request.method, request.path)
        return _error("internal", "Internal error.")


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.")
    return body


def _validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"Invalid {where}: {first['msg']}.") from None


def _chat_id(request: web.Request) -> str:
    chat_id = request.match_info["chat_id"]
    if not re.match(ID_PATTERN, chat_id):
        raise InvalidInput("Malformed chat id.")
    return chat_id


def routes(*, auth: Authenticator, service: ChatService, hub: Hub, store: Store,
           health: Callable[[], Awaitable[dict[str, Any]]]) -> list[web.RouteDef]:
    async def address_of(request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        return await auth.authenticate(token)

    async def nonce(request: web.Request) -> web.Response:
        return web.json_response({"nonce": await auth.new_nonce()})

    async def verify(request: web.Request) -> web.Response:
        # Any failed sign-in is 401 (protocol.md), a body that is not JSON included: a client
        # handles one outcome, and the endpoint says nothing more to someone probing it.
        try:
            body = await _json(request)
        except InvalidInput as exc:
            raise Unauthorized(f"{exc.message} Send {{\"message\": str, \"signature\": hex}}.",
                               reason="malformed_request") from None
        message, signature = body.get("message"), body.get("signature")
        if not isinstance(message, str) or not isinstance(signature, str):
            raise Unauthorized("Send {\"message\": str, \"signature\": hex}.", reason="malformed_request")
        session = await auth.verify(message, signature)
        return web.json_response(
            {"token": session.token, "address": session.address, "expires_at": session.expires_at.isoformat()}
        )

    async def create_chat(request: web.Request) -> web.Response:
        address = await address_of(request)
        body = await _json(request) if request.can_read_body else {}
        chain_id = body.get("chain_id")
        if chain_id is not None and (not isinstance(chain_id, int) or isinstance(chain_id, bool)):
            raise InvalidInput("chain_id must be an integer.")
        chat = await service.create_chat(address, chain_id=chain_id)
        return web.json_response({"chat_id": chat.chat_id}, status=201)

    async def list_chats(request: web.Request) -> web.Response:
        return web.json_response({"chats": await service.list_chats(await address_of(request))})

    async def get_chat(request: web.Request) -> web.Response:
        return web.json_response(await service.detail(await address_of(request), _chat_id(request)))

    async def post_message(request: web.Request) -> web.Response:
        address = await address_of(request)
        payload = _validate(SendMessage, {**await _json(request), "chat_id": _chat_id(request)})
        return web.json_response({"message_id": await service.send(address, payload)}, status=202)

    async def post_continue(request: web.Request) -> web.Response:
        address = await address_of(request)
        payload = _validate(
            ContinueMessage, {"chat_id": _chat_id(request), "message_id": request.match_info["message_id"]}
        )
        await service.continue_message(address, payload)
        return web.json_response({"ok": True}, status=202)

    async def post_tool_call(request: web.Request) -> web.Response:
        address = await address_of(request)
        payload = _validate(CallTool, {**await _json(request), "chat_id": _chat_id(request)})
        return web.json_response({"call_id": await service.call_tool(address, payload)}, status=202)

    async def post_decisions(request: web.Request) -> web.Response:
        address = await address_of(request)
        payload = _validate(ResumeDecisions, {**await _json(request), "chat_id": _chat_id(request)})
        await service.decide(address, payload)
        return web.json_response({"ok": True})

    async def post_abort(request: web.Request) -> web.Response:
        await service.abort(await address_of(request), _chat_id(request))
        return web.json_response({"ok": True})

    async def post_wallet(request: web.Request) -> web.Response:
        address = await address_of(request)
        payload = _validate(WalletChanged, {**await _json(request), "chat_id": _chat_id(request)})
        network = await service.wallet_changed(address, payload.chat_id, payload.chain_id)
        return web.json_response({"ok": True, "network": network})

    async def events(request: web.Request) -> web.StreamResponse:
        address = await address_of(request)
        chat = await service.chat_for(address, _chat_id(request))
        raw = request.headers.get("Last-Event-ID") or request.query.get("last_seq") or "0"
        try:
            after = int(raw)
        except ValueError:
            raise InvalidInput("Last-Event-ID must be an integer seq.") from None
        if after < 0:
            raise InvalidInput("Last-Event-ID must not be negative.")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)

        async def write(record: EventRecord) -> None:
            data = json.dumps(record.payload, separators=(",", ":"))
            await response.write(f"id: {record.seq}\nevent: {record.type}\ndata: {data}\n\n".encode())

        async with hub.subscribe(chat.chat_id, chat.owner, after) as (missed, queue):
            last = after
            try:
                for record in missed:
                    await write(record)
                    last = record.seq
                while True:
                    try:
                        record = await asyncio.wait_for(queue.get(), timeout=15.0)
                    except TimeoutError:
                        await response.write(b": keep-alive\n\n")
                        continue
                    if record.seq > last:
                        await write(record)
                        last = record.seq
            except ConnectionResetError:
                # The client went away (it reconnects with Last-Event-ID): the normal end of a
                # stream, not a failure to log, and the response is already sent.
                return response

    async def healthz(request: web.Request) -> web.Response:
        report = await health()
        return web.json_response(report, status=200 if report["ok"] else 503)

    return [
        web.get("/auth/nonce", nonce),
        web.post("/auth/verify", verify),
        web.post("/api/chats", create_chat),
        web.get("/api/chats", list_chats),
        web.get("/api/chats/{chat_id}", get_chat),
        web.post("/api/chats/{chat_id}/messages", post_message),
        web.post("/api/chats/{chat_id}/messages/{message_id}/continue", post_continue),
        web.post("/api/chats/{chat_id}/tool_calls", post_tool_call),
        web.post("/api/chats/{chat_id}/decisions", post_decisions),
        web.post("/api/chats/{chat_id}/abort", post_abort),
        web.post("/api/chats/{chat_id}/wallet", post_wallet),
        web.get("/api/chats/{chat_id}/events", events),
        web.get("/healthz", healthz),
    ]
