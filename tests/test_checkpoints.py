"""The one-hop SQLite checkpointer: same file format as LangGraph's savers, many chats at once."""

from __future__ import annotations

import asyncio
import operator
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from lunark.graph.checkpoints import ThreadedSqliteSaver


class State(TypedDict):
    said: Annotated[list[str], operator.add]


def _graph(saver: BaseCheckpointSaver[Any]) -> Any:
    async def hear(state: State) -> dict[str, Any]:
        return {"said": ["heard"]}

    async def ask(state: State) -> dict[str, Any]:
        answer = interrupt({"question": "go on?"})
        return {"said": [f"answer {answer}"]}

    builder: StateGraph[State] = StateGraph(State)
    builder.add_node("hear", hear)
    builder.add_node("ask", ask)
    builder.add_edge(START, "hear")
    builder.add_edge("hear", "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=saver)


def _config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread}}


async def test_a_pause_written_by_langgraphs_saver_resumes_on_this_one_and_back(tmp_path: Path) -> None:
    db = tmp_path / "checkpoints.sqlite"
    async with AsyncSqliteSaver.from_conn_string(str(db)) as old:
        await _graph(old).ainvoke({"said": ["hello"]}, _config("a"))
    async with ThreadedSqliteSaver.open(db) as saver:
        graph = _graph(saver)
        paused = await graph.aget_state(_config("a"))
        assert paused.values["said"] == ["hello", "heard"]
        assert [i.value for i in paused.interrupts] == [{"question": "go on?"}]
        done = await graph.ainvoke(Command(resume="yes"), _config("a"))
        assert done["said"] == ["hello", "heard", "answer yes"]
        await graph.ainvoke({"said": ["again"]}, _config("b"))  # paused, for the old saver to resume
    async with AsyncSqliteSaver.from_conn_string(str(db)) as old:
        graph = _graph(old)
        assert (await graph.aget_state(_config("a"))).values["said"] == ["hello", "heard", "answer yes"]
        done = await graph.ainvoke(Command(resume="no"), _config("b"))
        assert done["said"] == ["again", "heard", "answer no"]


async def test_many_chats_at_once_each_keep_their_own_history(tmp_path: Path) -> None:
    async with ThreadedSqliteSaver.open(tmp_path / "checkpoints.sqlite") as saver:
        graph = _graph(saver)

        async def chat(n: int) -> None:
            for turn in range(3):
                await graph.ainvoke({"said": [f"{n}.{turn}"]}, _config(f"chat-{n}"))
                await graph.ainvoke(Command(resume=f"{n}.{turn}"), _config(f"chat-{n}"))

        await asyncio.gather(*(chat(n) for n in range(40)))
        for n in range(40):
            state = await graph.aget_state(_config(f"chat-{n}"))
            assert state.values["said"] == [
                said for turn in range(3) for said in (f"{n}.{turn}", "heard", f"answer {n}.{turn}")
            ]
            assert not state.next
        history = [c async for c in saver.alist(_config("chat-7"))]
        assert len(history) >= 6 and all(c.config["configurable"]["thread_id"] == "chat-7" for c in history)
        await saver.adelete_thread("chat-7")
        assert await saver.aget_tuple(_config("chat-7")) is None
        assert (await graph.aget_state(_config("chat-8"))).values["said"][0] == "8.0"


async def test_writes_asked_for_before_closing_are_on_disk(tmp_path: Path) -> None:
    db = tmp_path / "checkpoints.sqlite"
    async with ThreadedSqliteSaver.open(db) as saver:
        graph = _graph(saver)
        await asyncio.gather(*(graph.ainvoke({"said": [str(n)]}, _config(f"t{n}")) for n in range(10)))
    async with ThreadedSqliteSaver.open(db) as saver:
        for n in range(10):
            state = await _graph(saver).aget_state(_config(f"t{n}"))
            assert state.values["said"] == [str(n), "heard"] and state.interrupts
