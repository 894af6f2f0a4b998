"""What a user's wallet does in tests: sign the transaction it is shown, broadcast it, read balances.

It talks to the real Anvil over JSON-RPC, with eth-account doing the signing,
exactly as an EIP-1193 wallet would with the ``tx`` of an approval request.
"""

from __future__ import annotations

from typing import Any

from eth_utils import function_signature_to_4byte_selector

from lunark.chain.anvil import Anvil
from lunark.client.wallet import sign_transaction


def sign_wire_tx(tx: dict[str, Any], private_key: str, **changes: Any) -> str:
    """Sign an approval request's ``tx`` as the SDK's wallet helper does; ``changes`` (wire field
    names, e.g. ``to=``) tamper with it first, as a compromised front end would."""
    return sign_transaction({**tx, **changes}, private_key)


def wallet_send(anvil: Anvil, tx: dict[str, Any], private_key: str, **changes: Any) -> str:
    """Sign and broadcast like a wallet's ``eth_sendTransaction``; returns the hash."""
    return str(anvil.rpc("eth_sendRawTransaction", [sign_wire_tx(tx, private_key, **changes)]))


def native_balance(anvil: Anvil, address: str) -> int:
    return int(anvil.rpc("eth_getBalance", [address, "latest"]), 16)


def token_balance(anvil: Anvil, token: str, address: str) -> int:
    data = "0x" + function_signature_to_4byte_selector("balanceOf(address)").hex() + address[2:].lower().rjust(64, "0")
    return int(anvil.rpc("eth_call", [{"to": token, "data": data}, "latest"]), 16)
