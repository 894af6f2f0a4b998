"""``switch_network``: change the chat's network (after approval)."""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lunark.errors import InvalidInput
from lunark.protocol import network_switch
from lunark.tools.base import ApprovalRule, Decision, Proposal, ToolContext

__all__ = ["SwitchNetwork", "SwitchNetworkArgs"]


class SwitchNetworkArgs(BaseModel):
    """Arguments of ``switch_network``."""

    model_config = ConfigDict(extra="forbid")

    network: str = Field(
        description="The network to switch to: a name, alias or chain id, e.g. 'sepolia', 'base', '8453'.",
        min_length=1,
        max_length=64,
    )

    @field_validator("network", mode="before")
    @classmethod
    def _chain_id_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class SwitchNetwork:
    """Switch the chat to another network; the wallet is asked to follow."""

    name = "switch_network"
    description = (
        "Switch the chat to another EVM network (by name, alias or chain id). Later balances and "
        "transfers use the new network. The user approves the switch."
    )
    args_schema: type[BaseModel] = SwitchNetworkArgs
    approval: ApprovalRule = "always"

    async def prepare(self, args: BaseModel, ctx: ToolContext) -> Proposal:
        args = cast(SwitchNetworkArgs, args)
        current = ctx.network
        target = ctx.registry.get(args.network)
        if target.chain_id == current.chain_id:
            raise InvalidInput(f"The chat is already on {current.display_name}.", chain_id=current.chain_id)
        return Proposal(
            summary=(
                f"Switch network from {current.display_name} to {target.display_name} "
                f"(chain {target.chain_id}, {target.symbol})"
            ),
            data={"chain_id": target.chain_id},
        )

    async def execute(
        self, args: BaseModel, ctx: ToolContext, proposal: Proposal, decision: Decision | None
    ) -> dict[str, Any]:
        target = ctx.registry.get(int(proposal.data["chain_id"]))
        ctx.chain_id = target.chain_id
        ctx.emit(
            network_switch(
                chain_id=target.chain_id,
                name=target.name,
                display_name=target.display_name,
                confirmations=target.confirmations,
                symbol=target.symbol,
                decimals=target.decimals,
                rpc_urls=target.rpc_urls,
                explorer_url=target.explorer_url,
            )
        )
        return {
            "network": target.name,
            "display_name": target.display_name,
            "chain_id": target.chain_id,
            "symbol": target.symbol,
        }
