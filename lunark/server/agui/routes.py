"""``POST /ag-ui``: the aiohttp route, and a run's life on it.

The route signs the caller in (``Authorization: Bearer``), reads the ``RunAgentInput``, finds or
makes the thread's chat, starts the run's turn (``begin``: a message, or ``decide``: a resume as
one Lunark decision through the runner) and follows the chat's live events from that turn's first
one (``follow``) into ``lunark.server.agui.events.Run``, which writes them as AG-UI events.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

from ag_ui.core import BaseEvent, ResumeEntry, RunAgentInput, UserMessage
from ag_ui.encoder import EventEncoder
from aiohttp import web
from pydantic import ValidationError

from lunark.approvals import Approval
from lunark.errors import InvalidInput, LunarkError, NotFound
from lunark.protocol import ID_PATTERN, ActionRequest, ResumeDecisions, SendMessage
from lunark.server.agui.events import Run
from lunark.server.agui.interrupts import decision, interrupt_id
from lunark.server.auth import Authenticator
from lunark.server.http import _json as read_json
from lunark.server.hub import Hub, Subscription, SubscriptionOverflow
from lunark.server.limits import JsonCodec
from lunark.server.service import ChatService
from lunark.store import ChatRecord, EventRecord

__all__ = ["agui_routes", "bearer", "begin", "decide", "follow"]

logger = logging.getLogger(__name__)

_KEEP_ALIVE = 15.0


def bearer(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, if the request has one."""
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def agui_routes(*, auth: Authenticator, service: ChatService, hub: Hub, codec: JsonCodec,
                sse_queue: int = 4096) -> list[web.RouteDef]:
    """``POST /ag-ui``. Refusals before the run (sign-in, a malformed input, another user's thread)
    are HTTP errors with Lunark's JSON body; refusals of the run itself are ``RUN_ERROR``."""
    encoder = EventEncoder()

    def network_name(chain_id: int) -> dict[str, Any] | None:
        try:
            network = service.registry.get(chain_id)
        except LunarkError:
            return None
        return {"chainId": network.chain_id, "name": network.name, "displayName": network.display_name,
                "symbol": network.symbol}

    async def thread_chat(address: str, thread_id: str) -> ChatRecord:
        """The thread's chat: the user's own, made for them if the thread is new."""
        if not re.match(ID_PATTERN, thread_id):
            raise InvalidInput("threadId must be 1-128 letters, digits or _.:- (it names a Lunark chat).")
        try:
            return await service.chat_for(address, thread_id)
        except NotFound:
            pass
        if service.limiters is not None:
            service.limiters.create_chat.check(address.lower())
        try:
            return await service.store.create_chat(address.lower(), service.default_chain_id, chat_id=thread_id)
        except InvalidInput:  # made meanwhile by a concurrent run (or by someone else: forbidden)
            return await service.chat_for(address, thread_id)

    async def run_agent(request: web.Request) -> web.StreamResponse:
        token = bearer(request)
        address = await auth.authenticate(token)
        body = await read_json(request, codec)
        try:
            run = RunAgentInput.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise InvalidInput(f"Not a RunAgentInput: {where}: {first['msg']}.") from None
        chat = await thread_chat(address, run.thread_id)
        response = web.StreamResponse(headers={
            "Content-Type": encoder.get_content_type(), "Cache-Control": "no-cache", "X-Accel-Buffering": "no",
        })

        async def write(event: BaseEvent) -> None:
            await response.write(encoder.encode(event).encode())

        translator = Run(run, write, network_name, chat.chain_id)
        async with hub.subscribe(chat.chat_id, chat.owner, max_pending=sse_queue) as live, \
                auth.watch(token or "", address) as revoked:
            await response.prepare(request)
            await translator.started()
            try:
                start = await begin(service, address, chat, run, translator.calls)
                await follow(live, revoked, start, translator, response,
                             lambda: service.runner.running(chat.chat_id))
            except LunarkError as exc:
                with suppress(ConnectionResetError):
                    await translator.fail(exc.code, exc.message)
            except (ConnectionResetError, SubscriptionOverflow):
                # The client went away, or read too slowly to keep up: the turn goes on, and the
                # chat (GET /api/chats/{id}, any other client) shows how it ended.
                pass
            except Exception:  # the 200 is out: a bug ends the run visibly, never a torn stream
                logger.exception("AG-UI run %s of chat %s failed", run.run_id, chat.chat_id)
                with suppress(ConnectionResetError):
                    await translator.fail("internal", "Internal error.")
        return response

    return [web.post("/ag-ui", run_agent)]


async def begin(service: ChatService, address: str, chat: ChatRecord,
                run: RunAgentInput, calls: dict[str, tuple[str, Any]]) -> Callable[[dict[str, Any]], bool]:
    """Start the run's turn (a message, or a decision: ``calls`` gets the card's calls); returns the
    test for the turn's first event."""
    if run.resume:
        approval_id = await decide(service, address, chat, run.resume, calls)
        return lambda e: e["type"] == "approval_resolved" and e.get("approval_id") == approval_id
    users = [m for m in run.messages if isinstance(m, UserMessage)]
    if not users:
        raise InvalidInput("Nothing to run: send a user message, or resume the open interrupts.")
    last = users[-1]
    content = last.content if isinstance(last.content, str) else "".join(
        str(getattr(part, "text", "")) for part in last.content
    )
    if any(m.client_message_id == last.id for m in await service.store.list_messages(chat.chat_id)):
        raise InvalidInput(f"Message {last.id} was already run in this thread; send a new user message.",
                           message_id=last.id)
    try:
        payload = SendMessage(chat_id=chat.chat_id, content=content, client_message_id=last.id)
    except ValidationError as exc:
        raise InvalidInput(f"The user message is not one Lunark can take: {exc.errors()[0]['msg']}.") from None
    message_id = await service.send(address, payload)
    return lambda e: e["type"] == "message_start" and e.get("message_id") == message_id


async def decide(service: ChatService, address: str, chat: ChatRecord, resume: Sequence[ResumeEntry],
                 calls: dict[str, tuple[str, Any]]) -> str:
    """Apply the resume as one Lunark decision on the card it answers; returns the approval id."""
    approvals = {entry.interrupt_id.partition(":")[0] for entry in resume}
    if len(approvals) != 1:
        raise InvalidInput("A resume answers the interrupts of one run: every interruptId is "
                           "<approval_id>:<call_id> of the same approval.")
    [approval_id] = approvals
    by_call = {entry.interrupt_id.partition(":")[2]: entry for entry in resume}
    pending = await service.runner.check_pending(chat)  # expires it now if its time ran out
    card = Approval.of(pending) if pending is not None else None
    decisions: list[dict[str, Any]]
    if card is not None and card.approval_id == approval_id:
        actions = [ActionRequest.model_validate(raw) for raw in card.action_requests]
        missing = [interrupt_id(approval_id, a.call_id) for a in actions if a.call_id not in by_call]
        unknown = set(by_call) - {a.call_id for a in actions}
        if missing or unknown:
            raise InvalidInput("Answer every interrupt of the card, and only those: "
                               f"missing {missing}, unknown {sorted(unknown)}.", approval_id=approval_id)
        decisions = [decision(by_call[a.call_id], a, chat.chain_id) for a in actions]
        calls.update({a.call_id: (a.name, a.args) for a in actions})
    else:
        # Not the pending card (decided, expired, never offered): the runner's decision path says
        # which, with Lunark's code, and records a transaction a late wallet already sent.
        decisions = [decision(entry, None, chat.chain_id) for entry in resume]
    try:
        payload = ResumeDecisions.model_validate(
            {"chat_id": chat.chat_id, "approval_id": approval_id, "decisions": decisions}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(f"Not a decision Lunark takes: {where}: {first['msg']}.") from None
    await service.decide(address, payload)
    return approval_id


async def follow(live: Subscription, revoked: asyncio.Event, first: Callable[[dict[str, Any]], bool],
                 run: Run, response: web.StreamResponse, running: Callable[[], bool]) -> None:
    """Translate the chat's live events from the run's first one until the run is over."""
    begun = False
    current: dict[str, Any] | None = None  # the latest assistant message_start, for a resumed turn
    while not run.finished:
        try:
            record = await _next(live, revoked)
        except TimeoutError:
            if not begun and not running():
                # Started, yet no event of its turn came and nothing runs: never hold a client forever.
                await run.fail("internal", "The run's turn ended without a word; see the chat.")
                return
            await response.write(b": keep-alive\n\n")
            continue
        if record is None:
            await run.fail("unauthorized", "The session ended (signed out); sign in again.")
            return
        event = record.payload
        if not begun:
            if event["type"] == "message_start" and event.get("role") == "assistant":
                current = event
            if not first(event):
                continue
            begun = True
            if event["type"] == "approval_resolved" and current is not None:
                await run.event(current)  # the resumed turn's message opened just before its decision
        await run.event(event)


async def _next(live: Subscription, revoked: asyncio.Event) -> EventRecord | None:
    """The next live event; ``None`` when the session was revoked; ``TimeoutError`` when quiet."""
    get = asyncio.ensure_future(live.get())
    stop = asyncio.ensure_future(revoked.wait())
    try:
        done, _ = await asyncio.wait({get, stop}, timeout=_KEEP_ALIVE, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (get, stop):
            if not task.done():
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
    if get in done:
        return get.result()
    if stop in done:
        return None
    raise TimeoutError
