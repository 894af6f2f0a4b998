"""Which engine carries turn jobs from relays to workers: Redis Streams or Postgres ``SKIP LOCKED``.

    python -m benchmarks.queue [--jobs 2000] [--rate 200] [--burst 4000] [--out FILE]

Both on the real servers the tests start (``tests/services.py``: a throwaway Postgres and
redis-server on 127.0.0.1), each with two consumer processes (two workers) and one producer (a
relay), as ``lunark.server.jobs`` would use them:

- **Postgres**: ``INSERT`` + ``pg_notify`` to enqueue; a consumer claims the oldest job whose chat
  has no earlier job left (one chat's jobs in order, one at a time) with ``FOR UPDATE SKIP
  LOCKED`` in a transaction that it holds while the job runs, then deletes it and commits (a
  consumer that dies rolls back: the job is claimable again at once). Consumers wait on ``LISTEN``.
- **Redis Streams**: ``XADD`` to enqueue; ``XREADGROUP ... BLOCK`` to claim, ``XACK`` + ``XDEL`` when
  done (a dead consumer's jobs come back only through ``XAUTOCLAIM`` after an idle time to choose,
  and nothing keeps one chat's jobs in order across consumers).

Measured: enqueue -> claim and enqueue -> done latency (p50/p99) at a paced rate (``--rate`` jobs/s,
``--jobs`` of them, over 50 chats), and jobs/s claimed and done by the two consumers for a burst
enqueued as fast as one producer can (``--burst``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.procs import ROOT
from benchmarks.stats import percentile

STREAM, GROUP = "bench:jobs", "workers"
CHATS = 50
IDLE = 6.0
"""A consumer stops once it has had no job for this long (after the start, or its last job)."""


def _services() -> Any:
    sys.path.insert(0, str(ROOT / "tests"))
    import services

    return services


# -- consumers (each its own process) -------------------------------------------------------------


async def consume_postgres(url: str, out: list[list[float]]) -> None:
    import psycopg

    listen = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await listen.execute("LISTEN bench_jobs")
    work = await psycopg.AsyncConnection.connect(url)
    wake = asyncio.Event()

    async def notified() -> None:
        async for _ in listen.notifies():
            wake.set()

    listener = asyncio.create_task(notified())
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < IDLE:
            async with work.transaction():
                cursor = await work.execute(
                    "SELECT id, sent FROM bench_jobs j WHERE NOT EXISTS (SELECT 1 FROM bench_jobs e "
                    "WHERE e.chat_id = j.chat_id AND e.id < j.id) ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED")
                row = await cursor.fetchone()
                if row is not None:
                    claimed = time.time()
                    await work.execute("DELETE FROM bench_jobs WHERE id = %s", (row[0],))
            if row is None:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 0.5)
                continue
            out.append([row[1], claimed, time.time()])
            idle_since = time.monotonic()
    finally:
        listener.cancel()
        await listen.close()
        await work.close()


async def consume_redis(url: str, name: str, out: list[list[float]]) -> None:
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < IDLE:
            got = await client.xreadgroup(GROUP, name, {STREAM: ">"}, count=1, block=500)
            if not got:
                continue
            idle_since = time.monotonic()
            for _, entries in got:
                for entry_id, fields in entries:
                    claimed = time.time()
                    await client.xack(STREAM, GROUP, entry_id)
                    await client.xdel(STREAM, entry_id)
                    out.append([float(fields[b"sent"]), claimed, time.time()])
    finally:
        await client.aclose()


def consumer_main(args: argparse.Namespace) -> int:
    out: list[list[float]] = []

    async def run() -> None:
        try:
            async with asyncio.timeout(args.timeout):
                if args.backend == "postgres":
                    await consume_postgres(args.url, out)
                else:
                    await consume_redis(args.url, args.name, out)
        except TimeoutError:
            pass

    asyncio.run(run())
    print(json.dumps(out))
    return 0


# -- the producer and the runs --------------------------------------------------------------------


async def _enqueue_postgres(url: str, jobs: int, rate: float | None) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        start = time.monotonic()
        for n in range(jobs):
            if rate:
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            await conn.execute("WITH j AS (INSERT INTO bench_jobs (chat_id, sent) VALUES (%s, %s) RETURNING id) "
                               "SELECT pg_notify('bench_jobs', '') FROM j", (f"chat{n % CHATS}", time.time()))


async def _enqueue_redis(url: str, jobs: int, rate: float | None) -> None:
    from redis import asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        start = time.monotonic()
        for n in range(jobs):
            if rate:
                await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            await client.xadd(STREAM, {"chat_id": f"chat{n % CHATS}", "sent": repr(time.time())})
    finally:
        await client.aclose()


async def _prepare(backend: str, url: str) -> None:
    if backend == "postgres":
        import psycopg

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("DROP TABLE IF EXISTS bench_jobs")
            await conn.execute("CREATE TABLE bench_jobs (id bigserial PRIMARY KEY, chat_id text NOT NULL, "
                               "sent double precision NOT NULL)")
            await conn.execute("CREATE INDEX ON bench_jobs (chat_id, id)")
    else:
        from redis import asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        await client.delete(STREAM)
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        await client.aclose()


async def run_one(backend: str, url: str, jobs: int, rate: float | None, consumers: int = 2) -> dict[str, Any]:
    await _prepare(backend, url)
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.queue", "consume", "--backend", backend, "--url", url,
        "--name", f"c{k}", "--timeout", str(30 + jobs / (rate or 500)),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT) for k in range(consumers)]
    await asyncio.sleep(1.5)  # the consumers are connected and waiting
    began = time.time()
    if backend == "postgres":
        await _enqueue_postgres(url, jobs, rate)
    else:
        await _enqueue_redis(url, jobs, rate)
    enqueued = time.time()
    # The consumers stop once idle; each prints what it did.
    done: list[list[float]] = []
    for proc in procs:
        stdout, _ = await proc.communicate()
        text = stdout.decode().strip().splitlines()
        if text:
            done.extend(json.loads(text[-1]))
    claim = [(c - s) * 1000 for s, c, _ in done]
    finish = [(d - s) * 1000 for s, _, d in done]
    last = max((d for _, _, d in done), default=enqueued)
    return {"jobs": len(done), "claim_ms": _quantiles(claim), "done_ms": _quantiles(finish),
            "jobs_per_s": round(len(done) / max(last - began, 1e-9), 1),
            "enqueue_per_s": round(jobs / max(enqueued - began, 1e-9), 1)}


def _quantiles(values: list[float]) -> dict[str, float]:
    return {f"p{q}": round(percentile(values, q), 3) for q in (50, 90, 99)} | {"max": round(max(values), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.queue", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    consume = sub.add_parser("consume")
    consume.add_argument("--backend", choices=["postgres", "redis"], required=True)
    consume.add_argument("--url", required=True)
    consume.add_argument("--name", default="c0")
    consume.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--burst", type=int, default=4000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "queue.json")
    args = parser.parse_args(argv)
    if args.command == "consume":
        return consumer_main(args)

    services = _services()
    results: dict[str, Any] = {"meta": {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "jobs": args.jobs,
                                        "rate": args.rate, "burst": args.burst, "consumers": 2, "chats": CHATS}}
    with services.PostgresServer.start() as postgres, services.RedisServer.start() as redis:
        url = postgres.create_database()
        for backend, where in (("postgres", url), ("redis", redis.url)):
            paced = asyncio.run(run_one(backend, where, args.jobs, args.rate))
            burst = asyncio.run(run_one(backend, where, args.burst, None))
            results[backend] = {"paced": paced, "burst": burst}
            print(backend, json.dumps(results[backend]), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
