"""The slice of the ERC-20 ABI Lunark uses: reads, ``transfer`` and the ``Transfer`` event.

The ABI is data, kept as such in ``erc20.json`` beside this module (shipped as package data).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, Final, cast

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

_ENTRIES: list[dict[str, Any]] = json.loads(
    resources.files("lunark.chain").joinpath("erc20.json").read_text(encoding="utf-8")
)
_BY_NAME = {entry["name"]: entry for entry in _ENTRIES}

ERC20_ABI: Final = cast(ABI, _ENTRIES)
"""Minimal ERC-20 ABI for ``w3.eth.contract(address, abi=ERC20_ABI)``."""

ERC20_BALANCE_OF: Final = cast(ABIFunction, _BY_NAME["balanceOf"])
ERC20_DECIMALS: Final = cast(ABIFunction, _BY_NAME["decimals"])
ERC20_SYMBOL: Final = cast(ABIFunction, _BY_NAME["symbol"])
ERC20_NAME: Final = cast(ABIFunction, _BY_NAME["name"])
ERC20_TRANSFER: Final = cast(ABIFunction, _BY_NAME["transfer"])
ERC20_TRANSFER_EVENT: Final = cast(ABIEvent, _BY_NAME["Transfer"])
