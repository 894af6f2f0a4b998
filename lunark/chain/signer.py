"""Who may sign a prepared transaction.

In the normal flow the user's own wallet signs; Lunark holds no keys. A
``Signer`` exists for local development (Anvil) and for the terminal, where a
person deliberately hands a key to ``lunark chat``. ``LocalSigner`` therefore
refuses by default anything but Anvil's chain id, and anything not sent from
its own address.

    signer = LocalSigner.anvil(0)
    raw = await signer.sign_transaction(prepared)
    tx_hash = await client.send_raw_transaction(raw)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress

from lunark.chain.devkeys import dev_accounts
from lunark.chain.types import PreparedTx
from lunark.errors import ConfigError, SignerError
from lunark.networks import ANVIL_CHAIN_ID

__all__ = ["ANVIL_SIGNER_CHAIN_IDS", "LocalSigner", "Signer"]

ANVIL_SIGNER_CHAIN_IDS: frozenset[int] = frozenset({ANVIL_CHAIN_ID, 31338})
"""Chain ids ``LocalSigner.anvil`` signs for unless told otherwise: the local test chains."""


@runtime_checkable
class Signer(Protocol):
    """Signs prepared transactions for one address."""

    @property
    def address(self) -> ChecksumAddress:
        """The address whose transactions this signer signs."""
        ...

    async def sign_transaction(self, tx: PreparedTx) -> bytes:
        """The raw signed EIP-1559 transaction, ready for ``eth_sendRawTransaction``.

        Raises ``SignerError`` when the signer refuses.
        """
        ...


class LocalSigner:
    """eth-account signer for Anvil and terminal use only.

    ``allowed_chain_ids`` limits where it signs (Anvil's 31337 by default);
    ``None`` allows any chain, for a key a person passed explicitly.
    """

    __slots__ = ("_account", "address", "allowed_chain_ids")

    address: ChecksumAddress
    allowed_chain_ids: frozenset[int] | None

    def __init__(
        self,
        private_key: str,
        *,
        allowed_chain_ids: frozenset[int] | None = frozenset({ANVIL_CHAIN_ID}),
    ) -> None:
        try:
            account: LocalAccount = Account.from_key(private_key)
        except (ValueError, TypeError):
            # `from None`: the underlying error may quote the key.
            raise ConfigError(
                "The private key is not valid: expected 32 bytes as 64 hex characters."
            ) from None
        self._account = account
        self.address = account.address
        self.allowed_chain_ids = (
            frozenset(allowed_chain_ids) if allowed_chain_ids is not None else None
        )

    @classmethod
    def anvil(
        cls, index: int = 0, *, allowed_chain_ids: frozenset[int] | None = ANVIL_SIGNER_CHAIN_IDS
    ) -> LocalSigner:
        """Anvil's development account ``index`` (its published mnemonic; worthless elsewhere)."""
        if not 0 <= index < 1000:
            raise ConfigError(f"Anvil account index must be between 0 and 999, got {index}.")
        account = dev_accounts(index + 1)[index]
        return cls(account.private_key, allowed_chain_ids=allowed_chain_ids)

    async def sign_transaction(self, tx: PreparedTx) -> bytes:
        """Sign ``tx``; refuses (``SignerError``) another sender or a chain not allowed."""
        intent = tx.intent
        if intent.sender != self.address:
            raise SignerError(
                f"This signer holds the key of {self.address}, but the transaction is from "
                f"{intent.sender}; it will not sign for another address.",
                signer=self.address,
                sender=intent.sender,
            )
        allowed = self.allowed_chain_ids
        if allowed is not None and intent.chain_id not in allowed:
            raise SignerError(
                f"This local signer may sign only on chain ids {sorted(allowed)}, not on chain "
                f"{intent.chain_id}; use your wallet to sign on that network.",
                signer=self.address,
                chain_id=intent.chain_id,
            )
        params = tx.to_tx_params()
        signed = self._account.sign_transaction(dict(params))  # type: ignore[arg-type]
        return bytes(signed.raw_transaction)

    def __repr__(self) -> str:
        chains = "any" if self.allowed_chain_ids is None else sorted(self.allowed_chain_ids)
        return f"LocalSigner(address={self.address}, chains={chains})"

    def __reduce__(self) -> str | tuple[object, ...]:
        # Pickling would write the key wherever the pickle goes (checkpoints, caches).
        raise TypeError("LocalSigner cannot be pickled: it holds a private key.")

    def __copy__(self) -> LocalSigner:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> LocalSigner:
        # Immutable in practice; sharing beats the pickling path, which refuses.
        return self
