"""What the MCP host reads of Lunark: each tool's annotations and description, the progress
messages of a waiting call, and the call's final answer (``CallToolResult``)."""

from __future__ import annotations

import json
from typing import Any

import mcp.types as types
from pydantic import BaseModel

from lunark.client.sdk import preview_lines
from lunark.protocol import ActionRequest, PendingApproval, ToolInfo, ToolResult, TxUpdate

__all__ = [
    "ANNOTATIONS", "annotations_for", "code_of", "description", "exposed_name", "outcome", "preview_text",
    "tool_error", "tx_text", "warnings_text",
]

ANNOTATIONS: dict[str, types.ToolAnnotations] = {
    "get_balance": types.ToolAnnotations(
        title="Read a balance", readOnlyHint=True, openWorldHint=True,
    ),
    "transfer": types.ToolAnnotations(
        title="Send funds (after the user's approval)", readOnlyHint=False, destructiveHint=True,
        idempotentHint=False, openWorldHint=True,
    ),
    "switch_network": types.ToolAnnotations(
        title="Switch network (after the user's approval)", readOnlyHint=False, destructiveHint=False,
        idempotentHint=True, openWorldHint=False,
    ),
}
"""What each built-in tool does, as MCP annotations: only ``get_balance`` is read-only."""


def exposed_name(info: ToolInfo) -> str:
    """The name the MCP host sees: the agent's own (``server__tool`` for an MCP server's tool), which
    every host can forward to a model API (the card still reads ``server.tool``)."""
    return info.name


def annotations_for(info: ToolInfo) -> types.ToolAnnotations:
    """The MCP annotations of a tool as ``lunark mcp`` serves it.

    The built-in tools have their own (``ANNOTATIONS``). For any other, ``readOnlyHint`` follows its
    approval class in this Lunark: true only when a call runs without the user's decision
    (``approval == "never"``) and its MCP server did not declare it state-changing; everything that
    waits for approval is not read-only (fail closed). An MCP tool's other hints
    (``destructiveHint``, ``idempotentHint``, ``openWorldHint``) are carried as its server declared
    them; a plugin tool that is not read-only is marked destructive, as MCP assumes."""
    if info.source == "builtin" and info.name in ANNOTATIONS:
        return ANNOTATIONS[info.name]
    hints = info.hints
    read_only = info.approval == "never" and hints.get("readOnlyHint") is not False
    waits = "" if read_only else " (after the user's approval)"
    title = f"{info.title or info.display_name}{waits}"
    if read_only:
        return types.ToolAnnotations(title=title, readOnlyHint=True, openWorldHint=hints.get("openWorldHint", True))
    return types.ToolAnnotations(
        title=title, readOnlyHint=False, destructiveHint=hints.get("destructiveHint", True),
        idempotentHint=hints.get("idempotentHint", False), openWorldHint=hints.get("openWorldHint", True),
    )


def description(info: ToolInfo) -> str:
    if info.approval == "never":
        return info.description
    return f"{info.description} Waits for the user's approval in Lunark and returns the outcome."


def preview_text(event: PendingApproval, call_id: str, network: dict[str, Any]) -> str:
    """The call's balance changes, for the host to relay while the user decides (``warnings_text``
    says its warnings)."""
    request = next(r for r in event.action_requests if r.call_id == call_id)
    native = str(network.get("symbol") or "ETH"), int(network.get("decimals", 18))
    said = preview_lines(request, symbol=native[0], decimals=native[1])
    return (" " + "; ".join(said) + ".") if said else ""


def code_of(event: ToolResult) -> str | None:
    error = event.error
    code = error.get("code") if isinstance(error, dict) else getattr(error, "code", None)
    return str(code) if code is not None else None


def warnings_text(request: ActionRequest) -> str:
    """The card's warnings in a progress message (the host's model and user see what Lunark warned of);
    empty when there are none."""
    if not request.warnings:
        return ""
    said = "; ".join(f"{w.severity.upper()} {w.code}: {w.message}" for w in request.warnings)
    danger = any(w.severity == "danger" for w in request.warnings)
    tail = " The user must acknowledge the danger warnings in Lunark to approve it." if danger else ""
    return f" Lunark warns: {said}.{tail}"


def tx_text(event: TxUpdate) -> str:
    status = str(event.status)
    text = {"submitted": "Submitted", "mined": "Mined", "confirmed": "Confirmed"}.get(status, status.capitalize())
    if event.tx_hash:
        text += f" {event.tx_hash}"
    if event.block_number is not None:
        text += f" in block {event.block_number}"
    if event.confirmations:
        text += f" ({event.confirmations} confirmation{'s' if event.confirmations != 1 else ''})"
    if event.reason:
        text += f": {event.reason}"
    return text + "."


def outcome(result: ToolResult, expired: bool) -> types.CallToolResult:
    """The call's final answer for the host: the tool's result (a transfer's settlement outcome),
    ``rejected`` with the reason, ``expired``, or set aside (``superseded``, ``postponed``).

    ``isError`` is false only for what the call was asked to do and did (a transfer: confirmed on
    chain) and for a call set aside, which is no failure: nothing was done, and it may be asked
    again. A rejection, an expiry and a settlement that ended any other way (refused before
    signing, mismatch, failed, dropped) are errors, with the reason."""
    body: dict[str, Any]
    reason = result.result.get("message") if isinstance(result.result, dict) else None
    if result.status == "rejected":
        body = {"status": "expired", "message": "The approval expired; nothing was done."} if expired else {
            "status": "rejected", "reason": reason, "message": f"The user rejected it{f': {reason}' if reason else '.'}"
        }
        return _structured(body, error=True)
    if result.status == "superseded":
        body = {"status": "superseded", "reason": reason,
                "message": "Set aside: the user sent a new message instead of deciding; nothing was done."}
        return _structured(body, error=False)
    if result.status == "postponed":
        body = {"status": "postponed", "reason": reason,
                "message": "Postponed until a network switch is decided; nothing was done. Call it again then."}
        return _structured(body, error=False)
    if isinstance(result.result, dict):
        return _structured(result.result, error=result.status == "error")
    if result.status == "error":
        error = result.error.to_wire() if isinstance(result.error, BaseModel) else dict(result.error or {})
        return tool_error(str(error.get("message", "The tool failed.")), error)
    return _structured({"status": "success", "result": result.result}, error=False)


def _structured(body: dict[str, Any], *, error: bool) -> types.CallToolResult:
    text = json.dumps(body, default=str)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)], structuredContent=body, isError=error
    )


def tool_error(message: str, details: dict[str, Any] | None = None) -> types.CallToolResult:
    body = {"status": "error", "message": message, **({"error": details} if details else {})}
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], structuredContent=body, isError=True
    )
