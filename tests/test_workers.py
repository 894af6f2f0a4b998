"""``lunark serve --workers 1``: turns run in a worker process, the serving process only relays.

A real ``lunark serve`` (a subprocess, as ``tests/test_crash.py`` starts it) with one turn worker,
real Socket.IO clients, a real Anvil. The worker is found by its pid (``/healthz`` with the admin
token) and killed with SIGKILL; what a user sees is asserted: a whole chat with an approval settles
on chain, an answer cut by the worker's death ends ``interrupted`` exactly once, and a message sent
while no worker is up waits for the new one and is answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import World, sign_in
from server_harness import Http, SioClient
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount, free_port

pytestmark = pytest.mark.slow

LUNARK = [sys.executable, "-c", "import sys; from lunark.cli import main; sys.exit(main())"]
ADMIN = "admin-token-for-the-workers-test"


@dataclass
class Served:
    url: str
    domain: str
    proc: asyncio.subprocess.Process


class Server:
    """One ``lunark serve --workers 1`` process on a fresh data directory."""

    def __init__(self, tmp_path: Path, world: World, **config: Any) -> None:
        self.port = free_port()
        self.config = tmp_path / "lunark.json"
        self.log = tmp_path / "serve.log"
        self.config.write_text(json.dumps({
            "data_dir": str(tmp_path / "data"),
            "plugins": False,
            "signer": {"local": "anvil"},
            "chain": {"track_timeout": 60, "verify_timeout": 5, "networks": [{
                "name": "anvil", "rpc_urls": [world.anvil.url],
                "tokens": [{"symbol": "TKN", "address": world.token, "decimals": 18}],
            }]},
            **config,
        }))
        self.served: Served | None = None

    async def start(self, workers: int = 1) -> Served:
        with self.log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *LUNARK, "serve", "--port", str(self.port), "--config", str(self.config),
                "--workers", str(workers),
                env={**os.environ, "LUNARK_PLUGINS": "false", "LUNARK_ADMIN_TOKEN": ADMIN},
                stdout=asyncio.subprocess.PIPE, stderr=err,
            )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        found = re.search(r"listening on (http://\S+)", line)
        assert found, f"lunark serve did not start: {line!r}\n{self.log.read_text()[-3000:]}"
        self.served = Served(url=found.group(1), domain=f"localhost:{self.port}", proc=proc)
        return self.served

    async def workers(self) -> list[dict[str, Any]]:
        assert self.served is not None
        async with Http(self.served) as http:
            status, report = await http.get("/healthz", ADMIN)
        assert status == 200, report
        processes: list[dict[str, Any]] = report["workers"]["processes"]
        return processes

    async def worker_pid(self, *, other_than: int | None = None, timeout: float = 60) -> int:
        """The pid of the (one) worker once it is ready; a new one if ``other_than`` is given."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            [worker] = await self.workers()
            if worker["ready"] and worker["pid"] is not None and worker["pid"] != other_than:
                return int(worker["pid"])
            assert asyncio.get_running_loop().time() < deadline, f"no ready worker: {worker}"
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.served is not None and self.served.proc.returncode is None:
            self.served.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.served.proc.wait(), 20)
            except TimeoutError:
                self.served.proc.kill()
                await self.served.proc.wait()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
async def server(tmp_path: Path, world: World, anvil: Anvil) -> AsyncIterator[Server]:
    running = Server(tmp_path, world)
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def slow_server(tmp_path: Path, world: World, anvil: Anvil) -> AsyncIterator[Server]:
    """The offline planner writing a token every 0.15 s: time to kill a worker mid-answer."""
    running = Server(tmp_path, world, model={"delay": 0.15})
    try:
        yield running
    finally:
        await running.stop()


async def test_a_whole_chat_runs_in_the_worker_and_settles_on_chain(
    server: Server, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    """A balance question streams, a transfer pauses for approval, the approve settles it on chain:
    every turn in the worker process, every event through the serving process's log, in order."""
    served = await server.start()
    worker = await server.worker_pid()
    assert worker != served.proc.pid and alive(worker)
    token = await sign_in(served, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(served, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": "what's my balance",
                                              "client_message_id": "m1"})
        assert "message_id" in ack, ack
        end = await sio.wait_event("message_end", chat_id=chat_id, finish_reason="stop", timeout=30)
        assert sio.of("token", chat_id=chat_id), "the answer streamed"
        [call] = sio.of("tool_call", chat_id=chat_id)
        [result] = sio.of("tool_result", chat_id=chat_id)
        assert call["name"] == "get_balance" and result["status"] == "success", (call, result)
        assert end["message_id"] == call["message_id"]

        mark = sio.mark()
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": f"send 0.5 ETH to {bob.address}",
                                              "client_message_id": "m2"})
        assert "message_id" in ack, ack
        pending = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark, timeout=30)
        await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="awaiting_approval")
        # The decision's errors come back from the worker with their codes, as acks.
        unknown = await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": "apr_000000000000",
                                                      "decisions": [{"type": "approve"}]})
        assert unknown["error"]["code"] in ("no_pending_approval", "not_found"), unknown
        approve = {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}
        assert await sio.call("resume_decisions", approve) == {"ok": True}
        again = await sio.call("resume_decisions", approve)
        assert again["error"]["code"] == "already_decided", again
        done = await sio.wait_event("tx_update", chat_id=chat_id, status="confirmed", timeout=40)
        assert done["call_id"] == pending["action_requests"][0]["call_id"]
        seqs = sio.seqs(chat_id)
        assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert native_balance(anvil, bob.address) == bob_before + 5 * 10**17
    assert await server.worker_pid() == worker, "the worker did every turn without being restarted"

    async with Http(served) as http:  # the HTTP mirror's reads go through the worker too
        status, tools = await http.get("/api/tools", token)
        assert status == 200 and any(t["name"] == "transfer" for t in tools["tools"]), tools
        status, health = await http.get("/healthz")
        assert status == 200 and health["workers"] == {"count": 1, "ready": 1}, health


async def test_a_worker_killed_mid_answer_is_replaced_and_the_answer_ends_interrupted_once(
    slow_server: Server, alice: DevAccount
) -> None:
    """kill -9 of the worker while an answer streams: the serving process lives on, starts a new
    worker, which closes the cut answer (``message_end`` ``interrupted`` with its sentence, once),
    and the next message is answered."""
    server = slow_server
    served = await server.start()
    first = await server.worker_pid()
    token = await sign_in(served, alice)
    async with SioClient(served, token) as sio:
        chat_id, message_id = await sio.mid_answer()
        os.kill(first, signal.SIGKILL)  # mid-answer
        end = await sio.wait_event("message_end", chat_id=chat_id, message_id=message_id, timeout=60)
        assert end["finish_reason"] == "interrupted", end
        assert end["message"] == (
            "The server writing this answer stopped before it was done; what it had written is kept."), end
        assert served.proc.returncode is None, "the serving process did not die with its worker"
        second = await server.worker_pid(other_than=first)
        assert second != first and not alive(first)

        mark = sio.mark()
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": "hello", "client_message_id": "m2"},
                             timeout=60)
        assert "message_id" in ack, ack
        again = await sio.wait_event("message_end", chat_id=chat_id, after=mark, timeout=60)
        assert again["finish_reason"] == "stop", again
        seqs = sio.seqs(chat_id)
        assert seqs == list(range(1, len(seqs) + 1)), seqs

    # A replay from the start shows the cut answer's end exactly once.
    async with SioClient(served, token) as late:
        await late.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        await late.wait_until(lambda e: e.get("seq") == seqs[-1], what="the replay's last event")
        ends = [e["finish_reason"] for e in late.of("message_end", chat_id=chat_id) if e["message_id"] == message_id]
        assert ends == ["interrupted"], ends


async def test_a_serving_process_killed_mid_answer_leaves_it_for_the_restarted_server_to_end_interrupted(
    slow_server: Server, alice: DevAccount
) -> None:
    """kill -9 of the serving process (not the worker) while an answer streams: its worker exits
    without stopping the turn (which would close the answer in the store with no relay to log its
    end), and the server started again on the same data ends the answer ``interrupted``, once."""
    server = slow_server
    served = await server.start()
    worker = await server.worker_pid()
    token = await sign_in(served, alice)
    async with SioClient(served, token) as sio:
        chat_id, message_id = await sio.mid_answer()
        served.proc.kill()
        await served.proc.wait()
    for _ in range(500):  # the orphaned worker goes too
        if not alive(worker):
            break
        await asyncio.sleep(0.01)
    assert not alive(worker), "the worker outlived its serving process"

    # Restarted at the model's full pace: only the cut needed a slow answer.
    config = json.loads(server.config.read_text())
    server.config.write_text(json.dumps({k: v for k, v in config.items() if k != "model"}))
    again = await server.start()
    token = await sign_in(again, alice)
    async with SioClient(again, token) as sio:
        await sio.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        end = await sio.wait_event("message_end", chat_id=chat_id, message_id=message_id, timeout=60)
        assert end["finish_reason"] == "interrupted", end
        mark = sio.mark()
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": "hello", "client_message_id": "m2"},
                             timeout=60)
        assert "message_id" in ack, ack
        await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="stop", timeout=60)
        ends = [e["finish_reason"] for e in sio.of("message_end", chat_id=chat_id)
                if e["message_id"] == message_id]
        assert ends == ["interrupted"], ends
        seqs = sio.seqs(chat_id)
        assert seqs == list(range(1, len(seqs) + 1)), seqs


async def test_a_message_sent_while_no_worker_is_up_waits_for_it_and_runs(
    server: Server, alice: DevAccount
) -> None:
    """The worker is killed and a message sent at once, before its replacement is up: the message's
    ack waits for the new worker, and the answer comes."""
    served = await server.start()
    first = await server.worker_pid()
    token = await sign_in(served, alice)
    async with SioClient(served, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        os.kill(first, signal.SIGKILL)
        for _ in range(500):  # until the serving process has reaped it
            if not alive(first):
                break
            await asyncio.sleep(0.01)
        [down] = await server.workers()
        assert not down["ready"], down  # the new worker is still importing
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": "what's my balance",
                                              "client_message_id": "m1"}, timeout=60)
        assert "message_id" in ack, ack
        end = await sio.wait_event("message_end", chat_id=chat_id, finish_reason="stop", timeout=60)
        assert end["message_id"] != ack["message_id"]
    assert await server.worker_pid() != first


async def test_workers_with_a_postgres_store_or_a_model_object_are_refused_plainly(tmp_path: Path) -> None:
    """Said at start (before anything is opened): workers on a Postgres store without Redis (a
    cluster's workers need both: tests/test_cluster_workers.py), and a model object, which cannot
    reach another process (``model_factory`` names one that can)."""
    from lunark.config import Settings
    from lunark.errors import ConfigError
    from lunark.models.planner import OfflinePlanner
    from lunark.server.app import LunarkServer

    on_postgres = Settings.load(data_dir=tmp_path, store={"url": "postgresql://lunark@127.0.0.1:1/lunark"},
                                server={"workers": 1})
    with pytest.raises(ConfigError, match=r"server\.workers"):
        await LunarkServer(on_postgres).start()
    local = Settings.load(data_dir=tmp_path, server={"workers": 1})
    with pytest.raises(ConfigError, match="model_factory"):
        await LunarkServer(local, model=OfflinePlanner()).start()
