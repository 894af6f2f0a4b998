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
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.client import sign_in
from benchmarks.paused import run_resume
from benchmarks.procs import ROOT, Server, python_server, start_all, stop_all
from benchmarks.recorder import Recorder
from benchmarks.seed import APPROVAL_TTL_S, BOB, seed_paused
from benchmarks.stats import summary


def _services() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    import services

    return services


def lunark(name: str, tmp: Path, anvil_url: str, *, store_url: str | None = None, redis_url: str | None = None,
           signer: bool = False, data_dir: Path | None = None, approval_ttl: float | None = None) -> Server:
    args = ["--data-dir", str(data_dir or tmp / name), "--anvil", anvil_url]
    if approval_ttl:
        args += ["--approval-ttl", str(approval_ttl)]
    if store_url:
        args += ["--store-url", store_url]
    if redis_url:
        args += ["--redis-url", redis_url]
    if signer:
        args += ["--signer", "anvil"]
    return python_server(name, "lunark", *args)


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


async def _rpc(url: str, method: str, params: list[Any]) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    ) as response:
        return (await response.json()).get("result")


async def _stream_load(servers: list[Server], chats: int, tokens: int) -> dict[str, Any]:
    token = await sign_in(servers[0].url)
    clients = [await Recorder(servers[i % len(servers)].url, token).connect() for i in range(chats)]
    try:
        chat_ids = [(await c.call("join_chat", {}))["chat_id"] for c in clients]
        ends = [c.expect("message_end", chat_id=chat_id) for c, chat_id in zip(clients, chat_ids, strict=True)]
        cpu0 = [s.cpu_seconds() for s in servers]
        t0 = time.monotonic()
        await asyncio.gather(*(c.call("send_message", {"chat_id": chat_id, "content": f"bench {tokens} 0",
                                                       "client_message_id": "b" + secrets.token_hex(6)})
                               for c, chat_id in zip(clients, chat_ids, strict=True)))
        last = max(await asyncio.wait_for(asyncio.gather(*ends), 300))
        wall = last - t0
        cpu = [s.cpu_seconds() - c0 for s, c0 in zip(servers, cpu0, strict=True)]
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return {"chats": chats, "tokens": tokens, "wall_s": wall, "tokens_per_s": chats * tokens / wall,
            "cpu_s": cpu}


async def bench_throughput(tmp: Path, anvil_url: str, pg: Any, redis: Any, chats: int, tokens: int,
                           log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    setups: list[tuple[str, list[Server]]] = [
        ("sqlite x1", [lunark("load-sqlite", tmp, anvil_url)]),
    ]
    url1, url2 = pg.create_database(), pg.create_database()
    setups.append(("postgres x1", [lunark("load-pg1", tmp, anvil_url, store_url=url1, redis_url=redis.url)]))
    setups.append(("postgres x2", [lunark(f"load-pg2{n}", tmp, anvil_url, store_url=url2, redis_url=redis.url)
                                   for n in "ab"]))
    for name, servers in setups:
        await start_all(servers)
        try:
            out[name] = await _stream_load(servers, chats, tokens)
        finally:
            await stop_all(servers)
        log(f"  {name:12} {out[name]['tokens_per_s']:8.0f} tokens/s  ({chats} chats x {tokens} tokens, "
            f"server CPU {', '.join(f'{c:.1f}' for c in out[name]['cpu_s'])} s)")
    out["ratio_2_to_1"] = out["postgres x2"]["tokens_per_s"] / out["postgres x1"]["tokens_per_s"]
    return out


async def run_cluster(tmp: Path, anvil_url: str, plan: dict[str, Any], *, log: Any = print) -> dict[str, Any]:
    services = _services()
    with services.PostgresServer.start() as pg, services.RedisServer.start() as redis:
        return {
            "resume": await bench_resume(tmp, anvil_url, pg, *plan["resume"], log),
            "failover": await bench_failover(tmp, anvil_url, pg, redis, plan["failover"], log),
            "throughput": await bench_throughput(tmp, anvil_url, pg, redis, *plan["load"], log),
        }
