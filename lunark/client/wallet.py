"""What a wallet does with an approval's ``tx``: sign it, broadcast it, report the hash.

For Anvil, scripts and the terminal chat, where the "wallet" is a private key
on the same machine. It behaves like an EIP-1193 wallet answering
``eth_sendTransaction``: it refuses to sign for another account, checks that
the RPC endpoint is on the transaction's chain, then broadcasts::

    from lunark.client import sign_and_send

    approval = session.pending_approval
    tx_hash = await sign_and_send(approval.action_requests[0].tx, "http://127.0.0.1:8545", key)
    await session.approve(tx_hash=tx_hash)

Never put a key that holds real value in a script; a browser wallet is the
right signer for that.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
from eth_account import Account
from eth_utils.address import to_checksum_address

from lunark.errors import ChainError, InvalidInput, LunarkError, RpcUnavailable, SignerError, WrongNetwork
from lunark.nonces import nonce_floors
from lunark.protocol import ApprovalRequest, UnsignedTx, reject_decision

__all__ = ["rpc_request", "sign_and_send", "sign_and_send_all", "sign_transaction", "with_nonce_floors"]

_ids = itertools.count(1)


def _quantity(tx: Mapping[str, Any], name: str) -> int:
    value = tx.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            # The protocol sends 0x hex quantities; decimal strings are accepted too.
            return int(value, 16) if value.lower().startswith("0x") else int(value, 10)
        except ValueError:
            pass
    raise InvalidInput(f"tx.{name} must be an integer or a hex quantity, got {value!r}.", field=name)


def _as_mapping(tx: UnsignedTx | Mapping[str, Any]) -> Mapping[str, Any]:
    return tx.to_wire() if isinstance(tx, UnsignedTx) else tx


def sign_transaction(tx: UnsignedTx | Mapping[str, Any], private_key: str) -> str:
    """Sign an approval's ``tx`` (EIP-1559, type 2) and return the raw transaction as ``0x`` hex.

    Raises ``SignerError`` when ``tx["from"]`` is not the key's account (a wallet
    never signs for someone else) and ``InvalidInput`` for a malformed ``tx``.

        >>> raw = sign_transaction(approval.action_requests[0].tx, key)
        >>> await session.approve(signed_tx=raw)      # the server verifies, then broadcasts
    """
    fields = _as_mapping(tx)
    account = Account.from_key(private_key)
    sender = fields.get("from")
    if not isinstance(sender, str) or to_checksum_address(sender) != account.address:
        raise SignerError(
            f"The transaction is from {sender}, but this key is {account.address}; refusing to sign.",
            sender=sender,
            signer=account.address,
        )
    to = fields.get("to")
    data = fields.get("data", "0x")
    if not isinstance(to, str) or not isinstance(data, str):
        raise InvalidInput("tx.to and tx.data must be hex strings.")
    signed = Account.sign_transaction(
        {
            "type": 2,
            "chainId": _quantity(fields, "chain_id"),
            "nonce": _quantity(fields, "nonce"),
            "to": to_checksum_address(to),
            "value": _quantity(fields, "value"),
            "data": data,
            "gas": _quantity(fields, "gas"),
            "maxFeePerGas": _quantity(fields, "max_fee_per_gas"),
            "maxPriorityFeePerGas": _quantity(fields, "max_priority_fee_per_gas"),
        },
        private_key,
    )
    return "0x" + bytes(signed.raw_transaction).hex()


async def rpc_request(
    rpc_url: str, method: str, params: list[Any], *, session: aiohttp.ClientSession | None = None
) -> Any:
    """One JSON-RPC call. ``RpcUnavailable`` when the node cannot be reached, ``ChainError``
    when it answers with an error."""
    body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
    own = session is None
    http = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        async with http.post(rpc_url, json=body) as response:
            if response.status >= 400:
                raise RpcUnavailable(f"{rpc_url} answered HTTP {response.status} to {method}.", rpc_url=rpc_url)
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise RpcUnavailable(f"Could not reach {rpc_url}: {exc or type(exc).__name__}.", rpc_url=rpc_url) from exc
    finally:
        if own:
            await http.close()
    if not isinstance(answer, dict):
        raise RpcUnavailable(f"{rpc_url} did not answer JSON-RPC.", rpc_url=rpc_url)
    if answer.get("error"):
        error = answer["error"]
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        raise ChainError(f"{method} failed: {message}", rpc_url=rpc_url)
    return answer.get("result")


async def sign_and_send(tx: UnsignedTx | Mapping[str, Any], rpc_url: str, private_key: str) -> str:
    """Sign an approval's ``tx`` and broadcast it like a wallet; returns the transaction hash.

    Checks first that ``rpc_url`` serves the transaction's chain (``WrongNetwork``
    otherwise). Node errors (nonce too low, insufficient funds) raise ``ChainError``.

        >>> tx_hash = await sign_and_send(request.tx, network["rpc_urls"][0], key)
        >>> await session.approve(tx_hash=tx_hash)
    """
    fields = _as_mapping(tx)
    raw = sign_transaction(fields, private_key)
    expected = _quantity(fields, "chain_id")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        actual = int(str(await rpc_request(rpc_url, "eth_chainId", [], session=http)), 16)
        if actual != expected:
            raise WrongNetwork(
                f"{rpc_url} is chain {actual}, but the transaction is for chain {expected}.",
                expected=expected,
                actual=actual,
            )
        return str(await rpc_request(rpc_url, "eth_sendRawTransaction", [raw], session=http))


def with_nonce_floors(approval: ApprovalRequest, decisions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
    """Each action's ``tx`` at the nonce it is to be signed with, given the decisions (None: no tx).

    Several transactions of one approval are prepared with successive nonces; one that is not sent
    (rejected, edited) lowers the nonce of those after it, exactly as the server binds them
    (``lunark.nonces``), so none of them waits behind a gap.
    """
    txs = [request.tx for request in approval.action_requests]
    floors = nonce_floors(txs, [d.get("type") == "approve" for d in decisions])
    return [None if tx is None or floor is None else {**tx.to_wire(), "nonce": hex(floor)}
            for tx, floor in zip(txs, floors, strict=True)]


async def sign_and_send_all(
    approval: ApprovalRequest,
    decisions: Sequence[Mapping[str, Any]],
    rpc_url: str | Callable[[int], str],
    private_key: str,
) -> list[dict[str, Any]]:
    """Sign and broadcast, in order, the transaction of every approve decision that carries no
    signature yet; returns the decisions to send, each approve with its ``tx_hash``.

    Each transaction goes out at its nonce floor (``with_nonce_floors``). One the node refuses
    becomes a reject saying why, and those after it move down a nonce. ``rpc_url`` is a URL, or a
    function of the chain id::

        decisions = await sign_and_send_all(approval, [{"type": "reject"}, {"type": "approve"}], rpc_url, key)
        await session.decide(approval.approval_id, decisions)
    """
    out = [dict(d) for d in decisions]
    if len(out) != len(approval.action_requests):
        raise InvalidInput(f"The approval has {len(approval.action_requests)} actions, but {len(out)} decisions "
                           "were given.", actions=len(approval.action_requests))
    for index, decision in enumerate(out):
        if decision.get("type") != "approve" or decision.get("tx_hash") or decision.get("signed_tx"):
            continue
        tx = with_nonce_floors(approval, out)[index]
        if tx is None:
            continue
        url = rpc_url(_quantity(tx, "chain_id")) if callable(rpc_url) else rpc_url
        try:
            decision["tx_hash"] = await sign_and_send(tx, url, private_key)
        except LunarkError as exc:
            out[index] = reject_decision(f"My wallet could not send it: {exc.message}")
    return out
