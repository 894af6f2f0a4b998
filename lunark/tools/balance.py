"""``get_balance``: read a native or ERC-20 balance. Read-only, so no approval."""

from __future__ import annotations

from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field

from lunark.chain.ens import resolve_recipient
from lunark.contacts import contact_named
from lunark.errors import InvalidInput, UnknownToken
from lunark.networks import Network, Token
from lunark.tools.base import ApprovalRule, Decision, Proposal, ToolContext

__all__ = ["BalanceArgs", "GetBalance"]


class BalanceArgs(BaseModel):
    """Arguments of ``get_balance``."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        default=None,
        description="Whose balance: a 0x address, an ENS name such as alice.eth, or the label of one of the "
        "user's contacts such as alice. Omit it for the user's own balance.",
        max_length=255,
    )
    token: str | None = Field(
        default=None,
        description=(
            "Token symbol (e.g. 'USDC') or ERC-20 contract address. "
            "Omit it for the network's native currency (e.g. ETH)."
        ),
    )


class GetBalance:
    """Balance of the user (or any address) in native currency or an ERC-20 token."""

    name = "get_balance"
    description = (
        "Read a balance on the chat's current network: the native currency (ETH) or an ERC-20 "
        "token, for the user by default or for any address."
    )
    args_schema: type[BaseModel] = BalanceArgs
    approval: ApprovalRule = "never"

    async def prepare(self, args: BaseModel, ctx: ToolContext) -> Proposal:
        args = cast(BalanceArgs, args)
        whose = args.address or "your address"
        what = args.token or ctx.network.symbol
        return Proposal(summary=f"Read the {what} balance of {whose} on {ctx.network.display_name}")

    async def execute(
        self, args: BaseModel, ctx: ToolContext, proposal: Proposal, decision: Decision | None
    ) -> dict[str, Any]:
        args = cast(BalanceArgs, args)
        network = ctx.network
        client = ctx.clients.get(network)
        token = None if network.is_native(args.token) else args.token
        try:
            contact = await contact_named(ctx.history, ctx.user_address, args.address) if args.address else None
        except InvalidInput as exc:
            known = _known_token(network, args.address) if args.token is None else None
            if known is None:
                raise
            # "balance of usdc": a word that names no contact but a token here; say so, never guess.
            raise InvalidInput(
                f"{exc.message} {known.symbol} is a token on {network.display_name}: for your own balance of it, "
                f"ask for your {known.symbol} balance.",
                **exc.details,
            ) from exc
        name: str | None
        if contact is not None:
            address, name = contact.address, contact.label
        else:
            address, name = (await resolve_recipient(client, args.address) if args.address
                             else (ctx.user_address, None))
        balance = await client.balance(address, token)
        named = {"name": name} if name else {}
        return {**balance.to_dict(), **named, "network": network.name, "display_name": network.display_name}


def _known_token(network: Network, word: str | None) -> Token | None:
    try:
        return network.token(word) if word else None
    except UnknownToken:
        return None
