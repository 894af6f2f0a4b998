"""The planner's English: one user message, clause by clause, read into intents.

The regexes read balances, transfers and network switches (and refuse what Lunark cannot do:
swaps, bridges, staking...); ``_read`` turns a normalized message into ``_Intent``s in order, or
says what is missing. Nothing here knows the bound tools: ``parser`` fits the intents to them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

__all__ = ["BALANCE", "SWITCH", "TRANSFER"]

BALANCE: Final = "get_balance"
TRANSFER: Final = "transfer"
SWITCH: Final = "switch_network"

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
