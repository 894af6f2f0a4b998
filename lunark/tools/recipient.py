"""Recipient checks: what a card warns about, or refuses, before the user is asked to send funds.

An agent copies addresses out of chat history and tool results, which makes it the ideal victim
of address poisoning and prompt injection. Each check yields a ``CardWarning`` with a stable code
(``docs/safety.md`` lists them), a severity and a plain sentence for the card:

- ``lookalike_recipient`` (danger): shares its first and last hex digits with an address the user
  sent to or received from, but is another address (address poisoning);
- ``address_from_tool_output`` (danger): the user never typed the address in this chat; it came
  from a tool's result or only from the model (prompt injection);
- ``first_time_recipient`` (warning): the user never sent to it on this network;
- ``recipient_is_contract`` (warning): a native transfer to an address with code;
- ``recipient_history_incomplete`` (info): the node would not list the user's recent token transfers.

Sending to the zero address, a known burn address or a token's own contract is refused outright
(``PolicyViolation``), and ``policy.block_warnings`` turns any code into a refusal. A danger
warning must be acknowledged by code in the approve decision (``lunark.graph.approval``).

The checks are pure functions over their inputs, except ``counterparties`` and ``has_code``, which
read the store's settled history and the node: at most one ``eth_getCode``, one ``eth_blockNumber``
and two bounded ``eth_getLogs`` (run together) per transfer card.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

import aiohttp
from eth_utils.address import to_checksum_address
from web3.exceptions import Web3Exception

from lunark.contacts import ContactBook
from lunark.errors import ChainError, PolicyViolation

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from lunark.chain.client import ChainClient
    from lunark.chain.types import TransferIntent
    from lunark.store.base import ChatRecord, SettlementRecord

__all__ = [
    "ADDRESS_FROM_TOOL_OUTPUT",
    "BURN_ADDRESSES",
    "FIRST_TIME_RECIPIENT",
    "HISTORY_INCOMPLETE",
    "LOOKALIKE_RECIPIENT",
    "RECIPIENT_IS_CONTRACT",
    "CardWarning",
    "Counterparties",
    "History",
    "Provenance",
    "RecipientPolicy",
    "Severity",
    "addresses_in",
    "counterparties",
    "has_code",
    "looks_like",
    "missing_acknowledgements",
    "refuse_unrecoverable",
    "transfer_warnings",
]

log = logging.getLogger(__name__)

Severity = Literal["info", "warning", "danger"]

LOOKALIKE_RECIPIENT: Final = "lookalike_recipient"
FIRST_TIME_RECIPIENT: Final = "first_time_recipient"
ADDRESS_FROM_TOOL_OUTPUT: Final = "address_from_tool_output"
RECIPIENT_IS_CONTRACT: Final = "recipient_is_contract"
HISTORY_INCOMPLETE: Final = "recipient_history_incomplete"

ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"
BURN_ADDRESSES: Final = frozenset({
    "0x000000000000000000000000000000000000dead",
    "0xdead000000000000000042069420694206942069",
    "0x0000000000000000000000000000000000000001",
})
"""Addresses that are used to burn funds on purpose (lowercase): nobody holds their keys."""

_DELEGATION_PREFIX: Final = bytes.fromhex("ef0100")
"""EIP-7702: an account whose code is only this and an address is a person's delegated account."""
_ADDRESS: Final = re.compile(r"(?<![0-9a-zA-Z])0x[0-9a-fA-F]{40}(?![0-9a-zA-Z])")


@dataclass(frozen=True, slots=True)
class CardWarning:
    """One thing the user should know before deciding (the protocol's ``ApprovalWarning``)."""

    code: str
    severity: Severity
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CardWarning:
        severity = str(raw["severity"])
        if severity not in ("info", "warning", "danger"):
            severity = "danger"  # an unknown severity is treated as the strictest one
        return cls(code=str(raw["code"]), severity=severity, message=str(raw["message"]))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientPolicy:
    """The configurable part of the recipient checks (``policy.*`` in the settings)."""

    lookalike_prefix: int = 4
    """Hex digits after ``0x`` that must match for two different addresses to look alike."""
    lookalike_suffix: int = 4
    """Hex digits at the end that must match too."""
    log_blocks: int = 5000
    """How many recent blocks of the user's ERC-20 ``Transfer`` logs are read (0: none)."""
    block_warnings: frozenset[str] = frozenset()
    """Warning codes that refuse the action (``policy_violation``) instead of warning."""

    def refuse_blocked(self, warnings: Iterable[CardWarning]) -> None:
        """Raise ``PolicyViolation`` for the first warning whose code the policy blocks."""
        for warning in warnings:
            if warning.code in self.block_warnings:
                raise PolicyViolation(
                    f"Refused by policy (block_warnings: {warning.code}): {warning.message}",
                    rule="block_warnings",
                    warning=warning.code,
                )


# -- refusals ----------------------------------------------------------------------------------


def refuse_unrecoverable(recipient: str, symbol: str, token: str | None = None) -> None:
    """Refuse (``PolicyViolation``) sending to an address funds can never come back from: the zero
    address, a known burn address, or the token's own contract (``token``)."""
    lowered = recipient.lower()
    if lowered == ZERO_ADDRESS:
        raise PolicyViolation(
            f"Refused: the recipient is the zero address; {symbol} sent there is destroyed, nobody holds "
            "its key. Check the recipient address.",
            rule="zero_address", recipient=recipient,
        )
    if lowered in BURN_ADDRESSES:
        raise PolicyViolation(
            f"Refused: {recipient} is a well-known burn address; {symbol} sent there can never be recovered. "
            "Check the recipient address.",
            rule="burn_address", recipient=recipient,
        )
    if token is not None and lowered == token.lower():
        raise PolicyViolation(
            f"Refused: {recipient} is the {symbol} token contract itself; tokens sent there are lost for good. "
            "Check the recipient address.",
            rule="token_contract", recipient=recipient,
        )


# -- look-alikes and history --------------------------------------------------------------------


def looks_like(a: str, b: str, prefix: int = 4, suffix: int = 4) -> bool:
    """Whether two different addresses share their first ``prefix`` and last ``suffix`` hex digits
    (what a wallet's shortened ``0x1234…abcd`` shows, and what a poisoner forges)."""
    x, y = a.lower().removeprefix("0x"), b.lower().removeprefix("0x")
    if x == y:
        return False
    return x[:prefix] == y[:prefix] and (suffix == 0 or x[-suffix:] == y[-suffix:])


@dataclass(frozen=True, slots=True)
class Counterparties:
    """Addresses the user dealt with on one network, lowercase."""

    settled: frozenset[str] = frozenset()
    """Recipients of the user's transfers Lunark settled (mined or confirmed): trusted."""
    sent: frozenset[str] = frozenset()
    """Recipients of the user's recent token transfers with a value, from the node's logs."""
    received: frozenset[str] = frozenset()
    """Senders of recent token transfers with a value to the user, from the node's logs."""
    complete: bool = True
    """False when the node would not give the logs: only Lunark's own history was checked."""

    @property
    def sent_to(self) -> frozenset[str]:
        return self.settled | self.sent

    @property
    def known(self) -> frozenset[str]:
        return self.settled | self.sent | self.received


class History(ContactBook, Protocol):
    """The store's reads the checks use (``lunark.store.Store`` is one): the settled transfers and
    the contacts."""

    async def list_chats(self, owner: str, *, limit: int = 100) -> list[ChatRecord]: ...

    async def settlements(self, *, chat_id: str | None = None, unfinished: bool = False) -> list[SettlementRecord]: ...


_SETTLED: Final = frozenset({"mined", "confirmed"})


async def settled_recipients(store: History, owner: str, chain_id: int) -> frozenset[str]:
    """Recipients of the owner's transfers that reached the chain on ``chain_id``, from the store."""
    # Contacts are not counted here but next to it (transfer_warnings' ``contacts``): saving an
    # address is choosing it, not having paid it, and the look-alike message says which it was.
    chats = await store.list_chats(owner.lower())
    found: set[str] = set()
    for chat in chats:
        for record in await store.settlements(chat_id=chat.chat_id):
            if record.state in _SETTLED and record.chain_id == chain_id and record.owner.lower() == owner.lower():
                recipient = record.prepared.get("recipient")
                if isinstance(recipient, str):
                    found.add(recipient.lower())
    return frozenset(found)


async def transfer_logs(
    client: ChainClient, owner: str, tokens: Sequence[str], blocks: int
) -> tuple[frozenset[str], frozenset[str]]:
    """``(sent to, received from)`` of the owner's ERC-20 transfers with a value in the last ``blocks``
    blocks, for the ``tokens`` the network knows. Zero-value transfers are left out: they are the
    poisoner's tool (anyone can make a token log a zero transfer "from" you to their look-alike)."""
    if not tokens or blocks <= 0:
        return frozenset(), frozenset()
    out_logs, in_logs = await client.token_transfer_logs(owner, tokens, blocks)

    def parties(logs: Iterable[Any], index: int) -> frozenset[str]:
        found = set()
        for entry in logs:
            topics, data = entry["topics"], bytes(entry["data"])
            if len(topics) == 3 and int.from_bytes(data[:32] or b"\0", "big") > 0:
                found.add("0x" + bytes(topics[index])[-20:].hex())
        return frozenset(found)

    return parties(out_logs, 2), parties(in_logs, 1)


async def counterparties(
    store: History | None, client: ChainClient, owner: str, policy: RecipientPolicy
) -> Counterparties:
    """Who the user dealt with on the client's network: the store's settled transfers, and the
    node's recent token ``Transfer`` logs where the node allows (``complete`` says whether it did)."""
    network = client.network

    async def logs() -> tuple[frozenset[str], frozenset[str], bool]:
        try:
            sent, received = await transfer_logs(
                client, owner, [t.address for t in network.tokens], policy.log_blocks
            )
        except (Web3Exception, aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            # Many public nodes cap eth_getLogs; the card says the check was partial, never guesses.
            log.info("recipient checks: no transfer logs from %s: %s", network.name, exc)
            return frozenset(), frozenset(), False
        return sent, received, True

    async def settled() -> frozenset[str]:
        return frozenset() if store is None else await settled_recipients(store, owner, network.chain_id)

    (sent, received, complete), done = await asyncio.gather(logs(), settled())
    return Counterparties(settled=done, sent=sent, received=received, complete=complete)


async def has_code(client: ChainClient, address: str) -> bool:
    """Whether ``address`` is a contract (an EIP-7702 delegated account is a person's, not one)."""
    try:
        code = await client.code_at(address)
    except (Web3Exception, aiohttp.ClientError, TimeoutError, OSError) as exc:
        # Fail closed: a card that cannot say whether it pays a contract is not offered.
        raise ChainError(
            f"Could not check whether {address} is a contract on {client.network.display_name}: {exc}",
            chain_id=client.network.chain_id,
        ) from exc
    return bool(code) and not (len(code) == 23 and code.startswith(_DELEGATION_PREFIX))


def transfer_warnings(
    intent: TransferIntent,
    history: Counterparties,
    *,
    network_name: str,
    is_contract: bool,
    policy: RecipientPolicy,
    contacts: Collection[str] = (),
) -> list[CardWarning]:
    """The warnings of a transfer card, from what the user's history and the node said. ``contacts``:
    the user's contacts' addresses, lowercase (a mapping to their labels names them in the message):
    chosen by the user, so never first-time and never a look-alike themselves, and what a look-alike
    may imitate."""
    recipient = intent.recipient
    lowered = recipient.lower()
    warnings: list[CardWarning] = []
    if lowered not in history.settled and lowered not in contacts:
        # A settled (or contact) address is one the user chose before; anything merely seen in the
        # logs, including a poisoner's own address, can still look like another.
        twin = next(
            (c for c in sorted(history.known | set(contacts))
             if looks_like(lowered, c, policy.lookalike_prefix, policy.lookalike_suffix)),
            None,
        )
        if twin is not None:
            if twin in contacts:
                label = contacts[twin] if isinstance(contacts, Mapping) else None
                what = f"your contact {label}" if label else "one of your contacts"
            else:
                what = f"an address you have {'sent to' if twin in history.sent_to else 'received from'} before"
            warnings.append(CardWarning(
                LOOKALIKE_RECIPIENT, "danger",
                f"{recipient} looks like {to_checksum_address(twin)}, {what}, "
                "but it is a different address. Scammers plant look-alike addresses in your history "
                "(address poisoning): compare every character before you approve.",
            ))
    if lowered not in history.sent_to and lowered not in contacts:
        warnings.append(CardWarning(
            FIRST_TIME_RECIPIENT, "warning",
            f"You have never sent to {recipient} on {network_name}. Make sure it is the right address.",
        ))
    if is_contract:
        warnings.append(CardWarning(
            RECIPIENT_IS_CONTRACT, "warning",
            f"{recipient} is a contract, not a personal account: {intent.symbol} sent to it can only "
            "come back if the contract was written to return it.",
        ))
    if not history.complete:
        warnings.append(CardWarning(
            HISTORY_INCOMPLETE, "info",
            f"The {network_name} node would not list your recent token transfers: the look-alike and "
            "first-time checks used Lunark's own history only.",
        ))
    return warnings


# -- provenance --------------------------------------------------------------------------------


def addresses_in(value: Any) -> set[str]:
    """Every 0x address in a string or any JSON-like value, lowercase."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(m.lower() for m in _ADDRESS.findall(value))
    elif isinstance(value, Mapping):
        for item in value.values():
            found |= addresses_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= addresses_in(item)
    return found


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where the addresses of a chat came from: typed by the user, or returned by a tool."""

    typed: frozenset[str] = frozenset()
    """Addresses in anything the user wrote in the chat (every earlier message counts), lowercase."""
    from_tools: Mapping[str, str] = field(default_factory=dict)
    """Address -> the first tool whose result carried it."""

    @classmethod
    def of(cls, messages: Sequence[BaseMessage], *, also_typed: Iterable[str] = ()) -> Provenance:
        """From a chat's messages; ``also_typed``: addresses the user gave otherwise (an edit, a
        contact, a name they typed that resolved to it)."""
        from langchain_core.messages import HumanMessage, ToolMessage

        typed = {a.lower() for a in also_typed}
        tools: dict[str, str] = {}
        for message in messages:
            if isinstance(message, HumanMessage):
                typed |= addresses_in(message.content)
            elif isinstance(message, ToolMessage):
                for address in addresses_in(message.content):
                    tools.setdefault(address, message.name or "a tool")
        return cls(typed=frozenset(typed), from_tools=tools)

    def warnings(self, args: Mapping[str, Any], *, ignore: Collection[str] = ()) -> list[CardWarning]:
        """One ``address_from_tool_output`` warning per address of ``args`` the user never typed
        (``ignore``: addresses no one can plant, e.g. the user's own and the configured tokens')."""
        skip = {a.lower() for a in ignore}
        out: list[CardWarning] = []
        for address in sorted(addresses_in(dict(args)) - self.typed - skip):
            shown = to_checksum_address(address)
            tool = self.from_tools.get(address)
            where = (f"it came from the result of the tool {tool}" if tool is not None
                     else "the assistant wrote it itself")
            out.append(CardWarning(
                ADDRESS_FROM_TOOL_OUTPUT, "danger",
                f"You never typed {shown} in this chat: {where}. Text from tools and web pages can be "
                "written by anyone to redirect your funds (prompt injection); approve only if you know "
                "this address is right.",
            ))
        return out


def missing_acknowledgements(warnings: Iterable[Mapping[str, Any]], acknowledged: Collection[str]) -> list[str]:
    """Codes of the danger warnings ``acknowledged`` does not name, in card order, once each."""
    missing: list[str] = []
    for warning in warnings:
        code = str(warning.get("code"))
        if warning.get("severity", "danger") == "danger" and code not in acknowledged and code not in missing:
            missing.append(code)
    return missing
