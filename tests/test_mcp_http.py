"""``lunark mcp --http`` end to end, as a user runs it: the console script started with the line
docs/plugins.md shows, in front of a real ``lunark serve`` process on a real Anvil that has an
entry-point plugin installed (``tests/plugins/lunark-notes-plugin``) and an MCP server configured
(``tests/mcp_notes_server.py`` over stdio). The host is the MCP SDK's own client over streamable
HTTP; the user is a Socket.IO client (the SDK) whose wallet signs what the approval shows.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from chat_process import LUNARK
from conftest import sign_in
from mcp import ClientSession
from mcp_host import http_host, lunark_mcp_http
from test_mcp_server import next_approval, start_call, the_user
from test_plugins import notes_target as plugin_site  # the fixture: the plugin, pip-installed
from wallet import native_balance, wallet_send

from lunark.chain.anvil import Anvil, DevAccount

ROOT = Path(__file__).resolve().parent.parent
MCP_SERVER = Path(__file__).parent / "mcp_notes_server.py"


def documented_http_line() -> list[str]:
    """The ``lunark mcp ... --http`` line of docs/plugins.md, as the console script runs it."""
    lines = [line.strip() for line in (ROOT / "docs" / "plugins.md").read_text().splitlines()
             if line.strip().startswith("lunark mcp ") and "--http" in line]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    return [str(LUNARK), *words[1:]]


notes_target = plugin_site


@dataclass
class Stack:
    server: Any
    token: str
    argv: list[str]
    notes: Path

    @asynccontextmanager
    async def host(self) -> AsyncIterator[ClientSession]:
        """The documented line running, and an MCP host connected to it (both in the test's task:
        the MCP SDK's cancel scopes must be left in the task that entered them)."""
        async with lunark_mcp_http(self.argv, self.token) as endpoint:
            await answers_without_redirect(endpoint, self.token)
            async with http_host(endpoint, self.token) as host:
                yield host


async def answers_without_redirect(endpoint: str, token: str) -> None:
    """The printed endpoint answers itself: no 307 to ``/mcp/`` that a host must follow."""
    assert endpoint.endswith("/mcp"), endpoint
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    async with aiohttp.ClientSession() as http, http.post(
        endpoint, json=ping, headers=headers, allow_redirects=False
    ) as response:
        assert response.status not in (301, 302, 307, 308), (response.status, response.headers.get("Location"))


@pytest.fixture
async def stack(serve: Any, alice: DevAccount, notes_target: Path, tmp_path: Path) -> Stack:
    notes = tmp_path / "notes.json"
    server = await serve(
        env={"PYTHONPATH": str(notes_target)},
        plugins=True,
        mcp={"servers": {"notes": {
            "command": sys.executable, "args": [str(MCP_SERVER), "stdio"], "env": {"NOTES_FILE": str(notes)},
            # The server calls `header` read-only; this Lunark's user wants to be asked.
            "tools": {"header": {"approval": "always"}},
        }}},
    )
    token = await sign_in(server, alice)
    argv = [a.replace("http://127.0.0.1:8080", server.url) for a in documented_http_line()]
    return Stack(server, token, argv, notes)


async def test_over_http_a_transfer_waits_for_the_users_wallet_and_comes_back_confirmed(
    stack: Stack, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    async with stack.host() as host:
        await a_transfer(stack, host, anvil, alice, bob)


async def a_transfer(stack: Stack, host: ClientSession, anvil: Anvil, alice: DevAccount, bob: DevAccount) -> None:
    names = {tool.name for tool in (await host.list_tools()).tools}
    assert {"get_balance", "transfer", "switch_network", "save_note", "count_notes",
            "notes__add_note", "notes__list_notes"} <= names, names
    # names a host can forward to OpenAI's or Anthropic's API as they are
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", name) for name in names), names
    balance = await host.call_tool("get_balance", {})
    assert not balance.isError and balance.structuredContent is not None
    assert balance.structuredContent["symbol"] == "ETH" and int(balance.structuredContent["raw"]) > 0

    before = native_balance(anvil, bob.address)
    async with the_user(stack.server.url, stack.token) as chat:
        task, said = await start_call(host, "transfer", {"to": bob.address, "amount": "0.5"})
        approval = await next_approval(chat)
        [request] = approval.action_requests
        assert request.name == "transfer" and request.tx is not None
        assert not task.done() and native_balance(anvil, bob.address) == before, "nothing moves before she decides"
        tx_hash = wallet_send(anvil, request.tx.to_wire(), alice.private_key)
        await chat.approve(approval.approval_id, tx_hash=tx_hash)
        result = await asyncio.wait_for(task, 60)
    assert not result.isError, result.content
    outcome = result.structuredContent
    assert outcome is not None and outcome["status"] == "confirmed" and outcome["tx_hash"] == tx_hash
    assert isinstance(outcome["block_number"], int)
    assert native_balance(anvil, bob.address) == before + 5 * 10**17
    assert "Waiting for the user's approval in Lunark." in said


async def test_plugin_and_mcp_tools_carry_their_approval_class_and_state_changing_ones_wait(
    stack: Stack,
) -> None:
    async with stack.host() as host:
        await plugin_and_mcp_tools(stack, host)


async def plugin_and_mcp_tools(stack: Stack, host: ClientSession) -> None:
    tools = {tool.name: tool for tool in (await host.list_tools()).tools}

    def hints(name: str) -> dict[str, Any]:
        annotations = tools[name].annotations
        assert annotations is not None, name
        return annotations.model_dump(exclude_none=True, exclude={"title"})

    # Read-only: runs at once in this Lunark, and says so.
    assert hints("count_notes") == {"readOnlyHint": True, "openWorldHint": True}
    assert hints("notes__list_notes") == {"readOnlyHint": True, "openWorldHint": True}
    # Waits for approval: never read-only; an MCP tool's own hints carried as its server declared them.
    assert hints("notes__add_note") == {
        "readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": False,
    }
    assert hints("notes__clear_notes") == {  # no annotations at all: fail closed, MCP's defaults
        "readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": True,
    }
    assert hints("notes__header")["readOnlyHint"] is False, "the configuration makes it wait: not read-only"
    assert hints("save_note") == {
        "readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": True,
    }
    assert tools["notes__add_note"].title == "Add a note (after the user's approval)"
    assert tools["notes__add_note"].inputSchema["required"] == ["text"]
    assert "Waits for the user's approval" in (tools["save_note"].description or "")

    count = await host.call_tool("count_notes", {})
    assert count.structuredContent == {"count": 0}
    listed = await host.call_tool("notes__list_notes", {})
    assert listed.structuredContent == {"server": "notes", "tool": "list_notes", "result": {"notes": []}}

    async with the_user(stack.server.url, stack.token) as chat:
        task, said = await start_call(host, "notes__add_note", {"text": "buy milk"})
        approval = await next_approval(chat)
        [request] = approval.action_requests
        facts = {f.label: f.value for f in request.facts}
        assert request.name == "notes__add_note" and request.tx is None
        assert facts["Tool"] == "notes.add_note — Add a note" and facts["· text"] == "buy milk"
        assert not stack.notes.exists(), "nothing is written before the user decides"
        await chat.approve(approval.approval_id)
        added = await asyncio.wait_for(task, 60)
        assert not added.isError, added.content
        assert added.structuredContent == {"server": "notes", "tool": "add_note", "result": "Saved note 1: buy milk"}
        assert json.loads(stack.notes.read_text()) == [{"text": "buy milk", "tag": "general"}]
        assert "Waiting for the user's approval in Lunark." in said

        task, _ = await start_call(host, "save_note", {"text": "a secret"})
        approval = await next_approval(chat)
        assert [r.name for r in approval.action_requests] == ["save_note"]
        await chat.reject(approval.approval_id, message="not that")
        saved = await asyncio.wait_for(task, 60)
    assert saved.structuredContent == {
        "status": "rejected", "reason": "not that", "message": "The user rejected it: not that",
    }
    count = await host.call_tool("count_notes", {})
    assert count.structuredContent == {"count": 0}, "a rejected plugin call ran nothing"

    # The MCP server learns a tool and says its list changed: the host sees it at its next tools/list.
    learned = await host.call_tool("notes__learn_tool", {})
    assert not learned.isError, learned.content
    for _ in range(100):
        names = {tool.name for tool in (await host.list_tools()).tools}
        if "notes__shout" in names:
            break
        await asyncio.sleep(0.1)
    assert "notes__shout" in names
    shout = await host.call_tool("notes__shout", {"text": "hi"})
    assert shout.structuredContent == {"server": "notes", "tool": "shout", "result": "HI"}
    unknown = await host.call_tool("notes__nothing", {})
    assert unknown.isError and "no tool named 'notes__nothing'" in str(unknown.content[0])
