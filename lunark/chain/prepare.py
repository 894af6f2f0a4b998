"""Transfer preparation: a request stated exactly (``build_intent``), then the EIP-1559 transaction
that carries it, checked to succeed and priced (``prepare``).

Fees are ``2 * base fee + tip``, bounded by the network's configured ceiling; gas is the estimate
plus headroom; a transfer the sender cannot pay, counting the worst-case fee, is
``InsufficientFunds``, one that would revert is ``SimulationFailed``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final, NoReturn

from web3.exceptions import ContractLogicError, Web3RPCError
from web3.types import TxParams, Wei

from lunark.chain.connection import revert_reason
from lunark.chain.reads import AccountReads
from lunark.chain.types import PreparedTx, TransferIntent
from lunark.chain.validation import MAX_UINT256, format_amount, parse_address, parse_amount
from lunark.errors import ChainError, InsufficientFunds, InvalidAmount, InvalidInput, SimulationFailed, WrongNetwork
from lunark.networks import Token

__all__ = ["DEFAULT_PRIORITY_FEE", "TransferPreparation"]

DEFAULT_PRIORITY_FEE: Final = 10**9
"""Tip (1 gwei) used when the node cannot suggest one."""


class TransferPreparation(AccountReads):
    """``build_intent``, ``prepare`` and ``prepare_transfer``, on top of the account reads."""

    async def build_intent(
        self,
        sender: str,
        recipient: str,
        amount: str | int | Decimal,
        token: str | None = None,
    ) -> TransferIntent:
        """Validate a transfer request and state it exactly, in smallest units.

        ``amount`` is in whole tokens (``"1.5"``), with the token's decimals.
        Refuses sending to oneself and sending tokens to the token contract
        itself, both nearly always mistakes.
        """
        from_address = parse_address(sender, field="sender")
        to_address = parse_address(recipient, field="recipient")
        if from_address == to_address:
            raise InvalidInput(
                f"The recipient {to_address} is the sender itself; sending to yourself only "
                "costs a fee. Check the recipient address.",
                field="recipient",
                value=to_address,
            )
        if token is None or self.network.is_native(token):
            return TransferIntent(
                chain_id=self.network.chain_id,
                sender=from_address,
                recipient=to_address,
                amount=parse_amount(amount, self.network.decimals, symbol=self.network.symbol),
                symbol=self.network.symbol,
                decimals=self.network.decimals,
            )
        meta = await self.resolve_token(token)
        if to_address == meta.address:
            raise InvalidInput(
                f"The recipient {to_address} is the {meta.symbol} token contract itself; tokens "
                "sent there are usually lost for good. Check the recipient address.",
                field="recipient",
                value=to_address,
            )
        return TransferIntent(
            chain_id=self.network.chain_id,
            sender=from_address,
            recipient=to_address,
            amount=parse_amount(amount, meta.decimals, symbol=meta.symbol),
            symbol=meta.symbol,
            decimals=meta.decimals,
            token=meta.address,
        )

    async def prepare(self, intent: TransferIntent, *, nonce_at_least: int | None = None) -> PreparedTx:
        """Build the unsigned EIP-1559 transaction for ``intent``, after checking it can succeed.

        Checks balances (``InsufficientFunds``, counting the worst-case fee),
        simulates with ``eth_call`` at ``pending`` (``SimulationFailed`` with the
        decoded revert reason), then sets gas (estimate plus headroom), the
        pending nonce and fees (``2 * base fee + tip``). ``nonce_at_least``: the
        nonce after the transactions already prepared ahead of this one (several
        in one approval take successive nonces, ``lunark.nonces``).
        """
        await self.ensure_chain()
        network = self.network
        if intent.chain_id != network.chain_id:
            raise WrongNetwork(
                f"This transfer is for chain {intent.chain_id}, but this client is on "
                f"{network.display_name} (chain {network.chain_id}); prepare it on its own "
                "network.",
                expected=network.chain_id,
                actual=intent.chain_id,
            )
        if not 0 < intent.amount <= MAX_UINT256:
            raise InvalidAmount(
                f"Transfer amount {intent.amount} is out of range.", value=str(intent.amount)
            )
        sender = intent.sender
        native = network.symbol

        with self._translate(f"reading the {native} balance of {sender}"):
            native_raw = int(await self.w3.eth.get_balance(sender, "pending"))
        if intent.token is not None:
            token = Token(symbol=intent.symbol, address=intent.token, decimals=intent.decimals)
            token_raw = await self._raw_token_balance(token, sender, block="pending")
            if token_raw < intent.amount:
                raise InsufficientFunds(
                    f"{sender} holds {self._fmt(token_raw, intent)} but the transfer needs "
                    f"{self._fmt(intent.amount, intent)}.",
                    needed=intent.amount,
                    available=token_raw,
                    symbol=intent.symbol,
                )
        elif native_raw < intent.amount:
            raise InsufficientFunds(
                f"{sender} holds {self._fmt_native(native_raw)} but the transfer needs "
                f"{self._fmt_native(intent.amount)} plus the network fee.",
                needed=intent.amount,
                available=native_raw,
                symbol=native,
            )

        tx: TxParams = {
            "from": sender,
            "to": intent.tx_to,
            "value": Wei(intent.tx_value),
            "data": intent.tx_data,
        }
        with self._translate("simulating the transfer"):
            try:
                await self.w3.eth.call(tx, "pending", ccip_read_enabled=False)
                estimate = await self.w3.eth.estimate_gas(tx, "pending")
            except ContractLogicError as exc:
                self._raise_simulation_failed(exc, intent)
        gas = -(-estimate * (100 + self.gas_headroom_percent) // 100)

        with self._translate("reading the nonce and fees"):
            nonce = max(int(await self.w3.eth.get_transaction_count(sender, "pending")), nonce_at_least or 0)
            block = await self.w3.eth.get_block("latest")
            priority_fee = await self._priority_fee()
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:
            raise ChainError(
                f"{network.display_name} reports no base fee, so it does not support EIP-1559 "
                "transactions, which Lunark prepares.",
                chain_id=network.chain_id,
            )
        # The node's suggestion is bounded by the network's configured ceiling: one high-tip
        # transaction in a recent block must not make a plain transfer's card ask for a fortune.
        ceiling = network.max_fee_per_gas
        if int(base_fee) > ceiling:
            raise ChainError(
                f"The {network.display_name} base fee is now {_gwei(int(base_fee))} gwei, above this "
                f"server's ceiling of {_gwei(ceiling)} gwei per gas (max_fee_per_gas_gwei of the network "
                "in chain.networks); nothing was prepared. Try again when fees are lower.",
                chain_id=network.chain_id, base_fee=int(base_fee), ceiling=ceiling,
            )
        priority_fee = min(priority_fee, ceiling - int(base_fee))
        max_fee_per_gas = min(2 * int(base_fee) + priority_fee, ceiling)

        worst_fee = gas * max_fee_per_gas
        if intent.token is None and native_raw < intent.amount + worst_fee:
            needed = intent.amount + worst_fee
            raise InsufficientFunds(
                f"{sender} holds {self._fmt_native(native_raw)}, but sending "
                f"{self._fmt_native(intent.amount)} needs up to {self._fmt_native(needed)} "
                f"including up to {self._fmt_native(worst_fee)} in network fees.",
                needed=needed,
                available=native_raw,
                symbol=native,
            )
        if intent.token is not None and native_raw < worst_fee:
            raise InsufficientFunds(
                f"{sender} holds {self._fmt_native(native_raw)}, not enough for the network fee "
                f"(up to {self._fmt_native(worst_fee)}) of sending "
                f"{self._fmt(intent.amount, intent)}.",
                needed=worst_fee,
                available=native_raw,
                symbol=native,
            )
        return PreparedTx(
            intent=intent,
            nonce=nonce,
            gas=gas,
            max_fee_per_gas=max_fee_per_gas,
            max_priority_fee_per_gas=priority_fee,
        )

    async def prepare_transfer(
        self,
        sender: str,
        recipient: str,
        amount: str | int | Decimal,
        token: str | None = None,
    ) -> PreparedTx:
        """``build_intent`` then ``prepare``."""
        return await self.prepare(await self.build_intent(sender, recipient, amount, token))

    def _raise_simulation_failed(self, exc: ContractLogicError, intent: TransferIntent) -> NoReturn:
        reason, data = revert_reason(exc)
        raise SimulationFailed(
            f"Sending {self._fmt(intent.amount, intent)} to {intent.recipient} would fail on "
            f"{self.network.display_name}: {reason or 'the transaction reverts without a reason'}. "
            "Nothing was sent.",
            reason=reason,
            revert_data=data,
            chain_id=self.network.chain_id,
        ) from exc

    async def _priority_fee(self) -> int:
        try:
            return int(await self.w3.eth.max_priority_fee)
        except Web3RPCError:
            # Neither eth_maxPriorityFeePerGas nor eth_feeHistory: a fixed tip still gets included.
            return DEFAULT_PRIORITY_FEE


def _gwei(wei: int) -> str:
    return format_amount(wei, 9)
