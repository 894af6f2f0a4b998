"""The official JavaScript socket.io-client speaks the protocol: tests/js/flow.mjs against a real server."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
from conftest import sign_in
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount

FLOW = Path(__file__).parent / "js" / "flow.mjs"
ETH = 10**18


async def test_js_client_approves_a_transfer(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    node = shutil.which("node")
    assert node is not None, "node is needed for the JS client test (it runs Anvil's npm package too)"
    # The local signer (Anvil account 0, alice) signs: the JS client approves with no signature.
    server = await make_server(signer={"local": "anvil"})
    token = await sign_in(server, alice)
    before = native_balance(anvil, bob.address)
    # A subprocess the event loop waits on, so this process's server keeps serving meanwhile.
    process = await asyncio.create_subprocess_exec(
        node, str(FLOW), server.url, token, bob.address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).parent.parent,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    output = stdout.decode().strip()
    assert process.returncode == 0, f"flow.mjs exited {process.returncode}: {output}\n{stderr.decode()}"
    summary = json.loads(output.splitlines()[-1])

    assert summary["ok"] is True and summary["finish_reason"] == "stop"
    assert summary["network"] == "anvil"
    assert summary["decided"] == {"ok": True}
    assert "0.25 ETH" in summary["summary"] and bob.address in summary["summary"]
    assert summary["tx_statuses"][0] == "submitted" and summary["tx_statuses"][-1] == "confirmed"
    assert "confirmed" in summary["answer"].lower()
    assert summary["seqs_contiguous"] is True
    assert native_balance(anvil, bob.address) - before == ETH // 4

    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{server.url}/api/chats/{summary['chat_id']}", headers=headers) as response:
            detail = await response.json()
    [tx] = detail["transactions"]
    assert tx["tx_hash"].lower() == summary["tx_hash"].lower() and tx["status"] == "confirmed"
    assert detail["last_seq"] == summary["last_seq"]


async def test_js_client_with_a_bad_token_gets_a_connect_error(make_server: Any, bob: DevAccount) -> None:
    node = shutil.which("node")
    assert node is not None
    server = await make_server()
    process = await asyncio.create_subprocess_exec(
        node, str(FLOW), server.url, "not-a-token", bob.address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 1
    summary = json.loads(stdout.decode().strip().splitlines()[-1])
    assert summary["ok"] is False and summary["reason"] == "connect_error"
    # socket.io-client shows the refusal as err.message and err.data = {code, message}.
    assert summary["data"]["code"] == "unauthorized" and summary["message"] == summary["data"]["message"]
