"""AG-UI: Lunark as an agent any AG-UI client (CopilotKit, ``@ag-ui/client``) can run.

``POST /ag-ui`` takes a ``RunAgentInput`` and answers with the run's events over Server-Sent
Events, encoded by the official ``ag-ui-protocol`` package. It is a view of the same chat the
Socket.IO and HTTP clients see, not a second agent: the thread is a Lunark chat, the last user
message is a ``send_message``, and a resume is a ``resume_decisions`` through the same runner,
so every rule of the approval flow (one decision, exactly once; expiry fails closed; a signed
transaction checked against what was approved) holds here unchanged.

One run is one turn::

    RUN_STARTED
      TEXT_MESSAGE_START/CONTENT/END       <- message_start (assistant) / token / message_end
      TOOL_CALL_START/ARGS/END, _RESULT    <- tool_call / tool_result
      CUSTOM lunark.tx_update, ...         <- tx_update, status, approval_resolved, network_switch
    RUN_FINISHED                           <- message_end: stop, length (success), aborted (cancelled)
    RUN_FINISHED outcome.type=interrupt    <- pending_approval, then message_end awaiting_approval
    RUN_ERROR code=<Lunark error code>     <- error, or a refused message or decision
    RUN_ERROR code=interrupted             <- message_end interrupted (the server writing it stopped)

An interrupt is one action of the approval card (``<approval_id>:<call_id>``) with the card as
its ``metadata`` and ``metadata.governance.actionFingerprint``; a resume must answer every
action of the card and, to approve or edit, name that fingerprint (docs/ag-ui.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from typing import Any

from ag_ui.core import (
    PROTOCOL_VERSION,
    BaseEvent,
    CustomEvent,
    Interrupt,
    ResumeEntry,
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunFinishedInterruptOutcome,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
    UserMessage,
)
from ag_ui.encoder import EventEncoder
from aiohttp import web
from pydantic import ValidationError

from lunark.errors import InvalidInput, LunarkError, NotFound
from lunark.fingerprint import action_fingerprint as card_fingerprint
from lunark.protocol import (
    ID_PATTERN,
    ActionRequest,
    ResumeDecisions,
    SendMessage,
    agui_resume_schema,
    approve_decision,
    edit_decision,
    reject_decision,
)
from lunark.server.auth import Authenticator
from lunark.server.http import _json as read_json
from lunark.server.hub import Hub, Subscription, SubscriptionOverflow
from lunark.server.limits import JsonCodec
from lunark.server.service import ChatService
from lunark.store import ChatRecord, EventRecord

__all__ = ["CUSTOM_PREFIX", "INTERRUPT_REASON", "action_fingerprint", "agui_routes", "interrupts_for"]

logger = logging.getLogger(__name__)

CUSTOM_PREFIX = "lunark."
"""Lunark's events without an AG-UI counterpart travel as CUSTOM events named ``lunark.<type>``."""

INTERRUPT_REASON = "tool_approval"
"""The ``reason`` of every interrupt Lunark raises: a state-changing tool call waits for the user."""

_CUSTOM = frozenset({"tx_update", "status", "approval_resolved", "network_switch"})
_KEEP_ALIVE = 15.0
_FINGERPRINT = r"^[0-9a-f]{64}$"


def action_fingerprint(action: ActionRequest, chain_id: int) -> str:
    """The card's intent fingerprint: the one the server put on it, or, for a card offered before
    cards carried one, the same hash computed here (``lunark.fingerprint``; ``chain_id`` is the
    chat's, used when the action has no transaction to name its chain)."""
    if action.fingerprint:
        return action.fingerprint
    tx = action.tx.model_dump(mode="json", by_alias=True) if action.tx is not None else None
    return card_fingerprint(action.name, action.args, int(tx["chain_id"], 16) if tx else chain_id, tx)


def interrupts_for(pending: Mapping[str, Any], network_name: Callable[[int], dict[str, Any] | None],
                   chain_id: int) -> list[Interrupt]:
    """One AG-UI interrupt per action of a ``pending_approval`` card of a chat on ``chain_id``, the
    card in its metadata."""
    allowed = {c["action_name"]: list(c["allowed_decisions"]) for c in pending.get("review_configs", [])}
    out: list[Interrupt] = []
    for raw in pending["action_requests"]:
        action = ActionRequest.model_validate(raw)
        decisions = allowed.get(action.name, ["approve", "edit", "reject"])
        fingerprint = action_fingerprint(action, chain_id)
        out.append(Interrupt(
            id=interrupt_id(pending["approval_id"], action.call_id),
            reason=INTERRUPT_REASON,
            message=action.summary,
            tool_call_id=action.call_id,
            response_schema=agui_resume_schema(decisions, fingerprint),
            expires_at=pending["expires_at"],
            metadata=_card(pending["approval_id"], action, decisions, fingerprint, network_name),
        ))
    return out


def interrupt_id(approval_id: str, call_id: str) -> str:
    return f"{approval_id}:{call_id}"


def _card(approval_id: str, action: ActionRequest, decisions: list[str], fingerprint: str,
          network_name: Callable[[int], dict[str, Any] | None]) -> dict[str, Any]:
    """What the user approves, as a CopilotKit component renders it (docs/ag-ui.md lists the keys)."""
    card: dict[str, Any] = {
        "approvalId": approval_id,
        "callId": action.call_id,
        "tool": action.name,
        "args": action.args,
        "summary": action.summary,
        "description": action.description,
        "allowedDecisions": decisions,
        "governance": {"actionFingerprint": fingerprint},
    }
    args = action.args
    if isinstance(args.get("amount"), str | int | float):
        card["amount"] = str(args["amount"])
    if isinstance(args.get("to"), str):
        card["recipient"] = args["to"]
    if action.recipient_name:
        card["recipientName"] = action.recipient_name
    tx = action.tx
    if tx is not None:
        chain_id = int(tx.chain_id, 16)
        network = network_name(chain_id) or {"chainId": chain_id}
        card["network"] = network
        card["tx"] = tx.model_dump(mode="json", by_alias=True)
        symbol = network.get("symbol", "")
        card.setdefault("symbol", args.get("token") or symbol)
        # The most the network fee can be: what the wallet's transaction may not exceed (by far).
        max_fee = action.preview.max_fee if action.preview and action.preview.max_fee else None
        wei = int(max_fee) if max_fee is not None else int(tx.gas, 16) * int(tx.max_fee_per_gas, 16)
        card["fee"] = {"maxFeeWei": str(wei), "symbol": symbol}
    if action.preview is not None:
        card["preview"] = action.preview.model_dump(mode="json", exclude_none=True)
    if action.warnings:
        card["warnings"] = [w.model_dump(mode="json") for w in action.warnings]
    if action.facts:
        card["facts"] = [f.model_dump(mode="json") for f in action.facts]
    return card


def _decision(entry: ResumeEntry, action: ActionRequest | None, chain_id: int) -> dict[str, Any]:
    """A Lunark decision from one resume entry; ``action`` is the card's action when it is pending
    (then the entry's fingerprint must be that card's)."""
    if entry.status == "cancelled":
        return reject_decision("Cancelled in the app.")
    payload = entry.payload
    if not isinstance(payload, dict):
        raise InvalidInput(f"Interrupt {entry.interrupt_id}: a resolved resume needs a payload object "
                           "(see the interrupt's responseSchema).", interrupt_id=entry.interrupt_id)
    kind = payload.get("type")
    given = payload.get("actionFingerprint")
    envelope = (entry.metadata or {}).get("governance")
    if given is None and isinstance(envelope, dict):
        given = envelope.get("actionFingerprint")
    if given is not None and (not isinstance(given, str) or not re.fullmatch(_FINGERPRINT, given)):
        raise InvalidInput(f"Interrupt {entry.interrupt_id}: actionFingerprint must be 64 hex digits.",
                           interrupt_id=entry.interrupt_id, reason="fingerprint_mismatch")
    if kind in ("approve", "edit") and given is None:
        raise InvalidInput(f"Interrupt {entry.interrupt_id}: to {kind}, name the card you decided on "
                           "(payload.actionFingerprint = metadata.governance.actionFingerprint).",
                           interrupt_id=entry.interrupt_id, reason="fingerprint_missing")
    if action is not None and given is not None and given != action_fingerprint(action, chain_id):
        raise InvalidInput(f"Interrupt {entry.interrupt_id}: the fingerprint is not the pending card's; that card "
                           "changed or was never offered. Nothing was decided.",
                           interrupt_id=entry.interrupt_id, reason="fingerprint_mismatch")
    if kind == "approve":
        return approve_decision(tx_hash=payload.get("txHash"), signed_tx=payload.get("signedTx"),
                                acknowledge=payload.get("acknowledge"))
    if kind == "edit":
        # Off the pending card the name only has to be well formed: the runner refuses the decision.
        name = action.name if action is not None else str(payload.get("name") or "unknown")
        args: Any = payload.get("args")  # checked with the rest, by ResumeDecisions
        return edit_decision(name, args)
    if kind == "reject":
        message = payload.get("message")
        return reject_decision(message)
    raise InvalidInput(f"Interrupt {entry.interrupt_id}: payload.type must be approve, edit or reject.",
                       interrupt_id=entry.interrupt_id)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def _now_ms() -> int:
    return int(time.time() * 1000)


class _Run:
    """One AG-UI run over a chat's live events: translates them and knows when the run is over."""

    def __init__(self, run: RunAgentInput, write: Callable[[BaseEvent], Awaitable[None]],
                 network_name: Callable[[int], dict[str, Any] | None], chain_id: int) -> None:
        self.input = run
        self.chain_id = chain_id
        self.write = write
        self.network_name = network_name
        self.message_id: str | None = None
        """The assistant message of this run's turn, once its turn has started."""
        self.text_open = False
        self.tools: set[str] = set()
        self.calls: dict[str, tuple[str, Any]] = {}
        """The calls of the card a resumed run decides: call id -> (tool, arguments)."""
        self.pending: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.finished = False

    async def started(self) -> None:
        await self.write(RunStartedEvent(thread_id=self.input.thread_id, run_id=self.input.run_id,
                                         protocol_version=PROTOCOL_VERSION, timestamp=_now_ms()))

    async def fail(self, code: str, message: str) -> None:
        await self._close_text()
        await self.write(RunErrorEvent(message=message, code=code, timestamp=_now_ms()))
        self.finished = True

    async def _close_text(self) -> None:
        if self.text_open and self.message_id is not None:
            await self.write(TextMessageEndEvent(message_id=self.message_id, timestamp=_now_ms()))
            self.text_open = False

    async def event(self, event: dict[str, Any]) -> None:
        """One event of this run's turn (the caller has skipped what came before it)."""
        kind = event["type"]
        ts = int(float(event.get("ts") or time.time()) * 1000)
        if kind == "message_start":
            if event.get("role") == "assistant":
                self.message_id = event["message_id"]
        elif kind == "token":
            if event["message_id"] != self.message_id or not event["text"]:
                return
            if not self.text_open:
                await self.write(TextMessageStartEvent(message_id=event["message_id"], role="assistant", timestamp=ts))
                self.text_open = True
            await self.write(TextMessageContentEvent(message_id=event["message_id"], delta=event["text"], timestamp=ts))
        elif kind == "tool_call":
            await self._call(event["call_id"], event["name"], event["args"], event.get("message_id"), ts)
        elif kind == "tool_result":
            call_id = event["call_id"]
            if call_id not in self.tools:
                # A rejected action's result comes with no tool_call in the resumed turn: the call is
                # the card's, opened again here so that the result answers a call of this run.
                if call_id not in self.calls:
                    return
                name, args = self.calls[call_id]
                await self._call(call_id, name, args, self.message_id, ts)
            body = {key: event[key] for key in ("status", "result", "error") if event.get(key) is not None}
            await self.write(ToolCallResultEvent(message_id=f"{call_id}:result", tool_call_id=call_id,
                                                 content=json.dumps(body), role="tool", timestamp=ts,
                                                 metadata={"status": event["status"]}))
        elif kind == "pending_approval":
            self.pending = event
        elif kind == "error":
            self.error = event
        elif kind == "message_end" and event["message_id"] == self.message_id:
            await self._end(event, ts)
        elif kind in _CUSTOM:
            value = {key: v for key, v in event.items() if key not in ("type", "chat_id")}
            await self.write(CustomEvent(name=CUSTOM_PREFIX + kind, value=value, timestamp=ts))

    async def _call(self, call_id: str, name: str, args: Any, parent: str | None, ts: int) -> None:
        if call_id in self.tools:
            return
        self.tools.add(call_id)
        await self.write(ToolCallStartEvent(tool_call_id=call_id, tool_call_name=name, parent_message_id=parent,
                                            timestamp=ts))
        await self.write(ToolCallArgsEvent(tool_call_id=call_id, delta=json.dumps(args), timestamp=ts))
        await self.write(ToolCallEndEvent(tool_call_id=call_id, timestamp=ts))

    async def _end(self, event: dict[str, Any], ts: int) -> None:
        await self._close_text()
        finish = event["finish_reason"]
        if finish == "error" or self.error is not None:
            error = self.error or {"code": "internal", "message": "The turn failed."}
            await self.fail(str(error.get("code", "internal")), str(error.get("message", "The turn failed.")))
            return
        if finish == "interrupted":
            # Not a success (the answer is unfinished) nor a cancel (nobody asked): the run failed,
            # and its message says that continue_message goes on with what was written.
            await self.fail("interrupted", str(event.get("message") or "The server writing this answer stopped."))
            return
        run = {"thread_id": self.input.thread_id, "run_id": self.input.run_id, "timestamp": ts}
        if finish == "awaiting_approval" and self.pending is not None:
            interrupts = interrupts_for(self.pending, self.network_name, self.chain_id)
            await self.write(RunFinishedEvent(**run, outcome=RunFinishedInterruptOutcome(interrupts=interrupts)))
        elif finish == "aborted":
            await self.write(RunFinishedEvent(**run, outcome=RunFinishedCancelledOutcome()))
        else:
            await self.write(RunFinishedEvent(**run, outcome=RunFinishedSuccessOutcome(),
                                              result={"messageId": event["message_id"], "finishReason": finish}))
        self.finished = True


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
        token = _bearer(request)
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

        translator = _Run(run, write, network_name, chat.chain_id)
        async with hub.subscribe(chat.chat_id, chat.owner, max_pending=sse_queue) as live, \
                auth.watch(token or "", address) as revoked:
            await response.prepare(request)
            await translator.started()
            try:
                start = await _begin(service, address, chat, run, translator.calls)
                await _follow(live, revoked, start, translator, response,
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


async def _begin(service: ChatService, address: str, chat: ChatRecord,
                 run: RunAgentInput, calls: dict[str, tuple[str, Any]]) -> Callable[[dict[str, Any]], bool]:
    """Start the run's turn (a message, or a decision: ``calls`` gets the card's calls); returns the
    test for the turn's first event."""
    if run.resume:
        approval_id = await _decide(service, address, chat, run.resume, calls)
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


async def _decide(service: ChatService, address: str, chat: ChatRecord, resume: Sequence[ResumeEntry],
                  calls: dict[str, tuple[str, Any]]) -> str:
    """Apply the resume as one Lunark decision on the card it answers; returns the approval id."""
    approvals = {entry.interrupt_id.partition(":")[0] for entry in resume}
    if len(approvals) != 1:
        raise InvalidInput("A resume answers the interrupts of one run: every interruptId is "
                           "<approval_id>:<call_id> of the same approval.")
    [approval_id] = approvals
    by_call = {entry.interrupt_id.partition(":")[2]: entry for entry in resume}
    pending = await service.runner.check_pending(chat)  # expires it now if its time ran out
    decisions: list[dict[str, Any]]
    if pending is not None and pending["approval_id"] == approval_id:
        actions = [ActionRequest.model_validate(raw) for raw in pending["action_requests"]]
        missing = [interrupt_id(approval_id, a.call_id) for a in actions if a.call_id not in by_call]
        unknown = set(by_call) - {a.call_id for a in actions}
        if missing or unknown:
            raise InvalidInput("Answer every interrupt of the card, and only those: "
                               f"missing {missing}, unknown {sorted(unknown)}.", approval_id=approval_id)
        decisions = [_decision(by_call[a.call_id], a, chat.chain_id) for a in actions]
        calls.update({a.call_id: (a.name, a.args) for a in actions})
    else:
        # Not the pending card (decided, expired, never offered): the runner's decision path says
        # which, with Lunark's code, and records a transaction a late wallet already sent.
        decisions = [_decision(entry, None, chat.chain_id) for entry in resume]
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


async def _follow(live: Subscription, revoked: asyncio.Event, first: Callable[[dict[str, Any]], bool],
                  run: _Run, response: web.StreamResponse, running: Callable[[], bool]) -> None:
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
