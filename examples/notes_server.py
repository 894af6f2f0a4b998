"""A FastMCP server with a read-only tool and a state-changing one, for docs/plugins.md.

    python examples/notes_server.py          # speaks MCP over stdio: Lunark starts it

Its notes are kept in the JSON file ``NOTES_FILE`` names (default: ``notes.json`` in the directory
it runs in).
"""

import json
import os
from pathlib import Path

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

mcp = FastMCP("notes", log_level="WARNING")  # its requests are not news in Lunark's log
NOTES_FILE = Path(os.environ.get("NOTES_FILE", "notes.json"))


def _notes() -> list[str]:
    return list(json.loads(NOTES_FILE.read_text())) if NOTES_FILE.exists() else []


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def list_notes() -> list[str]:
    """List every note."""
    return _notes()


@mcp.tool(
    title="Add a note",
    annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False, openWorldHint=False),
)
def add_note(text: str) -> str:
    """Write a note."""
    NOTES_FILE.write_text(json.dumps([*_notes(), text]))
    return f"Saved: {text}"


if __name__ == "__main__":
    mcp.run(transport="stdio")
