"""A soak: Lunark under a steady relay load for minutes; is its memory flat, does it pause?

    python -m benchmarks.soak                      # 10 minutes, 100 chats x 50 tokens/s (./dev soak)
    python -m benchmarks.soak --minutes 2 --chats 20

One ``lunark`` server (``benchmarks/serve.py``, as in the relay section), and one client per
chat in this process, each asking its chat for a 200-token answer at the pace, then again
after a pause of up to a second, and moving to a new chat every ``--turns`` answers (a
steady load: LangGraph loads a chat's whole history into memory for each of its turns, so
chats that only grew would make the live memory grow with them, by design). Every
``--every`` seconds it records the server's RSS, its tracked objects and collections, the
tokens delivered, their p99 latency and the server's pauses. At the end it
fits a line to the RSS and to the tracked objects over the second half of the soak (the
first fills caches) and writes ``benchmarks/results/soak.json`` (``--out``).

The clients' collector is frozen and disabled, and runs once per sample, between reads.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.client import BenchClient, Stream, close_many, connect_many, sign_in
from benchmarks.monitor import PauseMonitor
from benchmarks.procs import ROOT, env_info, python_server, raise_nofile
from benchmarks.run import dumps, git_commit
from benchmarks.stats import percentile


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (units of y per unit of x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


async def chat_loop(
    client: BenchClient, tokens: int, rate: float, turns: int, until: float, done: list[Stream]
) -> None:
    answered = 0
    while time.monotonic() < until:
        if answered % turns == 0:
            await client.join()  # a new chat
        stream = Stream(tokens, False)
        client.reset(stream)
        stream.sent_at = time.monotonic()
        ack = await client.send(f"bench {tokens} {rate:g}")
        if "error" in ack:
            raise RuntimeError(f"send_message failed: {ack['error']}")
        await asyncio.wait_for(stream.done, tokens / rate * 2 + 30)
        await asyncio.sleep(0.05)  # anything late would show as a seq error
        done.append(stream)
        answered += 1
        await asyncio.sleep(random.random())


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    raise_nofile()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lunark-soak-") as tmp:
        server = python_server("lunark", "lunark", "--data-dir", str(Path(tmp) / "soak"))
        await server.start()
        monitor = PauseMonitor().start()
        clients: list[BenchClient] = []
        try:
            token = await sign_in(server.url)
            clients = await connect_many(server.url, args.chats, token)
            gc.collect()
            gc.freeze()
            gc.disable()
            finished: list[Stream] = []
            until = time.monotonic() + args.minutes * 60
            loops = [asyncio.ensure_future(chat_loop(c, args.tokens, args.rate, args.turns, until, finished))
                     for c in clients]
            samples: list[dict[str, Any]] = []
            t0 = last = time.monotonic()
            cpu0 = server.cpu_seconds()
            while time.monotonic() < until:
                await asyncio.sleep(args.every)
                if any(loop.done() and loop.exception() for loop in loops):
                    break
                now = time.monotonic()
                streams, finished[:] = finished[:], []
                latencies = [x for s in streams for x in s.latencies]
                pauses = await server.pauses(last, now)
                objects = await server.query("gc")
                full = [b - a for a, b, g in pauses["gc"] if g == 2]
                collect0 = time.monotonic()
                gc.collect()  # the clients' own, between two reads
                sample = {
                    "t_s": now - t0,
                    "rss_mb": server.rss_kb() / 1024,
                    "tracked_objects": objects["objects"],
                    "answers": len(streams),
                    "tokens": sum(s.tokens for s in streams),
                    "lost": sum(s.expected - s.tokens for s in streams),
                    "order_errors": sum(s.order_errors + s.seq_errors for s in streams),
                    "latency_p50_ms": percentile(latencies, 50) * 1000 if latencies else None,
                    "latency_p99_ms": percentile(latencies, 99) * 1000 if latencies else None,
                    "server_full_gcs": len(full),
                    "server_full_gc_max_ms": max(full, default=0.0) * 1000,
                    "server_gc_ms": sum(b - a for a, b, _ in pauses["gc"]) * 1000,
                    "server_lag_max_ms": max((b - a for a, b in pauses["lag"]), default=0.0) * 1000,
                    "server_cpu_util": (server.cpu_seconds() - cpu0) / (now - last),
                    "client_gc_ms": (time.monotonic() - collect0) * 1000,
                }
                cpu0 = server.cpu_seconds()
                last = now
                samples.append(sample)
                print(
                    f"  {sample['t_s']:6.0f} s  RSS {sample['rss_mb']:6.1f} MB  "
                    f"objects {sample['tracked_objects']:>8,}  "
                    f"answers {sample['answers']:4}  p99 {sample['latency_p99_ms'] or 0:7.1f} ms  "
                    f"full GCs {sample['server_full_gcs']} (max {sample['server_full_gc_max_ms']:.1f} ms)  "
                    f"cpu {sample['server_cpu_util']:.2f}",
                    flush=True,
                )
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            failed = [loop.exception() for loop in loops if not loop.cancelled() and loop.exception()]
            if failed:
                raise RuntimeError(f"{len(failed)} chats failed, first: {failed[0]!r}")
        finally:
            gc.enable()
            gc.unfreeze()
            monitor.stop()
            await close_many(clients)
            await server.stop()
    second = [s for s in samples if s["t_s"] >= samples[-1]["t_s"] / 2] if samples else []
    rss_slope = slope([(s["t_s"] / 60, s["rss_mb"]) for s in second])
    objects_slope = slope([(s["t_s"] / 60, s["tracked_objects"]) for s in second])
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "commit": git_commit(),
            "env": env_info(),
            "minutes": args.minutes,
            "chats": args.chats,
            "tokens": args.tokens,
            "rate": args.rate,
            "turns_per_chat": args.turns,
            "duration_s": time.monotonic() - started,
        },
        "samples": samples,
        "summary": {
            "rss_first_mb": samples[0]["rss_mb"] if samples else None,
            "rss_last_mb": samples[-1]["rss_mb"] if samples else None,
            "rss_max_mb": max((s["rss_mb"] for s in samples), default=None),
            "rss_slope_mb_per_min_second_half": rss_slope,
            "objects_slope_per_min_second_half": objects_slope,
            "answers": sum(s["answers"] for s in samples),
            "tokens": sum(s["tokens"] for s in samples),
            "lost": sum(s["lost"] for s in samples),
            "order_errors": sum(s["order_errors"] for s in samples),
            "server_full_gcs": sum(s["server_full_gcs"] for s in samples),
            "server_full_gc_max_ms": max((s["server_full_gc_max_ms"] for s in samples), default=0.0),
            "latency_p99_ms_median_of_samples": percentile(
                [s["latency_p99_ms"] for s in samples if s["latency_p99_ms"] is not None], 50
            ),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=200, help="tokens per answer")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens/s per stream")
    parser.add_argument("--turns", type=int, default=10, help="answers per chat before a new chat")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    args = parser.parse_args(argv)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    results = asyncio.run(soak(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(dumps(results))
    s = results["summary"]
    print(
        f"RSS {s['rss_first_mb']:.1f} -> {s['rss_last_mb']:.1f} MB (max {s['rss_max_mb']:.1f}), second half "
        f"{s['rss_slope_mb_per_min_second_half']:+.2f} MB/min, {s['objects_slope_per_min_second_half']:+,.0f} "
        f"objects/min; {s['answers']:,} answers, {s['tokens']:,} tokens, {s['lost']} lost, "
        f"{s['order_errors']} out of order; {s['server_full_gcs']} full collections "
        f"(longest {s['server_full_gc_max_ms']:.1f} ms); wrote {args.out}"
    )
    json.dumps(results)  # it serialized: nothing left unreported
    return 0


if __name__ == "__main__":
    sys.exit(main())
