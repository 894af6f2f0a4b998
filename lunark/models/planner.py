"""The offline planner: Lunark's embedded default chat model.

No network, no weights, no randomness. It reads the conversation's last
message and either proposes tool calls (from plain English) or writes an
answer (from the tool results of the turn), and streams it token by token
like a hosted model would, so the whole agent, approval flow and streaming
path work without a model service::

    model = OfflinePlanner().bind_tools([get_balance, transfer, switch_network])
    await model.ainvoke([HumanMessage("send 0.5 ETH to 0x7099…79C8")])  # a full address
    # AIMessage(content="", tool_calls=[{"name": "transfer",
    #     "args": {"to": "0x7099…79C8", "amount": "0.5"}, ...}])

The pieces are pure functions the tests (and curious users) can call:
``plan_reply`` / ``plan_tool_calls`` for English -> tool calls,
``compose_answer`` for tool results -> English, ``split_tokens`` for how
text is streamed.

Parsing is deliberately conservative: a message is either understood in full
or nothing in it runs. If one part asks for something the planner cannot do
(a swap, an unlimited approval) or cannot read (a transfer without a full
address), it answers in text and proposes no calls, so nobody approves half a
request by surprise.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from uuid import uuid4

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

__all__ = [
    "CONTINUE_PROMPT",
    "OfflinePlanner",
    "Plan",
    "compose_answer",
    "plan_reply",
    "plan_tool_calls",
    "split_tokens",
]

MODEL_NAME: Final = "lunark-offline-planner"

BALANCE: Final = "get_balance"
TRANSFER: Final = "transfer"
SWITCH: Final = "switch_network"

ToolLike = Mapping[str, Any] | type | Callable[..., Any] | BaseTool

CONTINUE_PROMPT: Final = (
    "Your last answer stopped at the output limit. Continue it exactly where it stopped: "
    "no repetition, no preamble."
)
"""The user turn that asks a model to go on with an answer it cut at its output limit (the
agent's ``continue_message`` sends it; the planner recognizes it)."""


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


def compose_answer(calls: Sequence[ToolCall], results: Sequence[ToolMessage]) -> str:
    """Write the answer for one turn: ``results`` matched to ``calls`` by ``tool_call_id``.

    Results are described in the order of the calls; results for unknown
    calls follow, described from their content alone.
    """
    by_id: dict[str, list[ToolMessage]] = {}
    for result in results:
        by_id.setdefault(result.tool_call_id, []).append(result)
    lines: list[str] = []
    seen: set[str] = set()
    for call in calls:
        call_id = call.get("id") or ""
        seen.add(call_id)
        matched = by_id.get(call_id, [])
        if not matched:
            lines.append(f"I got no result from {call['name']}.")
        lines.extend(_describe_result(call["name"], call["args"], msg) for msg in matched)
    for result in results:
        if result.tool_call_id not in seen:
            lines.append(_describe_result(result.name or "the tool", {}, result))
    return "\n".join(lines) if lines else "There is nothing to report yet."


def split_tokens(text: str) -> list[str]:
    """Word-ish streaming tokens, each with its leading whitespace: ``"".join`` gives ``text``."""
    return _TOKEN_RE.findall(text)


class OfflinePlanner(BaseChatModel):
    """A deterministic, offline chat model that plans Lunark's tool calls from plain English.

    Bind tools as with any chat model; the planner only proposes calls to
    bound tools (``get_balance``, ``transfer``, ``switch_network``) and writes
    the answer from the tool results::

        model = OfflinePlanner(delay=0.02).bind_tools(tools)
        async for chunk in model.astream([HumanMessage("what's my balance?")]):
            ...
    """

    delay: float = Field(default=0.0, ge=0.0)
    """Seconds to wait between streamed chunks, so demos feel like a real model."""
    max_output_tokens: int | None = Field(default=None, ge=1)
    """Most tokens of text in one reply, like a hosted model's output limit: a longer answer stops
    there with ``finish_reason: "length"``, and ``CONTINUE_PROMPT`` gets the rest."""

    @property
    def _llm_type(self) -> str:
        return MODEL_NAME

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": MODEL_NAME, "delay": self.delay, "max_output_tokens": self.max_output_tokens}

    def bind_tools(
        self,
        tools: Sequence[ToolLike],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        formatted = [convert_to_openai_tool(each) for each in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text, calls, finish = _reply(messages, kwargs, self.max_output_tokens)
        message = AIMessage(
            content=text,
            tool_calls=calls,
            usage_metadata=_usage(messages, text),
            response_metadata=_response_metadata(finish),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop, **kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for index, chunk in enumerate(_chunks(messages, kwargs, self.max_output_tokens)):
            if index and self.delay:
                time.sleep(self.delay)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for index, chunk in enumerate(_chunks(messages, kwargs, self.max_output_tokens)):
            if index and self.delay:
                await asyncio.sleep(self.delay)
            yield chunk


# -- the model's turn -----------------------------------------------------------

_TOKEN_RE = re.compile(r"\s*\S+|\s+")


def _respond(
    messages: Sequence[BaseMessage], kwargs: Mapping[str, Any]
) -> tuple[str, list[ToolCall]]:
    specs = _tool_specs(kwargs.get("tools") or ())
    specs = _apply_tool_choice(specs, kwargs.get("tool_choice"))
    if not messages:
        return _help_text(specs), []
    last = messages[-1]
    if isinstance(last, HumanMessage):
        plan = _plan(last.text, specs)
        return plan.text, list(plan.calls)
    if isinstance(last, ToolMessage):
        calls, results = _last_turn(messages)
        again = _after_switch(calls, results)
        if again:
            return "", again
        return compose_answer(calls, results), []
    if isinstance(last, AIMessage):
        return "Anything else? " + _help_text(specs), []
    return _help_text(specs), []


def _after_switch(calls: Sequence[ToolCall], results: Sequence[ToolMessage]) -> list[ToolCall]:
    """Calls the agent deferred behind a network switch, asked again once the switch went through,
    so they are prepared on the new network (never on the one the user left)."""
    by_id = {r.tool_call_id: r for r in results}
    switched = any(
        call["name"] == SWITCH and (r := by_id.get(call.get("id") or "")) is not None and r.status != "error"
        and isinstance(data := _loads(r.text), dict) and "chain_id" in data and data.get("status") != "rejected"
        for call in calls
    )
    if not switched:
        return []
    deferred = [
        call for call in calls
        if (r := by_id.get(call.get("id") or "")) is not None
        and isinstance(data := _loads(r.text), dict) and data.get("status") == "deferred"
    ]
    return [tool_call(name=call["name"], args=dict(call["args"]), id="call_" + uuid4().hex[:24]) for call in deferred]


def _reply(
    messages: Sequence[BaseMessage], kwargs: Mapping[str, Any], limit: int | None
) -> tuple[str, list[ToolCall], str]:
    """The reply within the output limit: (text, tool calls, finish reason)."""
    if _continues(messages):
        # The answer that was cut is what the planner says for the history before it, again:
        # the rest of it follows what was already said.
        full, _ = _respond(messages[:-2], kwargs)
        said = messages[-2].text
        text = full[len(said):] if full.startswith(said) else ""
        calls: list[ToolCall] = []
    else:
        text, calls = _respond(messages, kwargs)
    tokens = split_tokens(text)
    if limit is not None and len(tokens) > limit:
        return "".join(tokens[:limit]), [], "length"  # calls after the limit are never written
    return text, calls, "tool_calls" if calls else "stop"


def _continues(messages: Sequence[BaseMessage]) -> bool:
    return (
        len(messages) >= 2
        and isinstance(messages[-1], HumanMessage)
        and messages[-1].text == CONTINUE_PROMPT
        and isinstance(messages[-2], AIMessage)
    )


def _last_turn(messages: Sequence[BaseMessage]) -> tuple[list[ToolCall], list[ToolMessage]]:
    """The tool calls of the last AI message that made some, and the results that followed it."""
    results: list[ToolMessage] = []
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            results.append(message)
        elif isinstance(message, AIMessage) and message.tool_calls:
            return list(message.tool_calls), results[::-1]
    return [], results[::-1]


def _chunks(
    messages: Sequence[BaseMessage], kwargs: Mapping[str, Any], limit: int | None = None
) -> Iterator[ChatGenerationChunk]:
    text, calls, finish = _reply(messages, kwargs, limit)
    for token in split_tokens(text):
        yield ChatGenerationChunk(message=AIMessageChunk(content=token))
    for index, call in enumerate(calls):
        piece = tool_call_chunk(
            name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=index
        )
        yield ChatGenerationChunk(message=AIMessageChunk(content="", tool_call_chunks=[piece]))
    yield ChatGenerationChunk(
        message=AIMessageChunk(
            content="",
            usage_metadata=_usage(messages, text),
            response_metadata=_response_metadata(finish),
            chunk_position="last",
        )
    )


def _usage(messages: Sequence[BaseMessage], text: str) -> UsageMetadata:
    input_tokens = sum(len(split_tokens(message.text)) for message in messages)
    output_tokens = len(split_tokens(text))
    return UsageMetadata(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def _response_metadata(finish: str) -> dict[str, Any]:
    return {"finish_reason": finish, "model_name": MODEL_NAME}


# -- tool schemas ---------------------------------------------------------------


def _tool_specs(tools: Sequence[ToolLike]) -> dict[str, dict[str, Any]]:
    """Bound tools by name -> their JSON schema for parameters."""
    specs: dict[str, dict[str, Any]] = {}
    for each in tools:
        function = convert_to_openai_tool(each)["function"]
        specs[function["name"]] = dict(function.get("parameters") or {})
    return specs


def _apply_tool_choice(specs: dict[str, dict[str, Any]], choice: Any) -> dict[str, dict[str, Any]]:
    if isinstance(choice, Mapping):
        choice = (choice.get("function") or {}).get("name") or choice.get("name")
    if choice == "none":
        return {}
    if isinstance(choice, str) and choice in specs:
        return {choice: specs[choice]}
    return specs  # "auto", "any", "required", None: every bound tool may be called


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


# -- English -> intents -----------------------------------------------------------

_ADDRESS = r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{40}(?![0-9A-Za-z])"
_AMOUNT = r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?!\w)"
_SYMBOL = r"(?<![\w.'’])[A-Za-z][A-Za-z0-9]{0,15}(?:\.[A-Za-z0-9]+)?(?![\w'’])"
_TOKEN = rf"(?:{_ADDRESS}|{_SYMBOL})"

_AMOUNT_FULL = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_ADDRESS_RE = re.compile(_ADDRESS)

_CLAUSE_SPLIT = re.compile(
    r"\s*(?:[;!?\n]|,(?!\d)|\.(?=\s|$)"
    r"|\b(?:and\s+then|and\s+also|after\s+that|then|and|also)\b)\s*",
    re.IGNORECASE,
)

# A share of the balance, which the transfer tool computes: "all", "half", "25%", "1/3".
_SHARE = r"(?<![\w.])(?:all|max|everything|half|\d{1,3}(?:\.\d+)?\s?%|\d{1,3}/\d{1,3})(?![\w/])"

# "send 0.5 ETH to 0x…", "transfer 5 of token 0x… to 0x…", "send all my ETH to 0x…",
# "send half of my TKN to 0x…"  |  "pay 0x… 3 TUSD"
_TRANSFER_RE = re.compile(
    rf"(?P<amount>{_AMOUNT}|{_SHARE})(?:\s+of)?(?:\s+(?:my|the|your))?(?:\s+token)?(?:\s+(?P<token>{_TOKEN}))?"
    rf"(?:\s+(?:tokens?|coins?))?\s+(?:over\s+)?(?:to|->|=>)\s+(?P<to>{_ADDRESS})"
    rf"|(?P<to2>{_ADDRESS})\s+(?P<amount2>{_AMOUNT})"
    rf"(?:\s+(?:of\s+)?(?:token\s+)?(?P<token2>{_TOKEN}))?",
    re.IGNORECASE,
)
_TRANSFER_VERB = re.compile(r"\b(?:send|transfer|pay|give|move|wire|tip|forward)\b", re.IGNORECASE)
_ON_NETWORK = re.compile(
    r"\b(?:on|via)\s+(?:the\s+)?(?P<network>[A-Za-z0-9][\w-]*(?:\s+(?:one|mainnet|testnet))?)"
    r"(?:\s+(?:network|chain))?\s*$",
    re.IGNORECASE,
)

_SWITCH_RE = re.compile(
    r"\b(?:switch|change|go|move|hop|jump|connect|head)\b"
    r"(?:\s+(?:me|us|it|over|back|the|my|our|wallet|networks?|chains?))*"
    r"\s+(?:to|onto)\s+(?P<network>.+)$",
    re.IGNORECASE,
)
_USE_RE = re.compile(
    r"^(?:(?:please|pls|now|ok|okay|let'?s|i\s+want\s+to|i'?d\s+like\s+to|can\s+you|could\s+you)\s+)*"
    r"use\s+(?P<network>.+)$",
    re.IGNORECASE,
)
_SWITCH_WORD = re.compile(
    r"\bswitch\b|\bchange\s+(?:the\s+|my\s+)?(?:network|chain)\b", re.IGNORECASE
)
_NETWORK_NOISE_HEAD = re.compile(r"^(?:the|a)\s+", re.IGNORECASE)
_NETWORK_NOISE_TAIL = re.compile(
    r"(?:\s+(?:network|chain|please|pls|now|for\s+me|instead))+$", re.IGNORECASE
)

_BALANCE_HINT = re.compile(
    r"\bbalances?\b|\bholdings\b|\bmy\s+funds\b|\bin\s+my\s+wallet\b"
    r"|\bwhat\s+do\s+i\s+(?:have|hold|own)\b"
    r"|\bhow\s+(?:much|many)\b(?=.*\b(?:have|has|hold|holds|own|owns|got|left)\b)",
    re.IGNORECASE,
)
_BALANCE_TOKEN_RES: Final = (
    re.compile(
        rf"\bhow\s+(?:much|many)\s+(?:of\s+)?(?:the\s+|my\s+)?(?:token\s+)?(?P<t>{_TOKEN})",
        re.IGNORECASE,
    ),
    re.compile(rf"\btoken\s+(?P<t>{_ADDRESS})", re.IGNORECASE),
    re.compile(rf"(?P<t>{_SYMBOL})\s+(?:token\s+)?balances?\b", re.IGNORECASE),
    re.compile(
        rf"\bbalances?\s+(?:of|in|for)\s+(?:the\s+)?(?:token\s+)?(?P<t>{_SYMBOL})", re.IGNORECASE
    ),
)
_BALANCE_FOLLOW_UP = re.compile(
    rf"^(?:(?:my|the|of|for|what\s+about)\s+)*(?P<t>{_TOKEN})(?:\s+(?:balance|too))?$",
    re.IGNORECASE,
)

_NATIVE_WORDS: Final = frozenset({"eth", "ether", "ethers", "native"})
# Words that land where a token symbol could be ("what's my balance", "how much do I have").
_NOT_TOKENS: Final = frozenset(
    {
        *("my", "the", "your", "our", "their", "his", "her", "its", "a", "an", "this", "that"),
        *("total", "current", "wallet", "account", "token", "tokens", "money", "funds"),
        *("coin", "coins", "balance", "balances", "what", "whats", "is", "are", "check", "show"),
        *("get", "tell", "see", "much", "many", "do", "does", "did", "have", "has", "i", "me"),
        *("you", "it", "all", "of", "in", "on", "for", "to", "and", "then", "please", "pls", "now"),
    }
)

_UNSUPPORTED: Final = (
    (
        re.compile(r"\b(?:swap|swaps|swapping|exchange|trade|trading|convert)\b", re.I),
        "swap or trade tokens",
    ),
    (re.compile(r"\bbridg(?:e|es|ing)\b", re.I), "bridge funds between networks"),
    (re.compile(r"\b(?:un|re)?stak(?:e|es|ing)\b", re.I), "stake or unstake"),
    (
        re.compile(
            r"\ballowances?\b|\bunlimited\b|\bapprove\b(?=.*(?:0x|\d|spend|token|contract|router|max))",
            re.I,
        ),
        "grant token approvals (allowances)",
    ),
    (re.compile(r"\b(?:buy|sell|purchase)\b", re.I), "buy or sell"),
    (re.compile(r"\b(?:borrow|lend|lending|loan)\b", re.I), "borrow or lend"),
    (re.compile(r"\bmint\b", re.I), "mint tokens"),
    (
        re.compile(r"\bprices?\b|\bworth\b|\bin\s+(?:usd|dollars?|euros?|eur)\b", re.I),
        "look up prices or values",
    ),
    (re.compile(r"\bdeploy\b", re.I), "deploy contracts"),
    (
        re.compile(r"\bprivate\s+keys?\b|\bseed\s+phrase\b|\bmnemonic\b", re.I),
        "handle private keys or seed phrases",
    ),
)

_GREETING = re.compile(r"^\s*(?:hi|hello|hey|gm|good\s+(?:morning|afternoon|evening)|yo)\b", re.I)
_THANKS = re.compile(r"^\s*(?:thanks|thank\s+you|thx|ty|cheers)\b", re.I)


@dataclass(frozen=True, slots=True)
class _Intent:
    tool: str
    args: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Reading:
    intents: list[_Intent] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _plan(text: str, specs: Mapping[str, Mapping[str, Any]]) -> Plan:
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


def _read(text: str) -> _Reading:
    """Turn a normalized message into intents, clause by clause, in order."""
    reading = _Reading()
    previous: _Intent | None = None
    for clause in (c.strip(" \"'“”‘’`") for c in _CLAUSE_SPLIT.split(text)):
        if not clause:
            continue
        refused = [what for pattern, what in _UNSUPPORTED if pattern.search(clause)]
        if refused:
            reading.refusals.extend(refused)
            previous = None
            continue
        found = _read_clause(clause, previous)
        if isinstance(found, str):
            reading.problems.append(found)
            previous = None
        elif found:
            reading.intents.extend(found)
            previous = found[-1]
    return reading


def _read_clause(clause: str, previous: _Intent | None) -> list[_Intent] | str:
    """The intents of one clause, or what is missing to understand it."""
    has_transfer_verb = bool(_TRANSFER_VERB.search(clause))
    if has_transfer_verb or (previous is not None and previous.tool == TRANSFER):
        transfers, end = _read_transfers(clause)
        if transfers:
            # "send 1 ETH to 0x… on base" means: switch to base, then send.
            on = _ON_NETWORK.search(clause[end:])
            if on:
                return [_Intent(SWITCH, {"network": _clean_network(on["network"])}), *transfers]
            return transfers
    switch = _SWITCH_RE.search(clause) or _USE_RE.search(clause)
    if switch:
        network = _clean_network(switch["network"])
        # A network is a name, alias or chain id: a few words at most, never an address.
        if network and len(network.split()) <= 3 and not _ADDRESS_RE.search(network):
            return [_Intent(SWITCH, {"network": network})]
    if has_transfer_verb:
        return (
            f"I couldn't read a transfer in “{clause}”: I need an amount and a full recipient "
            "address (0x followed by 40 hex characters), like “send 0.5 ETH to 0x…”."
        )
    if _SWITCH_WORD.search(clause):
        return f"I couldn't tell which network you meant in “{clause}”; try “switch to sepolia”."
    if _BALANCE_HINT.search(clause):
        return [_read_balance(clause)]
    if previous is not None and previous.tool == BALANCE:
        follow_up = _BALANCE_FOLLOW_UP.match(clause)
        if follow_up and follow_up["t"].lower() not in _NOT_TOKENS:
            args = dict(previous.args)
            value = follow_up["t"]
            if _ADDRESS_RE.fullmatch(value):
                args["address"] = value
            elif value.lower() in _NATIVE_WORDS:
                args.pop("token", None)
            else:
                args["token"] = value
            return [_Intent(BALANCE, args)]
    return []


def _read_transfers(clause: str) -> tuple[list[_Intent], int]:
    """Every transfer in the clause, and where the last one ends."""
    intents: list[_Intent] = []
    end = 0
    for match in _TRANSFER_RE.finditer(clause):
        end = match.end()
        to = match["to"] or match["to2"]
        amount = (match["amount"] or match["amount2"]).replace(",", "").replace(" ", "").lower()
        amount = "all" if amount == "everything" else amount
        token = match["token"] or match["token2"]
        args = {"to": to, "amount": amount}
        if token and token.lower() not in _NATIVE_WORDS and token.lower() not in _NOT_TOKENS:
            args["token"] = token
        intents.append(_Intent(TRANSFER, args))
    return intents, end


def _read_balance(clause: str) -> _Intent:
    token = _balance_token(clause)
    args: dict[str, str] = {}
    holder = next((a for a in _ADDRESS_RE.findall(clause) if a != token), None)
    if holder:
        args["address"] = holder
    if token and token.lower() not in _NATIVE_WORDS:
        args["token"] = token
    return _Intent(BALANCE, args)


def _balance_token(clause: str) -> str | None:
    """The token a balance question names: the first candidate that isn't a filler word."""
    for pattern in _BALANCE_TOKEN_RES:
        for match in pattern.finditer(clause):
            if match["t"].lower() not in _NOT_TOKENS:
                return match["t"]
    return None


def _clean_network(words: str) -> str:
    words = words.strip(" \"'“”‘’`.,")
    words = _NETWORK_NOISE_HEAD.sub("", words)
    return _NETWORK_NOISE_TAIL.sub("", words).strip()


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


# -- tool results -> English ---------------------------------------------------------

_TX_STATUSES: Final = frozenset(
    {"submitted", "mined", "confirmed", "failed", "mismatch", "replaced", "dropped"}
)
_HITL_DEFAULT_REJECTION = re.compile(r"rejected the tool call", re.IGNORECASE)
_NOT_JSON: Final = object()


def _describe_result(name: str, args: Mapping[str, Any], message: ToolMessage) -> str:
    text = message.text.strip()
    data = _loads(text)
    if not isinstance(data, dict):
        if message.status == "error":
            if text.lower().startswith("error"):
                return f"That didn't work: {_sentence(text)}"
            reason = None if _HITL_DEFAULT_REJECTION.search(text) or not text else text
            return _rejected(name, args, {}, reason)
        if data is _NOT_JSON:
            return f"{name} said: “{text}”." if text else f"{name} returned nothing."
        return f"{name} returned {json.dumps(data)}."
    status = data.get("status")
    if status == "deferred":
        return f"I did not prepare the {name.replace('_', ' ')} yet: it waits for the network switch."
    if status == "rejected":
        return _rejected(name, args, data, _text_or_none(data.get("message") or data.get("reason")))
    if status in _TX_STATUSES and not data.get("error"):
        return _transfer_result(args, data)  # a settled transfer, whatever its outcome
    if (
        status == "error"
        or (data.get("error") and "tx_hash" not in data)
        or message.status == "error"
    ):
        return _error(data.get("error", data))
    # Recognize results by shape, so plugins' results read well and odd ones aren't misread.
    if "tx_hash" in data or status in _TX_STATUSES:
        return _transfer_result(args, data)
    if "amount" in data and name != TRANSFER:
        return _balance_result(args, data)
    if "chain_id" in data and ("network" in data or "display_name" in data):
        return _switch_result(args, data)
    return _generic(name, data)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _rejected(
    name: str, args: Mapping[str, Any], data: Mapping[str, Any], reason: str | None
) -> str:
    if name == TRANSFER:
        recipient = _recipient(args, data)
        text = f"Okay, I did not send {_what(args, data)}" + (
            f" to {recipient}." if recipient else "."
        )
    elif name == SWITCH:
        network = args.get("network") or data.get("network")
        text = "Okay, I stayed on the current network" + (
            f" instead of switching to {network}." if network else "."
        )
    elif name == BALANCE:
        text = "Okay, I did not check the balance."
    else:
        text = f"Okay, I did not run {name}."
    if reason:
        text += f" Your reason: “{reason}”."
    return text


def _error(error: Any) -> str:
    if isinstance(error, Mapping):
        code = error.get("code")
        message = _text_or_none(error.get("message")) or _text_or_none(error.get("detail"))
        message = message or (f"error code {code}" if code else json.dumps(error))
    else:
        code, message = None, str(error)
    if code == "policy_violation":
        return f"I can't do that: {_sentence(message)}"
    return f"That didn't work: {_sentence(message)}"


def _balance_result(args: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    symbol = _text_or_none(data.get("symbol")) or _text_or_none(args.get("token")) or ""
    amount = _format_amount(str(data.get("amount", "an unknown amount")))
    where = _on(data)
    is_token = bool(data.get("token") or args.get("token"))
    label = f"{symbol} balance" if is_token and symbol else "balance"
    address = _text_or_none(args.get("address"))
    subject = f"The {label} of {_short(address)}" if address else f"Your {label}"
    return f"{subject}{where} is {amount} {symbol}".rstrip() + "."


def _transfer_result(args: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    status = str(data.get("status", "submitted"))
    what = _what(args, data)
    recipient = _recipient(args, data)
    to = f" to {recipient}" if recipient else ""
    where = _on(data)
    tx_hash = _text_or_none(data.get("tx_hash"))
    tx = f"Transaction {_short(tx_hash)}" if tx_hash else "The transaction"
    block = data.get("block_number")
    in_block = f" in block {block}" if block is not None else ""
    reason = _text_or_none(data.get("reason"))
    because = f": {reason.rstrip('.')}" if reason else ""
    explorer = _text_or_none(data.get("explorer_url"))
    link = f" Explorer: {explorer}" if explorer else ""

    if status == "confirmed":
        return f"Sent {what}{to}{where}. {tx} confirmed{in_block}.{link}"
    if status == "mined":
        return (
            f"Sent {what}{to}{where}. {tx} was mined{in_block} "
            f"and is waiting for confirmations.{link}"
        )
    if status == "submitted":
        return f"I submitted the transfer of {what}{to}{where}. {tx} is not confirmed yet.{link}"
    if status == "failed":
        return (
            f"The transfer of {what}{to}{where} failed on chain{because}. {tx} was mined{in_block} "
            f"but reverted, so nothing was sent; only the network fee was spent.{link}"
        )
    if status == "mismatch":
        signed = f" ({_short(tx_hash)})" if tx_hash else ""
        return (
            f"Warning: the transaction your wallet signed{signed} does not match the transfer you "
            f"approved ({what}{to}){because}, so it was not accepted. Please check your wallet's "
            "activity before trying again."
        )
    if status == "replaced":
        by = _text_or_none(data.get("replaced_by"))
        other = f" ({_short(by)})" if by else ""
        return (
            f"The transfer of {what}{to}{where} did not go through as approved: another "
            f"transaction{other} with the same nonce replaced it{because}. Check your wallet's "
            "activity to see what was sent instead."
        )
    if status == "dropped":
        dropped = f" ({_short(tx_hash)})" if tx_hash else ""
        return (
            f"The transfer of {what}{to}{where} was dropped{dropped}{because}: it was never mined, "
            "so nothing was sent. You can try again."
        )
    return f"The transfer of {what}{to}{where} has status “{status}” ({tx}).{link}"


def _switch_result(args: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    name = _network_name(data) or _text_or_none(args.get("network")) or "the new network"
    chain_id = data.get("chain_id")
    if chain_id is None:
        return f"Switched to {name}."
    # "Anvil (local) (chain 31337)" reads badly; keep one pair of parentheses.
    return (
        f"Switched to {name}, chain {chain_id}."
        if name.endswith(")")
        else f"Switched to {name} (chain {chain_id})."
    )


def _generic(name: str, data: Mapping[str, Any]) -> str:
    parts = [
        f"{key.replace('_', ' ')}: {_text_or_none(value) or json.dumps(value)}"
        for key, value in list(data.items())[:8]
    ]
    return f"{name} returned " + ("; ".join(parts) if parts else "an empty result") + "."


def _what(args: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    amount = _text_or_none(data.get("amount")) or _text_or_none(args.get("amount")) or "the amount"
    token = _text_or_none(args.get("token"))
    # No token named means the network's native currency.
    symbol = _text_or_none(data.get("symbol")) or (_short(token) if token else "ETH")
    return f"{_format_amount(amount)} {symbol}"


def _recipient(args: Mapping[str, Any], data: Mapping[str, Any]) -> str | None:
    value = (
        _text_or_none(data.get("recipient"))
        or _text_or_none(data.get("to"))
        or _text_or_none(args.get("to"))
    )
    return _short(value) if value else None


def _on(data: Mapping[str, Any]) -> str:
    name = _network_name(data)
    return f" on {name}" if name else ""


def _network_name(data: Mapping[str, Any]) -> str | None:
    network = data.get("network")
    if isinstance(network, Mapping):
        return _text_or_none(network.get("display_name")) or _text_or_none(network.get("name"))
    return _text_or_none(data.get("display_name")) or _text_or_none(network)


def _short(value: str | None) -> str:
    """``0x1234…abcd`` for addresses and hashes; anything else as it is."""
    if value and value.startswith("0x") and len(value) > 14:
        return f"{value[:6]}…{value[-4:]}"
    return value or ""


def _format_amount(amount: str) -> str:
    """Trim trailing zeros; group thousands from five integer digits up (9999.5, 1,000,000)."""
    if not _AMOUNT_FULL.fullmatch(amount):
        return amount
    whole, _, fraction = amount.partition(".")
    fraction = fraction.rstrip("0")
    whole = whole or "0"
    if len(whole) >= 5:
        whole = f"{int(whole):,}"
    return f"{whole}.{fraction}" if fraction else whole


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _text_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, Mapping | list):
        return None
    text = str(value).strip()
    return text or None
