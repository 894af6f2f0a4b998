"""Deciding an approval in ``lunark chat``: one answer per card (approve, with each danger
warning's code typed; edit the amount; reject), then, in wallet mode, every approved transaction
signed with the local key and broadcast, in order, before the decisions go to the server.

``Approvals`` is the part of ``TerminalChat`` (``chat``) that asks and signs; the chat's
constructor sets the state declared on it.
"""

from __future__ import annotations

from typing import Any, Literal

from lunark.client.chat_render import Rendering, _time_left
from lunark.client.wallet import sign_and_send, with_nonce_floors
from lunark.errors import LunarkError
from lunark.protocol import (
    ActionRequest,
    ApprovalRequest,
    approve_decision,
    edit_decision,
    reject_decision,
)

__all__ = ["Approvals", "SignMode"]

SignMode = Literal["wallet", "server"]


class Approvals(Rendering):
    """Ask for the decisions of an approval, sign what the wallet sends, and send them."""

    private_key: str
    rpc_url: str | None
    sign_mode: SignMode
    _queued: str | None

    async def acknowledged(self, request: ActionRequest) -> list[str] | None:
        """Ask the user to type each danger warning's code; the codes, or None when one was not typed."""
        codes = list(dict.fromkeys(w.code for w in request.warnings if w.severity == "danger"))
        for code in codes:
            typed = await self.ask(f"  type {code} to acknowledge it: ")
            if typed is None or typed.strip().lower() != code:
                self.line(f"  not acknowledged: {code}; nothing was approved")
                return None
        return codes

    def _allowed(self, approval: ApprovalRequest, request: ActionRequest) -> list[str]:
        for config in approval.review_configs:
            if config.action_name == request.name:
                return list(config.allowed_decisions)
        return ["approve", "reject"]

    async def decide(self, approval: ApprovalRequest) -> Literal["sent", "eof", "failed", "message"]:
        """Ask for one decision per action, then send them. Anything typed that is not an answer is a
        new message: it is queued, and sending it sets the approval aside (``"message"``)."""
        assert self.session is not None
        decisions: list[dict[str, Any]] = []
        for index, request in enumerate(approval.action_requests):
            self.card(approval, request, index)
            allowed = self._allowed(approval, request)
            can_edit = "edit" in allowed and "amount" in request.args
            options = [o for o, ok in (("[a]pprove", "approve" in allowed), ("[e]dit amount", can_edit),
                                       ("[r]eject", "reject" in allowed)) if ok]
            prompt = "  " + " / ".join(options) + "? "
            while True:
                answer = await self.ask(prompt)
                if answer is None:
                    self.line(f"  left undecided; it expires in {_time_left(approval.expires_at)}")
                    return "eof"
                choice = answer.strip().lower()[:1]
                decision: dict[str, Any] | None = None
                if choice == "a" and "approve" in allowed:
                    # Acknowledged before the wallet signs anything: a refusal afterwards would come
                    # too late for a transaction the wallet already broadcast. Signed below, once every
                    # card is decided.
                    acknowledge = await self.acknowledged(request)
                    if acknowledge is not None:
                        decision = approve_decision(acknowledge=list(acknowledge) if acknowledge else None)
                elif choice == "e" and can_edit:
                    amount = await self.ask("  new amount: ")
                    if amount is None:
                        return "eof"
                    if amount.strip():
                        args = {**request.args, "amount": amount.strip()}
                        decision = edit_decision(request.name, args)
                elif choice == "r" and "reject" in allowed:
                    reason = await self.ask("  reason (optional): ")
                    decision = reject_decision(reason.strip() if reason and reason.strip() else None)
                elif len(answer.split()) > 1:
                    self._queued = answer.strip()
                    return "message"
                else:
                    self.line("  please answer " + ", ".join(o[1] for o in options)
                              + ", or type a new message to set this aside")
                if decision is not None:
                    decisions.append(decision)
                    break
        decisions = await self.sign(approval, decisions)
        try:
            await self.session.decide(approval.approval_id, decisions)
        except LunarkError as exc:
            self.line(f"  [{exc.code}] {exc.message}")
            if any(d.get("tx_hash") for d in decisions):
                self.line("  Note: the wallet already broadcast the transaction.")
            return "failed"
        return "sent"

    async def sign(self, approval: ApprovalRequest, decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """In wallet mode, sign and broadcast every approved transaction, in order, once all cards are
        decided: each at its nonce after the rejected ones before it (``with_nonce_floors``), so none
        waits behind a gap. One the wallet cannot send becomes a reject saying why."""
        if self.sign_mode == "server":
            return decisions
        assert self.session is not None
        for index, decision in enumerate(decisions):
            tx = with_nonce_floors(approval, decisions)[index]
            if decision["type"] != "approve" or tx is None:
                continue
            chain_id = int(tx["chain_id"], 16)
            rpc_url = self.rpc_url
            if rpc_url is None and chain_id == self.session.network.get("chain_id"):
                urls = self.session.network.get("rpc_urls") or []
                rpc_url = urls[0] if urls else None
            if rpc_url is None:
                why = f"no RPC URL for chain {chain_id}; restart with --rpc-url"
            else:
                self.line(f"  [wallet] signing and sending to {rpc_url} ...")
                try:
                    decision["tx_hash"] = await sign_and_send(tx, rpc_url, self.private_key)
                    self.line(f"  [wallet] broadcast {decision['tx_hash']}")
                    continue
                except LunarkError as exc:
                    why = exc.message
            self.line(f"  [wallet] failed: {why}")
            decisions[index] = reject_decision(f"My wallet could not send it: {why}")
        return decisions
