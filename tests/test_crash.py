"""kill -9 a real ``lunark serve`` at each step of the money path and restart it on the same data.

Every run must end with exactly the on-chain transfer the user approved (never none after a
decision, never two), the chat showing it confirmed, and the approval never offered again.

The suite runs each crash point once, and each kill point just after a decision's ack
(``ACK_DELAYS_MS``) once, all of them in one chat. The full sweep, ``./dev crash``
(``LUNARK_CRASH_SWEEP=full``), runs each kill point after the ack ``ACK_RUNS`` (3) times in a chat of
its own; ``./dev crash N`` (or ``LUNARK_CRASH_RUNS=N .venv/bin/pytest tests/test_crash.py``, which
docs/troubleshooting.md names) runs the full sweep with every point N times.
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
FULL_SWEEP = os.environ.get("LUNARK_CRASH_SWEEP") == "full" or "LUNARK_CRASH_RUNS" in os.environ
RUNS = int(os.environ.get("LUNARK_CRASH_RUNS", "1"))
POINTS = ["paused", "decided", "mempool", "mined"]
ACK_DELAYS_MS = [0, 1, 2, 5, 10]
"""Kill points after the decision's ``{ok: true}``: the graph resumes in these milliseconds (the
resume is written to the checkpoint, the approve step's result, the next step's checkpoint)."""
ACK_RUNS = int(os.environ.get("LUNARK_CRASH_RUNS", "3"))
ACK_SWEEPS = (
    [pytest.param([delay] * ACK_RUNS, id=str(delay)) for delay in ACK_DELAYS_MS] if FULL_SWEEP
    else [pytest.param(ACK_DELAYS_MS, id="each-once")]
)
"""The kill delays of each test's runs (one chat per test, a server start per run): in the suite every
delay once, in one chat; in the full sweep every delay ``ACK_RUNS`` times, in a chat of its own."""


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
                # Turns in this process, as the harness's servers (tests/server_harness.py): a worker per
                # start would add minutes; LUNARK_TEST_WORKERS=1 runs every crash point through one.
                "--workers", os.environ.get("LUNARK_TEST_WORKERS") or "0",
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


def stored(data_dir: Path, approval_id: str) -> dict[str, Any]:
    """The store as the restarted server keeps it (read-only): the approval, its settlements and its
    entries in the spend ledger."""
    import sqlite3

    with sqlite3.connect(f"file:{data_dir / 'lunark.sqlite'}?mode=ro", uri=True) as db:
        approval = db.execute("SELECT state, by FROM approvals WHERE approval_id = ?", (approval_id,)).fetchone()
        settlements = db.execute(
            "SELECT call_id, state, tx_hash FROM settlements WHERE approval_id = ?", (approval_id,)
        ).fetchall()
        ledger = db.execute(
            "SELECT state, amount, tx_hash FROM ledger WHERE entry_id LIKE ?", (approval_id + "/%",)
        ).fetchall()
    return {"approval": approval, "settlements": settlements, "ledger": ledger}


@pytest.mark.parametrize("delays_ms", ACK_SWEEPS)
async def test_a_decision_acked_just_before_a_crash_is_applied_exactly_once(
    server: Server, anvil: Anvil, alice: DevAccount, bob: DevAccount, delays_ms: list[int]
) -> None:
    """kill -9 ``delay_ms`` after the approve's ``{ok: true}``, for each delay of ``delays_ms`` in one
    chat, wherever the resumed graph got to: the resume or the approve step's result written only as the paused
    checkpoint's pending writes, with no later checkpoint; the settlement written ahead or already
    sent. Restarted on the same data (which is the next run's server), each decision is applied
    once: the chat, the store's settlement and spend ledger, and the chain all show the one
    transfer, and the chat takes the next message."""
    data_dir = Path(json.loads(server.config.read_text())["data_dir"])
    served = await server.start()
    token = await sign_in(served, alice)
    chat_id, last_seq = "", 0
    for run, delay_ms in enumerate(delays_ms):
        bob_before = native_balance(anvil, bob.address)
        nonce_before = int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16)
        async with SioClient(served, token) as sio:
            if run == 0:
                chat_id = (await sio.call("join_chat", {}))["chat_id"]
            else:  # the same chat carries on after the recovered turn
                await sio.call("join_chat", {"chat_id": chat_id, "last_seq": last_seq})
            mark = sio.mark()
            await sio.call("send_message", {"chat_id": chat_id, "content": f"send 0.5 ETH to {bob.address}",
                                            "client_message_id": f"m{run}"})
            pending = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark, timeout=30)
            call_id = pending["action_requests"][0]["call_id"]
            approve = {"chat_id": chat_id, "approval_id": pending["approval_id"],
                       "decisions": [{"type": "approve"}]}
            await sio.wait_event("message_end", chat_id=chat_id, after=mark, finish_reason="awaiting_approval")
            assert await sio.call("resume_decisions", approve) == {"ok": True}
            if delay_ms:
                await asyncio.sleep(delay_ms / 1000)
            await server.kill()

        served = await server.start()
        where = f"run {run}, killed {delay_ms} ms after the ack"
        async with SioClient(served, token) as sio, Http(served) as http:
            ack = await sio.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
            assert "pending_approval" not in ack, f"{where}: a decided approval is never offered again"
            done = await final_status(sio, chat_id, call_id)
            # The chat: the transfer confirmed, its call answered once as a success, the resumed turn over.
            assert done["status"] == "confirmed", (where, done)
            result = await sio.wait_event("tool_result", chat_id=chat_id, call_id=call_id, timeout=30)
            assert result["status"] == "success", (where, result)
            await sio.wait_until(
                lambda e, chat_id=chat_id, after=result["seq"]: e["type"] == "message_end"
                and e.get("chat_id") == chat_id and e["seq"] > after,
                timeout=30, what=f"the end of the resumed turn ({where})",
            )
            results = [e for e in sio.of("tool_result", chat_id=chat_id) if e.get("call_id") == call_id]
            assert [r["status"] for r in results] == ["success"], (where, results)
            assert_error(await sio.call("resume_decisions", approve), "already_decided", "no_pending_approval")
            _, detail = await http.get(f"/api/chats/{chat_id}", token)
            mine = [t for t in detail["transactions"] if t["call_id"] == call_id]
            assert [t["status"] for t in detail["transactions"]] == ["confirmed"] * (run + 1), (where, detail)
            assert len(mine) == 1 and "pending_approval" not in detail, (where, detail)
            tx_hash = mine[0]["tx_hash"]
            last_seq = max(sio.seqs(chat_id))

        # The ledger: the decision applied, one settlement confirmed under that hash, its spend committed once.
        record = stored(data_dir, pending["approval_id"])
        assert record["approval"] == ("done", "user"), (where, record)
        assert record["settlements"] == [(call_id, "confirmed", tx_hash)], (where, record)
        assert [(state, int(amount), hash_) for state, amount, hash_ in record["ledger"]] == [
            ("committed", 5 * 10**17, tx_hash.lower())], (where, record)
        # The chain: exactly that one transfer, under that hash.
        assert native_balance(anvil, bob.address) - bob_before == 5 * 10**17, where
        assert int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16) == nonce_before + 1, where
        receipt = anvil.rpc("eth_getTransactionReceipt", [tx_hash])
        assert receipt is not None and int(receipt["status"], 16) == 1, (where, receipt)


async def test_a_decision_acked_before_a_crash_whose_approval_expires_meanwhile_is_refused_plainly(
    server: Server, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    """kill -9 right after the approve's ack; the approval expires while no server runs. Restarted,
    the claimed decision is still taken to its end, never dropped silently: either it went out before
    the crash and is followed to ``confirmed``, or it is refused now (nothing is signed after the
    approval's expiry) and the chat says so: the transfer ``dropped``, its call not a success, the
    spend released, nothing on chain."""
    config = json.loads(server.config.read_text())
    server.config.write_text(json.dumps({**config, "approvals": {"ttl_seconds": 3}}))
    data_dir = Path(config["data_dir"])
    served = await server.start()
    token = await sign_in(served, alice)
    nonce_before = int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16)
    async with SioClient(served, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        await sio.call("send_message", {"chat_id": chat_id, "content": f"send 0.5 ETH to {bob.address}",
                                        "client_message_id": "m1"})
        pending = await sio.wait_event("pending_approval", chat_id=chat_id, timeout=30)
        call_id = pending["action_requests"][0]["call_id"]
        approve = {"chat_id": chat_id, "approval_id": pending["approval_id"], "decisions": [{"type": "approve"}]}
        assert await sio.call("resume_decisions", approve) == {"ok": True}
        await server.kill()
    await asyncio.sleep(3.5)  # past its expiry, with no server alive

    served = await server.start()
    async with SioClient(served, token) as sio, Http(served) as http:
        ack = await sio.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        assert "pending_approval" not in ack
        done = await final_status(sio, chat_id, call_id)
        result = await sio.wait_event("tool_result", chat_id=chat_id, call_id=call_id, timeout=30)
        end = await sio.wait_until(
            lambda e: e["type"] == "message_end" and e.get("chat_id") == chat_id and e["seq"] > result["seq"],
            timeout=30, what="the end of the resumed turn",
        )
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
    record = stored(data_dir, pending["approval_id"])
    assert record["approval"] == ("done", "user"), record
    nonce = int(anvil.rpc("eth_getTransactionCount", [alice.address, "latest"]), 16)
    if done["status"] == "confirmed":  # it went out before the crash
        assert result["status"] == "success" and nonce == nonce_before + 1, (result, nonce)
        assert [s for _, s, _ in record["settlements"]] == ["confirmed"], record
        assert [s for s, _, _ in record["ledger"]] == ["committed"], record
        return
    assert done["status"] == "dropped" and "not sent" in done["reason"], done
    assert result["status"] != "success" and result["result"]["status"] == "dropped", result
    assert [s for _, s, _ in record["settlements"]] == ["expired"], record
    assert [s for s, _, _ in record["ledger"]] == ["released"], record
    assert nonce == nonce_before, "nothing is signed or sent after the approval expired"
    answer = next(m for m in reversed(detail["messages"]) if m["role"] == "assistant")
    assert "not sent" in answer["content"], (answer, end)


async def test_an_answer_cut_by_a_crash_ends_as_interrupted_once_and_can_be_continued(
    server: Server, alice: DevAccount
) -> None:
    """kill -9 while an answer streams. Restarted on the same data, the server closes it in the log:
    one ``message_end`` with ``finish_reason: "interrupted"`` and a plain sentence, the answer stored
    with what was streamed; ``continue_message`` goes on with it to the end, and the chat answers the
    next message."""
    config = json.loads(server.config.read_text())
    server.config.write_text(json.dumps({**config, "model": {"delay": 0.15}}))
    served = await server.start()
    token = await sign_in(served, alice)
    async with SioClient(served, token) as sio:
        chat_id, message_id = await sio.mid_answer()
        await server.kill()  # mid-answer
        streamed = "".join(e["text"] for e in sio.of("token", chat_id=chat_id))
        assert not sio.of("message_end", chat_id=chat_id)

    # Restarted at the model's full pace: only the cut needed a slow answer.
    server.config.write_text(json.dumps(config))
    served = await server.start()
    async with SioClient(served, token) as sio, Http(served) as http:
        await sio.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        end = await sio.wait_event("message_end", chat_id=chat_id, message_id=message_id, timeout=30)
        assert (end["finish_reason"], end["status"]) == ("interrupted", "interrupted"), end
        assert end["message"] == (
            "The server writing this answer stopped before it was done; what it had written is kept."), end
        logged = "".join(e["text"] for e in sio.of("token", chat_id=chat_id) if e["message_id"] == message_id)
        assert logged.startswith(streamed) and logged, (logged, streamed)
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        answer = next(m for m in detail["messages"] if m["message_id"] == message_id)
        assert (answer["content"], answer["finish_reason"]) == (logged, "interrupted"), answer

        # /continue goes on from where it was cut, in the same message.
        mark = sio.mark()
        assert await sio.call("continue_message", {"chat_id": chat_id, "message_id": message_id}) == {"ok": True}
        done = await sio.wait_event("message_end", chat_id=chat_id, after=mark, timeout=60)
        assert (done["message_id"], done["finish_reason"]) == (message_id, "stop"), done
        assert not sio.of("message_start", chat_id=chat_id, after=mark), "a continuation starts no new message"
        rest = "".join(e["text"] for e in sio.of("token", chat_id=chat_id, after=mark))

        # The next message gets an answer, the same one the cut answer was going to be.
        mark = sio.mark()
        ack = await sio.call("send_message", {"chat_id": chat_id, "content": "hello", "client_message_id": "m2"})
        assert "message_id" in ack, ack
        again = await sio.wait_event("message_end", chat_id=chat_id, after=mark, timeout=60)
        assert again["finish_reason"] == "stop", again
        full = "".join(e["text"] for e in sio.of("token", chat_id=chat_id, after=mark))
        assert logged + rest == full, (logged, rest, full)
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        answer = next(m for m in detail["messages"] if m["message_id"] == message_id)
        assert answer["content"] == full, answer
        seqs = sio.seqs(chat_id)

    # A replay from the start shows the cut answer's end exactly once.
    async with SioClient(served, token) as late:
        await late.call("join_chat", {"chat_id": chat_id, "last_seq": 0})
        await late.wait_until(lambda e: e.get("seq") == seqs[-1], what="the replay's last event")
        ends = [e["finish_reason"] for e in late.of("message_end", chat_id=chat_id) if e["message_id"] == message_id]
        assert ends == ["interrupted", "stop"], ends


async def test_the_terminal_chat_says_a_crash_interrupted_the_answer_and_continues_it(
    server: Server, alice: DevAccount
) -> None:
    """A user in ``lunark chat`` watches an answer when the server is killed and restarted: the chat
    reconnects, says the answer was interrupted and that /continue goes on, and /continue does."""
    from chat_process import LUNARK as LUNARK_SCRIPT
    from chat_process import PROMPT, ChatProcess

    config = json.loads(server.config.read_text())
    server.config.write_text(json.dumps({**config, "model": {"delay": 0.15}}))
    served = await server.start()
    proc = await asyncio.create_subprocess_exec(
        str(LUNARK_SCRIPT), "chat", "--url", served.url, "--key", alice.private_key,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    chat = ChatProcess(proc)
    try:
        await chat.expect(PROMPT)
        await chat.type("hello")
        await chat.expect("lunark> ")
        await chat.expect(" ")  # a few words of the answer
        await chat.expect(" ")
        await server.kill()
        server.config.write_text(json.dumps(config))  # restarted at full pace: only the cut needed a slow answer
        await server.start()
        cut = await chat.expect(PROMPT, timeout=60)
        assert "[interrupted: " in cut and "/continue goes on]" in cut, cut
        await chat.type("/continue")
        rest = await chat.expect(PROMPT, timeout=60)
        assert "interrupted" not in rest and "lunark>" not in rest, rest
        assert rest.endswith("for your approval.\n" + PROMPT), rest  # the end of the offline planner's answer
    finally:
        print(chat.output)
        await chat.kill()
