"""4. Paused runs and idle clients.

Resume latency with N chats waiting for approval in the SQLite store (set up by
``seed.seed_paused`` before the server starts): for real paused chats, one at a
time, ``join_chat`` (not timed), then ``resume_decisions`` with a reject (the cheap
path) until ``message_end``. Server RSS is read from /proc.

Memory per idle connected client: server RSS before and after N signed-in
Socket.IO connections, for Lunark and the bare python-socketio and Node servers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.client import connect_many
from benchmarks.procs import Server
from benchmarks.recorder import Recorder
from benchmarks.stats import percentile, summary


async def run_resume(server: Server, token: str, chat_ids: list[str], *, log: Any = print) -> dict[str, Any]:
    rss_start = server.rss_kb()
    client = await Recorder(server.url, token).connect()
    times: list[float] = []
    try:
        for chat_id in chat_ids:
            ack = await client.call("join_chat", {"chat_id": chat_id})
            approval = ack.get("pending_approval")
            assert approval is not None, f"{chat_id} is not paused"
            done = client.expect("message_end", chat_id=chat_id)
            t0 = time.monotonic()
            await client.call(
                "resume_decisions",
                {
                    "chat_id": chat_id,
                    "approval_id": approval["approval_id"],
                    "decisions": [{"type": "reject", "message": "not now"}],
                },
            )
            t1 = await asyncio.wait_for(done, 30)
            times.append((t1 - t0) * 1000)
            end = client.last("message_end")
            assert end["finish_reason"] == "stop", end
    finally:
        await client.close()
    times = times[1:]  # the first warms up the path
    return {
        "resumed": len(times),
        "resume_ms": summary(times),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "rss_start_mb": rss_start / 1024,
        "rss_after_mb": server.rss_kb() / 1024,
    }


async def idle_memory(server: Server, token: str | None, count: int) -> dict[str, Any]:
    await asyncio.sleep(0.5)
    before = server.rss_kb()
    t0 = time.monotonic()
    clients = await connect_many(server.url, count, token, concurrency=50)
    connect_s = time.monotonic() - t0
    await asyncio.sleep(1.0)
    after = server.rss_kb()
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {
        "clients": count,
        "rss_before_mb": before / 1024,
        "rss_after_mb": after / 1024,
        "kb_per_client": (after - before) / count,
        "connect_s": connect_s,
    }
