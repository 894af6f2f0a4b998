"""What a user's wallet does in tests: sign the transaction it is shown, broadcast it, read balances.

It talks to the real Anvil over JSON-RPC, with eth-account doing the signing,
exactly as an EIP-1193 wallet would with the ``tx`` of an approval request.
"""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_utils import function_signature_to_4byte_selector

from lunark.chain.anvil import Anvil


def sign_wire_tx(tx: dict[str, Any], private_key: str, **changes: Any) -> str:
    """Sign an approval request's ``tx`` (protocol shape, hex quantities); ``changes`` tamper with it."""
    fields = {
        "type": 2,
        "chainId": int(tx["chain_id"], 16),
        "nonce": int(tx["nonce"], 16),
        "to": tx["to"],
        "value": int(tx["value"], 16),
        "data": tx["data"],
        "gas": int(tx["gas"], 16),
        "maxFeePerGas": int(tx["max_fee_per_gas"], 16),
        "maxPriorityFeePerGas": int(tx["max_priority_fee_per_gas"], 16),
    }
    fields.update(changes)
    signed = Account.sign_transaction(fields, private_key)
    return "0x" + bytes(signed.raw_transaction).hex()


def wallet_send(anvil: Anvil, tx: dict[str, Any], private_key: str, **changes: Any) -> str:
    """Sign and broadcast like a wallet's ``eth_sendTransaction``; returns the hash."""
    return str(anvil.rpc("eth_sendRawTransaction", [sign_wire_tx(tx, private_key, **changes)]))


def native_balance(anvil: Anvil, address: str) -> int:
    return int(anvil.rpc("eth_getBalance", [address, "latest"]), 16)


def token_balance(anvil: Anvil, token: str, address: str) -> int:
    data = "0x" + function_signature_to_4byte_selector("balanceOf(address)").hex() + address[2:].lower().rjust(64, "0")
    return int(anvil.rpc("eth_call", [{"to": token, "data": data}, "latest"]), 16)
