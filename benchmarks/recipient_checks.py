"""What the recipient checks add to preparing a transfer card, on a real Anvil and a real SQLite store.

    python -m benchmarks.recipient_checks [--runs 40] [--chats 20]

Times ``Transfer.prepare`` (validation, policy, balance and fee reads, simulation, and the
recipient checks, which run while the transaction is built), the same without the checks, and
the recipient checks alone (history from the store with ``--chats`` chats of the user, one
``eth_blockNumber``, two bounded ``eth_getLogs``, one ``eth_getCode``), for native and token
transfers to a look-alike of an address the user paid in TKN (found in the logs).
Prints the medians in milliseconds; docs/safety.md quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from eth_utils import function_signature_to_4byte_selector

from lunark.chain.anvil import Anvil
from lunark.chain.client import ChainClients
from lunark.contracts import deploy_contract
from lunark.networks import NetworkConfig, NetworkRegistry, TokenConfig
from lunark.store.sqlite import SqliteStore
from lunark.tools import transfer as transfer_module
from lunark.tools.base import ToolContext
from lunark.tools.policy import InMemorySpendLedger, SpendingPolicy
from lunark.tools.transfer import Transfer, TransferArgs, _recipient_warnings

_TRANSFER = "transfer(address,uint256)"


async def _no_checks(*_: object) -> list[object]:
    return []


async def measure(runs: int, chats: int) -> dict[str, float]:
    with Anvil.start() as anvil, tempfile.TemporaryDirectory() as tmp:
        alice, bob, deployer = anvil.accounts[0], anvil.accounts[1], anvil.accounts[9]
        token = deploy_contract(anvil.url, "TestToken", "Test Token", "TKN", 18, private_key=deployer.private_key)
        # Real token history in the logs: minted to alice, then paid out and received.
        for sender, to, selector in ((deployer, alice, "mint(address,uint256)"), (alice, bob, _TRANSFER),
                                     (deployer, anvil.accounts[2], "mint(address,uint256)"),
                                     (anvil.accounts[2], alice, _TRANSFER)):
            data = "0x" + function_signature_to_4byte_selector(selector).hex() + to.address[2:].lower().rjust(64, "0") \
                + hex(10**21)[2:].rjust(64, "0")
            anvil.rpc("eth_sendTransaction", [{"from": sender.address, "to": token, "data": data}])
        anvil.mine(1)
        registry = NetworkRegistry.default().with_overrides([NetworkConfig(
            name="anvil", rpc_urls=[anvil.url], tokens=[TokenConfig(symbol="TKN", address=token, decimals=18)])])
        store = await SqliteStore.open(Path(tmp) / "store.sqlite")
        for _ in range(chats):
            await store.create_chat(alice.address.lower(), 31337)
        out: dict[str, float] = {}
        async with ChainClients(registry) as clients:
            ctx = ToolContext(user_address=alice.address, chain_id=31337, registry=registry, clients=clients,
                              policy=SpendingPolicy(), ledger=InMemorySpendLedger(), history=store)
            client = clients.get(31337)
            tool = Transfer()
            # A look-alike of bob, whom alice paid in TKN: found through the logs.
            body = bob.address.lower()[2:]
            twin = "0x" + body[:4] + "0" * 32 + body[-4:]
            for label, token_arg in (("native", None), ("token", "TKN")):
                args = TransferArgs(to=twin, amount="0.01", token=token_arg)
                await tool.prepare(args, ctx)  # warm: chain id check, token metadata
                card, bare, checks = [], [], []
                for _ in range(runs):  # interleaved, so a machine's drift weighs on all three alike
                    start = time.perf_counter()
                    proposal = await tool.prepare(args, ctx)
                    card.append(time.perf_counter() - start)
                    transfer_module._recipient_warnings = _no_checks  # type: ignore[assignment]
                    try:
                        start = time.perf_counter()
                        await tool.prepare(args, ctx)
                        bare.append(time.perf_counter() - start)
                    finally:
                        transfer_module._recipient_warnings = _recipient_warnings
                    intent = await client.build_intent(alice.address, twin, "0.01",
                                                       None if token_arg is None else token)
                    start = time.perf_counter()
                    await _recipient_warnings(intent, ctx, client)
                    checks.append(time.perf_counter() - start)
                assert proposal.warnings[0].code == "lookalike_recipient", proposal.warnings
                out[f"{label}: prepare without checks"] = statistics.median(bare) * 1000
                out[f"{label}: prepare with checks"] = statistics.median(card) * 1000
                out[f"{label}: recipient checks alone"] = statistics.median(checks) * 1000
        await store.close()
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--chats", type=int, default=20)
    options = parser.parse_args()
    for name, ms in asyncio.run(measure(options.runs, options.chats)).items():
        print(f"{name:<34} {ms:7.2f} ms (median of {options.runs})")


if __name__ == "__main__":
    main()
