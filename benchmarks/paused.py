"""4. Paused runs and idle clients.

Resume latency with N chats waiting for approval in the SQLite store (set up by
``seed.seed_paused`` before the server starts): the real paused chats are joined
(``join_chat``, not timed), then each in turn gets ``resume_decisions`` with a reject
(the cheap path), timed until ``message_end``. The server's CPU over the resumes
(its own and its turn workers', from /proc) says how much of that time is work:
a resume is CPU-bound when the two agree. ``langgraph_floor`` is what LangGraph
alone costs the same three steps (approve, execute, agent) with trivial nodes on
Lunark's SQLite checkpointer, in this process: the part no change in Lunark's own
code can remove. Server RSS is read from /proc.

Memory per idle connected client: server RSS before and after N signed-in
Socket.IO connections, for Lunark and the bare python-socketio and Node servers.
"""

from __future__ import annotations

import asyncio
import operator
import tempfile
import time
from typing import Annotated, Any, TypedDict

from benchmarks.client import connect_many
from benchmarks.procs import Server
from benchmarks.recorder import Recorder
from benchmarks.stats import percentile, summary


async def run_resume(server: Server, token: str, chat_ids: list[str], *, log: Any = print) -> dict[str, Any]:
    rss_start = server.rss_kb()
    client = await Recorder(server.url, token).connect()
    times: list[float] = []
    try:
        approvals = []
        for chat_id in chat_ids:
            ack = await client.call("join_chat", {"chat_id": chat_id})
            approval = ack.get("pending_approval")
            assert approval is not None, f"{chat_id} is not paused"
            approvals.append(approval)
        cpu0 = server.cpu_seconds() + server.children_cpu_seconds()
        for chat_id, approval in zip(chat_ids, approvals, strict=True):
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
        cpu_ms = (server.cpu_seconds() + server.children_cpu_seconds() - cpu0) * 1000 / len(chat_ids)
    finally:
        await client.close()
    times = times[1:]  # the first warms up the path
    return {
        "resumed": len(times),
        "server_cpu_ms_per_resume": cpu_ms,
        "resume_ms": summary(times),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "rss_start_mb": rss_start / 1024,
        "rss_after_mb": server.rss_kb() / 1024,
    }


class FloorState(TypedDict):
    messages: Annotated[list[str], operator.add]


async def langgraph_floor(count: int = 200) -> dict[str, Any]:
    """LangGraph alone: ``count`` threads paused at an ``interrupt()`` in the first of three trivial
    nodes (approve -> execute -> agent, as Lunark's graph after a decision), on Lunark's SQLite
    checkpointer, each resumed in turn; wall and CPU per resume (p50, p99)."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Command, interrupt

    from lunark.graph.checkpoints import ThreadedSqliteSaver

    def approve(state: FloorState) -> dict[str, Any]:
        return {"messages": [interrupt({"approval_id": "a"})]}

    builder: StateGraph[FloorState] = StateGraph(FloorState)
    builder.add_node("approve", approve)
    builder.add_node("execute", lambda state: {"messages": ["tool result"]})
    builder.add_node("agent", lambda state: {"messages": ["answer"]})
    builder.add_edge(START, "approve")
    builder.add_edge("approve", "execute")
    builder.add_edge("execute", "agent")
    builder.add_edge("agent", END)
    walls: list[float] = []
    cpus: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with ThreadedSqliteSaver.open(f"{tmp}/checkpoints.sqlite") as saver:
            graph = builder.compile(checkpointer=saver)
            configs = [{"configurable": {"thread_id": f"floor-{i}"}} for i in range(count + 1)]
            for config in configs:
                async for _ in graph.astream({"messages": []}, config, stream_mode="custom"):  # type: ignore[arg-type]
                    pass
            for config in configs:
                t0, c0 = time.monotonic(), time.process_time()
                async for _ in graph.astream(Command(resume="reject"), config, stream_mode="custom"):  # type: ignore[arg-type]
                    pass
                walls.append((time.monotonic() - t0) * 1000)
                cpus.append((time.process_time() - c0) * 1000)
    walls, cpus = walls[1:], cpus[1:]  # the first warms up the path
    return {"resumed": len(walls), "p50_ms": percentile(walls, 50), "p99_ms": percentile(walls, 99),
            "cpu_p50_ms": percentile(cpus, 50)}


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
