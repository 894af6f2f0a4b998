"""Anvil's published development accounts: the local signer's keys for dev chains and the terminal.

Apart from ``lunark.chain.anvil`` (which starts Anvil itself), so the signer and the server use
the keys without importing dev tooling.
"""

from __future__ import annotations

from eth_account import Account
from eth_typing import ChecksumAddress

__all__ = ["ANVIL_MNEMONIC", "DevAccount", "dev_accounts"]

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
"""Anvil's published development mnemonic. Its keys hold no value anywhere else."""


class DevAccount:
    """One of Anvil's funded development accounts."""

    __slots__ = ("address", "index", "private_key")

    def __init__(self, index: int, address: ChecksumAddress, private_key: str) -> None:
        self.index = index
        self.address = address
        self.private_key = private_key

    def __repr__(self) -> str:
        return f"DevAccount({self.index}, {self.address})"


def dev_accounts(count: int = 10) -> list[DevAccount]:
    """The first ``count`` accounts of Anvil's dev mnemonic (BIP-44 ``m/44'/60'/0'/0/i``)."""
    Account.enable_unaudited_hdwallet_features()
    accounts = []
    for i in range(count):
        acct = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
        accounts.append(DevAccount(i, acct.address, "0x" + bytes(acct.key).hex()))
    return accounts
