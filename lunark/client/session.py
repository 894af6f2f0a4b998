"""One joined chat: ``ChatSession`` sends messages and tool calls, reads the chat's events (in seq
order: ``ordering``) and decides its approvals, each request a call on the client's connection.
Made by ``LunarkClient.join`` (``sdk``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from lunark.client.connection import _payload
from lunark.client.errors import Disconnected
from lunark.client.ordering import ChatSequence
from lunark.errors import InvalidInput, LunarkError, NoPendingApproval
from lunark.protocol import (
    Abort,
    ApprovalRequest,
    CallTool,
    CallToolAck,
    ChatEvent,
    ContinueMessage,
    MessageEnd,
    MessageStart,
    ResumeDecisions,
    SendMessage,
    SendMessageAck,
    ToolCall,
    ToolResult,
    WalletChanged,
    WalletChangedAck,
    approve_decision,
    edit_decision,
    reject_decision,
)

if TYPE_CHECKING:
    from lunark.client.sdk import LunarkClient

__all__ = ["ChatSession"]


class ChatSession(ChatSequence):
    """One joined chat: send messages, read its events, decide its approvals.

    Made by ``LunarkClient.join``. State follows the events as they arrive:
    ``pending_approval`` is set by ``pending_approval`` and cleared by
    ``approval_resolved``; ``network`` follows ``network_switch`` and
    ``wallet_changed``.
    """

    def __init__(
        self,
        client: LunarkClient,
        chat_id: str,
        *,
        network: dict[str, Any],
        last_seq: int,
        pending_approval: ApprovalRequest | None,
    ) -> None:
        self._client = client
        self.chat_id: str = chat_id
        """The chat's id."""
        self.network: dict[str, Any] = network
        """The chat's network as the protocol sends it: ``chain_id``, ``name``, ``display_name``,
        ``symbol``, ``decimals``, ``rpc_urls``, ``explorer_url``."""
        self.pending_approval: ApprovalRequest | None = pending_approval
        """The approval the chat waits for (a ``PendingApproval`` event, or the join ack's), or None."""
        self._received = last_seq  # highest seq accepted in order (the re-join point)
        self._yielded = last_seq  # highest seq handed to the application
        self._held: dict[int, ChatEvent] = {}
        self._queue: asyncio.Queue[ChatEvent | None] = asyncio.Queue()
        self._gap_timer: asyncio.TimerHandle | None = None
        self._gap_strikes = 0

    def __repr__(self) -> str:
        return f"ChatSession(chat_id={self.chat_id!r}, last_seq={self.last_seq})"

    # -- requests -----------------------------------------------------------------------------

    async def turn(self, content: str) -> list[ChatEvent]:
        """Send a message and collect the events until the answer's ``message_end``.

        The answer ends with ``finish_reason`` ``"stop"``, or ``"awaiting_approval"`` with
        ``pending_approval`` set. Events already queued before the message are included::

            events = await session.turn("what's my balance?")
            text = "".join(e.text for e in events if isinstance(e, Token))
        """
        message_id = await self.send(content)
        out: list[ChatEvent] = []
        started = False
        async for event in self.events():
            out.append(event)
            if isinstance(event, MessageStart) and event.message_id == message_id:
                started = True
            elif started and isinstance(event, MessageEnd):
                return out
        raise Disconnected("The client closed before the turn ended.")

    async def send(self, content: str, *, client_message_id: str | None = None) -> str:
        """Send a user message (it starts a turn); returns the message id.

        ``client_message_id`` makes it idempotent: the same id twice is one message, so the
        SDK repeats the request safely when the connection drops before the ack. One is made
        up when omitted. Raises ``Busy`` while a turn runs or an approval waits.
        """
        payload = _payload(
            SendMessage,
            chat_id=self.chat_id,
            content=content,
            client_message_id=client_message_id or "cm_" + uuid.uuid4().hex,
        )
        ack = await self._client._call("send_message", payload, retry=True)
        return SendMessageAck.model_validate(ack).message_id

    async def decide(self, approval_id: str, decisions: Sequence[BaseModel | Mapping[str, Any]]) -> None:
        """Answer an approval with one decision per action request, in order (the general form).

            await session.decide(approval.approval_id, [
                {"type": "approve", "tx_hash": tx_hash},
                {"type": "reject", "message": "not this one"},
            ])

        Raises ``AlreadyDecided``, ``ApprovalExpired``, ``NoPendingApproval`` or
        ``InvalidInput``. Not repeated after a dropped connection (it might have been
        applied): then ``Disconnected`` is raised, and ``approval_resolved`` tells.
        """
        wire = [
            d.model_dump(mode="json", exclude_none=True) if isinstance(d, BaseModel) else dict(d) for d in decisions
        ]
        payload = _payload(ResumeDecisions, chat_id=self.chat_id, approval_id=approval_id, decisions=wire)
        await self._client._call("resume_decisions", payload, retry=False)

    def _approval(self, approval_id: str | None) -> ApprovalRequest | None:
        pending = self.pending_approval
        if approval_id is None:
            if pending is None:
                raise NoPendingApproval(f"Chat {self.chat_id} is not waiting for a decision.", chat_id=self.chat_id)
            return pending
        return pending if pending is not None and pending.approval_id == approval_id else None

    async def approve(
        self, approval_id: str | None = None, *, tx_hash: str | None = None, signed_tx: str | None = None,
        acknowledge: Sequence[str] = (),
    ) -> None:
        """Approve every action of the approval (the pending one when ``approval_id`` is None).

        - no argument: the server's local signer signs (dev and CLI setups);
        - ``tx_hash``: the wallet signed and broadcast it (see ``sign_and_send``);
        - ``signed_tx``: the wallet signed it; the server verifies, then broadcasts.

        ``acknowledge``: the codes of the danger warnings the user read and accepts
        (``request.warnings``, severity ``"danger"``); without every one of them the server refuses
        with ``AcknowledgementRequired`` and nothing is signed. Read them before the wallet signs.

        ``tx_hash`` and ``signed_tx`` need an approval with exactly one action; use
        ``decide`` for several.
        """
        approval = self._approval(approval_id)
        count = len(approval.action_requests) if approval is not None else 1
        if (tx_hash or signed_tx) and count != 1:
            raise InvalidInput(
                f"The approval has {count} actions; give one decision per action with decide().",
                actions=count,
            )
        decision = approve_decision(tx_hash=tx_hash or None, signed_tx=signed_tx or None,
                                    acknowledge=list(acknowledge) if acknowledge else None)
        target = approval_id or cast(ApprovalRequest, approval).approval_id
        await self.decide(target, [decision] * count)

    async def reject(self, approval_id: str | None = None, *, message: str | None = None) -> None:
        """Reject every action of the approval; ``message`` (why) reaches the model."""
        approval = self._approval(approval_id)
        count = len(approval.action_requests) if approval is not None else 1
        decision = reject_decision(message or None)
        target = approval_id or cast(ApprovalRequest, approval).approval_id
        await self.decide(target, [decision] * count)

    async def edit(
        self,
        args: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        approval_id: str | None = None,
    ) -> None:
        """Change the actions' arguments; the server validates them, prepares them again and
        sends a new ``pending_approval`` to decide.

        ``args`` are merged over each action's own arguments: a mapping for an approval with
        one action, or one mapping per action, in order::

            await session.edit({"amount": "0.05"})
        """
        approval = self._approval(approval_id)
        if approval is None:
            raise NoPendingApproval(
                f"Approval {approval_id} is not the one this session waits for; use decide().",
                approval_id=approval_id,
            )
        requests = approval.action_requests
        per_action = [args] if isinstance(args, Mapping) else list(args)
        if len(per_action) != len(requests):
            raise InvalidInput(
                f"The approval has {len(requests)} actions, but {len(per_action)} sets of arguments were given.",
                actions=len(requests),
            )
        decisions = [
            edit_decision(request.name, {**request.args, **dict(new)})
            for request, new in zip(requests, per_action, strict=True)
        ]
        await self.decide(approval.approval_id, decisions)

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None) -> str:
        """Run one tool call yourself, in this chat, as if the model had proposed it (``call_tool`` in
        the protocol); returns its ``call_id``. The call is validated against the tool's schema and
        checked by the spending policy; a tool that needs approval waits for a decision like any
        other (``pending_approval`` is set, decided with ``approve``/``reject``/``edit`` here or in
        the dApp), and its ``ToolCall``, ``TxUpdate`` and ``ToolResult`` events carry the returned
        id. The turn ends after the call, without a model answer::

            call_id = await session.call_tool("get_balance", {})
            result = await session.tool_result(call_id)     # a ToolResult: status, result, error

        ``name`` is the tool as the model names it (``LunarkClient.list_tools``: ``notes__add_note``
        for MCP tool ``add_note`` of server ``notes``). Raises ``InvalidInput`` for a tool that does
        not exist or arguments its schema refuses, ``Busy`` while a turn runs or an approval waits,
        ``Forbidden``/``NotFound`` for a chat that is not yours. Not repeated after a dropped
        connection (the call may have started): then ``Disconnected`` is raised, and the events tell.
        """
        payload = _payload(CallTool, chat_id=self.chat_id, name=name, args=dict(arguments or {}))
        ack = await self._client._call("call_tool", payload, retry=False)
        return CallToolAck.model_validate(ack).call_id

    async def tool_result(self, call_id: str) -> ToolResult:
        """Consume events until the turn of ``call_id`` ends, and return the call's ``ToolResult``:
        ``status`` is ``success`` (``result`` holds the tool's answer: a transfer's settlement, an
        MCP tool's ``{"server", "tool", "result"}``), ``error`` (``error`` says why; also a transfer
        whose settlement ended in any state but ``confirmed``), ``rejected`` (the user's reason is
        ``result["message"]``; an expired approval is rejected too) or ``superseded`` (set aside: a new
        message was sent instead of deciding; nothing was done). The chat
        is free for the next call when it returns. It waits as long as the approval does: decide it
        elsewhere (the dApp), or read ``events()`` yourself to decide it here.

        Raises ``LunarkError`` when the turn ended without a result (it was aborted, or failed before
        the call ran)."""
        seen = False
        result: ToolResult | None = None
        async for event in self.events():
            if isinstance(event, ToolCall) and event.call_id == call_id:
                seen = True
            elif isinstance(event, ToolResult) and event.call_id == call_id:
                seen, result = True, event
            elif seen and isinstance(event, MessageEnd) and event.finish_reason != "awaiting_approval":
                if result is None:
                    raise LunarkError(
                        f"The call {call_id} ended without a result ({event.finish_reason}).", call_id=call_id
                    )
                return result
        raise Disconnected("The client closed before the tool call ended.")

    async def continue_message(self, message_id: str) -> None:
        """Go on with an answer the model cut at its output limit (its ``MessageEnd`` has
        ``finish_reason == "length"``), or that a server which stopped mid-answer left
        (``"interrupted"``, with a ``message`` saying so): more ``Token`` events for the same
        ``message_id`` follow, then a new ``MessageEnd``::

            events = await session.turn("explain gas fees")
            while isinstance(end := events[-1], MessageEnd) and end.finish_reason == "length":
                await session.continue_message(end.message_id)
                events = await session.until_message_end()

        Only the chat's last answer can be continued (``InvalidInput`` otherwise); ``Busy`` while a
        turn runs. Not repeated after a dropped connection (the continuation may have started):
        then ``Disconnected`` is raised, and the events tell.
        """
        payload = _payload(ContinueMessage, chat_id=self.chat_id, message_id=message_id)
        await self._client._call("continue_message", payload, retry=False)

    async def abort(self) -> None:
        """Stop the running turn; it ends with ``message_end`` ``finish_reason="aborted"``."""
        await self._client._call("abort", _payload(Abort, chat_id=self.chat_id), retry=True)

    async def wallet_changed(self, chain_id: int) -> dict[str, Any]:
        """Tell the server the wallet moved to ``chain_id``; the chat follows. Returns the new network."""
        ack = await self._client._call(
            "wallet_changed", _payload(WalletChanged, chat_id=self.chat_id, chain_id=chain_id), retry=True
        )
        self.network = WalletChangedAck.model_validate(ack).network.to_wire()
        return self.network
