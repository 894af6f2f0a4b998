"""The HTTP mirror of the protocol, Server-Sent Events, sign-in and health.

Errors are JSON ``{"error": {"code", "message", ...}}`` with a status that fits
the code; nothing answers with an HTML error page or a bare 500.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from lunark.errors import Forbidden, InvalidInput, LunarkError, NotFound, Unauthorized
from lunark.protocol import (
    HTTP_STATUS,
    ID_PATTERN,
    CallTool,
    Contact,
    ContinueMessage,
    ResumeDecisions,
    SendMessage,
    WalletChanged,
)
from lunark.server.auth import Authenticator
from lunark.server.hub import Hub, Subscription, SubscriptionOverflow
from lunark.server.limits import InputRejected, JsonCodec, RateLimiter
from lunark.server.service import ChatService
from lunark.store import ContactRecord, EventRecord, Store

__all__ = ["STATUS", "HttpLimits", "routes"]

logger = logging.getLogger(__name__)

STATUS: dict[str, int] = {str(code): status for code, status in HTTP_STATUS.items()}
"""The HTTP status of each error code (``lunark.protocol.HTTP_STATUS``)."""

MAX_SEQ = 2**63 - 1
"""Largest seq the event log can hold (SQLite INTEGER)."""
_SEQ = re.compile(r"[0-9]{1,19}")
_SIGN_IN_BODY = 16_384
"""Largest /auth/verify body: a message (at most 4,096 characters) and a signature, with room."""


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What the HTTP routes enforce besides the protocol models."""

    codec: JsonCodec
    sign_in: RateLimiter
    trusted_proxies: Sequence[IPNetwork] = ()
    """Load balancers whose X-Forwarded-For names the client (``client_address``)."""
    admin_token: str | None = None
    replay_batch: int = 256
    sse_queue: int = 4096

M = TypeVar("M", bound=BaseModel)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(code: str, message: str, *, status: int | None = None, **details: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **details}},
                             status=status or STATUS.get(code, 500))


def _lunark_error(exc: LunarkError) -> web.Response:
    body = exc.to_dict()
    status = STATUS.get(exc.code, 500)
    headers = None
    if exc.code == "rate_limited":
        headers = {"Retry-After": str(body.get("retry_after", 1))}
    elif isinstance(exc, InputRejected) and body.get("reason") == "too_large":
        status = 413
    return web.json_response({"error": body}, status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LunarkError as exc:
        return _lunark_error(exc)
    except web.HTTPRequestEntityTooLarge as exc:
        return _error("invalid_input", f"The request body is too large; {exc.text or 'see limits.max_body_bytes'}.",
                      status=413, reason="too_large")
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


async def _json(request: web.Request, codec: JsonCodec, *, limit: int | None = None) -> dict[str, Any]:
    """The body as a JSON object, within the codec's limits (checked before it is parsed)."""
    most = min(limit or codec.limits.max_body_bytes, codec.limits.max_body_bytes)
    if request.content_length is not None and request.content_length > most:
        raise InputRejected(f"The body is {request.content_length} bytes; at most {most} are accepted.",
                            reason="too_large", limit=most)
    raw = bytearray()
    while len(raw) <= most:  # read() returns what has arrived, so read until the end or past the limit
        chunk = await request.content.read(most + 1 - len(raw))
        if not chunk:
            break
        raw += chunk
    if len(raw) > most:
        raise InputRejected(f"The body is over {most} bytes.", reason="too_large", limit=most)
    body = codec.loads(bytes(raw))
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


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(request: web.Request, trusted: Sequence[IPNetwork]) -> str:
    """Who sent ``request``: its peer, or, when the peer is a trusted proxy, the last address in
    X-Forwarded-For that is not one (each proxy appends the address it was reached from, so the
    entries left of the first untrusted one are the client's to invent)."""
    peer = request.remote or "?"
    if not _trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", []) for hop in value.split(",")]
    for hop in reversed(hops):
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return peer  # garbage in the header: count it as the proxy's
        if not any(address in network for network in trusted):
            return hop
    return peer


def _trusted(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def routes(*, auth: Authenticator, service: ChatService, hub: Hub, store: Store,
           health: Callable[[bool], Awaitable[dict[str, Any]]], limits: HttpLimits) -> list[web.RouteDef]:
    codec = limits.codec

    async def address_of(request: web.Request) -> str:
        return await auth.authenticate(_bearer(request))

    async def json_body(request: web.Request) -> dict[str, Any]:
        return await _json(request, codec)

    async def nonce(request: web.Request) -> web.Response:
        limits.sign_in.check(client_address(request, limits.trusted_proxies))
        return web.json_response({"nonce": await auth.new_nonce()})

    async def verify(request: web.Request) -> web.Response:
        limits.sign_in.check(client_address(request, limits.trusted_proxies))
        # Any failed sign-in is 401 (protocol.md), a body that is not JSON or too large included:
        # a client handles one outcome, and the endpoint says nothing more to someone probing it.
        try:
            body = await _json(request, codec, limit=_SIGN_IN_BODY)
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

    async def logout(request: web.Request) -> web.Response:
        body = await json_body(request) if request.can_read_body else {}
        everywhere = body.get("everywhere", False)
        if not isinstance(everywhere, bool) or set(body) - {"everywhere"}:
            raise InvalidInput('Send {} to end this session, or {"everywhere": true} to end them all.')
        ended = await auth.logout(_bearer(request), everywhere=everywhere)
        return web.json_response({"ok": True, "ended": ended})

    async def create_chat(request: web.Request) -> web.Response:
        address = await address_of(request)
        body = await json_body(request) if request.can_read_body else {}
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
        payload = _validate(SendMessage, {**await json_body(request), "chat_id": _chat_id(request)})
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
        payload = _validate(CallTool, {**await json_body(request), "chat_id": _chat_id(request)})
        return web.json_response({"call_id": await service.call_tool(address, payload)}, status=202)

    async def list_tools(request: web.Request) -> web.Response:
        await address_of(request)
        return web.json_response({"tools": await service.tools()})

    async def post_decisions(request: web.Request) -> web.Response:
        address = await address_of(request)
        payload = _validate(ResumeDecisions, {**await json_body(request), "chat_id": _chat_id(request)})
        await service.decide(address, payload)
        return web.json_response({"ok": True})

    async def get_approval(request: web.Request) -> web.Response:
        """Where an approval is decided: its chat. The approval page (``/approve/{approval_id}``,
        the link ``lunark mcp`` gives an MCP host) opens that chat after the user signs in."""
        address = await address_of(request)
        approval_id = request.match_info["approval_id"]
        if not re.match(ID_PATTERN, approval_id):
            raise InvalidInput("Malformed approval id.")
        record = await store.get_approval(approval_id)
        if record is None:
            raise NotFound(f"There is no approval {approval_id!r}.", approval_id=approval_id)
        if record.owner != address.lower():
            raise Forbidden("This approval belongs to another address.", approval_id=approval_id)
        return web.json_response({"approval_id": record.approval_id, "chat_id": record.chat_id,
                                  "state": record.state, "expires_at": record.expires_at.isoformat()})

    async def post_abort(request: web.Request) -> web.Response:
        await service.abort(await address_of(request), _chat_id(request))
        return web.json_response({"ok": True})

    async def post_wallet(request: web.Request) -> web.Response:
        address = await address_of(request)
        payload = _validate(WalletChanged, {**await json_body(request), "chat_id": _chat_id(request)})
        network = await service.wallet_changed(address, payload.chat_id, payload.chain_id)
        return web.json_response({"ok": True, "network": network})

    async def events(request: web.Request) -> web.StreamResponse:
        address = await address_of(request)
        chat = await service.chat_for(address, _chat_id(request))
        raw = (request.headers.get("Last-Event-ID") or request.query.get("last_seq") or "0").strip()
        # Checked whole before the 200 goes out: afterwards an error can only drop the stream.
        if raw.startswith("-"):
            raise InvalidInput("Last-Event-ID must not be negative.")
        if not _SEQ.fullmatch(raw) or int(raw) > MAX_SEQ:
            raise InvalidInput(f"Last-Event-ID must be a seq: an integer from 0 to {MAX_SEQ}.")
        after = int(raw)
        token = _bearer(request) or ""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

        async def write(record: EventRecord) -> None:
            data = json.dumps(record.payload, separators=(",", ":"))
            await response.write(f"id: {record.seq}\nevent: {record.type}\ndata: {data}\n\n".encode())

        async with hub.subscribe(chat.chat_id, chat.owner, max_pending=limits.sse_queue) as live, \
                auth.watch(token, address) as revoked:
            await response.prepare(request)
            last = after
            try:
                # The log up to the subscription's snapshot, a batch at a time; each write waits
                # for the client (aiohttp drains), so a slow reader slows the replay, not memory.
                while last < live.snapshot_seq:
                    records = await store.events_after(chat.chat_id, last, limit=limits.replay_batch)
                    if not records:
                        break
                    for record in records:
                        await write(record)
                        last = record.seq
                while not revoked.is_set():
                    try:
                        update = await _next_live(live, revoked)
                    except TimeoutError:
                        await response.write(b": keep-alive\n\n")
                        continue
                    if update is not None and update.seq > last:
                        await write(update)
                        last = update.seq
            except SubscriptionOverflow:
                # Further behind than sse_queue live events: end the stream; the client resumes
                # from Last-Event-ID and reads the rest from the log.
                return response
            except ConnectionResetError:
                # The client went away (it reconnects with Last-Event-ID): the normal end of a
                # stream, not a failure to log, and the response is already sent.
                return response
            return response

    # contacts: the signed-in user's own address book; the owner is always the session's address,
    # so no request can read or change another user's.

    def contact_wire(record: ContactRecord) -> dict[str, Any]:
        return Contact(label=record.label, address=record.address,
                       created_at=record.created_at.isoformat()).model_dump(mode="json")

    async def list_contacts(request: web.Request) -> web.Response:
        address = await address_of(request)
        return web.json_response({"contacts": [contact_wire(c) for c in await store.list_contacts(address)]})

    async def put_contact(request: web.Request) -> web.Response:
        address = await address_of(request)
        body = await json_body(request)
        if set(body) != {"address"} or not isinstance(body["address"], str):
            raise InvalidInput('Send {"address": "0x..."}: the contact\'s 0x address.')
        saved = await store.put_contact(address, request.match_info["label"], body["address"])
        return web.json_response({"contact": contact_wire(saved)})

    async def delete_contact(request: web.Request) -> web.Response:
        address = await address_of(request)
        label = request.match_info["label"]
        if not await store.delete_contact(address, label):
            raise NotFound(f"You have no contact {label[:64]!r}.", label=label[:64])
        return web.json_response({"ok": True})

    async def healthz(request: web.Request) -> web.Response:
        bearer = _bearer(request)
        detailed = False
        if bearer is not None:
            # Details (the RPC endpoint and its errors, connection counts) are for operators only.
            if not limits.admin_token or not hmac.compare_digest(bearer.encode(), limits.admin_token.encode()):
                raise Unauthorized("That is not the admin token (server.admin_token_env); without a token "
                                   "/healthz answers ok or not per component.", reason="invalid_admin_token")
            detailed = True
        report = await health(detailed)
        if not detailed:
            # Anonymous callers learn ok or not per component, nothing that names a host or a node.
            brief: dict[str, Any] = {"ok": report["ok"], "database": bool(report["database"]),
                                     "chain": {"ok": bool(report["chain"]["ok"])}}
            if "redis" in report:
                brief["redis"] = bool(report["redis"])
            if "cluster" in report:
                brief["cluster"] = {"ok": bool(report["cluster"]["ok"])}
            if "workers" in report:
                brief["workers"] = {k: report["workers"][k] for k in ("count", "ready")}
            report = brief
        return web.json_response(report, status=200 if report["ok"] else 503)

    return [
        web.get("/auth/nonce", nonce),
        web.post("/auth/verify", verify),
        web.post("/auth/logout", logout),
        web.post("/api/chats", create_chat),
        web.get("/api/chats", list_chats),
        web.get("/api/chats/{chat_id}", get_chat),
        web.post("/api/chats/{chat_id}/messages", post_message),
        web.post("/api/chats/{chat_id}/messages/{message_id}/continue", post_continue),
        web.post("/api/chats/{chat_id}/tool_calls", post_tool_call),
        web.get("/api/tools", list_tools),
        web.get("/api/contacts", list_contacts),
        web.put("/api/contacts/{label}", put_contact),
        web.delete("/api/contacts/{label}", delete_contact),
        web.post("/api/chats/{chat_id}/decisions", post_decisions),
        web.post("/api/chats/{chat_id}/abort", post_abort),
        web.get("/api/approvals/{approval_id}", get_approval),
        web.post("/api/chats/{chat_id}/wallet", post_wallet),
        web.get("/api/chats/{chat_id}/events", events),
        web.get("/healthz", healthz),
    ]


async def _next_live(live: Subscription, revoked: asyncio.Event) -> EventRecord | None:
    """The next live event, ``None`` when the session was revoked; ``TimeoutError`` after 15 s."""
    get = asyncio.ensure_future(live.get())
    stop = asyncio.ensure_future(revoked.wait())
    try:
        done, _ = await asyncio.wait({get, stop}, timeout=15.0, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (get, stop):
            if not task.done():
                task.cancel()
    if get in done:
        return get.result()
    if stop in done:
        return None
    raise TimeoutError
