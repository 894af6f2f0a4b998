"""Several real ``lunark serve`` processes on one Postgres and one Redis, as behind a load balancer.

Each test starts two or three processes (subprocesses, as ``tests/test_crash.py`` does) on a fresh
database; clients talk to whichever process the test picks, as a load balancer would send them.
What a user can check is asserted: every event of the chat once and in order wherever the client is
connected, one transaction on chain per approved transfer, a decision or an abort reaching the turn
wherever it runs, and nothing lost when a process is killed (SIGKILL) or Redis restarts.
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

import aiohttp
import pytest
from conftest import World, sign_in
from server_harness import EventStream, Http, SioClient, assert_contiguous, assert_error, assert_http_error
from services import RedisServer
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount, free_port

pytestmark = pytest.mark.slow

LUNARK = [sys.executable, "-c", "import sys; from lunark.cli import main; sys.exit(main())"]
DOMAIN = "lunark.cluster.test"
"""One sign-in domain for every process: the name users reach the load balancer by."""
PUBLIC_URL = f"http://{DOMAIN}"
"""The dApp's origin, which sign-in messages name (``server.public_url``)."""
HALF_ETH = 5 * 10**17


@dataclass
class Served:
    """One ``lunark serve`` process as the test's clients see it."""

    name: str
    url: str
    domain: str
    proc: asyncio.subprocess.Process
    log: Path
    public_url: str = PUBLIC_URL


class Processes:
    """Starts and kills (SIGKILL) ``lunark serve`` processes sharing one database and one Redis."""

    def __init__(self, tmp_path: Path, world: World, pg_url: str, redis_url: str) -> None:
        self.tmp_path = tmp_path
        self.world = world
        self.pg_url = pg_url
        self.redis_url = redis_url
        self.running: list[Served] = []

    def config(self, name: str, **overrides: Any) -> Path:
        values: dict[str, Any] = {
            "data_dir": str(self.tmp_path / name),
            "plugins": False,
            "signer": {"local": "anvil"},
            "store": {"url": self.pg_url, "pool_size": 4},
            "server": {"domain": DOMAIN, "public_url": PUBLIC_URL, "redis_url": self.redis_url,
                       "sweep_interval_seconds": 0.25},
            "chain": {"track_timeout": 60, "verify_timeout": 5, "networks": [{
                "name": "anvil", "rpc_urls": [self.world.anvil.url],
                "tokens": [{"symbol": "TKN", "address": self.world.token, "decimals": 18}],
            }]},
        }
        for key, value in overrides.items():
            values[key] = {**values[key], **value} if isinstance(values.get(key), dict) else value
        path = self.tmp_path / f"{name}.json"
        path.write_text(json.dumps(values))
        return path

    async def start(self, *names: str, **overrides: Any) -> list[Served]:
        """Start one process per name, together (they migrate the schema once between them)."""
        return list(await asyncio.gather(*(self._start(name, **overrides) for name in names)))

    async def _start(self, name: str, **overrides: Any) -> Served:
        config = self.config(name, **overrides)
        log = self.tmp_path / f"{name}.log"
        port = free_port()
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *LUNARK, "serve", "--port", str(port), "--config", str(config),
                env={**os.environ, "LUNARK_PLUGINS": "false"}, stdout=asyncio.subprocess.PIPE, stderr=err,
            )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        found = re.search(r"listening on (http://\S+)", line)
        assert found, f"lunark serve {name} did not start: {line!r}\n{log.read_text()[-3000:]}"
        served = Served(name=name, url=found.group(1), domain=DOMAIN, proc=proc, log=log)
        self.running.append(served)
        return served

    async def kill(self, served: Served) -> None:
        served.proc.kill()  # SIGKILL: no clean-up of any kind
        await served.proc.wait()

    async def stop(self) -> None:
        for served in self.running:
            if served.proc.returncode is None:
                await self.kill(served)


@pytest.fixture
async def processes(tmp_path: Path, world: World, anvil: Anvil, pg_url: str, redis_server: RedisServer
                    ) -> AsyncIterator[Processes]:
    """Depends on the isolated ``anvil``: the processes stop before the chain is reverted."""
    running = Processes(tmp_path, world, pg_url, redis_server.url)
    try:
        yield running
    finally:
        await running.stop()


def chain_nonce(anvil: Anvil, address: str) -> int:
    return int(anvil.rpc("eth_getTransactionCount", [address, "latest"]), 16)


def assert_once_in_order(sio: SioClient, chat_id: str, *, start: int = 1) -> list[int]:
    seqs = sio.seqs(chat_id)
    assert_contiguous(seqs, start)
    return seqs


async def ask(sio: SioClient, chat_id: str, text: str, cmid: str) -> dict[str, Any]:
    mark = sio.mark()
    ack = await sio.call("send_message", {"chat_id": chat_id, "content": text, "client_message_id": cmid})
    assert "message_id" in ack, ack
    pending = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark, timeout=30)
    await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="awaiting_approval")
    return pending


def approve(chat_id: str, pending: dict[str, Any]) -> dict[str, Any]:
    return {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}


async def confirmed(sio: SioClient, chat_id: str, call_id: str, *, timeout: float = 40) -> dict[str, Any]:
    return await sio.wait_until(
        lambda e: e["type"] == "tx_update" and e.get("chat_id") == chat_id and e.get("call_id") == call_id
        and e["status"] not in ("submitted", "mined"),
        timeout=timeout, what="the transfer's final tx_update",
    )


async def answered(sio: SioClient, chat_id: str, count: int) -> None:
    """Wait until ``count`` answers of the chat have ended."""
    await sio.wait_until(
        lambda _: len([e for e in sio.of("message_end", chat_id=chat_id) if e["finish_reason"] == "stop"]) >= count,
        what=f"answer {count}'s end", timeout=30,
    )


async def test_a_chat_streamed_by_one_process_reaches_clients_of_the_others_once_and_in_order(
    processes: Processes, alice: DevAccount
) -> None:
    a, b, c = await processes.start("a", "b", "c", model={"delay": 0.01})
    token = await sign_in(a, alice)  # a session made through A works everywhere
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b, Http(c) as http:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        assert (await on_b.call("join_chat", {"chat_id": chat_id}))["last_seq"] == 0
        async with http.session.get(f"{c.url}/api/chats/{chat_id}/events",
                                    headers={"Authorization": f"Bearer {token}"}) as response:
            sse = EventStream(response)
            for round_ in range(2):
                await on_a.call("send_message", {"chat_id": chat_id, "content": "hello there",
                                                 "client_message_id": f"m{round_}"})
                if round_ == 0:
                    # A client joins C mid-stream from the start: its replay meets the live events.
                    await on_a.wait_until(lambda _: len(on_a.of("token", chat_id=chat_id)) >= 2, what="tokens")
                    on_c = await SioClient(c, token).connect()
                    await on_c.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
                for client in (on_a, on_b, on_c):
                    await answered(client, chat_id, round_ + 1)
            seqs = assert_once_in_order(on_a, chat_id)
            assert on_b.chat_events(chat_id) == on_a.chat_events(chat_id)  # same events, same order, once
            assert on_c.chat_events(chat_id) == on_a.chat_events(chat_id)
            await on_c.close()
            streamed = [(await sse.next())["data"] for _ in seqs]
            assert [e["seq"] for e in streamed] == seqs
            assert [e["type"] for e in streamed] == [e["type"] for e in on_a.chat_events(chat_id)]

    # A client joining late on C replays the same log from Postgres.
    async with SioClient(c, token) as late:
        await late.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        await late.wait_until(lambda e: e.get("seq") == seqs[-1], what="the replay's last event")
        assert [e["seq"] for e in late.chat_events(chat_id)] == seqs


async def test_decisions_reach_the_chat_from_any_process_and_apply_once(
    processes: Processes, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    a, b = await processes.start("a", "b")
    token = await sign_in(b, alice)
    bob_before, nonce_before = native_balance(anvil, bob.address), chain_nonce(anvil, alice.address)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b:
        # 1. The turn ran on A; the decision goes to B, which never ran it.
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        await on_b.call("join_chat", {"chat_id": chat_id})
        pending = await ask(on_a, chat_id, f"send 0.5 ETH to {bob.address}", "m1")
        assert await on_b.call("resume_decisions", approve(chat_id, pending)) == {"ok": True}
        call_id = pending["action_requests"][0]["call_id"]
        for client in (on_a, on_b):
            assert (await confirmed(client, chat_id, call_id))["status"] == "confirmed"
        assert_error(await on_a.call("resume_decisions", approve(chat_id, pending)), "already_decided")
        await answered(on_a, chat_id, 1)

        # 2. Two decisions at once, one on each process: exactly one applies.
        pending = await ask(on_a, chat_id, f"send 0.5 ETH to {bob.address}", "m2")
        acks = await asyncio.gather(on_a.call("resume_decisions", approve(chat_id, pending)),
                                    on_b.call("resume_decisions", approve(chat_id, pending)))
        assert sorted(acks, key=str).count({"ok": True}) == 1, acks
        assert_error(next(ack for ack in acks if ack != {"ok": True}), "already_decided")
        call_id = pending["action_requests"][0]["call_id"]
        assert (await confirmed(on_b, chat_id, call_id))["status"] == "confirmed"
        for client in (on_a, on_b):
            await answered(client, chat_id, 2)
        await asyncio.sleep(0.5)  # anything duplicated would arrive by now
        assert_once_in_order(on_a, chat_id)
        assert on_b.chat_events(chat_id) == on_a.chat_events(chat_id)
        assert len(on_a.of("approval_resolved", chat_id=chat_id)) == 2

    assert native_balance(anvil, bob.address) - bob_before == 2 * HALF_ETH
    assert chain_nonce(anvil, alice.address) == nonce_before + 2


async def test_a_paused_chat_of_a_killed_process_is_decided_through_another(
    processes: Processes, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    a, b = await processes.start("a", "b")
    token = await sign_in(a, alice)
    bob_before, nonce_before = native_balance(anvil, bob.address), chain_nonce(anvil, alice.address)
    async with SioClient(a, token) as on_a:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        pending = await ask(on_a, chat_id, f"send 0.5 ETH to {bob.address}", "m1")
        await processes.kill(a)

    async with SioClient(b, token) as on_b, Http(b) as http:
        ack = await on_b.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        assert ack.get("pending_approval", {}).get("approval_id") == pending["approval_id"], ack
        assert await on_b.call("resume_decisions", approve(chat_id, pending)) == {"ok": True}
        call_id = pending["action_requests"][0]["call_id"]
        assert (await confirmed(on_b, chat_id, call_id))["status"] == "confirmed"
        assert_error(await on_b.call("resume_decisions", approve(chat_id, pending)), "already_decided")
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert [t["status"] for t in detail["transactions"]] == ["confirmed"]
        assert_once_in_order(on_b, chat_id)

    assert native_balance(anvil, bob.address) - bob_before == HALF_ETH
    assert chain_nonce(anvil, alice.address) == nonce_before + 1


async def test_an_approval_expires_on_a_surviving_process(
    processes: Processes, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # The process that asked (and timed the approval) dies; the approval still expires, as a rejection.
    a, b = await processes.start("a", "b", approvals={"ttl_seconds": 2})
    token = await sign_in(a, alice)
    bob_before = native_balance(anvil, bob.address)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        await on_b.call("join_chat", {"chat_id": chat_id})
        pending = await ask(on_a, chat_id, f"send 0.5 ETH to {bob.address}", "m1")
        await processes.kill(a)
        resolved = await on_b.wait_event("approval_resolved", chat_id=chat_id, timeout=15)
        assert resolved["approval_id"] == pending["approval_id"] and resolved["by"] == "timeout"
        await on_b.wait_event("message_end", chat_id=chat_id, finish_reason="stop",
                              after=on_b.events.index(resolved))
        assert_error(await on_b.call("resume_decisions", approve(chat_id, pending)), "approval_expired")
        assert_once_in_order(on_b, chat_id)
    assert native_balance(anvil, bob.address) == bob_before


async def test_an_abort_sent_to_another_process_stops_the_turn(processes: Processes, alice: DevAccount) -> None:
    # A's answer is slow enough to be aborted mid-way; B, which answers the next message, at full pace.
    [a], [b] = await asyncio.gather(processes.start("a", model={"delay": 0.2}), processes.start("b"))
    token = await sign_in(a, alice)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        await on_b.call("join_chat", {"chat_id": chat_id})
        await on_a.call("send_message", {"chat_id": chat_id, "content": "hello", "client_message_id": "m1"})
        await on_b.wait_event("token", chat_id=chat_id, timeout=20)
        # B runs no turn of this chat: a second message there is refused, the abort is passed on.
        assert_error(await on_b.call("send_message", {"chat_id": chat_id, "content": "again",
                                                      "client_message_id": "m2"}), "busy")
        assert await on_b.call("abort", {"chat_id": chat_id}) == {"ok": True}
        end = await on_b.wait_event("message_end", chat_id=chat_id, timeout=10)
        assert end["finish_reason"] == "aborted"
        # The chat is free again, cluster-wide: B takes the next turn.
        ack = await on_b.call("send_message", {"chat_id": chat_id, "content": "hi", "client_message_id": "m3"})
        assert "message_id" in ack, ack
        for client in (on_a, on_b):  # each receives it through its own process
            await answered(client, chat_id, 1)
        assert_once_in_order(on_a, chat_id)
        assert on_b.chat_events(chat_id) == on_a.chat_events(chat_id)


async def test_a_chat_is_free_cluster_wide_as_soon_as_its_turn_ends(processes: Processes, alice: DevAccount) -> None:
    """``message_end`` means the chat is free: a message sent at once through another process is
    taken, not refused as busy while the process whose turn ended still lets go of the chat's lock."""
    import psycopg

    from lunark.store import advisory_key

    a, b = await processes.start("a", "b", model={"delay": 0.001})
    token = await sign_in(a, alice)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        await on_b.call("join_chat", {"chat_id": chat_id})
        for n in range(4):  # each turn runs on one process; the next message goes to the other
            sender, other = (on_a, on_b) if n % 2 == 0 else (on_b, on_a)
            mark = other.mark()
            ack = await sender.call("send_message", {"chat_id": chat_id, "content": f"hello {n}",
                                                     "client_message_id": f"m{n}"})
            assert "message_id" in ack, f"message {n}, just after the previous turn ended: {ack}"
            await other.wait_event("message_end", chat_id=chat_id, after=mark, timeout=20)

        # The window made wide: the chat's lock is still held (as by a process that has sent its
        # turn's message_end and not yet released it) when the next message arrives.
        async with await psycopg.AsyncConnection.connect(processes.pg_url, autocommit=True) as holder:
            await holder.execute("SELECT pg_advisory_lock(%s)", (advisory_key(f"turn:{chat_id}"),))

            async def release_soon() -> None:
                await asyncio.sleep(0.3)
                await holder.execute("SELECT pg_advisory_unlock(%s)", (advisory_key(f"turn:{chat_id}"),))

            releasing = asyncio.create_task(release_soon())
            ack = await on_b.call("send_message", {"chat_id": chat_id, "content": "after the end",
                                                   "client_message_id": "late"})
            await releasing
        assert "message_id" in ack, ack
        await answered(on_b, chat_id, 5)
        assert_once_in_order(on_a, chat_id)


async def test_a_client_of_a_killed_process_reconnects_elsewhere_and_gets_every_event_once(
    processes: Processes, alice: DevAccount
) -> None:
    # A's answer is slow enough to be cut by the kill; B, which answers the next message, at full pace.
    [a], [b] = await asyncio.gather(processes.start("a", model={"delay": 0.1}), processes.start("b"))
    token = await sign_in(a, alice)
    async with SioClient(a, token) as on_a:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        await on_a.call("send_message", {"chat_id": chat_id, "content": "hello", "client_message_id": "m1"})
        await on_a.wait_until(lambda e: len(on_a.of("token", chat_id=chat_id)) >= 3, what="three tokens")
        await processes.kill(a)  # mid-stream
        seen = on_a.seqs(chat_id)
    assert_contiguous(seen)

    async with SioClient(b, token) as on_b, Http(b) as http:
        ack = await on_b.call("join_chat", {"chat_id": chat_id, "last_seq": seen[-1]})
        logged = ack["last_seq"]
        assert logged >= seen[-1]
        # The answer A was writing is closed by B, whichever way the client meets its end.
        cut = await on_b.wait_event("message_end", chat_id=chat_id, finish_reason="interrupted", timeout=30)
        await asyncio.sleep(0.3)
        assert on_b.seqs(chat_id) == list(range(seen[-1] + 1, cut["seq"] + 1))  # the rest, each once
        # Nothing holds the chat any more: B answers the next message.
        mark = on_b.mark()
        await on_b.call("send_message", {"chat_id": chat_id, "content": "hi", "client_message_id": "m2"})
        end = await on_b.wait_event("message_end", chat_id=chat_id, after=mark, timeout=30)
        assert end["finish_reason"] == "stop"
        assert_once_in_order(on_b, chat_id, start=seen[-1] + 1)
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["last_seq"] == on_b.seqs(chat_id)[-1]


async def test_an_answer_cut_by_a_killed_process_ends_as_interrupted_for_a_client_of_another(
    processes: Processes, alice: DevAccount
) -> None:
    """A streams an answer to a client of B; A is killed mid-answer. B, which takes the chat over
    once A's lock on it is gone, closes the answer in the log: the client on B gets one
    ``message_end`` with ``finish_reason: "interrupted"`` and a plain sentence within a few sweeps, a
    replay from seq 0 shows it once, ``continue_message`` goes on with it, and the next message is
    answered."""
    # A's answer is slow enough to be cut by the kill; B, which continues it and answers the next
    # message, at full pace.
    [a], [b] = await asyncio.gather(processes.start("a", model={"delay": 0.15}), processes.start("b"))
    token = await sign_in(a, alice)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b, Http(b) as http:
        chat_id, message_id = await on_a.mid_answer(watch=on_b)
        await processes.kill(a)  # mid-answer, with B's client watching
        # Closed by B's sweep (every second) once A's lock is gone: the wait's bound is only a
        # deadline for a test that would otherwise hang, not a measurement (benchmarks/cluster.py times it).
        end = await on_b.wait_event("message_end", chat_id=chat_id, message_id=message_id, timeout=30)
        assert end["finish_reason"] == "interrupted" and "stopped" in end["message"], end
        streamed = "".join(e["text"] for e in on_b.of("token", chat_id=chat_id) if e["message_id"] == message_id)
        assert streamed
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        answer = next(m for m in detail["messages"] if m["message_id"] == message_id)
        assert (answer["content"], answer["finish_reason"]) == (streamed, "interrupted"), answer

        # /continue through B goes on with it, in the same message.
        mark = on_b.mark()
        assert await on_b.call("continue_message", {"chat_id": chat_id, "message_id": message_id}) == {"ok": True}
        more = await on_b.wait_event("message_end", chat_id=chat_id, after=mark, timeout=60)
        assert (more["message_id"], more["finish_reason"]) == (message_id, "stop"), more
        rest = "".join(e["text"] for e in on_b.of("token", chat_id=chat_id, after=mark))
        assert rest

        # The next message is answered.
        mark = on_b.mark()
        ack = await on_b.call("send_message", {"chat_id": chat_id, "content": "hello", "client_message_id": "m2"})
        assert "message_id" in ack, ack
        again = await on_b.wait_event("message_end", chat_id=chat_id, after=mark, timeout=60)
        assert again["finish_reason"] == "stop", again
        assert streamed + rest == "".join(e["text"] for e in on_b.of("token", chat_id=chat_id, after=mark))
        seqs = assert_once_in_order(on_b, chat_id)

    # A replay from seq 0 shows the log once and in order, with the cut answer's end exactly once.
    async with SioClient(b, token) as late:
        await late.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        await late.wait_until(lambda e: e.get("seq") == seqs[-1], what="the replay's last event")
        assert late.seqs(chat_id) == seqs
        ends = [e["finish_reason"] for e in late.of("message_end", chat_id=chat_id) if e["message_id"] == message_id]
        assert ends == ["interrupted", "stop"], ends


async def test_a_settlement_in_flight_is_taken_over_after_a_kill(
    processes: Processes, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    a, b = await processes.start("a", "b")
    token = await sign_in(a, alice)
    bob_before, nonce_before = native_balance(anvil, bob.address), chain_nonce(anvil, alice.address)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b, Http(b) as http:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        await on_b.call("join_chat", {"chat_id": chat_id})
        pending = await ask(on_a, chat_id, f"send 0.5 ETH to {bob.address}", "m1")
        call_id = pending["action_requests"][0]["call_id"]
        anvil.set_automine(False)
        assert await on_a.call("resume_decisions", approve(chat_id, pending)) == {"ok": True}
        await on_b.wait_event("tx_update", chat_id=chat_id, status="submitted", timeout=30)
        await processes.kill(a)  # its settlement driver and its turn die with the transaction in the mempool
        anvil.mine(1)
        anvil.set_automine(True)
        assert (await confirmed(on_b, chat_id, call_id))["status"] == "confirmed"
        # The turn the kill cut short is carried on by B: the agent answers with the outcome.
        await answered(on_b, chat_id, 1)  # the turn the kill cut short, carried on by B
        assert_error(await on_b.call("resume_decisions", approve(chat_id, pending)), "already_decided")
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert [t["status"] for t in detail["transactions"]] == ["confirmed"]
        assert_once_in_order(on_b, chat_id)

    assert native_balance(anvil, bob.address) - bob_before == HALF_ETH
    assert chain_nonce(anvil, alice.address) == nonce_before + 1


async def test_redis_restarting_mid_stream_loses_nothing(
    processes: Processes, redis_server: RedisServer, alice: DevAccount
) -> None:
    a, b = await processes.start("a", "b", model={"delay": 0.1})
    token = await sign_in(a, alice)
    async with SioClient(a, token) as on_a, SioClient(b, token) as on_b:
        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
        await on_b.call("join_chat", {"chat_id": chat_id})
        await on_a.call("send_message", {"chat_id": chat_id, "content": "hello", "client_message_id": "m1"})
        await on_b.wait_until(lambda e: len(on_b.of("token", chat_id=chat_id)) >= 2, what="two tokens")
        # Redis goes away: A's own client is still served, B's subscription is gone, and A publishes
        # into the void until the answer is over; then Redis comes back, empty.
        await asyncio.to_thread(redis_server.stop, signal.SIGKILL)
        end = await on_a.wait_event("message_end", chat_id=chat_id, timeout=30)
        assert end["finish_reason"] == "stop"
        assert not on_b.of("message_end", chat_id=chat_id)
        await asyncio.to_thread(redis_server.run)
        await on_b.wait_event("message_end", chat_id=chat_id, timeout=30)
        await asyncio.sleep(0.3)
        assert on_b.chat_events(chat_id) == on_a.chat_events(chat_id)  # every event, once, in order
        assert_once_in_order(on_b, chat_id)
        async with aiohttp.ClientSession() as session, session.get(f"{b.url}/healthz") as response:
            health = await response.json()
        assert health["redis"] is True and health["cluster"]["ok"] is True, health


# -- logout reaches every process -----------------------------------------------------------------


async def ended_on(sio: SioClient, *, timeout: float = 5.0) -> None:
    """The socket was told its session ended (``error`` ``unauthorized``) and the server closed it."""
    await sio.wait_event("error", code="unauthorized", timeout=timeout)
    for _ in range(int(timeout / 0.05)):
        if not sio.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not sio.sio.connected, f"the socket of the ended session is still open after {timeout} s"


async def stream_ends(stream: EventStream, *, timeout: float = 5.0) -> None:
    """Read the SSE stream until the server ends it (live events, keep-alives and all)."""
    with pytest.raises(EOFError):
        async with asyncio.timeout(timeout):
            while True:
                await stream.next(timeout=timeout)


async def refused(sio: SioClient, event: str, data: dict[str, Any]) -> None:
    """``event`` on ``sio`` does nothing: refused ``unauthorized`` while the socket is still open, or not
    sent at all because the server closed the socket."""
    try:
        ack = await sio.call(event, data, timeout=5)
    except Exception as exc:  # the client's own refusal: no connection to send on
        assert not sio.sio.connected, f"{event} failed on an open socket: {exc!r}"
        return
    assert_error(ack, "unauthorized")


async def test_a_logout_on_one_process_closes_the_sessions_sockets_and_streams_on_the_others(
    processes: Processes, alice: DevAccount
) -> None:
    a, b = await processes.start("a", "b")
    token, other = await sign_in(a, alice), await sign_in(a, alice)
    async with SioClient(b, token) as on_b, SioClient(b, other) as other_on_b, Http(a) as on_a, Http(b) as http:
        chat_id = (await on_b.call("join_chat", {}))["chat_id"]
        response = await http.session.get(f"{b.url}/api/chats/{chat_id}/events",
                                          headers={"Authorization": f"Bearer {token}"})
        assert response.status == 200
        stream = EventStream(response)

        status, body = await on_a.post("/auth/logout", token)
        assert status == 200 and body == {"ok": True, "ended": 1}, body

        # B closes the socket and ends the stream it holds open with that session (A's NOTIFY).
        await ended_on(on_b, timeout=3)
        await stream_ends(stream, timeout=3)
        response.close()
        await refused(on_b, "join_chat", {})  # no new chat through the ended session
        await refused(on_b, "join_chat", {"chat_id": chat_id})  # nor a replay of this one
        assert_http_error(*await http.get("/api/chats", token), 401, "unauthorized")
        # The account's other session, on the same process, is untouched.
        assert other_on_b.sio.connected and not other_on_b.of("error")
        assert (await other_on_b.call("join_chat", {"chat_id": chat_id}))["last_seq"] >= 0
        _, chats = await http.get("/api/chats", other)
        assert [c["chat_id"] for c in chats["chats"]] == [chat_id]

        # Everywhere: every session of the account, on every process.
        status, body = await on_a.post("/auth/logout", other, json={"everywhere": True})
        assert status == 200 and body["ended"] == 1, body
        await ended_on(other_on_b, timeout=3)


async def test_a_logout_whose_notification_was_missed_is_still_refused_on_the_other_process(
    processes: Processes, alice: DevAccount
) -> None:
    """B's notification connection is cut just before the logout on A, so the NOTIFY never reaches B
    (Postgres keeps nothing for a listener that is not connected). B's session check still ends it."""
    import psycopg

    from lunark.server.cluster import LISTENER_NAME

    # A long sweep interval: B's listener waits 2 s before it reconnects, well after the logout.
    a, b = await processes.start("a", "b", server={"sweep_interval_seconds": 2.0})
    token = await sign_in(a, alice)
    async with SioClient(b, token) as on_b, Http(a) as on_a, Http(b) as http:
        chat_id = (await on_b.call("join_chat", {}))["chat_id"]
        response = await http.session.get(f"{b.url}/api/chats/{chat_id}/events",
                                          headers={"Authorization": f"Bearer {token}"})
        stream = EventStream(response)
        async with await psycopg.AsyncConnection.connect(processes.pg_url, autocommit=True) as admin:
            cursor = await admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s AND datname = current_database()",
                (LISTENER_NAME,),
            )
            assert (await cursor.fetchone()) == (2,), "each process has one notification connection"
        status, body = await on_a.post("/auth/logout", token)
        assert status == 200 and body == {"ok": True, "ended": 1}, body

        # Within B's session check (at most 2 s, bounded here by 8): every further event is refused.
        async with asyncio.timeout(8):
            while True:
                try:
                    ack = await on_b.call("join_chat", {"chat_id": chat_id}, timeout=5)
                except Exception:
                    break  # the server closed the socket meanwhile (ended_on checks it said why)
                if "error" in ack:
                    assert_error(ack, "unauthorized")
                    break
                await asyncio.sleep(0.05)
        await ended_on(on_b, timeout=5)
        await refused(on_b, "join_chat", {})
        await stream_ends(stream, timeout=5)
        response.close()
        _, chats = await http.get("/api/chats", await sign_in(b, alice))
        assert [c["chat_id"] for c in chats["chats"]] == [chat_id], "nothing was created after the logout"
    assert "cluster listener lost its connection" in b.log.read_text()
