"""3. Replay: a client that missed K events reconnects with ``last_seq``; time until caught up.

The chat's log is written before the server starts (``seed.seed_log``). Each
repetition is a fresh connection that joins with ``last_seq = last - K`` and waits
for the event with seq ``last``; every seq in between must arrive exactly once, in order.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from benchmarks.recorder import Recorder
from benchmarks.stats import percentile, summary


async def run_replay(
    url: str, token: str, chat_id: str, last: int, plan: dict[int, int], *, log: Any = print
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, reps in plan.items():
        times: list[float] = []
        errors = 0
        for _ in range(reps + 1):  # first one warms up the connection path
            client = await Recorder(url, token).connect()
            try:
                done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                original = client._on_any

                async def on_any(
                    event: str, data: Any = None, original: Any = original, done: asyncio.Future[float] = done
                ) -> None:
                    await original(event, data)
                    if isinstance(data, dict) and data.get("seq") == last and not done.done():
                        done.set_result(time.monotonic())

                client.sio.on("*", on_any)
                t0 = time.monotonic()
                await client.call("join_chat", {"chat_id": chat_id, "last_seq": last - k})
                t1 = await asyncio.wait_for(done, 120)
                seqs = [d["seq"] for _, _, d in client.events if "seq" in d]
                if seqs != list(range(last - k + 1, last + 1)):
                    errors += 1
                times.append((t1 - t0) * 1000)
            finally:
                await client.close()
        times = times[1:]
        out[str(k)] = {
            "reps": reps,
            "catch_up_ms": summary(times),
            "p95_ms": percentile(times, 95),
            "events_per_s": k / (percentile(times, 50) / 1000),
            "exactly_once_failures": errors,
        }
        log(
            f"  replay K={k:>6}: p50 {percentile(times, 50):8.1f} ms  p95 {percentile(times, 95):8.1f} ms  "
            f"({out[str(k)]['events_per_s']:,.0f} events/s)  exactly-once failures {errors}"
        )
    return out
