"""Plugin tools, installed for real with pip and found through the ``lunark.tools`` entry point.

``tests/plugins/lunark-notes-plugin`` is a tiny setuptools project with two
``FunctionTool``s. It is installed with ``pip --target`` into a temporary
directory (no network: ``--no-index --no-build-isolation``, so the venv's own
setuptools builds it), and that directory is put on ``sys.path`` only for the
tests that use it.
"""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from lunark.config import Settings
from lunark.errors import ConfigError
from lunark.graph import Agent
from lunark.models.scripted import ScriptedChatModel
from lunark.networks import NetworkRegistry
from lunark.tools.registry import PLUGIN_GROUP, ToolSet, default_tools, load_plugins

PLUGIN_SOURCE = Path(__file__).parent / "plugins" / "lunark-notes-plugin"
ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


@pytest.fixture(scope="module")
def notes_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The notes plugin, pip-installed into a fresh directory (once per module)."""
    work = tmp_path_factory.mktemp("notes-plugin")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = shutil.copytree(PLUGIN_SOURCE, work / "src")
    target = work / "site"
    proc = subprocess.run(
        [
            sys.executable, "-m", "pip", "install",
            "--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check",
            "--target", str(target), str(source),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    assert list(target.glob("lunark_notes_plugin-*.dist-info")), "pip installed no distribution metadata"
    return target


@contextmanager
def on_sys_path(path: Path, *modules: str) -> Iterator[None]:
    """Make ``path`` importable (and its distributions visible) only inside the block."""
    saved = list(sys.path)
    sys.path.insert(0, str(path))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path[:] = saved
        for name in [m for m in sys.modules if m.split(".")[0] in modules]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.fixture
def notes_installed(notes_target: Path) -> Iterator[None]:
    with on_sys_path(notes_target, "lunark_notes"):
        yield


@asynccontextmanager
async def make_agent(db: Path, model: ScriptedChatModel, tools: ToolSet) -> AsyncIterator[Agent]:
    async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
        agent = Agent(model=model, registry=NetworkRegistry.default(), checkpointer=saver, tools=tools)
        try:
            yield agent
        finally:
            await agent.aclose()


async def collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event async for event in events]


def of_type(events: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


def call(name: str, args: dict[str, Any], call_id: str) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}])


def test_entry_point_is_visible_only_while_installed(notes_target: Path) -> None:
    assert "notes" not in {ep.name for ep in entry_points(group=PLUGIN_GROUP)}
    with on_sys_path(notes_target, "lunark_notes"):
        [ep] = [ep for ep in entry_points(group=PLUGIN_GROUP) if ep.name == "notes"]
        assert ep.value == "lunark_notes:tools"
        assert ep.dist is not None and ep.dist.metadata["Name"] == "lunark-notes-plugin"
    assert "notes" not in {ep.name for ep in entry_points(group=PLUGIN_GROUP)}
    assert "lunark_notes" not in sys.modules


def test_load_plugins_returns_both_tools(notes_installed: None) -> None:
    tools = load_plugins()
    assert sorted(t.name for t in tools) == ["count_notes", "save_note"]
    by_name = {t.name: t for t in tools}
    assert by_name["save_note"].approval == "always"
    assert by_name["count_notes"].approval == "never"
    schemas = {s["function"]["name"]: s for s in ToolSet([*default_tools(), *tools]).schemas()}
    assert schemas["save_note"]["function"]["parameters"]["required"] == ["text"]
    assert "note to save" in schemas["save_note"]["function"]["parameters"]["properties"]["text"]["description"]


async def test_state_changing_plugin_tool_waits_for_approval(notes_installed: None, tmp_path: Path) -> None:
    model = ScriptedChatModel(replies=[call("save_note", {"text": "buy milk"}, "n1"), "Saved it."])
    async with make_agent(tmp_path / "cp.sqlite", model, ToolSet([*default_tools(), *load_plugins()])) as agent:
        events = await collect(agent.stream("t", "remember to buy milk", user_address=ALICE))
        [pending] = of_type(events, "pending_approval")
        assert events[-1]["finish_reason"] == "awaiting_approval"
        [request] = pending["action_requests"]
        assert request["name"] == "save_note" and request["call_id"] == "n1"
        assert request["summary"] == "Save the note 'buy milk'"
        assert request["args"] == {"text": "buy milk"} and request["tx"] is None
        notes = sys.modules["lunark_notes"].NOTES
        assert notes == [], "nothing is saved before approval"

        events = await collect(agent.resume("t", pending["approval_id"], [{"type": "approve"}]))
        [result] = of_type(events, "tool_result")
        assert result["call_id"] == "n1" and result["status"] == "success"
        assert result["result"] == {"saved": "buy milk"}
        assert notes == ["buy milk"]
        assert "".join(e["text"] for e in of_type(events, "token")) == "Saved it."
        [message] = [m for m in model.calls[-1] if isinstance(m, ToolMessage)]
        assert json.loads(str(message.content)) == {"saved": "buy milk"}


async def test_read_only_plugin_tool_runs_without_approval(notes_installed: None, tmp_path: Path) -> None:
    model = ScriptedChatModel(replies=[call("count_notes", {}, "c1"), "You have no notes."])
    async with make_agent(tmp_path / "cp.sqlite", model, ToolSet([*default_tools(), *load_plugins()])) as agent:
        events = await collect(agent.stream("t", "how many notes?", user_address=ALICE))
    assert not of_type(events, "pending_approval")
    assert [e["status"] for e in of_type(events, "tool_call")] == ["running"]
    [result] = of_type(events, "tool_result")
    assert result["status"] == "success" and result["result"] == {"count": 0}
    assert events[-1]["finish_reason"] == "stop"


async def test_approval_override_runs_without_asking(notes_installed: None, tmp_path: Path) -> None:
    model = ScriptedChatModel(replies=[call("save_note", {"text": "call mum"}, "n1"), "Saved."])
    tools = ToolSet([*default_tools(), *load_plugins()], approvals={"save_note": "never"})
    async with make_agent(tmp_path / "cp.sqlite", model, tools) as agent:
        events = await collect(agent.stream("t", "remember to call mum", user_address=ALICE))
    assert not of_type(events, "pending_approval")
    [result] = of_type(events, "tool_result")
    assert result["status"] == "success" and result["result"] == {"saved": "call mum"}
    assert sys.modules["lunark_notes"].NOTES == ["call mum"]


async def test_agent_open_loads_plugins_and_configured_approval_rules(
    notes_installed: None, tmp_path: Path
) -> None:
    settings = Settings.load(data_dir=tmp_path, approvals={"rules": {"save_note": "never"}})
    model = ScriptedChatModel(replies=[call("save_note", {"text": "water plants"}, "n1"), "Saved."])
    async with Agent.open(settings, model=model, environ={}) as agent:
        assert {"save_note", "count_notes"} <= set(agent.tools.names)
        events = await collect(agent.stream("t", "remember to water the plants", user_address=ALICE))
    assert not of_type(events, "pending_approval")
    assert of_type(events, "tool_result")[0]["result"] == {"saved": "water plants"}

    off = Settings.load(data_dir=tmp_path / "off", plugins=False)
    async with Agent.open(off, model=ScriptedChatModel(), environ={}) as agent:
        assert agent.tools.names == ["get_balance", "transfer", "switch_network"]


def write_dist(site: Path, name: str, entry_point: str) -> None:
    """A distribution as an installer leaves it: just its metadata, with one ``lunark.tools`` entry point."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{PLUGIN_GROUP}]\n{entry_point}\n")


def test_plugin_pointing_to_a_missing_module_names_itself(tmp_path: Path) -> None:
    write_dist(tmp_path, "lunark-broken-plugin", "broken = lunark_missing_module:tools")
    with on_sys_path(tmp_path), pytest.raises(ConfigError) as caught:
        load_plugins()
    assert caught.value.details["plugin"] == "broken"
    assert "'broken'" in caught.value.message and "lunark_missing_module" in caught.value.message


def test_plugin_factory_that_fails_names_itself(tmp_path: Path) -> None:
    (tmp_path / "lunark_bad_factory.py").write_text(
        "def tools():\n    raise RuntimeError('no notes database configured')\n"
    )
    write_dist(tmp_path, "lunark-bad-factory", "badfactory = lunark_bad_factory:tools")
    with on_sys_path(tmp_path, "lunark_bad_factory"), pytest.raises(ConfigError) as caught:
        load_plugins()
    assert caught.value.details["plugin"] == "badfactory"
    assert "no notes database configured" in caught.value.message


def test_plugin_giving_something_else_than_tools_names_itself(tmp_path: Path) -> None:
    write_dist(tmp_path, "lunark-not-a-tool", "notatool = json:decoder")
    with on_sys_path(tmp_path), pytest.raises(ConfigError) as caught:
        load_plugins()
    assert caught.value.details["plugin"] == "notatool"
    assert "not a Lunark tool" in caught.value.message
