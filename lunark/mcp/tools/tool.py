"""One MCP tool as a Lunark ``Tool``: its names (``server__tool`` for the model, ``server.tool``
for people), its arguments checked against its JSON Schema, and the approval card it proposes."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema
import mcp.types as mcp_types
from jsonschema.validators import validator_for
from langchain_core.tools import BaseTool
from pydantic import BaseModel, ConfigDict, model_validator

from lunark.errors import ConfigError
from lunark.tools.base import ApprovalRule, Decision, Proposal, ToolContext

if TYPE_CHECKING:
    from lunark.mcp.tools.sessions import McpServer

__all__ = ["SEPARATOR", "Listed", "McpTool", "approval_rule", "args_model", "display_name", "model_name"]

SEPARATOR = "__"
"""Between server and tool in the name the model and the wire see (``notes__add_note``)."""

_NAME_LIMIT = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_ARG_CHARS = 500
_DESCRIPTION_CHARS = 1000


def model_name(server: str, tool: str) -> str:
    """``server__tool``, safe for every chat API: other characters become ``_``, and a name over 64
    characters is cut and ends with a short hash of the whole, so it stays unique."""
    name = f"{server}{SEPARATOR}{_UNSAFE.sub('_', tool)}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(f"{server}/{tool}".encode()).hexdigest()[:8]
    return f"{name[: _NAME_LIMIT - 9]}_{digest}"


def display_name(server: str, tool: str) -> str:
    """``server.tool``: what people read."""
    return f"{server}.{tool}"


def args_model(name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """A pydantic model that validates arguments against an MCP tool's JSON Schema, exactly (with
    ``jsonschema``), and gives that schema back to the model unchanged. Raises ``ConfigError`` for
    a schema that is not one."""
    schema = dict(schema) if schema else {"properties": {}}
    schema.setdefault("type", "object")  # MCP input schemas are objects; some servers leave it implicit
    try:
        validator_cls = validator_for(schema, default=jsonschema.Draft202012Validator)
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"MCP tool {name!r} has an invalid input schema: {exc.message}", tool=name) from None
    validator = validator_cls(schema)

    class McpArgs(BaseModel):
        model_config = ConfigDict(extra="allow")

        @model_validator(mode="before")
        @classmethod
        def _matches_schema(cls, data: Any) -> Any:
            if isinstance(data, BaseModel):
                data = data.model_dump()
            errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
            if errors:
                raise ValueError("; ".join(
                    f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}" for e in errors[:5]
                ))
            return data

        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
            copy: dict[str, Any] = json.loads(json.dumps(schema))  # the model binding may change what it gets
            return copy

    McpArgs.__name__ = McpArgs.__qualname__ = f"{_UNSAFE.sub('_', name)}_args"
    return McpArgs


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """One tool as the server listed it, and the adapter's LangChain tool that calls it."""

    tool: mcp_types.Tool
    call: BaseTool


class McpTool:
    """One MCP tool as a Lunark ``Tool``: the model sees its name, description and input schema;
    the approval card shows the server, the tool, its title, description, hints and arguments."""

    def __init__(self, server: McpServer, listed: mcp_types.Tool, approval: ApprovalRule) -> None:
        self.server = server
        self.tool_name = listed.name
        """The tool's own name on its server."""
        self.name = model_name(server.name, listed.name)
        annotations = listed.annotations
        self.title = listed.title or (annotations.title if annotations is not None else None) or listed.name
        self.hints = annotations.model_dump(exclude_none=True, exclude={"title"}) if annotations is not None else {}
        """The tool's MCP annotations (``readOnlyHint``, ``destructiveHint``, ...) as the server gave them."""
        text = (listed.description or "").strip()
        self.about = text[:_DESCRIPTION_CHARS]
        self.description = f"[MCP server {server.name}, tool {listed.name}] {self.about or self.title}"
        self.args_schema = args_model(self.name, listed.inputSchema)
        self.approval: ApprovalRule = approval

    @property
    def display(self) -> str:
        return display_name(self.server.name, self.tool_name)

    def _hint_text(self) -> str:
        if not self.hints:
            return "none declared (treated as state-changing)"
        words = []
        if self.hints.get("readOnlyHint"):
            words.append("read-only")
        elif self.hints.get("destructiveHint", True):
            # The MCP default for a tool that is not read-only is destructive.
            words.append("destructive: may delete or overwrite data")
        else:
            words.append("changes state (not destructive)")
        if self.hints.get("idempotentHint"):
            words.append("idempotent")
        if self.hints.get("openWorldHint", True):
            words.append("open world: reaches beyond the server (web, other services)")
        else:
            words.append("closed world")
        return "; ".join(words)

    async def prepare(self, args: BaseModel, ctx: ToolContext) -> Proposal:
        values = args.model_dump(mode="json")
        shown = ", ".join(f"{k}={_short(v, 60)}" for k, v in values.items())
        facts: list[tuple[str, str]] = [
            ("Server", f"{self.server.name} ({self.server.where})"),
            ("Tool", f"{self.display} — {self.title}"),
        ]
        if self.about:
            facts.append(("What it does", self.about))
        facts.append(("Hints", self._hint_text()))
        facts.extend((f"· {key}", _short(value, _ARG_CHARS)) for key, value in values.items())
        if not values:
            facts.append(("Arguments", "none"))
        return Proposal(
            summary=f"Run {self.display} ({self.title}){f' with {shown}' if shown else ''} on MCP server "
            f"{self.server.name}",
            description=self.about or self.title,
            data={"mcp": {"server": self.server.name, "tool": self.tool_name}},
            facts=tuple(facts),
        )

    async def execute(
        self, args: BaseModel, ctx: ToolContext, proposal: Proposal, decision: Decision | None
    ) -> dict[str, Any]:
        return await self.server.call(self.tool_name, args.model_dump(mode="json"), call_id=ctx.call_id or "call")


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def approval_rule(tool: mcp_types.Tool, chosen: str) -> ApprovalRule:
    """The approval class of ``tool`` under the configured ``chosen`` (``always``, ``never`` or
    ``annotations``): by annotations, only a tool declared ``readOnlyHint: true`` runs at once."""
    if chosen in ("always", "never"):
        return chosen  # type: ignore[return-value]
    read_only = tool.annotations is not None and tool.annotations.readOnlyHint is True
    return "never" if read_only else "always"  # no annotations, or not read-only: ask (fail closed)
