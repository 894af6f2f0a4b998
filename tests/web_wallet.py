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
"""

from __future__ import annotations

import asyncio
import json
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
