"""The card's balance preview: a prepared transfer simulated exactly with ``eth_simulateV1``.

The answer's logs are read by ``lunark.chain.preview`` (pure: movements, net deltas, the card's
rows); this module asks the node, and reads the parties' balances before the block.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from eth_typing import ChecksumAddress
from eth_utils.address import to_checksum_address
from web3.exceptions import ContractLogicError
from web3.types import RPCEndpoint

from lunark.chain.connection import revert_reason
from lunark.chain.preview import NATIVE, BalancePreview, changes_for, net_deltas, transfers_in_logs
from lunark.chain.reads import AccountReads
from lunark.chain.types import PreparedTx
from lunark.errors import ChainError, RpcUnavailable, SimulationFailed, UnknownToken
from lunark.networks import Token

__all__ = ["TransferSimulation"]


class TransferSimulation(AccountReads):
    """``preview`` and the ``units`` of the assets previews met."""

    async def preview(
        self, prepared: PreparedTx, *, block: int | None = None, queued: bool = False, movements_only: bool = False
    ) -> BalancePreview:
        """Simulate ``prepared`` exactly (``eth_simulateV1``) at the latest block (or on top of
        ``block``, for a transaction already mined in the next one): the balance changes
        of the user and the recipient, every party's movements, gas used and the worst-case fee.
        ``queued``: its nonce follows others of the same approval not sent yet, which a validating
        node would refuse now; it is simulated at the account's next nonce instead (what a transfer
        moves does not depend on its nonce), and again at its own when it is signed.

        A node without ``eth_simulateV1``, or one that refuses the simulation, gives a preview with
        ``simulated`` False and the reason: the card then says there is none (never a guess). A
        transaction the simulation says reverts raises ``SimulationFailed``.

        ``movements_only``: what the re-check at signing compares (who moves what, whether the
        recipient has code), simulated on the latest block in one round trip: no ``before``
        balances, so no ``changes``.
        """
        intent = prepared.intent
        await self.ensure_chain()
        if block is None and not movements_only:
            with self._translate("reading the latest block"):
                block = int(await self.w3.eth.block_number)
        at: Literal["latest"] | int = "latest" if block is None else block
        call = {
            "from": intent.sender, "to": intent.tx_to, "value": hex(intent.tx_value), "data": intent.tx_data,
            "gas": hex(prepared.gas), "maxFeePerGas": hex(prepared.max_fee_per_gas),
            "maxPriorityFeePerGas": hex(prepared.max_priority_fee_per_gas),
            **({} if queued else {"nonce": hex(prepared.nonce)}),
        }
        params = [{"blockStateCalls": [{"calls": [call]}], "traceTransfers": True, "validation": True},
                  at if isinstance(at, str) else hex(at)]

        async def simulate() -> tuple[Any, str | None]:
            """The node's answer, or why there is none (a node that is away is not a reason: it raises)."""
            try:
                with self._translate("simulating the transfer"):
                    return await self.w3.manager.coro_request(RPCEndpoint("eth_simulateV1"), params), None
            except RpcUnavailable:
                raise
            except ChainError as exc:
                if exc.details.get("rpc_code") == -32601:
                    return None, "this node does not support eth_simulateV1"
                return None, f"the node could not simulate it ({exc.details.get('node_message') or exc.message})"

        async def has_code() -> bool:
            with self._translate(f"reading the code at {intent.recipient}"):
                return bool(await self.w3.eth.get_code(intent.recipient, at))

        # Both at once: the card waits for the slower of the two, not their sum.
        (blocks, why), code = await asyncio.gather(simulate(), has_code())
        if why is not None:
            return BalancePreview(simulated=False, max_fee=prepared.max_fee, reason=why)
        try:
            result = blocks[0]["calls"][0]
            status = int(result["status"], 16) if isinstance(result["status"], str) else int(result["status"])
            gas_used = result["gasUsed"]
            gas_used = int(gas_used, 16) if isinstance(gas_used, str) else int(gas_used)
            movements = transfers_in_logs(result.get("logs") or ())
        except (LookupError, TypeError, ValueError):
            return BalancePreview(simulated=False, max_fee=prepared.max_fee,
                                  reason="the node's eth_simulateV1 answer could not be read")
        if status != 1:
            raw = result.get("returnData") or "0x"
            reason, data = revert_reason(ContractLogicError(str((result.get("error") or {}).get("message") or ""),
                                                             data=raw if len(raw) > 2 else None))
            raise SimulationFailed(
                f"Sending {self._fmt(intent.amount, intent)} to {intent.recipient} would fail on "
                f"{self.network.display_name}: {reason or 'the transaction reverts without a reason'}. "
                "Nothing was sent.",
                reason=reason, revert_data=data, chain_id=self.network.chain_id,
            )
        deltas = net_deltas(movements)
        moved = tuple(sorted((a, s, d) for (a, s), d in deltas.items()))
        if movements_only:
            return BalancePreview(simulated=True, gas_used=gas_used, max_fee=prepared.max_fee, moved=moved,
                                  recipient_has_code=bool(code))
        assert block is not None  # read above
        number = block
        parties = [intent.sender, intent.recipient]
        shown = [key for key in deltas if key[0] in parties]
        units: dict[str, tuple[str, int]] = {NATIVE: (self.network.symbol, self.network.decimals)}
        for asset in {asset for _, asset in deltas} - {NATIVE}:
            try:
                token = await self.resolve_token(asset)
                units[asset] = (token.symbol, token.decimals)
            except UnknownToken:
                units[asset] = (asset[:10], 0)  # not an ERC-20 that says its decimals: base units, as logged

        async def before(key: tuple[ChecksumAddress, str]) -> int:
            owner, asset = key
            if asset == NATIVE:
                with self._translate(f"reading the {self.network.symbol} balance of {owner}"):
                    return int(await self.w3.eth.get_balance(owner, number))
            token = Token(symbol=units[asset][0], address=to_checksum_address(asset), decimals=units[asset][1])
            return await self._raw_token_balance(token, owner, block=number)

        balances = await asyncio.gather(*(before(key) for key in shown))
        preview = BalancePreview(
            simulated=True, gas_used=gas_used, max_fee=prepared.max_fee, block=number,
            changes=changes_for(parties, {k: deltas[k] for k in shown}, dict(zip(shown, balances, strict=True)),
                                units),
            moved=moved,
            recipient_has_code=bool(code),
        )
        self._units.update(units)
        return preview

    def units(self, asset: str) -> tuple[str, int] | None:
        """``(symbol, decimals)`` of an asset a preview met (``"native"`` or a token address)."""
        if asset == NATIVE:
            return self.network.symbol, self.network.decimals
        return self._units.get(asset)
