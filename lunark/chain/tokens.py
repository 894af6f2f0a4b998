"""The slice of the ERC-20 ABI Lunark uses: reads, ``transfer`` and the ``Transfer`` event."""

from __future__ import annotations

from typing import Final

from eth_typing import ABI, ABIEvent, ABIFunction

__all__ = [
    "ERC20_ABI",
    "ERC20_BALANCE_OF",
    "ERC20_DECIMALS",
    "ERC20_NAME",
    "ERC20_SYMBOL",
    "ERC20_TRANSFER",
    "ERC20_TRANSFER_EVENT",
]

ERC20_BALANCE_OF: Final[ABIFunction] = {
    "type": "function",
    "name": "balanceOf",
    "stateMutability": "view",
    "inputs": [{"name": "owner", "type": "address"}],
    "outputs": [{"name": "", "type": "uint256"}],
}

ERC20_DECIMALS: Final[ABIFunction] = {
    "type": "function",
    "name": "decimals",
    "stateMutability": "view",
    "inputs": [],
    "outputs": [{"name": "", "type": "uint8"}],
}

ERC20_SYMBOL: Final[ABIFunction] = {
    "type": "function",
    "name": "symbol",
    "stateMutability": "view",
    "inputs": [],
    "outputs": [{"name": "", "type": "string"}],
}

ERC20_NAME: Final[ABIFunction] = {
    "type": "function",
    "name": "name",
    "stateMutability": "view",
    "inputs": [],
    "outputs": [{"name": "", "type": "string"}],
}

ERC20_TRANSFER: Final[ABIFunction] = {
    "type": "function",
    "name": "transfer",
    "stateMutability": "nonpayable",
    "inputs": [{"name": "to", "type": "address"}, {"name": "amount", "type": "uint256"}],
    "outputs": [{"name": "", "type": "bool"}],
}

ERC20_TRANSFER_EVENT: Final[ABIEvent] = {
    "type": "event",
    "name": "Transfer",
    "anonymous": False,
    "inputs": [
        {"name": "from", "type": "address", "indexed": True},
        {"name": "to", "type": "address", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False},
    ],
}

ERC20_ABI: Final[ABI] = [
    ERC20_BALANCE_OF,
    ERC20_DECIMALS,
    ERC20_SYMBOL,
    ERC20_NAME,
    ERC20_TRANSFER,
    ERC20_TRANSFER_EVENT,
]
"""Minimal ERC-20 ABI for ``w3.eth.contract(address, abi=ERC20_ABI)``."""
