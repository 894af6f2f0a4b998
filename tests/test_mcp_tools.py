"""MCP servers as tool plugins, against real MCP server processes (``tests/mcp_notes_server.py``,
written with the ``mcp`` SDK's FastMCP), over stdio and streamable HTTP.

The chat model is scripted (no model service is reachable in tests); everything else is real:
the agent, its approval gate, the MCP SDK on both sides, the server processes and their notes
file, which is what a user would look at to know whether a tool ran.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage

from lunark.config import Settings
from lunark.graph import Agent
from lunark.mcp.tools import display_name, model_name
from lunark.models.scripted import ScriptedChatModel

SERVER = Path(__file__).parent / "mcp_notes_server.py"
ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def stdio_server(notes: Path, **extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(SERVER), "stdio"], "env": {"NOTES_FILE": str(notes)}, **extra}


def call(*calls: tuple[str, dict[str, Any], str]) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": n, "args": a, "id": i} for n, a, i in calls])


@asynccontextmanager
async def agent_with(tmp_path: Path, servers: dict[str, Any], replies: list[Any]) -> AsyncIterator[Agent]:
    settings = Settings.load(data_dir=tmp_path / "data", plugins=False, mcp={"servers": servers})
    model = ScriptedChatModel(replies=replies)
    async with Agent.open(settings, model=model, environ={"NOTES_TOKEN": "s3cret"}) as agent:
        yield agent


async def collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


def of_type(events: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def notes_in(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else []


def facts(request: dict[str, Any]) -> dict[str, str]:
    return {f["label"]: f["value"] for f in request["facts"]}


def test_names_are_namespaced_and_safe_for_chat_apis() -> None:
    assert model_name("notes", "add_note") == "notes__add_note"
    assert display_name("notes", "add_note") == "notes.add_note"
    assert model_name("web", "search.v2 beta") == "web__search_v2_beta"
    long = model_name("server", "x" * 100)
    assert len(long) == 64 and long != model_name("server", "x" * 99)


def test_server_names_cannot_hold_the_separator() -> None:
    from lunark.errors import ConfigError

    for bad in ("no__tes", "no.tes", "_notes", ""):
        with pytest.raises(ConfigError):
            Settings.load(mcp={"servers": {bad: {"command": "x"}}})
    with pytest.raises(ConfigError, match="command"):
        Settings.load(mcp={"servers": {"notes": {"args": ["x"]}}})


async def test_read_only_tool_runs_and_annotated_state_changing_tool_waits(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    replies = [
        call(("notes__list_notes", {}, "c1"), ("notes__add_note", {"text": "buy milk"}, "c2")),
        "Saved.",
    ]
    async with agent_with(tmp_path, {"notes": stdio_server(notes)}, replies) as agent:
        assert {"notes__list_notes", "notes__add_note", "notes__clear_notes"} <= set(agent.tools.names)
        events = await collect(agent.stream("t", "note: buy milk", user_address=ALICE))
        [listed] = of_type(events, "tool_result")
        assert listed["call_id"] == "c1" and listed["status"] == "success"
        assert listed["result"] == {"server": "notes", "tool": "list_notes", "result": {"notes": []}}
        [pending] = of_type(events, "pending_approval")
        [request] = pending["action_requests"]
        assert request["name"] == "notes__add_note" and request["args"] == {"text": "buy milk"}
        assert request["summary"].startswith("Run notes.add_note (Add a note) with text=buy milk")
        card = facts(request)
        assert card["Server"].startswith("notes (stdio: ")
        assert card["Tool"] == "notes.add_note — Add a note"
        assert card["What it does"] == "Write a note to the notebook."
        assert "destructive" in card["Hints"] and "closed world" in card["Hints"]
        assert card["· text"] == "buy milk"
        assert events[-1]["finish_reason"] == "awaiting_approval"
        assert notes_in(notes) == [], "nothing is written before the user decides"

        events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
        [result] = of_type(events, "tool_result")
        assert result["status"] == "success"
        assert result["result"] == {"server": "notes", "tool": "add_note", "result": "Saved note 1: buy milk"}
        assert notes_in(notes) == [{"text": "buy milk", "tag": "general"}]
        assert events[-1]["finish_reason"] == "stop"


async def test_tool_without_annotations_waits_and_reject_leaves_it_undone(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps([{"text": "keep me", "tag": "general"}]))
    replies = [call(("notes__clear_notes", {"confirm": True}, "c1")), "As you wish."]
    async with agent_with(tmp_path, {"notes": stdio_server(notes)}, replies) as agent:
        events = await collect(agent.stream("t", "delete all my notes", user_address=ALICE))
        [pending] = of_type(events, "pending_approval")
        assert facts(pending["action_requests"][0])["Hints"] == "none declared (treated as state-changing)"
        events = await collect(agent.resume(
            "t", pending["approval_id"], [{"type": "reject", "message": "not today"}]
        ))
        [result] = of_type(events, "tool_result")
        assert result["status"] == "rejected" and result["result"]["message"] == "not today"
    assert notes_in(notes) == [{"text": "keep me", "tag": "general"}]


async def test_edit_is_checked_against_the_input_schema_and_asked_again(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    replies = [call(("notes__add_note", {"text": "buy milk"}, "c1")), "Done.", call(
        ("notes__add_note", {"text": "buy tea"}, "c2")), "Not saved."]
    async with agent_with(tmp_path, {"notes": stdio_server(notes)}, replies) as agent:
        events = await collect(agent.stream("t", "note: buy milk", user_address=ALICE))
        [pending] = of_type(events, "pending_approval")
        edit = {"type": "edit", "edited_action": {"name": "notes__add_note",
                                                  "args": {"text": "buy oat milk", "tag": "shopping"}}}
        events = await collect(agent.resume("t", pending["approval_id"], [edit]))
        [again] = of_type(events, "pending_approval")
        assert again["approval_id"] != pending["approval_id"]
        assert again["action_requests"][0]["args"] == {"text": "buy oat milk", "tag": "shopping"}
        assert notes_in(notes) == [], "an edit is asked again, never run as it is"
        await collect(agent.resume("t", again["approval_id"], [{"type": "approve"}]))
        assert notes_in(notes) == [{"text": "buy oat milk", "tag": "shopping"}]

        # An edit the tool's schema refuses is an error for the model; nothing runs.
        events = await collect(agent.stream("t", "note: buy tea", user_address=ALICE))
        [pending] = of_type(events, "pending_approval")
        bad = {"type": "edit", "edited_action": {"name": "notes__add_note", "args": {"text": 5}}}
        events = await collect(agent.resume("t", pending["approval_id"], [bad]))
        [result] = of_type(events, "tool_result")
        assert result["status"] == "error" and result["error"]["code"] == "invalid_input"
        assert "text: 5 is not of type 'string'" in result["error"]["message"]
        assert not of_type(events, "pending_approval")
    assert notes_in(notes) == [{"text": "buy oat milk", "tag": "shopping"}]


async def test_configuration_overrides_the_annotations(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    server = stdio_server(notes, tools={"add_note": {"approval": "never"}, "crash": {"enabled": False}})
    replies = [call(("notes__add_note", {"text": "no need to ask"}, "c1")), "Saved."]
    async with agent_with(tmp_path, {"notes": server}, replies) as agent:
        assert "notes__crash" not in agent.tools.names
        events = await collect(agent.stream("t", "note it", user_address=ALICE))
        assert not of_type(events, "pending_approval")
        assert of_type(events, "tool_result")[0]["status"] == "success"
    assert notes_in(notes) == [{"text": "no need to ask", "tag": "general"}]

    strict = stdio_server(notes, approval="always")
    async with agent_with(tmp_path / "b", {"notes": strict}, [call(("notes__list_notes", {}, "c1"))]) as agent:
        events = await collect(agent.stream("t", "list notes", user_address=ALICE))
        assert of_type(events, "pending_approval"), "a read-only tool waits when the server is not trusted"


async def test_a_crashed_server_is_a_clear_tool_error_and_comes_back(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    replies = [call(("notes__crash", {}, "c1")), "It crashed.", call(("notes__list_notes", {}, "c2")), "Empty."]
    async with agent_with(tmp_path, {"notes": stdio_server(notes)}, replies) as agent:
        events = await collect(agent.stream("t", "crash", user_address=ALICE))
        [result] = of_type(events, "tool_result")
        assert result["status"] == "error" and result["error"]["code"] == "tool_error"
        assert "MCP server 'notes' closed the connection while running notes.crash" in result["error"]["message"]
        assert events[-1]["finish_reason"] == "stop", "the turn goes on: the model hears of the failure"
        events = await collect(agent.stream("t", "list notes", user_address=ALICE))
        assert of_type(events, "tool_result")[0]["status"] == "success", "the server was started again"


async def test_a_slow_tool_fails_within_its_timeout(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    replies = [call(("notes__sleep", {"seconds": 60}, "c1")), "Too slow."]
    async with agent_with(tmp_path, {"notes": stdio_server(notes, timeout=1)}, replies) as agent:
        events = await collect(agent.stream("t", "sleep", user_address=ALICE))
    [result] = of_type(events, "tool_result")
    assert result["error"]["code"] == "tool_error"
    assert result["error"]["message"] == "notes.sleep did not answer within 1 s (MCP server 'notes')."
    assert events[-1]["finish_reason"] == "stop"


async def test_an_error_result_is_a_tool_error_the_model_reads(tmp_path: Path) -> None:
    model_replies = [call(("notes__fail", {"why": "no ink"}, "c1")), "Sorry."]
    async with agent_with(tmp_path, {"notes": stdio_server(tmp_path / "n.json")}, model_replies) as agent:
        events = await collect(agent.stream("t", "fail", user_address=ALICE))
        [result] = of_type(events, "tool_result")
        assert result["status"] == "error" and result["error"]["code"] == "tool_error"
        assert "notes.fail reported an error" in result["error"]["message"]
        assert "cannot do that: no ink" in result["error"]["message"]
        [message] = [m for m in await agent.messages("t") if isinstance(m, ToolMessage)]
        assert "cannot do that: no ink" in str(message.content)


async def test_a_server_that_is_down_leaves_the_agent_working(tmp_path: Path) -> None:
    servers = {
        "notes": stdio_server(tmp_path / "n.json"),
        "gone": {"command": str(tmp_path / "no-such-server"), "connect_timeout": 2},
        "nohost": {"url": f"http://127.0.0.1:{free_port()}/mcp", "connect_timeout": 2},
    }
    async with agent_with(tmp_path, servers, [call(("notes__list_notes", {}, "c1")), "Empty."]) as agent:
        assert not [n for n in agent.tools.names if n.startswith(("gone__", "nohost__"))]
        events = await collect(agent.stream("t", "list", user_address=ALICE))
        assert of_type(events, "tool_result")[0]["status"] == "success"


async def test_two_servers_with_the_same_tool_do_not_shadow_each_other(tmp_path: Path) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    servers = {"notes": stdio_server(one), "work": stdio_server(two, approval="never")}
    replies = [call(("work__add_note", {"text": "standup at 10"}, "c1")), "Saved."]
    async with agent_with(tmp_path, servers, replies) as agent:
        assert {"notes__add_note", "work__add_note"} <= set(agent.tools.names)
        events = await collect(agent.stream("t", "work note", user_address=ALICE))
        assert of_type(events, "tool_result")[0]["result"]["result"] == "Saved note 1: standup at 10"
    assert notes_in(two) == [{"text": "standup at 10", "tag": "general"}] and notes_in(one) == []


async def test_the_tool_list_is_refreshed_when_the_server_says_it_changed(tmp_path: Path) -> None:
    replies = [call(("notes__learn_tool", {}, "c1")), "Learned.", call(("notes__shout", {"text": "hi"}, "c2")), "HI"]
    async with agent_with(tmp_path, {"notes": stdio_server(tmp_path / "n.json")}, replies) as agent:
        assert "notes__shout" not in agent.tools.names
        await collect(agent.stream("t", "learn", user_address=ALICE))
        await wait_for(lambda: "notes__shout" in agent.tools.names)
        bound = [t["function"]["name"] for t in agent._model.kwargs["tools"]]  # type: ignore[attr-defined]
        assert "notes__shout" in bound, "the model's next call sees the new tool"
        events = await collect(agent.stream("t", "shout hi", user_address=ALICE))
        assert of_type(events, "tool_result")[0]["result"]["result"] == "HI"


# -- streamable HTTP ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The notes server over streamable HTTP, as its own process."""
    notes = tmp_path / "http-notes.json"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "http", str(port)], env={"NOTES_FILE": str(notes), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server died"
                assert time.monotonic() < deadline, "the HTTP MCP server did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp", notes
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


async def test_over_streamable_http(tmp_path: Path, http_server: tuple[str, Path]) -> None:
    url, notes = http_server
    server = {"url": url, "headers": {"X-Notes-Token": "NOTES_TOKEN"}}
    replies = [call(("web__header", {"name": "X-Notes-Token"}, "c1"), ("web__add_note", {"text": "over http"}, "c2")),
               "Saved."]
    async with agent_with(tmp_path, {"web": server}, replies) as agent:
        events = await collect(agent.stream("t", "note over http", user_address=ALICE))
        [header] = of_type(events, "tool_result")
        assert header["result"]["result"] == "s3cret", "the header's value came from the environment"
        [pending] = of_type(events, "pending_approval")
        assert facts(pending["action_requests"][0])["Server"] == f"web (http: {url})"
        assert notes_in(notes) == []
        await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
    assert notes_in(notes) == [{"text": "over http", "tag": "general"}]


def test_a_header_variable_that_is_not_set_is_a_configuration_error(tmp_path: Path) -> None:
    from lunark.errors import ConfigError

    async def main() -> None:
        server = {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "MISSING_VAR"}}
        async with agent_with(tmp_path, {"web": server}, []):
            pass

    with pytest.raises(ConfigError, match="MISSING_VAR is not set"):
        asyncio.run(main())


async def wait_for(condition: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def test_the_offline_planner_calls_an_mcp_tool_by_name_and_it_waits_for_approval(tmp_path: Path) -> None:
    # What the demo can do without a tool-calling model: "call server.tool {json}".
    notes = tmp_path / "notes.json"
    settings = Settings.load(data_dir=tmp_path / "data", plugins=False, mcp={"servers": {"notes": stdio_server(notes)}})
    async with Agent.open(settings, environ={}) as agent:  # the offline planner
        events = await collect(agent.stream("t", 'call notes.add_note {"text": "buy milk, eggs"}',
                                            user_address=ALICE))
        [pending] = of_type(events, "pending_approval")
        [request] = pending["action_requests"]
        assert request["name"] == "notes__add_note" and request["args"] == {"text": "buy milk, eggs"}
        assert notes_in(notes) == [], "nothing is written before the user decides"
        events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
        assert of_type(events, "tool_result")[0]["status"] == "success"
        assert notes_in(notes) == [{"text": "buy milk, eggs", "tag": "general"}]
        events = await collect(agent.stream("t", "call notes.add_note", user_address=ALICE))
        answer = "".join(e["text"] for e in of_type(events, "token"))
        assert "I need text" in answer and not of_type(events, "pending_approval"), answer
