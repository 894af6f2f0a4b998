"""An MCP tool's answer as the tool card and the model see it, and a failure's reason in words."""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import ToolMessage

from lunark.errors import ToolFailed
from lunark.mcp.tools.tool import display_name

__all__ = ["reason", "tool_result"]


def tool_result(server: str, tool: str, message: Any) -> dict[str, Any]:
    """An MCP tool's answer as the tool card and the model see it. Text that is JSON is JSON;
    structured content is preferred; an error result raises ``ToolFailed`` with its text."""
    if not isinstance(message, ToolMessage):
        return {"server": server, "tool": tool, "result": message}
    blocks = message.content if isinstance(message.content, list) else [message.content]
    texts = [b if isinstance(b, str) else str(b.get("text", "")) for b in blocks
             if isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text")]
    others = [
        {k: v for k, v in b.items() if k in ("type", "mime_type", "url")}
        for b in blocks if isinstance(b, dict) and b.get("type") != "text"
    ]
    text = "\n".join(texts)
    if message.status == "error":
        raise ToolFailed(
            f"{display_name(server, tool)} reported an error: {text or 'no details'}", server=server, tool=tool
        )
    artifact = message.artifact if isinstance(message.artifact, dict) else {}
    structured = artifact.get("structured_content")
    value: Any
    if isinstance(structured, dict):
        # FastMCP wraps a result that is not an object as {"result": ...}.
        value = structured["result"] if set(structured) == {"result"} else structured
    else:
        try:
            value = json.loads(text) if text else None
        except ValueError:
            value = text
    out: dict[str, Any] = {"server": server, "tool": tool, "result": value}
    if others:
        out["content"] = others  # images, files: named, not inlined
    return out


def reason(exc: BaseException) -> str:
    """The innermost useful message of an exception (anyio wraps failures in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    if isinstance(exc, FileNotFoundError):
        return f"the command was not found ({exc.filename or text})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
