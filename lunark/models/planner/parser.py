"""The English parser: one user message -> intents -> tool calls for the bound tools.

Clause by clause, the regexes read balances, transfers and network switches into intents;
``_bind`` fits each intent to the bound tool's JSON schema. A message is understood in full or
answered in text (a refusal, what is missing, the help text) with no calls at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from uuid import uuid4

from langchain_core.messages import ToolCall
from langchain_core.messages.tool import tool_call
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool

__all__ = ["Plan", "plan_reply", "plan_tool_calls"]

BALANCE: Final = "get_balance"
TRANSFER: Final = "transfer"
SWITCH: Final = "switch_network"

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


# -- English -> intents -----------------------------------------------------------

_ADDRESS = r"(?<![0-9A-Za-z])0x[0-9a-fA-F]{40}(?![0-9A-Za-z])"
_AMOUNT = r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?!\w)"
_SYMBOL = r"(?<![\w.'’])[A-Za-z][A-Za-z0-9]{0,15}(?:\.[A-Za-z0-9]+)?(?![\w'’])"
_TOKEN = rf"(?:{_ADDRESS}|{_SYMBOL})"
# An ENS name where an address can stand: dotted labels, the last one (the TLD: eth, xyz, com) two
# letters or more, so "0.5" or a token like USDC.e is never taken for one. Labels may be any
# letters (ENSIP-15 allows far more); the tool normalises and validates the name itself.
_NAME = r"(?<![\w.@/:-])(?:[^\W_](?:[\w-]*[^\W_])?\.)+[^\W\d_]{2,}(?![\w@/:-]|\.[^\W_])"
_RECIPIENT = rf"(?:{_ADDRESS}|{_NAME})"
# After "to", a bare word may be one of the user's contacts (lunark.contacts): the planner cannot see
# the address book, so it passes the word on and the transfer tool resolves it, or refuses a word
# that names no contact. Pronouns and fillers are never labels.
_LABEL = (
    r"(?<![\w.@/:-])(?!(?:me|my|him|her|them|us|you|it|someone|somebody|the|a|an|this|that|myself)(?![\w-]))"
    r"[A-Za-z][A-Za-z0-9_-]{0,31}(?![\w.@/:-])"
)

_AMOUNT_FULL = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_ADDRESS_RE = re.compile(_ADDRESS)
_NAME_RE = re.compile(_NAME)

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
    rf"(?:\s+(?:tokens?|coins?))?\s+(?:over\s+)?(?:to|->|=>)\s+(?P<to>{_RECIPIENT}|{_LABEL})"
    rf"|(?P<to2>{_RECIPIENT})\s+(?P<amount2>{_AMOUNT})"
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
# Whose balance, when it is one of the user's contacts ("balance of alice", "alice's balance", "how much
# does alice have"): the planner cannot see the address book, so it passes the word on as the holder and
# the balance tool resolves it, or refuses a word that names no contact. After "balance of", a word
# written like a token symbol (TKN, USDC, wstETH) is the token, as before; any other word is the holder.
_BALANCE_HOLDER_RES: Final = (
    re.compile(rf"\bbalances?\s+(?:of|for)\s+(?!token\b)(?P<h>{_LABEL})", re.IGNORECASE),
    re.compile(rf"(?P<h>{_LABEL})['’]s\s+(?:{_SYMBOL}\s+)?(?:token\s+)?balances?\b", re.IGNORECASE),
    re.compile(rf"\b(?:does|do|has)\s+(?P<h>{_LABEL})\s+(?:have|hold|own|got)\b", re.IGNORECASE),
)
_SYMBOL_LIKE = re.compile(r"\w*\d\w*|(?:[a-z]*[A-Z]){2}\w*")
"""Written like a token symbol: a digit, or two capitals or more (TKN, USDC, wstETH, USDbC); not Alice."""
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
            "address (0x followed by 40 hex characters), ENS name or contact, like “send 0.5 ETH to 0x…”, "
            "“send 0.5 ETH to alice.eth” or “send 0.5 ETH to alice”."
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
            if _ADDRESS_RE.fullmatch(value) or _NAME_RE.fullmatch(value):
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
    names = [m.group(0) for m in _NAME_RE.finditer(clause)]
    label = _balance_holder_label(clause)
    token = _balance_token(clause, exclude=[*names, *([label] if label else [])])
    args: dict[str, str] = {}
    holder = (next((a for a in _ADDRESS_RE.findall(clause) if a != token), None) or next(iter(names), None)
              or label)
    if holder:
        args["address"] = holder
    if token and token.lower() not in _NATIVE_WORDS:
        args["token"] = token
    return _Intent(BALANCE, args)


def _balance_holder_label(clause: str) -> str | None:
    """The word a balance question names as the holder, when it may be a contact's label (the balance
    tool resolves it): never a filler, a pronoun, the native currency or a word written like a symbol."""
    for pattern in _BALANCE_HOLDER_RES:
        for match in pattern.finditer(clause):
            word = match["h"]
            if word.lower() in _NOT_TOKENS or word.lower() in _NATIVE_WORDS:
                continue
            if pattern is _BALANCE_HOLDER_RES[0] and _SYMBOL_LIKE.fullmatch(word):
                continue  # "balance of TKN": the token
            return word
    return None


def _balance_token(clause: str, exclude: Sequence[str] = ()) -> str | None:
    """The token a balance question names: the first candidate that isn't a filler word (or one of
    the ENS names in ``exclude``, whose holder is asked about)."""
    skip = {word.lower() for word in exclude}
    for pattern in _BALANCE_TOKEN_RES:
        for match in pattern.finditer(clause):
            if match["t"].lower() not in _NOT_TOKENS and match["t"].lower() not in skip:
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
