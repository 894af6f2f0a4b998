"""What a signed-in user can do with chats, shared by the Socket.IO handlers and the HTTP mirror.

Every operation checks ownership first: a chat belongs to the address that
created it, and everyone else gets ``forbidden``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lunark.errors import Forbidden, NotFound
from lunark.networks import Network, NetworkRegistry
from lunark.protocol import CallTool, ContinueMessage, ResumeDecisions, SendMessage, reject_decision
from lunark.server.limits import Limiters
from lunark.server.runner import Runner
from lunark.store import ChatRecord, MessageRecord, Store

if TYPE_CHECKING:
    from lunark.server.jobs import QueueRunner
    from lunark.server.workers import RemoteRunner

__all__ = ["ChatService", "network_info"]


def network_info(network: Network) -> dict[str, Any]:
    """The protocol's ``network`` object (enough for ``wallet_addEthereumChain``)."""
    return {
        "chain_id": network.chain_id,
        "name": network.name,
        "display_name": network.display_name,
        "symbol": network.symbol,
        "decimals": network.decimals,
        "rpc_urls": list(network.rpc_urls),
        "explorer_url": network.explorer_url,
        "confirmations": network.confirmations,  # extension: blocks until a transaction counts as confirmed
    }


class ChatService:
    def __init__(self, *, store: Store, runner: Runner | RemoteRunner | QueueRunner, registry: NetworkRegistry,
                 default_network: str, limiters: Limiters | None = None) -> None:
        self.store = store
        self.limiters = limiters
        self.runner = runner
        """The chats' turns: run here (``Runner``), or in worker processes (``RemoteRunner``; in a
        cluster, ``QueueRunner``)."""
        self.registry = registry
        self.default_chain_id = registry.get(default_network).chain_id

    async def chat_for(self, address: str, chat_id: str) -> ChatRecord:
        chat = await self.store.get_chat(chat_id)
        if chat is None:
            raise NotFound(f"There is no chat {chat_id!r}.", chat_id=chat_id)
        if chat.owner != address.lower():
            raise Forbidden("This chat belongs to another address.", chat_id=chat_id)
        return chat

    async def create_chat(self, address: str, *, chain_id: int | None = None) -> ChatRecord:
        if self.limiters is not None:
            self.limiters.create_chat.check(address.lower())
        network = self.registry.get(chain_id) if chain_id else self.registry.get(self.default_chain_id)
        return await self.store.create_chat(address.lower(), network.chain_id)

    async def list_chats(self, address: str) -> list[dict[str, Any]]:
        return [
            {"chat_id": c.chat_id, "title": c.title, "chain_id": c.chain_id, "created_at": c.created_at.isoformat()}
            for c in await self.store.list_chats(address.lower())
        ]

    async def join(self, address: str, chat_id: str | None) -> tuple[ChatRecord, dict[str, Any]]:
        """The chat (made if ``chat_id`` is None) and the ``join_chat`` ack without replay."""
        if self.limiters is not None:
            self.limiters.join.check(address.lower())
        chat = await self.create_chat(address) if chat_id is None else await self.chat_for(address, chat_id)
        pending = await self.runner.check_pending(chat)
        chat = await self.chat_for(address, chat.chat_id)  # an expiry may have moved on
        ack: dict[str, Any] = {
            "chat_id": chat.chat_id,
            "last_seq": await self.store.last_seq(chat.chat_id),
            "network": network_info(self.registry.get(chat.chain_id)),
        }
        if pending is not None:
            ack["pending_approval"] = pending
        return chat, ack

    async def send(self, address: str, payload: SendMessage) -> str:
        chat = await self.chat_for(address, payload.chat_id)
        if self.limiters is not None:
            self.limiters.message.check(address.lower())
        if chat.title is None:
            await self.store.set_chat_title(chat.chat_id, payload.content[:80])
        return await self.runner.send_message(chat, payload.content, payload.client_message_id)

    async def call_tool(self, address: str, payload: CallTool) -> str:
        chat = await self.chat_for(address, payload.chat_id)
        if self.limiters is not None:
            self.limiters.message.check(address.lower())  # a call starts a turn, as a message does
        return await self.runner.call_tool(chat, payload.name, dict(payload.args))

    async def continue_message(self, address: str, payload: ContinueMessage) -> None:
        chat = await self.chat_for(address, payload.chat_id)
        if self.limiters is not None:
            self.limiters.message.check(address.lower())
        await self.runner.continue_message(chat, payload.message_id)

    async def decide(self, address: str, payload: ResumeDecisions) -> None:
        chat = await self.chat_for(address, payload.chat_id)
        if self.limiters is not None:
            self.limiters.decision.check(address.lower())
        decisions = [d.model_dump(exclude_none=True) for d in payload.decisions]
        await self.runner.resume(chat, payload.approval_id, decisions)

    async def abort(self, address: str, chat_id: str) -> None:
        chat = await self.chat_for(address, chat_id)
        await self.runner.abort(chat.chat_id)

    async def wallet_changed(self, address: str, chat_id: str, chain_id: int) -> dict[str, Any]:
        """The user switched network in the wallet: the chat follows, and an approval
        prepared for another network is rejected as stale (rule 10)."""
        chat = await self.chat_for(address, chat_id)
        if self.limiters is not None:
            self.limiters.decision.check(address.lower())
        network = self.registry.get(chain_id)
        await self.store.set_chat_network(chat.chat_id, network.chain_id)
        pending = await self.runner.pending_approval(chat.chat_id)
        if pending is not None and any(
            r.get("tx") and int(r["tx"]["chain_id"], 16) != network.chain_id for r in pending["action_requests"]
        ):
            stale = reject_decision(f"The wallet switched to {network.display_name}; this approval "
                                    "was prepared for another network.")
            await self.runner.resume(chat, pending["approval_id"], [stale] * len(pending["action_requests"]))
        return network_info(network)

    async def tools(self) -> list[dict[str, Any]]:
        """The agent's tools, as ``GET /api/tools`` lists them."""
        return await self.runner.tools()

    async def detail(self, address: str, chat_id: str) -> dict[str, Any]:
        chat = await self.chat_for(address, chat_id)
        pending = await self.runner.check_pending(chat)
        messages = await self.store.list_messages(chat.chat_id)
        transactions = await self.store.list_transactions(chat.chat_id)
        chat = await self.chat_for(address, chat_id)
        out: dict[str, Any] = {
            "chat_id": chat.chat_id,
            "title": chat.title,
            "messages": _joined(messages),
            "transactions": [
                {"call_id": t.call_id, "tx_hash": t.tx_hash, "chain_id": t.chain_id, "status": t.status,
                 "history": t.history}
                for t in transactions
            ],
            "last_seq": await self.store.last_seq(chat.chat_id),
            "network": network_info(self.registry.get(chat.chain_id)),
        }
        if pending is not None:
            out["pending_approval"] = pending
        return out


def _joined(messages: list[MessageRecord]) -> list[dict[str, Any]]:
    """The messages for people: a continued answer's parts ("<id>:part<n>", stored by the runner)
    joined into the message they continue, which ends as its last part ended."""
    out: dict[str, dict[str, Any]] = {}
    for m in messages:
        base, _, part = m.message_id.partition(":part")
        if part and base in out:
            out[base]["content"] += m.content
            out[base]["finish_reason"] = m.finish_reason
            continue
        out[m.message_id] = {"message_id": m.message_id, "role": m.role, "content": m.content,
                             "finish_reason": m.finish_reason, "created_at": m.created_at.isoformat()}
    return list(out.values())
