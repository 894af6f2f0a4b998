"""Turn results.json into plots (benchmarks/results/*.png) and the tables of docs/performance.md."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from benchmarks.procs import ROOT
from benchmarks.stats import fmt

RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
TARGET_LABEL = {
    "lunark": "Lunark",
    "sio": "(a) python-socketio, event/token",
    "sio-whole": "(b) whole message/token",
    "node": "(c) Node socket.io, event/token",
}


def paused_counts(paused: dict[str, Any]) -> list[int]:
    """The paused-chat counts the paused section ran in process (not its ``+w1`` and floor entries)."""
    return [int(n) for n in paused if n.isdigit()]


def _med(entry: dict[str, Any] | None, metric: str) -> float | None:
    if not entry:
        return None
    value = entry["summary"].get(metric, {}).get("median")
    return float(value) if value is not None else None


def _cells(results: dict[str, Any]) -> dict[tuple[int, int, float], dict[str, dict[str, Any]]]:
    out: dict[tuple[int, int, float], dict[str, dict[str, Any]]] = {}
    for entry in results.get("relay", {}).get("cells", []):
        out.setdefault((entry["tokens"], entry["chats"], entry["rate"]), {})[entry["target"]] = entry
    return out


def _order(key: tuple[int, int, float]) -> tuple[bool, float, int, int]:
    """Paced cells first, slowest pace first; then by M and C."""
    m, c, rate = key
    return (rate == 0, rate, m, c)


def _share(s: dict[str, Any], metric: str) -> str:
    value = s.get(metric, {}).get("median")
    return "n/a" if value is None else f"{value:.0%}"


def _num(s: dict[str, Any], metric: str, digits: int = 1) -> str:
    value = s.get(metric, {}).get("median")
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _pace(rate: float) -> str:
    return "max" if not rate else f"{rate:g}/s"


def aims(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each aim: what was measured, whether it is met, and by how much it is missed."""
    out: list[dict[str, Any]] = []
    cells = _cells(results)
    key = (200, 100, 50.0)
    if key in cells and "lunark" in cells[key]:
        entry = cells[key]["lunark"]
        floor = cells[key].get("sio")
        p99 = _med(entry, "latency_p99_ms")
        lost = sum(r["lost"] + r["order_errors"] + r["seq_errors"] for r in entry["runs"])
        out.append(
            {
                "aim": "100 streams x 50 tokens/s: p99 per-token latency < 20 ms, no loss",
                "measured": f"p99 {p99:.1f} ms, {lost} lost/reordered",
                "met": p99 is not None and p99 < 20 and not lost,
                "gap": None if p99 is None or p99 < 20 else f"{p99 / 20:.1f}x over",
            }
        )
        steady, steady_floor = _med(entry, "steady_latency_p99_ms"), _med(floor, "steady_latency_p99_ms")
        if steady is not None and steady_floor:
            ratio = steady / steady_floor
            out.append(
                {
                    "aim": "100 x 50/s: steady p99 <= 3x the bare python-socketio server's (a)",
                    "measured": f"{steady:.1f} ms vs {steady_floor:.1f} ms ({ratio:.1f}x)",
                    "met": ratio <= 3,
                    "gap": None if ratio <= 3 else f"{ratio / 3:.1f}x over",
                }
            )
        ttft, ttft_floor = _med(entry, "ttft_p99_ms"), _med(floor, "ttft_p99_ms")
        if ttft is not None and ttft_floor is not None:
            added = ttft - ttft_floor
            out.append(
                {
                    "aim": "TTFT, 100 chats starting within 20 ms: p99 <= the floor's (a) + 50 ms",
                    "measured": f"p99 {ttft:.0f} ms vs {ttft_floor:.0f} ms (+{added:.0f} ms)",
                    "met": added <= 50,
                    "gap": None if added <= 50 else f"{added - 50:.0f} ms over",
                }
            )
        cpu, cpu_floor = _med(entry, "server_cpu_ms_per_1k_tokens"), _med(floor, "server_cpu_ms_per_1k_tokens")
        if cpu is not None and cpu_floor:
            ratio = cpu / cpu_floor
            out.append(
                {
                    "aim": "100 x 50/s: server CPU per token <= 1.5x the floor's (a)",
                    "measured": f"{cpu:.0f} vs {cpu_floor:.0f} µs per token ({ratio:.2f}x)",
                    "met": ratio <= 1.5,
                    "gap": None if ratio <= 1.5 else f"{ratio / 1.5:.2f}x over",
                }
            )
    key = (200, 100, 200.0)
    if key in cells and "lunark" in cells[key] and "sio" in cells[key]:
        lunark, floor_tps = _med(cells[key]["lunark"], "tokens_per_s"), _med(cells[key]["sio"], "tokens_per_s")
        if lunark and floor_tps:
            ratio = lunark / floor_tps
            out.append(
                {
                    "aim": "100 x 200 tokens/s: delivered tokens/s >= 0.9x the floor (a)",
                    "measured": f"{lunark:,.0f} vs {floor_tps:,.0f} tokens/s ({ratio:.2f}x)",
                    "met": ratio >= 0.9,
                    "gap": None if ratio >= 0.9 else f"{0.9 / ratio:.2f}x below",
                }
            )
    ratios = []
    for (m, c, rate), by in sorted(cells.items()):
        lunark, floor = _med(by.get("lunark"), "tokens_per_s"), _med(by.get("sio"), "tokens_per_s")
        if lunark and floor:
            ratios.append((lunark / floor, f"M={m} C={c} {_pace(rate)}"))
    if ratios:
        worst = min(ratios)
        out.append(
            {
                "aim": "delivered tokens/s >= one-event-per-token floor (a) at every load",
                "measured": f"worst {worst[0]:.2f}x the floor ({worst[1]}); "
                f"{sum(r >= 0.98 for r, _ in ratios)}/{len(ratios)} loads within 2% or above",
                "met": worst[0] >= 0.98,
                "gap": None if worst[0] >= 0.98 else f"{1 / worst[0]:.1f}x below at {worst[1]}",
            }
        )
    whole_2000 = next(
        (
            _med(by.get("sio-whole"), "bytes_per_answer")
            for (m, _, _), by in sorted(cells.items())
            if m == 2000 and by.get("sio-whole")
        ),
        None,
    )
    if whole_2000:
        # Lunark's bytes grow linearly with M at a given pace: per-token bytes x 2,000 where no M=2000 cell ran.
        per_pace: list[tuple[float, float, str]] = []
        for rate in sorted({r for (_, _, r) in cells}, key=lambda r: (r == 0, r)):
            candidates = [(m, c, by) for (m, c, r), by in sorted(cells.items()) if r == rate and by.get("lunark")]
            if not candidates:
                continue
            # The lightest load: a backlogged server coalesces more, which would flatter it.
            m, c, by = min(candidates, key=lambda t: (t[1], -t[0]))
            lunark_bytes = _med(by["lunark"], "bytes_per_answer") or 0
            measured = m == 2000
            estimate = lunark_bytes * 2000 / m
            per_pace.append((whole_2000 / estimate, rate, "" if measured else " (est.)"))
        worst = min(per_pace)
        text = "; ".join(f"{_pace(rate)}: {ratio:,.0f}x{est}" for ratio, rate, est in per_pace)
        out.append(
            {
                "aim": ">= 50x fewer bytes per 2,000-token answer than whole-message re-emit",
                "measured": text,
                "met": worst[0] >= 50,
                "gap": None if worst[0] >= 50 else f"{50 / worst[0]:.2f}x short at {_pace(worst[1])}",
            }
        )
    if "approval" in results:
        a = results["approval"]
        rt = a["lunark"]["round_trip_ms"]["median"]
        out.append(
            {
                "aim": "approval round trip <= 1.5x direct web3 + 20 ms",
                "measured": f"{rt:.1f} ms vs {a['direct_web3_ms']['median']:.1f} ms direct (aim {a['aim_ms']:.1f} ms)",
                "met": rt <= a["aim_ms"],
                "gap": None if rt <= a["aim_ms"] else f"{rt - a['aim_ms']:.1f} ms over",
            }
        )
    if "replay" in results and "1000" in results["replay"]:
        p95 = results["replay"]["1000"]["p95_ms"]
        fails = sum(v["exactly_once_failures"] for v in results["replay"].values())
        out.append(
            {
                "aim": "1,000 missed events caught up within 300 ms p95 (each exactly once)",
                "measured": f"p95 {p95:.1f} ms, {fails} exactly-once failures",
                "met": p95 <= 300 and not fails,
                "gap": None if p95 <= 300 else f"{p95 / 300:.1f}x over",
            }
        )
    if "paused" in results:
        counts = paused_counts(results["paused"])
        biggest = str(max(counts))
        p99 = results["paused"][biggest]["p99_ms"]
        cpu = results["paused"][biggest].get("server_cpu_ms_per_resume")
        out.append(
            {
                "aim": f"resume p99 < 10 ms with {int(biggest):,} paused chats (SQLite)",
                "measured": f"p99 {p99:.1f} ms" + (f", server CPU {cpu:.1f} ms per resume" if cpu else ""),
                "met": p99 < 10,
                "gap": None if p99 < 10 else f"{p99 / 10:.1f}x over",
            }
        )
    return out


def worker_aims(results: dict[str, Any]) -> list[str]:
    """Issue 21's aims (turns off the relay's loop), one column per Lunark target of the run
    (``lunark``: turns in process; ``lunark+wN``: N turn worker processes), each against the
    floor (a) of the same run; markdown lines, none without the 100-chat cells."""
    cells = _cells(results)
    c50, c200 = cells.get((200, 100, 50.0), {}), cells.get((200, 100, 200.0), {})
    names = [n for n in ("lunark", *sorted(n for n in c50 if n.startswith("lunark+w"))) if n in c50]
    if not names or "sio" not in c50:
        return []
    floor = c50["sio"]

    def col(name: str, row: str) -> str:
        entry, fast = c50.get(name), c200.get(name)
        if row == "p99":
            p99, base = _med(entry, "latency_p99_ms"), _med(floor, "latency_p99_ms")
            if p99 is None or not base:
                return "n/a"
            met = p99 <= 2 * base and p99 <= 10
            return f"{p99:.1f} ms ({p99 / base:.1f}x){'' if met else ' no'}"
        if row == "ttft":
            ttft, base = _med(entry, "ttft_p99_ms"), _med(floor, "ttft_p99_ms")
            if ttft is None or base is None:
                return "n/a"
            return f"{ttft:.0f} ms (+{ttft - base:.0f}){'' if ttft - base <= 20 else ' no'}"
        if row == "cpu":
            cpu, base = _med(entry, "server_cpu_ms_per_1k_tokens"), _med(floor, "server_cpu_ms_per_1k_tokens")
            if cpu is None or not base:
                return "n/a"
            workers = _med(entry, "workers_cpu_ms_per_1k_tokens")
            extra = f" + {workers:.0f} in workers" if workers else ""
            return f"{cpu:.0f} µs ({cpu / base:.2f}x){extra}{'' if cpu <= 1.2 * base else ' no'}"
        tps, base = _med(fast, "tokens_per_s"), _med(c200.get("sio"), "tokens_per_s")
        if tps is None or not base:
            return "n/a"
        return f"{tps:,.0f} ({tps / base:.2f}x){'' if tps >= 0.9 * base else ' no'}"

    rows = {
        "p99": ("100 x 50/s: per-token p99 <= 2x (a)'s and <= 10 ms", "latency_p99_ms", "{:.1f} ms"),
        "ttft": ("100 chats starting within 20 ms: TTFT p99 <= (a)'s + 20 ms", "ttft_p99_ms", "{:.0f} ms"),
        "cpu": ("100 x 50/s: relay process CPU per token <= 1.2x (a)'s", "server_cpu_ms_per_1k_tokens",
                "{:.0f} µs"),
        "tps": ("100 x 200/s: delivered tokens/s >= 0.9x (a)'s", "tokens_per_s", "{:,.0f}"),
    }
    lines = [
        "",
        "### Turn workers (issue 21's aims)",
        "",
        "Lunark with its turns in process and in N worker processes (lunark+wN), each against the floor (a) "
        "in the same run; \"no\" marks an aim missed.",
        "",
        "| aim | " + " | ".join(TARGET_LABEL.get(n, n) for n in names) + " | floor (a) |",
        "| --- |" + " --- |" * (len(names) + 1),
    ]
    for key, (aim, metric, form) in rows.items():
        base = _med(c200.get("sio") if key == "tps" else floor, metric)
        lines.append(f"| {aim} | " + " | ".join(col(n, key) for n in names) +
                     f" | {'n/a' if base is None else form.format(base)} |")
    return lines


def cluster_tables(results: dict[str, Any]) -> list[str]:
    """The cluster section's loads on each set-up (``benchmarks.cluster.TOPOLOGIES``) and its
    failovers, the relays + workers cluster against two full processes of the same run."""
    cluster = results.get("cluster", {})
    loads = cluster.get("throughput", {})
    if not loads or "max" not in loads or not isinstance(loads["max"], dict) or "workers_to_x2" not in loads["max"]:
        return []  # a run from before the relays + workers set-up
    lines = [
        "",
        "### 5. Several processes on Postgres + Redis",
        "",
        "All chats' messages sent at once, their clients spread over the set-up's relays. CPU: every process "
        "of the set-up (its relays alone), per delivered token.",
        "",
        "| load | set-up | tokens/s | TTFT ms p50 / p99 | per-token ms p50 / p99 | CPU µs/token (relays) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for by in loads.values():
        for name, v in by.items():
            if name in ("ratio_2_to_1", "workers_to_x2"):
                continue
            lines.append(
                f"| {v['chats']} x {v['tokens']} at {_pace(v['rate'])} | {name} | {v['tokens_per_s']:,.0f} | "
                f"{v['ttft_p50_ms']:.0f} / {v['ttft_p99_ms']:.0f} | {v['latency_p50_ms']:.1f} / "
                f"{v['latency_p99_ms']:.1f} | {v['cpu_us_per_token']:.0f} ({v['relay_cpu_us_per_token']:.0f}) |"
            )
        r = by["workers_to_x2"]
        lines.append(
            f"| | relays + workers / postgres x2 | {r['tokens_per_s']:.2f}x | {r['ttft_p50_ms']:.2f}x / "
            f"{r['ttft_p99_ms']:.2f}x | {r['latency_p50_ms']:.2f}x / {r['latency_p99_ms']:.2f}x | "
            f"{r['cpu_us_per_token']:.2f}x ({r['relay_cpu_us_per_token']:.2f}x) |"
        )
    fo, fw = cluster.get("failover"), cluster.get("failover_workers")
    if fo and fw:
        lines += [
            "",
            "| kill -9 of ... (p50 of the reps) | 2 full processes | 2 relays + 2 workers |",
            "| --- | --- | --- |",
            f"| the process running a paused chat / a streaming answer: decidable on the other / answer ended "
            f"(interrupted) | {fmt(fo['decidable_ms'], digits=0)} ms | {fmt(fw['interrupted_ms'], digits=0)} ms |",
            f"| ... then answered / the next message answered | {fmt(fo['answered_ms'], digits=0)} ms | "
            f"{fmt(fw['next_answer_ms'], digits=0)} ms |",
            f"| ... with a transfer broadcast, not mined: the survivor reports it confirmed | "
            f"{fmt(fo['settlement_takeover_ms'], digits=0)} ms | {fmt(fw['settlement_takeover_ms'], digits=0)} ms |",
        ]
    return lines


def tables(results: dict[str, Any]) -> str:
    meta = results["meta"]
    env = meta["env"]
    patch = f", patch {meta['patch']}" if meta.get("patch") else ""
    lines = [
        f"Run: {meta['date']} ({meta['mode']}, commit {meta.get('commit')}{patch}), "
        f"{env['cpus']} CPUs, Python {env['python']}, {meta['duration_s']:.0f} s; load average "
        f"{meta['loadavg_start'][0]:.1f} at start, {meta['loadavg_end'][0]:.1f} at end. "
        "Figures are medians over repeated runs, [min–max] across runs.",
        "",
        "### Aims",
        "",
        "| aim | measured | met |",
        "| --- | --- | --- |",
    ]
    for aim in aims(results):
        lines.append(f"| {aim['aim']} | {aim['measured']} | {'yes' if aim['met'] else 'no: ' + str(aim['gap'])} |")
    lines += worker_aims(results)
    cells = _cells(results)
    if cells:
        lines += [
            "",
            "### 1. Token relay",
            "",
            "M tokens per answer, C concurrent chats, pace per stream. Ratios are against (a), the bare "
            "python-socketio server (one event per token), measured in the same run.",
            "",
            "p99 in pauses: the share of the slowest 1% of tokens' latency spent inside a pause the server "
            "recorded (a garbage collection, or its event loop stalled >= 5 ms) / inside a stall of the "
            "clients' process (whose collector is off during runs). TTFT p50 / p99 over the chats of a run.",
            "",
            "| M | C | pace | target | tokens/s | vs (a) | events/s | bytes/answer | p50 ms | p99 ms | "
            "p99 in pauses srv / cli | TTFT ms p50 / p99 | CPU µs/token | lost |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for (m, c, rate), by in sorted(cells.items(), key=lambda kv: _order(kv[0])):
            floor = _med(by.get("sio"), "tokens_per_s")
            for name in ("lunark", *[n for n in by if n.startswith("lunark+")], "sio", "sio-whole", "node"):
                entry = by.get(name)
                if entry is None:
                    continue
                s = entry["summary"]
                tps = _med(entry, "tokens_per_s")
                ratio = f"{tps / floor:.2f}x" if tps and floor else "n/a"
                lost = sum(r["lost"] + r["order_errors"] + r["seq_errors"] for r in entry["runs"])
                lines.append(
                    f"| {m} | {c} | {_pace(rate)} | {TARGET_LABEL.get(name, name)} | "
                    f"{fmt(s['tokens_per_s'], digits=0)} | "
                    f"{ratio} | {fmt(s['events_per_s'], digits=0)} | {fmt(s['bytes_per_answer'], digits=0)} | "
                    f"{fmt(s['latency_p50_ms'])} | {fmt(s['latency_p99_ms'])} | "
                    f"{_share(s, 'p99_share_server_pause')} / {_share(s, 'p99_share_client_pause')} | "
                    f"{_num(s, 'ttft_p50_ms')} / {_num(s, 'ttft_p99_ms')} | "
                    f"{_num(s, 'server_cpu_ms_per_1k_tokens', 0)} | {lost} |"
                )
    if "approval" in results:
        a = results["approval"]
        lines += [
            "",
            "### 2. Approval round trip (Anvil)",
            "",
            "| path | ms |",
            "| --- | --- |",
            f"| Lunark: pending_approval -> sign, broadcast, resume_decisions -> tx_update confirmed | "
            f"{fmt(a['lunark']['round_trip_ms'])} |",
            f"| of which wallet sign + broadcast | {fmt(a['lunark']['sign_send_ms'])} |",
            f"| of which the turn's message_end, then resume_decisions acked | {fmt(a['lunark']['resume_ack_ms'])} |",
            f"| of which ack -> confirmed | {fmt(a['lunark']['confirmed_after_ack_ms'])} |",
            f"| baseline: web3.py sign, send_raw_transaction, wait_for_transaction_receipt | "
            f"{fmt(a['direct_web3_ms'])} |",
            f"| ratio | {a['ratio']:.2f}x (aim <= 1.5x + 20 ms = {a['aim_ms']:.1f} ms) |",
        ]
        if "card_ms" in a["lunark"]:
            lines.append(f"| card shown: send_message -> pending_approval (with its preview) | "
                         f"{fmt(a['lunark']['card_ms'])} |")
        if "preview" in a:
            lines += [
                f"| of a card: prepare (balance, eth_call, estimateGas, nonce, fees) | "
                f"{fmt(a['preview']['prepare_ms'])} |",
                f"| of a card: the balance-change preview (eth_simulateV1, balance reads) | "
                f"{fmt(a['preview']['preview_ms'])} |",
            ]
    if "replay" in results:
        lines += [
            "",
            "### 3. Replay after a reconnect",
            "",
            "| missed events K | catch-up ms | p95 ms | events/s | exactly once |",
            "| --- | --- | --- | --- | --- |",
        ]
        for k, v in results["replay"].items():
            lines.append(
                f"| {int(k):,} | {fmt(v['catch_up_ms'])} | {v['p95_ms']:.1f} | {v['events_per_s']:,.0f} | "
                f"{'yes' if not v['exactly_once_failures'] else 'NO'} ({v['reps']} runs) |"
            )
    if "paused" in results:
        lines += [
            "",
            "### 4. Paused runs and idle clients",
            "",
            "| paused chats | resumes | resume (reject) ms | p99 ms | server CPU ms per resume "
            "| server RSS MB (start -> after) | store MB |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for n, v in results["paused"].items():
            if n == "langgraph_floor":
                continue
            count, _, workers = n.partition("+")
            cpu = v.get("server_cpu_ms_per_resume")
            lines.append(
                f"| {int(count):,}{' (' + workers + ')' if workers else ''} | {v['resumed']} | "
                f"{fmt(v['resume_ms'])} | {v['p99_ms']:.1f} | {'–' if cpu is None else f'{cpu:.1f}'} | "
                f"{v['rss_start_mb']:.0f} -> {v['rss_after_mb']:.0f} | {v['data_mb']:.0f} |"
            )
        floor = results["paused"].get("langgraph_floor")
        if floor:
            lines += ["", f"LangGraph alone, the same three steps with trivial nodes on the same checkpointer, "
                          f"in the same run: p50 {floor['p50_ms']:.1f} ms, p99 {floor['p99_ms']:.1f} ms, "
                          f"CPU p50 {floor['cpu_p50_ms']:.1f} ms per resume."]
    if "memory" in results:
        lines += [
            "",
            "| server | idle Socket.IO clients | RSS MB (before -> after) | KB per client |",
            "| --- | --- | --- | --- |",
        ]
        for name, v in results["memory"].items():
            lines.append(
                f"| {TARGET_LABEL.get(name, name)} | {v['clients']:,} | {v['rss_before_mb']:.0f} -> "
                f"{v['rss_after_mb']:.0f} | {v['kb_per_client']:.1f} |"
            )
    lines += cluster_tables(results)
    return "\n".join(lines) + "\n"


def plots(results: dict[str, Any], folder: Path = RESULTS) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    cells = _cells(results)
    colors = {"lunark": "#1f77b4", "sio": "#7f7f7f", "sio-whole": "#d62728", "node": "#2ca02c"}

    def bars(ax: Any, keys: list[tuple[int, int, float]], metric: str, title: str, ylabel: str, log: bool) -> None:
        names = [
            "lunark",
            *sorted({n for k in keys for n in cells[k] if n.startswith("lunark+")}),
            "sio",
            "sio-whole",
            "node",
        ]
        width = 0.8 / len(names)
        for i, name in enumerate(names):
            xs, ys, lo, hi = [], [], [], []
            for j, key in enumerate(keys):
                entry = cells[key].get(name)
                if entry is None or entry["summary"][metric]["median"] is None:
                    continue
                s = entry["summary"][metric]
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                ys.append(s["median"])
                lo.append(s["median"] - s["min"])
                hi.append(s["max"] - s["median"])
            if xs:
                ax.bar(
                    xs,
                    ys,
                    width,
                    yerr=[lo, hi],
                    capsize=2,
                    label=TARGET_LABEL.get(name, name),
                    color=colors.get(name, "#9467bd"),
                )
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([f"M={m}\nC={c}\n{_pace(r)}" for m, c, r in keys], fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.tick_params(axis="y", labelsize=7)

    if cells:
        order = sorted(cells, key=_order)
        fast = [k for k in order if not k[2]]
        paced = [k for k in order if k[2]]
        fig, axes = plt.subplots(2, 1, figsize=(9, 6.5))
        bars(axes[0], order, "tokens_per_s", "Delivered tokens/s (median, min–max)", "tokens/s", True)
        bars(axes[1], order, "latency_p99_ms", "Per-token latency p99, model -> client", "ms", True)
        axes[0].legend(fontsize=7, ncol=2)
        fig.tight_layout()
        path = folder / "relay.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
        bars(axes[0], fast or order, "bytes_per_answer", "Bytes on the wire per answer (max pace)", "bytes", True)
        bars(axes[1], paced or order, "latency_p50_ms", "Per-token latency p50 (paced)", "ms", True)
        axes[0].legend(fontsize=6)
        fig.tight_layout()
        path = folder / "relay-bytes-latency.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    panels = [k for k in ("approval", "replay", "paused", "memory") if k in results]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3))
        axes = axes if len(panels) > 1 else [axes]
        for ax, name in zip(axes, panels, strict=True):
            if name == "approval":
                a = results["approval"]
                data = [a["lunark"]["round_trip_ms"], a["direct_web3_ms"]]
                ax.bar(
                    [0, 1],
                    [d["median"] for d in data],
                    yerr=[[d["median"] - d["min"] for d in data], [d["max"] - d["median"] for d in data]],
                    color=[colors["lunark"], "#7f7f7f"],
                    capsize=3,
                )
                ax.axhline(a["aim_ms"], color="k", ls="--", lw=0.8, label="aim")
                ax.set_xticks([0, 1])
                ax.set_xticklabels(["Lunark", "web3.py"], fontsize=8)
                ax.set_title("Approval round trip (ms)", fontsize=9)
                ax.legend(fontsize=7)
            elif name == "replay":
                r = results["replay"]
                ks = [int(k) for k in r]
                ax.errorbar(
                    ks,
                    [r[str(k)]["catch_up_ms"]["median"] for k in ks],
                    yerr=[
                        [r[str(k)]["catch_up_ms"]["median"] - r[str(k)]["catch_up_ms"]["min"] for k in ks],
                        [r[str(k)]["catch_up_ms"]["max"] - r[str(k)]["catch_up_ms"]["median"] for k in ks],
                    ],
                    marker="o",
                    capsize=3,
                    color=colors["lunark"],
                )
                ax.plot([1000], [300], "k*", label="aim (p95)")
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlabel("missed events K", fontsize=8)
                ax.set_title("Replay catch-up (ms)", fontsize=9)
                ax.legend(fontsize=7)
            elif name == "paused":
                pz = results["paused"]
                ns = paused_counts(pz)
                ax.plot(ns, [pz[str(n)]["p50_ms"] for n in ns], "o-", label="p50", color=colors["lunark"])
                ax.plot(ns, [pz[str(n)]["p99_ms"] for n in ns], "s--", label="p99", color=colors["lunark"])
                ax.axhline(10, color="k", ls="--", lw=0.8, label="aim p99")
                ax.set_xscale("log")
                ax.set_xlabel("paused chats", fontsize=8)
                ax.set_title("Resume (reject) latency (ms)", fontsize=9)
                ax.legend(fontsize=7)
            else:
                mem = results["memory"]
                names = list(mem)
                ax.bar(
                    range(len(names)),
                    [mem[n]["kb_per_client"] for n in names],
                    color=[colors.get(n, "#9467bd") for n in names],
                )
                ax.set_xticks(range(len(names)))
                ax.set_xticklabels(["Lunark" if n == "lunark" else n for n in names], fontsize=8)
                ax.set_title("KB per idle client", fontsize=9)
            ax.tick_params(labelsize=7)
        fig.tight_layout()
        path = folder / "approval-replay-paused.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def write_doc(results: dict[str, Any]) -> Path:
    text = DOC.read_text() if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{tables(results)}{END}{tail}")
    return DOC


def write_report(results: dict[str, Any], *, folder: Path = RESULTS, doc: bool = True) -> list[Path]:
    written = plots(results, folder)
    if doc:
        written.append(write_doc(results))
    return written


if __name__ == "__main__":
    source = (Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS / "results.json").resolve()
    for path in write_report(json.loads(source.read_text()), folder=source.parent, doc="--no-doc" not in sys.argv):
        print(f"wrote {path.relative_to(ROOT)}")
