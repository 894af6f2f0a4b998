"""A small MCP server written with the ``mcp`` SDK's FastMCP, for the MCP plugin tests.

    python tests/mcp_notes_server.py stdio
    python tests/mcp_notes_server.py http PORT

Notes live in the JSON file named by ``NOTES_FILE``, so a test checks what a user would: whether
a note was written, not whether a function was called. Its tools:

- ``list_notes``: read-only (``readOnlyHint: true``);
- ``add_note``: state-changing, annotated (``destructiveHint``, ``openWorldHint``, a title);
- ``clear_notes``: state-changing, no annotations at all;
- ``crash``: read-only, but the process dies while answering;
- ``sleep``: read-only, answers after ``seconds``;
- ``fail``: read-only, reports an error result (``isError``);
- ``learn_tool``: read-only; adds the tool ``shout`` and tells the client the list changed;
- ``header``: read-only; the value of an HTTP header of the request (what the client sent).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ToolAnnotations

NOTES = Path(os.environ.get("NOTES_FILE", "notes.json"))

mcp = FastMCP("notes", log_level="WARNING")


def _load() -> list[dict[str, Any]]:
    return json.loads(NOTES.read_text()) if NOTES.exists() else []


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def list_notes() -> dict[str, Any]:
    """List every note."""
    return {"notes": _load()}


@mcp.tool(
    title="Add a note",
    annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False),
)
def add_note(text: str, tag: str = "general") -> str:
    """Write a note to the notebook."""
    notes = _load()
    notes.append({"text": text, "tag": tag})
    NOTES.write_text(json.dumps(notes))
    return f"Saved note {len(notes)}: {text}"


@mcp.tool()
def clear_notes(confirm: bool) -> str:
    """Delete every note."""
    NOTES.write_text("[]")
    return "All notes deleted."


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def crash() -> str:
    """Die in the middle of a call (a server that crashes)."""
    os._exit(3)


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def sleep(seconds: float) -> str:
    """Answer after a while (a slow server)."""
    await asyncio.sleep(seconds)
    return "awake"


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def fail(why: str) -> str:
    """Report an error."""
    raise ValueError(f"cannot do that: {why}")


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def header(name: str, ctx: Context[Any, Any, Any]) -> str:
    """The value of an HTTP request header (streamable HTTP only)."""
    request = ctx.request_context.request
    return str(request.headers.get(name, "")) if request is not None else ""


def shout(text: str) -> str:
    """Say it louder."""
    return text.upper()


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def learn_tool(ctx: Context[Any, Any, Any]) -> str:
    """Add the tool `shout`, and tell the client its tool list changed."""
    mcp.add_tool(shout, annotations=ToolAnnotations(readOnlyHint=True))
    await ctx.session.send_tool_list_changed()
    return "learned shout"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        mcp.settings.port = int(sys.argv[2])
        mcp.run(transport="streamable-http")
    else:
        mcp.run(transport="stdio")
