"""kill -9 a real ``lunark serve`` at each step of the money path and restart it on the same data.

Every run must end with exactly the on-chain transfer the user approved (never none after a
decision, never two), the chat showing it confirmed, and the approval never offered again.

The suite runs each crash point once; ``LUNARK_CRASH_RUNS=N .venv/bin/pytest tests/test_crash.py``
(docs/troubleshooting.md names it) sweeps every point N times.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import World, sign_in
from server_harness import Http, SioClient, assert_error
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount, free_port

pytestmark = pytest.mark.slow

LUNARK = [sys.executable, "-c", "import sys; from lunark.cli import main; sys.exit(main())"]
RUNS = int(os.environ.get("LUNARK_CRASH_RUNS", "1"))
POINTS = ["paused", "decided", "mempool", "mined"]


@dataclass
class Served:
    """A ``lunark serve`` process as the test's clients see it."""

    url: str
    domain: str
    proc: asyncio.subprocess.Process


class Server:
    """Starts, kills (SIGKILL) and restarts one server process on the same data and port."""

    def __init__(self, tmp_path: Path, world: World) -> None:
        self.port = free_port()
        self.config = tmp_path / "lunark.json"
        self.config.write_text(json.dumps({
            "data_dir": str(tmp_path / "data"),
            "plugins": False,
            "signer": {"local": "anvil"},
            "chain": {"track_timeout": 60, "verify_timeout": 5, "networks": [{
                "name": "anvil", "rpc_urls": [world.anvil.url],
                "tokens": [{"symbol": "TKN", "address": world.token, "decimals": 18}],
            }]},
        }))
        self.served: Served | None = None
        self.starts = 0

    async def start(self) -> Served:
        log = self.config.with_name(f"serve-{self.starts}.log")
        self.starts += 1
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *LUNARK, "serve", "--port", str(self.port), "--config", str(self.config),
                env={**os.environ, "LUNARK_PLUGINS": "false"},
                stdout=asyncio.subprocess.PIPE, stderr=err,
            )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        found = re.search(r"listening on (http://\S+)", line)
        assert found, f"lunark serve did not start: {line!r}\n{log.read_text()[-3000:]}"
        self.served = Served(url=found.group(1), domain=f"localhost:{self.port}", proc=proc)
        return self.served

    async def kill(self) -> None:
        assert self.served is not None
        self.served.proc.kill()  # SIGKILL: no clean-up of any kind
        await self.served.proc.wait()

    async def stop(self) -> None:
        if self.served is not None and self.served.proc.returncode is None:
            await self.kill()


@pytest.fixture
async def server(tmp_path: Path, world: World, anvil: Anvil) -> AsyncIterator[Server]:
    running = Server(tmp_path, world)
    try:
        yield running
    finally:
        await running.stop()


async def final_status(sio: SioClient, chat_id: str, call_id: str) -> dict[str, Any]:
    return await sio.wait_until(
        lambda e: e["type"] == "tx_update" and e.get("call_id") == call_id
        and e["status"] not in ("submitted", "mined"),
        timeout=40, what="the transfer's final tx_update",
    )


@pytest.mark.parametrize("run", range(RUNS))
@pytest.mark.parametrize("point", POINTS)
async def test_a_crash_at_any_step_loses_nothing_and_sends_once(
    server: Server, anvil: Anvil, alice: DevAccount, bob: DevAccount, point: str, run: int
) -> None:
    served = await server.start()
    token = await sign_in(served, alice)
    bob_before = native_balance(anvil, bob.address)
    nonce_before = int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16)
    async with SioClient(served, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 0.5 ETH to {bob.address}",
                                        "client_message_id": "m1"})
        pending = await sio.wait_event("pending_approval", chat_id=chat_id, timeout=30)
        call_id = pending["action_requests"][0]["call_id"]
        approve = {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}
        if point == "paused":
            await server.kill()  # the moment the card reached the client
        else:
            if point in ("mempool", "mined"):
                anvil.set_automine(False)
            await sio.wait_event("message_end", chat_id=chat_id, finish_reason="awaiting_approval")
            assert await sio.call("resume_decisions", approve) == {"ok": True}
            if point == "decided":
                await server.kill()  # right after the ack
            else:
                await sio.wait_event("tx_update", chat_id=chat_id, status="submitted", timeout=30)
                if point == "mined":
                    anvil.mine(1)
                    await asyncio.sleep(0.3)
                await server.kill()  # with the transaction in the mempool, or just mined

    served = await server.start()
    async with SioClient(served, token) as sio, Http(served) as http:
        ack = await sio.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        if point == "paused":
            # The card a client saw can still be decided.
            assert ack.get("pending_approval", {}).get("approval_id") == pending["approval_id"], ack
            assert await sio.call("resume_decisions", approve) == {"ok": True}
        else:
            assert "pending_approval" not in ack, "a decided approval is never offered again"
        if point in ("mempool", "mined"):
            anvil.mine(1)
            anvil.set_automine(True)
        done = await final_status(sio, chat_id, call_id)
        assert done["status"] == "confirmed", done
        assert_error(await sio.call("resume_decisions", approve), "already_decided", "no_pending_approval")
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert [t["status"] for t in detail["transactions"]] == ["confirmed"], detail["transactions"]
        assert "pending_approval" not in detail

    # Exactly the one transfer the user approved reached the chain.
    assert native_balance(anvil, bob.address) - bob_before == 5 * 10**17
    assert int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16) == nonce_before + 1


async def test_an_approval_that_expires_while_the_server_is_dead_is_expired_by_it_after_restart(
    server: Server, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    """kill -9 with a card waiting; it expires while no server runs. Restarted on the same data,
    the server expires it by itself (nobody opens the chat): nothing is sent, the spend reserved
    for it is released, and the chat says it was rejected by timeout."""
    import sqlite3

    config = json.loads(server.config.read_text())
    server.config.write_text(json.dumps({**config, "approvals": {"ttl_seconds": 2}}))
    served = await server.start()
    token = await sign_in(served, alice)
    nonce_before = int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16)
    async with SioClient(served, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 0.5 ETH to {bob.address}",
                                        "client_message_id": "m1"})
        pending = await sio.wait_event("pending_approval", chat_id=chat_id, timeout=30)
        await server.kill()
    await asyncio.sleep(2.5)  # past its expiry, with no server alive

    served = await server.start()
    database = Path(config["data_dir"]) / "lunark.sqlite"

    def stored() -> tuple[tuple[str, str | None], list[str]]:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            state = db.execute("SELECT state, by FROM approvals WHERE approval_id = ?",
                               (pending["approval_id"],)).fetchone()
            ledger = [row[0] for row in db.execute("SELECT state FROM ledger")]
        return state, ledger

    for _ in range(200):
        if stored()[0][0] == "expired":
            break
        await asyncio.sleep(0.05)
    state, ledger = stored()
    assert state == ("expired", "timeout"), state
    assert ledger and set(ledger) == {"released"}, f"the reservation must be released: {ledger}"

    async with SioClient(served, token) as sio:
        ack = await sio.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        assert "pending_approval" not in ack
        resolved = await sio.wait_event("approval_resolved", chat_id=chat_id)
        assert resolved["approval_id"] == pending["approval_id"] and resolved["by"] == "timeout"
        late = {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}
        assert_error(await sio.call("resume_decisions", late), "approval_expired")
    assert int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16) == nonce_before
