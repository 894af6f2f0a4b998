"""2. Approval round trip on Anvil, against web3.py doing the same transfer directly.

Lunark: from ``pending_approval`` received by the client, the wallet signs the
approval's ``tx`` with the Anvil dev key and broadcasts it, the client sends
``resume_decisions`` with the ``tx_hash``, until ``tx_update`` ``confirmed`` is
received. Baseline: the same transfer (same fields, next nonce) signed, sent and
awaited (``wait_for_transaction_receipt``) with web3.py, nothing else in the way.
The two alternate, so both see the same chain and machine.

The card itself: ``card_ms`` is send_message -> ``pending_approval`` received (the model stub, the
transfer's preparation and its balance-change preview); ``preview`` times what the preview adds,
directly on a ``ChainClient``: ``prepare`` alone, then ``preview`` (eth_simulateV1 and the balance
reads) of the same prepared transfer.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import aiohttp

from benchmarks.client import DEV_KEYS, sign_in
from benchmarks.recorder import Recorder
from benchmarks.seed import BOB
from benchmarks.stats import summary
from lunark.client.wallet import sign_transaction


async def _rpc(http: aiohttp.ClientSession, url: str, method: str, params: list[Any]) -> Any:
    async with http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}) as response:
        body = await response.json()
    if "error" in body:
        raise RuntimeError(f"{method}: {body['error']}")
    return body["result"]


async def run_approval(server_url: str, anvil_url: str, reps: int, *, log: Any = print) -> dict[str, Any]:
    from eth_account import Account
    from web3 import AsyncHTTPProvider, AsyncWeb3

    key = DEV_KEYS[0]
    token = await sign_in(server_url, key)
    client = await Recorder(server_url, token).connect()
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil_url))
    lunark: list[dict[str, float]] = []
    direct: list[float] = []
    template: dict[str, Any] | None = None
    try:
        async with aiohttp.ClientSession() as http:
            for rep in range(reps + 1):  # the first Lunark turn warms up (imports, connections): not counted
                chat_id = (await client.call("join_chat", {}))["chat_id"]
                pending = client.expect("pending_approval", chat_id=chat_id)
                ended = client.expect("message_end", chat_id=chat_id)
                t_ask = time.monotonic()
                await client.call(
                    "send_message",
                    {
                        "chat_id": chat_id,
                        "content": f"send 0.001 ETH to {BOB}",
                        "client_message_id": "a" + secrets.token_hex(6),
                    },
                )
                await asyncio.wait_for(pending, 30)
                t0 = time.monotonic()
                card_ms = (t0 - t_ask) * 1000
                approval = client.last("pending_approval")
                tx = approval["action_requests"][0]["tx"]
                template = tx
                raw = sign_transaction(tx, key)
                tx_hash = await _rpc(http, anvil_url, "eth_sendRawTransaction", [raw])
                t_sent = time.monotonic()
                # The turn ends (message_end, awaiting_approval) right after pending_approval; a decision
                # sent before that is refused as "not waiting", so the wallet's answer waits for it.
                await asyncio.wait_for(ended, 30)
                confirmed = client.expect("tx_update", chat_id=chat_id, status="confirmed")
                done = client.expect("message_end", chat_id=chat_id)
                await client.call(
                    "resume_decisions",
                    {
                        "chat_id": chat_id,
                        "approval_id": approval["approval_id"],
                        "decisions": [{"type": "approve", "tx_hash": tx_hash}],
                    },
                )
                t_ack = time.monotonic()
                t_confirmed = await asyncio.wait_for(confirmed, 60)
                t_end = await asyncio.wait_for(done, 60)

                def first(name: str, t_from: float = t_ack, **fields: Any) -> float:
                    return next(
                        (
                            (t - t_from) * 1000
                            for t, event, data in client.events
                            if t >= t_from and event == name and all(data.get(k) == v for k, v in fields.items())
                        ),
                        float("nan"),
                    )

                if rep:
                    lunark.append(
                        {
                            "round_trip_ms": (t_confirmed - t0) * 1000,
                            "card_ms": card_ms,
                            "sign_send_ms": (t_sent - t0) * 1000,
                            "resolved_after_ack_ms": first("approval_resolved", t_sent),
                            "submitted_after_ack_ms": first("tx_update", status="submitted"),
                            "mined_after_ack_ms": first("tx_update", status="mined"),
                            "resume_ack_ms": (t_ack - t_sent) * 1000,
                            "confirmed_after_ack_ms": (t_confirmed - t_ack) * 1000,
                            "answer_done_ms": (t_end - t0) * 1000,
                        }
                    )

                # Baseline: the same transfer, directly.
                nonce = await w3.eth.get_transaction_count(Account.from_key(key).address, "pending")
                b0 = time.monotonic()
                signed = sign_transaction({**template, "nonce": hex(nonce)}, key)
                sent = await w3.eth.send_raw_transaction(signed)
                receipt = await w3.eth.wait_for_transaction_receipt(sent, timeout=60, poll_latency=0.005)
                b1 = time.monotonic()
                assert receipt["status"] == 1
                if rep:
                    direct.append((b1 - b0) * 1000)
    finally:
        await client.close()
        await w3.provider.disconnect()
    out = {
        "reps": reps,
        "lunark": {k: summary([r[k] for r in lunark]) for k in lunark[0]},
        "direct_web3_ms": summary(direct),
        "preview": await run_preview(anvil_url, max(reps, 10)),
    }
    rt, base = out["lunark"]["round_trip_ms"]["median"], out["direct_web3_ms"]["median"]
    out["aim_ms"] = 1.5 * base + 20
    out["ratio"] = rt / base
    log(f"  approval round trip {rt:.1f} ms (p50) vs direct web3 {base:.1f} ms; aim <= {out['aim_ms']:.1f} ms")
    log(f"  card shown {out['lunark']['card_ms']['median']:.1f} ms after send_message (p50); the preview adds "
        f"{out['preview']['preview_ms']['median']:.1f} ms to a {out['preview']['prepare_ms']['median']:.1f} ms prepare")
    return out


async def run_preview(anvil_url: str, reps: int) -> dict[str, Any]:
    """``prepare`` then ``preview`` of the same 0.001 ETH transfer, each timed, ``reps`` times after one warm-up."""
    from lunark.chain.client import ChainClient
    from lunark.networks import NetworkConfig, NetworkRegistry

    network = NetworkRegistry.default().with_overrides([NetworkConfig(name="anvil", rpc_urls=[anvil_url])]).get("anvil")
    prepare_ms: list[float] = []
    preview_ms: list[float] = []
    async with ChainClient(network) as chain:
        sender = (await chain.w3.eth.accounts)[0]
        for rep in range(reps + 1):
            t0 = time.monotonic()
            prepared = await chain.prepare_transfer(sender, BOB, "0.001")
            t1 = time.monotonic()
            preview = await chain.preview(prepared)
            t2 = time.monotonic()
            assert preview.simulated, preview.reason
            if rep:
                prepare_ms.append((t1 - t0) * 1000)
                preview_ms.append((t2 - t1) * 1000)
    return {"reps": reps, "prepare_ms": summary(prepare_ms), "preview_ms": summary(preview_ms)}
