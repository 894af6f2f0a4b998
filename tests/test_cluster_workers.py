"""Relays and turn workers as separate processes on one Postgres and one Redis.

Two ``lunark serve --relay-only`` processes (the relays: sockets, sign-in, the event log's replay)
and ``lunark worker`` processes (the turns), all real subprocesses started by the harness of
``tests/test_cluster.py``. Turn jobs go from the relays to the workers through Postgres
(``lunark.server.jobs``); the workers' events reach the relays' clients through the event log and
Redis. What a user checks is asserted: every event once and in order on either relay, one
transaction on chain per approved transfer, an answer cut by a worker's ``kill -9`` ended once as
interrupted and the next message answered, and a message sent while no worker is up answered once
one starts.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import World, sign_in
from server_harness import Http, SioClient, assert_error
from services import RedisServer
from test_cluster import LUNARK, Processes, answered, approve, ask, assert_once_in_order, chain_nonce, confirmed
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount
from lunark.server.queue_worker import READY

pytestmark = pytest.mark.slow

HALF_ETH = 5 * 10**17


@dataclass
class Worker:
    name: str
    node: str
    pid: int
    proc: asyncio.subprocess.Process
    log: Path


class Cluster(Processes):
    """``Processes``, and ``lunark worker`` processes on the same configuration."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.workers: list[Worker] = []

    async def relays(self, *names: str, **overrides: Any) -> list[Any]:
        server = {"relay_only": True, **overrides.pop("server", {})}
        return await self.start(*names, server=server, **overrides)

    async def worker(self, name: str, **overrides: Any) -> Worker:
        config = self.config(name, **overrides)
        log = self.tmp_path / f"{name}.log"
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *LUNARK, "worker", "--config", str(config), env={**os.environ, "LUNARK_PLUGINS": "false"},
                stdout=asyncio.subprocess.PIPE, stderr=err,
            )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
        found = re.search(r"node (\S+), pid (\d+)", line)
        assert line.startswith(READY) and found, (
            f"lunark worker {name} did not start: {line!r}\n{log.read_text()[-3000:]}")
        worker = Worker(name, found.group(1), int(found.group(2)), proc, log)
        self.workers.append(worker)
        return worker

    async def holder(self, chat_id: str) -> Worker | None:
        """The worker whose cluster lock holds the chat's turn now (pg_locks, by the lock connection's name)."""
        import psycopg

        from lunark.store import advisory_key

        key = advisory_key(f"turn:{chat_id}") & 0xFFFFFFFFFFFFFFFF
        async with await psycopg.AsyncConnection.connect(self.pg_url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = %s AND l.objid::bigint = %s",
                (key >> 32, key & 0xFFFFFFFF))
            row = await cursor.fetchone()
        node = str(row[0]).removeprefix("lunark-locks ") if row else None
        return next((w for w in self.workers if w.node == node), None)

    async def kill_worker(self, worker: Worker) -> None:
        worker.proc.kill()
        await worker.proc.wait()

    async def stop(self) -> None:
        for worker in self.workers:
            if worker.proc.returncode is None:
                await self.kill_worker(worker)
        await super().stop()


@pytest.fixture
async def cluster(tmp_path: Path, world: World, anvil: Anvil, pg_url: str, redis_server: RedisServer
                  ) -> AsyncIterator[Cluster]:
    running = Cluster(tmp_path, world, pg_url, redis_server.url)
    try:
        yield running
    finally:
        await running.stop()


async def test_a_chat_streamed_by_a_worker_reaches_clients_of_both_relays_once_and_in_order(
    cluster: Cluster, alice: DevAccount
) -> None:
    # A runs one local worker (serve --workers 1), B none; one `lunark worker` runs on its own.
    [a] = await cluster.start("a", model={"delay": 0.01}, server={"workers": 1})
    [b] = await cluster.relays("b", model={"delay": 0.01})
    await cluster.worker("w1", model={"delay": 0.01})
    token = await sign_in(a, alice)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b, Http(b) as http:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        await on_b.call("join_chat", {"chat_id": chat_id})
        for round_ in range(3):  # through either relay; each turn on whichever worker takes it
            sender = on_a if round_ % 2 == 0 else on_b
            ack = await sender.call("send_message", {"chat_id": chat_id, "content": "hello there",
                                                     "client_message_id": f"m{round_}"})
            assert "message_id" in ack, ack
            for client in (on_a, on_b):
                await answered(client, chat_id, round_ + 1)
        await asyncio.sleep(0.3)  # anything duplicated would arrive by now
        seqs = assert_once_in_order(on_a, chat_id)
        assert on_b.chat_events(chat_id) == on_a.chat_events(chat_id)
        assert len(on_a.of("token", chat_id=chat_id)) >= 3
        # Reads that need the agent go through the queue too.
        status, tools = await http.get("/api/tools", token)
        assert status == 200 and any(t["name"] == "transfer" for t in tools["tools"]), tools
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["last_seq"] == seqs[-1]
        assert [m["role"] for m in detail["messages"]] == ["user", "assistant"] * 3


async def test_a_decision_sent_to_either_relay_applies_once(
    cluster: Cluster, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    a, b = await cluster.relays("a", "b")
    await asyncio.gather(cluster.worker("w1"), cluster.worker("w2"))
    token = await sign_in(b, alice)
    bob_before, nonce_before = native_balance(anvil, bob.address), chain_nonce(anvil, alice.address)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        await on_b.call("join_chat", {"chat_id": chat_id})
        pending = await ask(on_a, chat_id, f"send 0.5 ETH to {bob.address}", "m1")
        acks = await asyncio.gather(on_a.call("resume_decisions", approve(chat_id, pending)),
                                    on_b.call("resume_decisions", approve(chat_id, pending)))
        assert sorted(acks, key=str).count({"ok": True}) == 1, acks
        assert_error(next(ack for ack in acks if ack != {"ok": True}), "already_decided")
        call_id = pending["action_requests"][0]["call_id"]
        for client in (on_a, on_b):
            assert (await confirmed(client, chat_id, call_id))["status"] == "confirmed"
            await answered(client, chat_id, 1)
        assert_error(await on_b.call("resume_decisions", approve(chat_id, pending)), "already_decided")
        await asyncio.sleep(0.5)
        assert_once_in_order(on_a, chat_id)
        assert on_b.chat_events(chat_id) == on_a.chat_events(chat_id)
        assert len(on_a.of("approval_resolved", chat_id=chat_id)) == 1
    assert native_balance(anvil, bob.address) - bob_before == HALF_ETH
    assert chain_nonce(anvil, alice.address) == nonce_before + 1


async def test_a_worker_killed_mid_turn_leaves_the_answer_ended_interrupted_once_and_the_chat_free(
    cluster: Cluster, alice: DevAccount
) -> None:
    a, b = await cluster.relays("a", "b", model={"delay": 0.15})
    await asyncio.gather(cluster.worker("w1", model={"delay": 0.15}), cluster.worker("w2", model={"delay": 0.15}))
    token = await sign_in(a, alice)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b:
        chat_id, message_id = await on_a.mid_answer(watch=on_b)
        running = await cluster.holder(chat_id)
        assert running is not None, "a worker holds the chat's turn"
        await cluster.kill_worker(running)  # mid-answer
        end = await on_b.wait_event("message_end", chat_id=chat_id, message_id=message_id, timeout=20)
        assert end["finish_reason"] == "interrupted" and "stopped" in end["message"], end
        # Both relays' clients have the end (each through its own relay, once).
        await on_a.wait_event("message_end", chat_id=chat_id, message_id=message_id, timeout=20)
        # The other worker answers the next message, sent through either relay.
        mark = on_a.mark()
        ack = await on_b.call("send_message", {"chat_id": chat_id, "content": "hello", "client_message_id": "m2"},
                              timeout=60)
        assert "message_id" in ack, ack
        again = await on_a.wait_event("message_end", chat_id=chat_id, after=mark, timeout=60)
        assert again["finish_reason"] == "stop", again
        await asyncio.sleep(0.3)
        seqs = assert_once_in_order(on_a, chat_id)
        assert on_b.chat_events(chat_id) == on_a.chat_events(chat_id)
    async with SioClient(b, token) as late:  # a replay shows the cut answer's end once
        await late.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        await late.wait_until(lambda e: e.get("seq") == seqs[-1], what="the replay's last event")
        ends = [e["finish_reason"] for e in late.of("message_end", chat_id=chat_id)
                if e["message_id"] == message_id]
        assert ends == ["interrupted"], ends


async def test_a_message_sent_before_any_worker_is_up_waits_and_is_answered(
    cluster: Cluster, alice: DevAccount
) -> None:
    [a] = await cluster.relays("a")
    token = await sign_in(a, alice)
    async with SioClient(a, token) as on_a:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        sending = asyncio.create_task(on_a.call("send_message", {"chat_id": chat_id, "content": "what's my balance",
                                                                 "client_message_id": "m1"}, timeout=90))
        await asyncio.sleep(1.0)
        assert not sending.done(), "the job waits for a worker"
        await cluster.worker("w1")  # a worker started late
        ack = await sending
        assert "message_id" in ack, ack
        end = await on_a.wait_event("message_end", chat_id=chat_id, finish_reason="stop", timeout=60)
        assert end["message_id"] != ack["message_id"]
        assert_once_in_order(on_a, chat_id)
