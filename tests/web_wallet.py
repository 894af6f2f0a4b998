"""An EIP-1193 wallet for a page in headless Chromium, backed by real Anvil nodes.

The page sees ``window.ethereum`` as a browser wallet would provide it. Accounts and the chain
id are answered in the page; signing (``personal_sign``, ``eth_sendTransaction``) calls back
into Python through ``page.expose_function``, where eth-account signs with the Anvil dev key
and the raw transaction is broadcast to the Anvil of the wallet's current chain. Every other
JSON-RPC method is forwarded to that Anvil. ``wallet_switchEthereumChain`` moves between the
Anvils the wallet knows and emits ``chainChanged``; an unknown chain answers 4902, as MetaMask
does, until ``wallet_addEthereumChain`` adds it.

    wallet = BrowserWallet(alice, {31337: anvil, 31338: anvil2})
    await wallet.install(page)
    ...
    wallet.reject_transactions = True      # the user clicks "Reject" in the wallet: error 4001
    wallet.reject_switch = True            # ... "Cancel" on "Allow this site to switch the network?"
    wallet.reject_add_chain = True         # ... "Cancel" on "Allow this site to add a network?"
    wallet.atomic = "supported"            # EIP-5792: wallet_getCapabilities says it batches atomically

With ``atomic`` set, ``wallet_sendCalls`` signs and sends each call as its own transaction from the
dev account (its own nonce, gas estimate and fees, as a wallet picks them), and
``wallet_getCallsStatus`` answers from the real receipts on Anvil: one per call, in order.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from playwright.async_api import Page

from lunark.chain.anvil import Anvil, DevAccount

USER_REJECTED = 4001
UNRECOGNIZED_CHAIN = 4902

# Runs in the page before any of its scripts. __CONFIG__ is replaced with JSON.
_PROVIDER_JS = """
(() => {
  const config = __CONFIG__;
  let chainId = config.chainId;
  const listeners = new Map();
  const log = [];
  const emit = (event, value) => {
    for (const fn of [...(listeners.get(event) || [])]) {
      try { fn(value); } catch (err) { console.error(err); }
    }
  };
  const toError = (error) => Object.assign(new Error(error.message), { code: error.code, data: error.data });
  const python = async (method, params) => {
    const answer = await window.__lunarkWallet(method, params === undefined ? [] : params);
    if (answer.error) throw toError(answer.error);
    return answer.result;
  };
  const setChain = (next) => {
    if (next !== chainId) { chainId = next; emit("chainChanged", chainId); }
  };
  const provider = {
    isLunarkTestWallet: true,
    async request({ method, params }) {
      log.push({ method, params: params === undefined ? null : JSON.parse(JSON.stringify(params)) });
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [config.address];  // lowercase, like MetaMask: the page must checksum it
        case "eth_chainId":
          return chainId;
        case "wallet_switchEthereumChain":
        case "wallet_addEthereumChain": {
          const result = await python(method, params);
          setChain(result.chainId);
          return null;
        }
        default:
          return python(method, params);
      }
    },
    on(event, fn) {
      if (!listeners.has(event)) listeners.set(event, []);
      listeners.get(event).push(fn);
      return provider;
    },
    removeListener(event, fn) {
      listeners.set(event, (listeners.get(event) || []).filter((f) => f !== fn));
      return provider;
    },
    // Test controls: what the user does in the wallet's own window.
    async _userSwitch(next) {
      const result = await python("wallet_switchEthereumChain", [{ chainId: next }]);
      setChain(result.chainId);
    },
    _requests: log,
  };
  window.ethereum = provider;
})();
"""


class BrowserWallet:
    """The user's wallet: one dev account, the Anvils it can reach, and what the page asked of it."""

    def __init__(self, account: DevAccount, chains: dict[int, Anvil], *, chain_id: int = 31337,
                 known: set[int] | None = None) -> None:
        self.account = account
        self.chains = chains
        self.chain_id = chain_id
        self.known = set(chains) if known is None else set(known)
        """Chains added to the wallet; switching to another one answers 4902."""
        self.reject_transactions = False
        """When true, ``eth_sendTransaction`` fails with 4001 as if the user clicked Reject."""
        self.reject_switch = False
        """When true, switching to a known chain fails with 4001 (an unknown one still answers 4902)."""
        self.reject_add_chain = False
        """When true, ``wallet_addEthereumChain`` fails with 4001: the chain is not added, nor switched to."""
        self.atomic: str | None = None
        """EIP-5792 ``atomic.status`` to announce ("supported", "ready"); None: the wallet has no
        ``wallet_getCapabilities`` (a JSON-RPC "method not found", as an older wallet answers)."""
        self.batches: dict[str, tuple[int, list[str]]] = {}
        """``wallet_sendCalls`` batches by id: the chain and the hashes of their transactions."""
        self.calls: list[tuple[str, Any]] = []
        """Every request that reached Python, in order: (method, params)."""
        self.sent: list[str] = []
        """Hashes of the transactions the wallet broadcast."""
        self._chain_changed = asyncio.Condition()

    async def install(self, page: Page) -> None:
        config = {"address": self.account.address.lower(), "chainId": hex(self.chain_id)}
        await page.expose_function("__lunarkWallet", self._handle)
        await page.add_init_script(script=_PROVIDER_JS.replace("__CONFIG__", json.dumps(config)))

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    def params_of(self, method: str) -> list[Any]:
        return [params for m, params in self.calls if m == method]

    async def wait_for_chain(self, chain_id: int, timeout: float = 10.0) -> None:
        """Until the wallet is on ``chain_id`` (it switches when the page asks it to)."""
        async with asyncio.timeout(timeout), self._chain_changed:
            await self._chain_changed.wait_for(lambda: self.chain_id == chain_id)

    async def _set_chain(self, chain_id: int) -> dict[str, str]:
        async with self._chain_changed:
            self.chain_id = chain_id
            self._chain_changed.notify_all()
        return {"chainId": hex(chain_id)}

    @property
    def anvil(self) -> Anvil:
        return self.chains[self.chain_id]

    async def _handle(self, method: str, params: Any) -> dict[str, Any]:
        self.calls.append((method, params))
        try:
            handler = getattr(self, "_" + method, None)
            result = await handler(params) if handler is not None else await self._forward(method, params)
            return {"result": result}
        except WalletError as exc:
            return {"error": {"code": exc.code, "message": exc.message}}
        except Exception as exc:  # the page gets a JSON-RPC internal error, the test sees the call
            return {"error": {"code": -32603, "message": f"{type(exc).__name__}: {exc}"}}

    async def _forward(self, method: str, params: Any) -> Any:
        return await asyncio.to_thread(self.anvil.rpc, method, list(params or []))

    async def _personal_sign(self, params: list[Any]) -> str:
        message, address = params
        if str(address).lower() != self.account.address.lower():
            raise WalletError(4100, f"The wallet has no account {address}.")
        data = bytes.fromhex(message[2:]) if message.startswith("0x") else message.encode()
        signed = Account.sign_message(encode_defunct(primitive=data), self.account.private_key)
        return "0x" + bytes(signed.signature).hex()

    async def _eth_sendTransaction(self, params: list[dict[str, Any]]) -> str:
        [tx] = params
        if self.reject_transactions:
            raise WalletError(USER_REJECTED, "MetaMask Tx Signature: User denied transaction signature.")
        if to_checksum_address(tx["from"]) != self.account.address:
            raise WalletError(4100, f"The wallet has no account {tx['from']}.")
        chain_id = int(tx.get("chainId", hex(self.chain_id)), 16)
        if chain_id != self.chain_id:
            raise WalletError(-32602, f"The transaction is for chain {chain_id}; the wallet is on {self.chain_id}.")
        fields = {
            "type": 2,
            "chainId": chain_id,
            "nonce": int(tx["nonce"], 16),
            "to": to_checksum_address(tx["to"]),
            "value": int(tx.get("value", "0x0"), 16),
            "data": tx.get("data", "0x"),
            "gas": int(tx["gas"], 16),
            "maxFeePerGas": int(tx["maxFeePerGas"], 16),
            "maxPriorityFeePerGas": int(tx["maxPriorityFeePerGas"], 16),
        }
        raw = "0x" + bytes(Account.sign_transaction(fields, self.account.private_key).raw_transaction).hex()
        tx_hash = str(await asyncio.to_thread(self.anvil.rpc, "eth_sendRawTransaction", [raw]))
        self.sent.append(tx_hash)
        return tx_hash

    async def _wallet_getCapabilities(self, params: list[Any]) -> dict[str, Any]:
        if self.atomic is None:
            raise WalletError(-32601, "The method wallet_getCapabilities does not exist / is not available.")
        address = params[0]
        if str(address).lower() != self.account.address.lower():
            raise WalletError(4100, f"The wallet has no account {address}.")
        asked = [int(c, 16) for c in params[1]] if len(params) > 1 and params[1] else sorted(self.known)
        return {hex(c): {"atomic": {"status": self.atomic}} for c in asked if c in self.known}

    async def _wallet_sendCalls(self, params: list[dict[str, Any]]) -> dict[str, str]:
        [request] = params
        if self.atomic is None:
            raise WalletError(-32601, "The method wallet_sendCalls does not exist / is not available.")
        if self.reject_transactions:
            raise WalletError(USER_REJECTED, "User rejected the request.")
        if to_checksum_address(request["from"]) != self.account.address:
            raise WalletError(4100, f"The wallet has no account {request['from']}.")
        chain_id = int(request["chainId"], 16)
        if chain_id != self.chain_id:
            raise WalletError(5710, f"The batch is for chain {chain_id}; the wallet is on {self.chain_id}.")
        hashes: list[str] = []
        for call in request["calls"]:
            hashes.append(await asyncio.to_thread(self._send_call, call, chain_id))
        self.sent.extend(hashes)
        batch_id = "0x" + os.urandom(32).hex()
        self.batches[batch_id] = (chain_id, hashes)
        return {"id": batch_id}

    def _send_call(self, call: dict[str, Any], chain_id: int) -> str:
        """One call as a wallet sends it: the account's next nonce, a gas estimate, fees from the node."""
        rpc = self.chains[chain_id].rpc
        sender = self.account.address
        tx = {"from": sender, "to": to_checksum_address(call["to"]), "value": call.get("value", "0x0"),
              "data": call.get("data", "0x")}
        base = int(rpc("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
        tip = int(rpc("eth_maxPriorityFeePerGas", []), 16)
        fields = {
            "type": 2, "chainId": chain_id, "nonce": int(rpc("eth_getTransactionCount", [sender, "pending"]), 16),
            "to": tx["to"], "value": int(tx["value"], 16), "data": tx["data"],
            "gas": int(rpc("eth_estimateGas", [tx]), 16) * 12 // 10,
            "maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip,
        }
        raw = "0x" + bytes(Account.sign_transaction(fields, self.account.private_key).raw_transaction).hex()
        return str(rpc("eth_sendRawTransaction", [raw]))

    async def _wallet_getCallsStatus(self, params: list[str]) -> dict[str, Any]:
        [batch_id] = params
        if batch_id not in self.batches:
            raise WalletError(5730, f"Unknown bundle id {batch_id}.")
        chain_id, hashes = self.batches[batch_id]
        rpc = self.chains[chain_id].rpc
        receipts = [await asyncio.to_thread(rpc, "eth_getTransactionReceipt", [h]) for h in hashes]
        answer: dict[str, Any] = {"version": "2.0.0", "id": batch_id, "chainId": hex(chain_id), "atomic": True}
        if any(r is None for r in receipts):
            return {**answer, "status": 100}
        ok = [int(r["status"], 16) == 1 for r in receipts]
        answer["status"] = 200 if all(ok) else 500 if not any(ok) else 600
        answer["receipts"] = [{key: r[key] for key in ("logs", "status", "blockHash", "blockNumber", "gasUsed",
                                                        "transactionHash")} for r in receipts]
        return answer

    async def _wallet_switchEthereumChain(self, params: list[dict[str, Any]]) -> dict[str, str]:
        chain_id = int(params[0]["chainId"], 16)
        if chain_id not in self.known or chain_id not in self.chains:
            raise WalletError(UNRECOGNIZED_CHAIN, f"Unrecognized chain ID {hex(chain_id)}. Try adding the chain first.")
        if self.reject_switch:
            raise WalletError(USER_REJECTED, "User rejected the request.")
        return await self._set_chain(chain_id)

    async def _wallet_addEthereumChain(self, params: list[dict[str, Any]]) -> dict[str, str]:
        chain_id = int(params[0]["chainId"], 16)
        if self.reject_add_chain:
            raise WalletError(USER_REJECTED, "User rejected the request.")
        anvil = self.chains.get(chain_id)
        if anvil is None or anvil.url not in params[0].get("rpcUrls", []):
            raise WalletError(-32602, f"Cannot reach chain {hex(chain_id)} at {params[0].get('rpcUrls')}.")
        self.known.add(chain_id)
        return await self._set_chain(chain_id)  # MetaMask switches to a chain it just added


class WalletError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
