"""The English parser: one user message -> intents -> tool calls for the bound tools.

Clause by clause, ``english`` reads balances, transfers and network switches into intents;
``_bind`` fits each intent to the bound tool's JSON schema. A message is understood in full or
answered in text (a refusal, what is missing, the help text) with no calls at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final
from uuid import uuid4

from langchain_core.messages import ToolCall
from langchain_core.messages.tool import tool_call
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

from lunark.models.planner.english import _AMOUNT_FULL, _GREETING, _THANKS, BALANCE, SWITCH, TRANSFER, _read

__all__ = ["Plan", "plan_reply", "plan_tool_calls"]

ToolLike = Mapping[str, Any] | type | Callable[..., Any] | BaseTool


# -- public API ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """What the planner makes of one user message."""

    calls: tuple[ToolCall, ...] = ()
    """Tool calls to propose, in the order the user asked for them."""
    text: str = ""
    """The answer to give instead, when there is nothing to call (empty otherwise)."""


def plan_reply(text: str, tools: Sequence[ToolLike]) -> Plan:
    """Read one user message and decide: tool calls, or a text answer.

    ``tools`` are the bound tools, in any form ``bind_tools`` accepts. Calls
    are only proposed for tools among them, with arguments their JSON schema
    has::

        >>> plan_reply("switch to sepolia", [switch_network_schema]).calls[0]["args"]
        {'network': 'sepolia'}
        >>> plan_reply("swap 1 ETH for USDC", tools).text
        "I can't swap or trade tokens. ..."
    """
    return _plan(text, _tool_specs(tools))


def plan_tool_calls(text: str, tools: Sequence[ToolLike]) -> list[ToolCall]:
    """The tool calls ``plan_reply`` proposes for ``text`` (empty when it answers in text)."""
    return list(plan_reply(text, tools).calls)


# -- tool schemas ---------------------------------------------------------------


def _tool_specs(tools: Sequence[ToolLike]) -> dict[str, dict[str, Any]]:
    """Bound tools by name -> their JSON schema for parameters."""
    specs: dict[str, dict[str, Any]] = {}
    for each in tools:
        function = convert_to_openai_tool(each)["function"]
        specs[function["name"]] = dict(function.get("parameters") or {})
    return specs


# Lunark's tools name their parameters these ways; a plugin may pick a synonym.
_PARAMETER_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "address": ("address", "owner", "account", "holder", "wallet"),
    "token": ("token", "asset", "symbol", "token_address", "currency"),
    "to": ("to", "recipient", "to_address", "destination"),
    "amount": ("amount", "value", "quantity"),
    "network": ("network", "chain", "network_name", "name", "chain_id"),
}

_CAPABILITY: Final[Mapping[str, str]] = {
    BALANCE: "check balances (ETH or a token)",
    TRANSFER: "send ETH or tokens",
    SWITCH: "switch networks",
}

_EXAMPLE: Final[Mapping[str, str]] = {
    BALANCE: "“what's my balance?”",
    TRANSFER: "“send 0.5 ETH to 0x…”",
    SWITCH: "“switch to sepolia”",
}


@dataclass(frozen=True, slots=True)
class _Invalid:
    why: str


def _bind(
    tool: str, args: Mapping[str, str], specs: Mapping[str, Mapping[str, Any]]
) -> ToolCall | _Invalid:
    """A tool call valid for the bound tool's schema, or why there can't be one."""
    if tool not in specs:
        return _Invalid(
            f"I can't {_CAPABILITY.get(tool, 'do that')} in this chat: no {tool} tool is available."
        )
    schema = specs[tool]
    properties: Mapping[str, Any] = schema.get("properties") or {}
    bound: dict[str, Any] = {}
    for key, value in args.items():
        name = next((n for n in _PARAMETER_NAMES.get(key, (key,)) if n in properties), None)
        if name is None:
            return _Invalid(f"The {tool} tool here has no way to take the {key} “{value}”.")
        coerced = _coerce(value, properties[name])
        if isinstance(coerced, _Invalid):
            return _Invalid(f"“{value}” is not a valid {name} for {tool}: {coerced.why}.")
        bound[name] = coerced
    missing = [name for name in schema.get("required") or () if name not in bound]
    if missing:
        needed = " and ".join(name.replace("_", " ") for name in missing)
        return _Invalid(f"To use {tool} I need the {needed}; please include it in your message.")
    return tool_call(name=tool, args=bound, id="call_" + uuid4().hex[:24])


def _coerce(value: str, prop: Mapping[str, Any]) -> Any:
    types = _schema_types(prop)
    enum = prop.get("enum")
    if enum is not None:
        match = next((e for e in enum if str(e).lower() == value.lower()), None)
        return _Invalid("expected one of " + ", ".join(map(str, enum))) if match is None else match
    if not types or "string" in types:
        return value
    if "integer" in types and value.isdigit():
        return int(value)
    if "number" in types and _AMOUNT_FULL.fullmatch(value):
        return int(value) if value.isdigit() else float(value)
    return _Invalid("expected " + " or ".join(sorted(types)))


def _schema_types(prop: Mapping[str, Any]) -> set[str]:
    kind = prop.get("type")
    types = {kind} if isinstance(kind, str) else set(kind or ())
    for option in prop.get("anyOf") or prop.get("oneOf") or ():
        if isinstance(option, Mapping):
            types |= _schema_types(option)
    types.discard("null")
    return types


_EXPLICIT_CALL = re.compile(r"^(?:call|run)\s+(?P<tool>[A-Za-z][\w.-]{0,127})\s*(?:with\s+)?(?P<args>\{.*\})?\s*$",
                            re.IGNORECASE | re.DOTALL)


def _explicit_call(text: str, specs: Mapping[str, Mapping[str, Any]]) -> Plan | None:
    """``call notes.add_note {"text": "hi"}``: any bound tool by name (an MCP tool's ``server.tool``
    too), its arguments as a JSON object, for tools the English reading does not know."""
    found = _EXPLICIT_CALL.match(text.strip())
    if found is None:
        return None
    name = found["tool"]
    tool = name if name in specs else name.replace(".", "__")
    if tool not in specs:
        return None  # not a tool's name: read it as English
    try:
        args = json.loads(found["args"] or "{}")
    except ValueError:
        return Plan(text=f"The arguments for {name} must be a JSON object, like {{\"text\": \"hi\"}}.")
    if not isinstance(args, dict):
        return Plan(text=f"The arguments for {name} must be a JSON object, like {{\"text\": \"hi\"}}.")
    missing = [key for key in specs[tool].get("required") or () if key not in args]
    if missing:
        return Plan(text=f"To call {name} I need {', '.join(missing)}; for example: call {name} "
                         f"{json.dumps({key: '...' for key in missing})}")
    return Plan(calls=(tool_call(name=tool, args=args, id="call_" + uuid4().hex[:24]),))


def _plan(text: str, specs: Mapping[str, Mapping[str, Any]]) -> Plan:
    explicit = _explicit_call(text, specs)
    if explicit is not None:
        return explicit
    normalized = " ".join(text.replace("\u00a0", " ").split())
    reading = _read(normalized)
    if reading.refusals:
        things = _join(list(dict.fromkeys(reading.refusals)), "or")
        rest = " I haven't done any other part of your message either." if reading.intents else ""
        return Plan(text=f"Sorry, I can't {things}.{rest} " + _help_text(specs))
    calls: list[ToolCall] = []
    problems = list(reading.problems)
    for intent in reading.intents:
        bound = _bind(intent.tool, intent.args, specs)
        if isinstance(bound, _Invalid):
            problems.append(bound.why)
        else:
            calls.append(bound)
    if problems:
        rest = " Nothing was done." if reading.intents else ""
        return Plan(text=" ".join(dict.fromkeys(problems)) + rest + " " + _help_text(specs))
    if calls:
        return Plan(calls=tuple(calls))
    if _THANKS.match(normalized):
        return Plan(text="You're welcome! " + _help_text(specs))
    if _GREETING.match(normalized):
        return Plan(text="Hi! " + _help_text(specs))
    return Plan(text=_help_text(specs))


def _help_text(specs: Mapping[str, Any]) -> str:
    known = [name for name in (BALANCE, TRANSFER, SWITCH) if name in specs]
    if not known:
        if specs:
            names = _join([f"`{name}`" for name in specs], "and")
            return (
                f"I'm Lunark's offline assistant. The tools here ({names}) are ones I can't "
                "drive from plain English; I understand balances, transfers and network switches."
            )
        return (
            "I'm Lunark's offline assistant, and no wallet tools are connected in this chat, "
            "so I can't check balances, send funds or switch networks right now."
        )
    can = _join([_CAPABILITY[name] for name in known], "and")
    examples = _join([_EXAMPLE[name] for name in known], "or")
    text = f"I can {can}. Try: {examples}."
    if TRANSFER in known or SWITCH in known:
        text += " Anything that moves funds or changes the network waits for your approval."
    return text


def _join(items: Sequence[str], word: str) -> str:
    if len(items) <= 1:
        return "".join(items)
    if len(items) == 2:
        return f"{items[0]} {word} {items[1]}"
    return ", ".join(items[:-1]) + f", {word} {items[-1]}"
