"""What a Lunark tool is, and the context it runs in.

A tool is a pydantic argument schema (whose field descriptions are what the
model reads) plus two async steps:

- ``prepare(args, ctx)`` validates, applies the spending policy and builds what
  the user will approve (a human ``summary``, and for transfers the unsigned
  ``tx``). It must not change anything anywhere: it runs before approval.
- ``execute(args, ctx, proposal, decision)`` does the action. For a tool that
  needs no approval it runs right after ``prepare`` with ``decision=None``.

Errors are ``LunarkError``s; the graph turns them into tool messages in exactly
one place (``lunark.graph``). A third-party tool is usually a ``FunctionTool``.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError

from lunark.errors import InvalidInput
from lunark.ids import settlement_id
from lunark.tools.recipient import CardWarning

if TYPE_CHECKING:
    from datetime import datetime

    from lunark.chain.client import ChainClients
    from lunark.chain.signer import Signer
    from lunark.networks import Network, NetworkRegistry
    from lunark.settlement import Settlements
    from lunark.tools.policy import SpendingPolicy, SpendLedger
    from lunark.tools.recipient import History

__all__ = [
    "ApprovalRule",
    "Decision",
    "FunctionTool",
    "Proposal",
    "ResolvedRule",
    "Tool",
    "ToolContext",
    "needs_approval",
    "validate_args",
]

JSON = Any
Decision = Mapping[str, Any]
"""One decision as the protocol spells it: ``{"type": "approve" | "edit" | "reject", ...}``."""



@runtime_checkable
class ResolvedRule(Protocol):
    """An approval rule judged on what a call resolved to (its ``Proposal``), never on the model's
    raw arguments: e.g. a transfer's token contract and amount in base units."""

    def needs(self, proposal: Proposal) -> bool: ...


ApprovalRule = Literal["always", "never"] | Callable[[BaseModel], bool] | ResolvedRule
"""When a call needs the user's approval: always, never, a predicate on the validated args, or a
``ResolvedRule`` that reads what the call resolved to (e.g. the exact transfer)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """What the user is asked to approve for one tool call (JSON-serializable fields only)."""

    summary: str
    """One line a person reads: amount and symbol, recipient, network, fee."""
    description: str = ""
    """Longer explanation, e.g. why the agent proposes it."""
    tx: dict[str, Any] | None = None
    """The unsigned transaction the wallet is asked to sign (protocol ``tx`` shape)."""
    data: dict[str, Any] = field(default_factory=dict)
    """Whatever ``execute`` needs to do exactly what was shown (e.g. the prepared transaction)."""
    facts: tuple[tuple[str, str], ...] = ()
    """Rows of the approval card, ``(label, value)``, for a tool whose card the clients do not know
    (e.g. an MCP tool: server, tool, hints, each argument). Sent as the action's ``facts``."""
    recipient_name: str | None = None
    """The ENS name (or contact label) the recipient was given as; the card shows it next to the address."""
    preview: dict[str, Any] | None = None
    """The balance-change preview (protocol ``Preview``), for a transaction."""
    warnings: tuple[CardWarning, ...] = ()
    """What the user should know first (``lunark.tools.recipient``, protocol ``ApprovalWarning``); danger
    ones need acknowledging."""

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"summary": self.summary, "description": self.description, "tx": self.tx,
                                 "data": self.data}
        if self.facts:
            state["facts"] = [{"label": label, "value": value} for label, value in self.facts]
        if self.recipient_name is not None:
            state["recipient_name"] = self.recipient_name
        if self.preview is not None:
            state["preview"] = self.preview
        if self.warnings:
            state["warnings"] = [w.to_dict() for w in self.warnings]
        return state

    @classmethod
    def from_state(cls, raw: Mapping[str, Any]) -> Proposal:
        return cls(
            summary=raw["summary"],
            description=raw.get("description", ""),
            tx=raw.get("tx"),
            data=dict(raw.get("data") or {}),
            facts=tuple((str(f["label"]), str(f["value"])) for f in raw.get("facts") or ()),
            recipient_name=raw.get("recipient_name"),
            preview=raw.get("preview"),
            warnings=tuple(CardWarning.from_dict(w) for w in raw.get("warnings") or ()),
        )


@dataclass(kw_only=True)
class ToolContext:
    """Everything a tool may use for one chat turn. Built by the agent, never by the model."""

    user_address: str
    """The signed-in user's checksum address."""
    chain_id: int
    """The chat's current network."""
    registry: NetworkRegistry
    clients: ChainClients
    policy: SpendingPolicy
    ledger: SpendLedger
    signer: Signer | None = None
    """A local signer (Anvil, terminal); None where only the user's wallet signs."""
    emit: Callable[[dict[str, Any]], None] = lambda event: None
    """Progress for the caller (``tx_update``, ``network_switch``), via LangGraph's stream writer."""
    track_timeout: float = 300.0
    """Seconds to wait for a transaction before calling it dropped."""
    verify_timeout: float = 30.0
    """Seconds to wait for a wallet-broadcast transaction to become visible."""
    chat_id: str = ""
    """The chat (graph thread) the call belongs to."""
    approval_id: str | None = None
    """The approval this call is (or would be) part of; with ``call_id`` it names the action's
    spend reservation and settlement."""
    call_id: str | None = None
    """The tool call being prepared or executed."""
    expires_at: datetime | None = None
    """When the approval expires; a spend reservation lapses then."""
    settlements: Settlements | None = None
    """Owns every approved transaction from decision to final outcome (``lunark.settlement``)."""
    history: History | None = None
    """The user's settled transfers, read by the recipient checks (the store)."""
    nonces: dict[tuple[int, str], int] = field(default_factory=dict)
    """While one approval is prepared: the next nonce per ``(chain id, sender)`` after the
    transactions prepared so far, so several in one approval take successive nonces (shared by the
    calls of one step)."""
    nonce_floor: int | None = None
    """At execution: the lowest nonce this call's transaction may carry, its prepared nonce lowered
    by the earlier transactions of the approval that are not sent (``lunark.nonces``)."""

    @property
    def settlement_id(self) -> str | None:
        """``"{approval_id}/{call_id}"``: the approved action's one key, in the spend ledger and the
        settlements (``lunark.ids.settlement_id``); ``None`` outside an approval."""
        return settlement_id(self.approval_id, self.call_id) if self.approval_id and self.call_id else None

    @property
    def action_id(self) -> str | None:
        """Deprecated: the former name of ``settlement_id``."""
        warnings.warn("ToolContext.action_id is now ToolContext.settlement_id", DeprecationWarning, stacklevel=2)
        return self.settlement_id

    @property
    def network(self) -> Network:
        return self.registry.get(self.chain_id)


@runtime_checkable
class Tool(Protocol):
    """A tool the agent can call."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def args_schema(self) -> type[BaseModel]: ...

    @property
    def approval(self) -> ApprovalRule: ...

    async def prepare(self, args: BaseModel, ctx: ToolContext) -> Proposal: ...

    async def execute(
        self, args: BaseModel, ctx: ToolContext, proposal: Proposal, decision: Decision | None
    ) -> JSON: ...


def validate_args(tool: Tool, raw: Mapping[str, Any]) -> BaseModel:
    """Validate raw arguments (from a model or an edit) against the tool's schema."""
    try:
        return tool.args_schema.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'args'}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidInput(f"Invalid arguments for {tool.name}: {problems}", tool=tool.name) from None


def needs_approval(
    tool: Tool, args: BaseModel, rule: ApprovalRule | None = None, proposal: Proposal | None = None
) -> bool:
    """Whether this call waits for the user (``rule`` overrides the tool's own)."""
    rule = tool.approval if rule is None else rule
    if rule == "always":
        return True
    if rule == "never":
        return False
    if isinstance(rule, ResolvedRule):
        return True if proposal is None else rule.needs(proposal)  # nothing resolved: fail closed
    return bool(rule(args))


@dataclass(frozen=True, kw_only=True)
class FunctionTool:
    """A tool from one async function; the usual shape of a plugin tool.

    ```python
    class Args(BaseModel):
        text: str = Field(description="What to post")

    async def post(args: Args, ctx: ToolContext) -> dict[str, str]:
        return {"posted": args.text}

    tool = FunctionTool(name="post", description="Post a note.", args_schema=Args,
                        fn=post, approval="always")
    ```
    """

    name: str
    description: str
    args_schema: type[BaseModel]
    fn: Callable[[Any, ToolContext], Awaitable[JSON]]
    approval: ApprovalRule = "always"
    summarize: Callable[[Any], str] | None = None
    """Human summary of a call for the approval card; defaults to ``name(args)``."""

    async def prepare(self, args: BaseModel, ctx: ToolContext) -> Proposal:
        if self.summarize is not None:
            summary = self.summarize(args)
        else:
            shown = ", ".join(f"{k}={v!r}" for k, v in args.model_dump().items())
            summary = f"{self.name}({shown})"
        return Proposal(summary=summary, description=self.description)

    async def execute(
        self, args: BaseModel, ctx: ToolContext, proposal: Proposal, decision: Decision | None
    ) -> JSON:
        return await self.fn(args, ctx)
