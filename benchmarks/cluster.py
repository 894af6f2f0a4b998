"""5. Several processes on Postgres and Redis (docs/deployment.md), against one process on SQLite.

Every server is ``python -m benchmarks.serve lunark`` (the real LunarkServer, ``BenchModel``), on a
throwaway Postgres and redis-server started here (Debian's packages, as the tests use them:
``tests/services.py``), all on 127.0.0.1.

- **resume**: the same N chats paused at an approval (100,000 in the full run; ``seed.seed_paused``)
  in SQLite and in Postgres: how long one process takes to start on them, and the real ones each
  resumed in turn (reject, the cheap path) from ``resume_decisions`` to ``message_end``.
- **failover**: two processes; a chat paused on A, A killed (SIGKILL); how long until a decision
  sent to B is accepted, and until B has answered. Then a transfer in flight (broadcast, not yet
  mined) when A is killed: how long until B's takeover reports it confirmed.
- **throughput**: C chats streaming M tokens each as fast as the model can, their clients spread
  over 1 or 2 processes sharing Postgres and Redis (and 1 process on SQLite for reference):
  tokens delivered per second, and the CPU each process used.

On this 2-core machine the processes, Postgres, Redis, Anvil and the clients share the same two
cores: a second process adds no core, so the throughput ratio shows the cost of coordination,
not the gain of another machine (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.client import sign_in
from benchmarks.paused import run_resume
from benchmarks.procs import ROOT, Server, python_server, start_all, stop_all
from benchmarks.recorder import Recorder
from benchmarks.seed import APPROVAL_TTL_S, BOB, seed_paused
from benchmarks.stats import percentile, summary
from benchmarks.tokens import latency_s, parse


def _services() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    import services

    return services


def lunark(name: str, tmp: Path, anvil_url: str, *, store_url: str | None = None, redis_url: str | None = None,
           signer: bool = False, data_dir: Path | None = None, approval_ttl: float | None = None,
           kind: str = "lunark", relay_only: bool = False) -> Server:
    """A server (``kind`` lunark; ``relay_only``: a cluster's relay) or a turn worker (``kind`` worker)."""
    args = ["--data-dir", str(data_dir or tmp / name), "--anvil", anvil_url]
    if relay_only:
        args.append("--relay-only")
    if approval_ttl:
        args += ["--approval-ttl", str(approval_ttl)]
    if store_url:
        args += ["--store-url", store_url]
    if redis_url:
        args += ["--redis-url", redis_url]
    if signer:
        args += ["--signer", "anvil"]
    return python_server(name, kind, *args)


async def _pause(client: Recorder, *, sender: Recorder | None = None) -> tuple[str, dict[str, Any]]:
    """A new chat paused at the approval of a transfer; (chat id, pending_approval)."""
    sender = sender or client
    chat_id = (await sender.call("join_chat", {}))["chat_id"]
    if client is not sender:
        await client.call("join_chat", {"chat_id": chat_id})
    pending = sender.expect("pending_approval", chat_id=chat_id)
    ended = sender.expect("message_end", chat_id=chat_id, finish_reason="awaiting_approval")
    await sender.call("send_message", {"chat_id": chat_id, "content": f"send 0.001 ETH to {BOB}",
                                       "client_message_id": "p" + secrets.token_hex(6)})
    await asyncio.wait_for(pending, 30)
    await asyncio.wait_for(ended, 30)
    return chat_id, sender.last("pending_approval")


async def bench_resume(tmp: Path, anvil_url: str, pg: Any, total: int, real: int, log: Any) -> dict[str, Any]:
    """The same ``total`` paused chats (``real`` of them run for real, the rest their copies) in SQLite
    and in Postgres: how long a server takes to start on them, and each real one's resume."""
    out: dict[str, Any] = {}
    for name, store_url in (("sqlite", None), ("postgres", pg.create_database())):
        data = tmp / f"resume-{name}"
        t0 = time.monotonic()
        ids, copies = await seed_paused(data, anvil_url, real, total, store_url=store_url)
        seeded = time.monotonic() - t0
        server = lunark(f"resume-{name}", tmp, anvil_url, store_url=store_url, data_dir=data,
                        approval_ttl=APPROVAL_TTL_S)
        t0 = time.monotonic()
        await server.start(timeout=1800)
        ready = time.monotonic() - t0
        try:
            token = await sign_in(server.url)
            result = await run_resume(server, token, ids, log=log)
            await _check_copies(server, token, copies)
        finally:
            await server.stop()
        out[name] = result | {"paused": total, "real": real, "seed_s": seeded, "ready_s": ready}
        log(f"  {total} paused on {name:8}: ready in {ready:.1f} s; resume p50 {result['p50_ms']:.1f} ms "
            f"p99 {result['p99_ms']:.1f} ms; RSS {result['rss_start_mb']:.0f} MB (seeded in {seeded:.0f} s)")
    out["ratio_p50"] = out["postgres"]["p50_ms"] / out["sqlite"]["p50_ms"]
    out["ratio_p99"] = out["postgres"]["p99_ms"] / out["sqlite"]["p99_ms"]
    return out


async def _check_copies(server: Server, token: str, copies: list[str]) -> None:
    """Copies are real paused chats too: a few, from first to last, open at their approval."""
    client = await Recorder(server.url, token).connect()
    try:
        for chat_id in copies[:: max(1, len(copies) // 4)]:
            ack = await client.call("join_chat", {"chat_id": chat_id})
            assert ack.get("pending_approval"), f"the copy {chat_id} is not paused: {ack}"
    finally:
        await client.close()


async def bench_failover(tmp: Path, anvil_url: str, pg: Any, redis: Any, reps: int, log: Any) -> dict[str, Any]:
    url = pg.create_database()
    decidable: list[float] = []
    answered: list[float] = []
    takeover: list[float] = []
    b = await lunark("failover-b", tmp, anvil_url, store_url=url, redis_url=redis.url, signer=True).start()
    token = await sign_in(b.url)
    on_b = await Recorder(b.url, token).connect()
    try:
        for rep in range(reps):
            a = await lunark(f"failover-a{rep}", tmp, anvil_url, store_url=url, redis_url=redis.url,
                             signer=True).start()
            on_a = await Recorder(a.url, token).connect()
            try:
                # A chat paused on A; A dies; the approval is decided through B.
                chat_id, approval = await _pause(on_b, sender=on_a)
                assert a.proc is not None
                a.proc.kill()
                await a.proc.wait()
                killed = time.monotonic()
                done = on_b.expect("message_end", chat_id=chat_id, finish_reason="stop")
                decision = {"chat_id": chat_id, "approval_id": approval["approval_id"],
                            "decisions": [{"type": "reject", "message": "not now"}]}
                while True:
                    ack = await on_b.sio.call("resume_decisions", decision, timeout=30)
                    if ack == {"ok": True}:
                        break
                    await asyncio.sleep(0.005)
                decidable.append((time.monotonic() - killed) * 1000)
                answered.append((await asyncio.wait_for(done, 30) - killed) * 1000)
            finally:
                await on_a.close()
                await a.stop()

            # A transfer in flight on A (broadcast, not mined) when A dies: B takes the settlement over.
            a = await lunark(f"failover-t{rep}", tmp, anvil_url, store_url=url, redis_url=redis.url,
                             signer=True).start()
            on_a = await Recorder(a.url, token).connect()
            try:
                chat_id, approval = await _pause(on_b, sender=on_a)
                await _rpc(anvil_url, "evm_setAutomine", [False])
                submitted = on_b.expect("tx_update", chat_id=chat_id, status="submitted")
                confirmed = on_b.expect("tx_update", chat_id=chat_id, status="confirmed")
                await on_a.call("resume_decisions", {"chat_id": chat_id, "approval_id": approval["approval_id"],
                                                     "decisions": [{"type": "approve"}]})
                await asyncio.wait_for(submitted, 30)
                assert a.proc is not None
                a.proc.kill()
                await a.proc.wait()
                killed = time.monotonic()
                await _rpc(anvil_url, "evm_mine", [])
                await _rpc(anvil_url, "evm_setAutomine", [True])
                takeover.append((await asyncio.wait_for(confirmed, 60) - killed) * 1000)
            finally:
                await on_a.close()
                await a.stop()
    finally:
        await on_b.close()
        await b.stop()
    out = {"reps": reps, "decidable_ms": summary(decidable), "answered_ms": summary(answered),
           "settlement_takeover_ms": summary(takeover)}
    log(f"  failover: decidable on B {out['decidable_ms']['median']:.0f} ms after kill -9, answered "
        f"{out['answered_ms']['median']:.0f} ms; a settlement in flight confirmed by B "
        f"{out['settlement_takeover_ms']['median']:.0f} ms after (p50 of {reps})")
    return out


async def bench_failover_workers(tmp: Path, anvil_url: str, pg: Any, redis: Any, reps: int, log: Any
                                 ) -> dict[str, Any]:
    """``bench_failover`` for 2 relays + 2 turn workers: the worker running a chat's turn is killed.

    The other worker is stopped (SIGSTOP) while the first takes the job, so which one runs the turn
    is known, and continued (SIGCONT) just before the kill: (1) an answer streaming when its worker
    dies, until the relays' clients have its end (``interrupted``), then a next message answered;
    (2) a transfer in flight (broadcast, not mined): until the other worker reports it confirmed."""
    url = pg.create_database()
    common = {"store_url": url, "redis_url": redis.url, "signer": True}
    relays = [lunark(f"fo-relay{n}", tmp, anvil_url, relay_only=True, **common) for n in "ab"]
    await start_all(relays)
    token = await sign_in(relays[0].url)
    on_a, on_b = [await Recorder(r.url, token).connect() for r in relays]
    interrupted: list[float] = []
    next_answer: list[float] = []
    takeover: list[float] = []
    spare = await lunark("fo-worker-spare", tmp, anvil_url, kind="worker", **common).start()
    try:
        for rep in range(reps):
            for case in ("answer", "settlement"):
                victim = await lunark(f"fo-worker-{case}{rep}", tmp, anvil_url, kind="worker", **common).start()
                assert spare.proc is not None
                os.kill(spare.pid, signal.SIGSTOP)  # the victim takes the next job
                try:
                    if case == "answer":
                        chat_id = (await on_a.call("join_chat", {}))["chat_id"]
                        await on_b.call("join_chat", {"chat_id": chat_id})
                        first = on_b.expect("token", chat_id=chat_id)
                        end = on_b.expect("message_end", chat_id=chat_id)
                        await on_a.call("send_message", {"chat_id": chat_id, "content": "bench 2000 50",
                                                         "client_message_id": "f" + secrets.token_hex(6)})
                        await asyncio.wait_for(first, 30)
                    else:
                        chat_id, approval = await _pause(on_b, sender=on_a)
                        await _rpc(anvil_url, "evm_setAutomine", [False])
                        submitted = on_b.expect("tx_update", chat_id=chat_id, status="submitted")
                        confirmed = on_b.expect("tx_update", chat_id=chat_id, status="confirmed")
                        await on_a.call("resume_decisions", {"chat_id": chat_id,
                                                             "approval_id": approval["approval_id"],
                                                             "decisions": [{"type": "approve"}]})
                        await asyncio.wait_for(submitted, 30)
                finally:
                    os.kill(spare.pid, signal.SIGCONT)
                assert victim.proc is not None
                victim.proc.kill()
                await victim.proc.wait()
                killed = time.monotonic()
                await victim.stop()
                if case == "answer":
                    await asyncio.wait_for(end, 30)
                    assert on_b.last("message_end")["finish_reason"] == "interrupted", on_b.last("message_end")
                    interrupted.append((end.result() - killed) * 1000)
                    answered = on_b.expect("message_end", chat_id=chat_id, finish_reason="stop")
                    sent = time.monotonic()
                    await on_b.call("send_message", {"chat_id": chat_id, "content": "bench 10 0",
                                                     "client_message_id": "f" + secrets.token_hex(6)})
                    next_answer.append((await asyncio.wait_for(answered, 30) - sent) * 1000)
                else:
                    await _rpc(anvil_url, "evm_mine", [])
                    await _rpc(anvil_url, "evm_setAutomine", [True])
                    takeover.append((await asyncio.wait_for(confirmed, 60) - killed) * 1000)
    finally:
        await on_a.close()
        await on_b.close()
        await stop_all([spare, *relays])
    out: dict[str, Any] = {"reps": reps, "interrupted_ms": summary(interrupted), "next_answer_ms": summary(next_answer),
           "settlement_takeover_ms": summary(takeover)}
    log(f"  failover (relays + workers): a streaming answer ended interrupted {out['interrupted_ms']['median']:.0f} ms "
        f"after its worker's kill -9, the next message answered in {out['next_answer_ms']['median']:.0f} ms; a "
        f"settlement in flight confirmed by the other worker {out['settlement_takeover_ms']['median']:.0f} ms after "
        f"(p50 of {reps})")
    return out


async def _rpc(url: str, method: str, params: list[Any]) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    ) as response:
        return (await response.json()).get("result")


async def _stream_load(relays: list[Server], processes: list[Server], chats: int, tokens: int,
                       rate: float) -> dict[str, Any]:
    """``chats`` chats, their clients spread over ``relays``, each streaming ``tokens`` tokens at
    ``rate`` per second (0: as fast as the model can), all sent at once: tokens/s delivered, the
    ``send_message`` ack's wait and the first token's (TTFT), each token's latency (its stamp,
    ``benchmarks.tokens``), and the CPU each of ``processes`` used."""
    token = await sign_in(relays[0].url)
    clients = [await Recorder(relays[i % len(relays)].url, token).connect() for i in range(chats)]
    try:
        chat_ids = [(await c.call("join_chat", {}))["chat_id"] for c in clients]
        ends = [c.expect("message_end", chat_id=chat_id) for c, chat_id in zip(clients, chat_ids, strict=True)]
        cpu0 = [s.cpu_seconds() for s in processes]
        t0 = time.monotonic()

        async def send(client: Recorder, chat_id: str) -> float:
            await client.call("send_message", {"chat_id": chat_id, "content": f"bench {tokens} {rate:g}",
                                               "client_message_id": "b" + secrets.token_hex(6)})
            return (time.monotonic() - t0) * 1000

        acks = await asyncio.gather(*(send(c, chat_id) for c, chat_id in zip(clients, chat_ids, strict=True)))
        last = max(await asyncio.wait_for(asyncio.gather(*ends), 300))
        wall = last - t0
        cpu = [s.cpu_seconds() - c0 for s, c0 in zip(processes, cpu0, strict=True)]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    ttfts: list[float] = []
    latencies: list[float] = []
    received = 0
    for client, chat_id in zip(clients, chat_ids, strict=True):
        arrivals = [(at, data["text"]) for at, name, data in client.events
                    if name == "token" and data.get("chat_id") == chat_id]
        if arrivals:
            ttfts.append((arrivals[0][0] - t0) * 1000)
        for at, text in arrivals:
            for _, sent in parse(text):
                latencies.append(latency_s(sent, int(at * 100_000)) * 1000)
                received += 1
    relay_cpu = sum(cpu[: len(relays)])
    return {"chats": chats, "tokens": tokens, "rate": rate, "wall_s": wall, "tokens_per_s": chats * tokens / wall,
            "received": received, "ttft_p50_ms": percentile(ttfts, 50), "ttft_p99_ms": percentile(ttfts, 99),
            # the send_message ack: the turn started (on a cluster of workers: the job claimed and answered)
            "ack_p50_ms": percentile(acks, 50), "ack_p99_ms": percentile(acks, 99),
            "latency_p50_ms": percentile(latencies, 50), "latency_p99_ms": percentile(latencies, 99),
            "cpu_s": cpu, "cpu_us_per_token": sum(cpu) / (chats * tokens) * 1e6,
            "relay_cpu_us_per_token": relay_cpu / (chats * tokens) * 1e6}


TOPOLOGIES = ("sqlite x1", "postgres x1", "postgres x2", "relays x2 + workers x2")
"""The throughput section's set-ups: one process on SQLite; one and two full processes (each relays
and runs turns) on Postgres + Redis; two relays (``--relay-only``) and two turn workers (``lunark
worker``) on Postgres + Redis, the issue 21 cluster."""


def _topology(name: str, tmp: Path, anvil_url: str, pg: Any, redis: Any) -> tuple[list[Server], list[Server]]:
    """(the servers the clients connect to, every process of the set-up) of a ``TOPOLOGIES`` name."""
    if name == "sqlite x1":
        servers = [lunark("load-sqlite", tmp, anvil_url)]
        return servers, servers
    url = pg.create_database()
    if name == "postgres x1":
        servers = [lunark("load-pg1", tmp, anvil_url, store_url=url, redis_url=redis.url)]
        return servers, servers
    if name == "postgres x2":
        servers = [lunark(f"load-pg2{n}", tmp, anvil_url, store_url=url, redis_url=redis.url) for n in "ab"]
        return servers, servers
    relays = [lunark(f"load-relay{n}", tmp, anvil_url, store_url=url, redis_url=redis.url, relay_only=True)
              for n in "ab"]
    workers = [lunark(f"load-worker{n}", tmp, anvil_url, store_url=url, redis_url=redis.url, kind="worker")
               for n in "ab"]
    return relays, relays + workers


async def bench_throughput(tmp: Path, anvil_url: str, pg: Any, redis: Any, loads: dict[str, tuple[int, int, float]],
                           log: Any) -> dict[str, Any]:
    """Each load (name: chats, tokens, rate) on each of ``TOPOLOGIES``, one set-up after the other
    in the same run; ratios of the relays + workers cluster to two full processes."""
    out: dict[str, Any] = {}
    for name in TOPOLOGIES:
        relays, processes = _topology(name, tmp, anvil_url, pg, redis)
        await start_all(processes)
        try:
            for load, (chats, tokens, rate) in loads.items():
                got = out.setdefault(load, {})[name] = await _stream_load(relays, processes, chats, tokens, rate)
                log(f"  {name:22} {load:5} {got['tokens_per_s']:7.0f} tokens/s  TTFT p50/p99 "
                    f"{got['ttft_p50_ms']:.0f}/{got['ttft_p99_ms']:.0f} ms  token p50/p99 "
                    f"{got['latency_p50_ms']:.1f}/{got['latency_p99_ms']:.1f} ms  CPU/token "
                    f"{got['cpu_us_per_token']:.0f} µs (relays {got['relay_cpu_us_per_token']:.0f})  "
                    f"({chats} chats x {tokens} tokens, {rate:g}/s; "
                    f"CPU {', '.join(f'{c:.1f}' for c in got['cpu_s'])} s)")
        finally:
            await stop_all(processes)
    for results in out.values():
        results["ratio_2_to_1"] = results["postgres x2"]["tokens_per_s"] / results["postgres x1"]["tokens_per_s"]
        results["workers_to_x2"] = {
            key: results["relays x2 + workers x2"][key] / results["postgres x2"][key]
            for key in ("tokens_per_s", "ttft_p50_ms", "ttft_p99_ms", "latency_p50_ms", "latency_p99_ms",
                        "cpu_us_per_token", "relay_cpu_us_per_token")
        }
    return out


async def run_cluster(tmp: Path, anvil_url: str, plan: dict[str, Any], *, log: Any = print) -> dict[str, Any]:
    services = _services()
    with services.PostgresServer.start() as pg, services.RedisServer.start() as redis:
        return {
            "resume": await bench_resume(tmp, anvil_url, pg, *plan["resume"], log),
            "failover": await bench_failover(tmp, anvil_url, pg, redis, plan["failover"], log),
            "failover_workers": await bench_failover_workers(
                tmp, anvil_url, pg, redis, plan.get("failover_workers", plan["failover"]), log),
            "throughput": await bench_throughput(tmp, anvil_url, pg, redis, plan["loads"], log),
        }
