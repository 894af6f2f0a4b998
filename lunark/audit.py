"""The audit trail: every offered card, decision, settlement outcome and contact change, per user,
hash-chained.

Each record carries the hash of the user's previous record, so an export can be checked without
trusting the server that wrote it: an edited record no longer hashes to its ``hash``, a missing or
reordered one breaks the ``prev`` links or the ``seq`` count, and every outcome names a receipt
that any node of the network can confirm (``lunark audit verify FILE --rpc-url URL``).

A record, one JSON object per line of an export::

    {"seq": 3, "address": "0x...", "kind": "outcome", "at": "2026-12-07T03:00:00.000000Z",
     "chat_id": "chat_...", "approval_id": "apr_...", "call_id": "call_...",
     "fingerprint": "<sha256 of the approved action>", "body": {...},
     "prev": "<hash of seq 2>", "hash": "<sha256 of this record without hash>"}

A contact change (``contact``) is in the chain too: a contact silences ``first_time_recipient`` and
counts as typed by the user, so one planted by a stolen session must show. It belongs to no chat,
approval or action (``chat_id``, ``approval_id``, ``call_id`` and ``fingerprint`` are null) and names
no receipt::

    {"seq": 4, "kind": "contact", "chat_id": null, "approval_id": null, ...,
     "body": {"action": "put", "label": "bob", "address": "0x7099...79C8",
              "previous": [{"label": "bob", "address": "0x3C44...93BC"}]}, ...}

The hash is the sha256 of the record's canonical JSON (``canonical_json``: sorted keys, no
spaces, UTF-8) without its ``hash`` field; the first record's ``prev`` is 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "GENESIS",
    "KINDS",
    "AuditEntry",
    "AuditKind",
    "AuditProblem",
    "AuditRecord",
    "canonical_json",
    "card_entries",
    "chain_problems",
    "contact_entry",
    "decision_entries",
    "fingerprint",
    "outcome_entry",
    "receipt_problems",
    "record_hash",
]

AuditKind = Literal["card", "decision", "outcome", "contact"]
KINDS: tuple[AuditKind, ...] = ("card", "decision", "outcome", "contact")

GENESIS = "0" * 64
"""The ``prev`` of a user's first record."""


def canonical_json(value: Any) -> str:
    """The one JSON text of a value that hashes are taken over: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint(action: Mapping[str, Any]) -> str:
    """The intent fingerprint: sha256 hex of the canonical JSON of the approved action."""
    return hashlib.sha256(canonical_json(action).encode()).hexdigest()


def record_hash(record: Mapping[str, Any]) -> str:
    """The hash of a record: sha256 of its canonical JSON without its own ``hash`` field."""
    body = {key: value for key, value in record.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord:
    """One link of a user's audit chain, as the store keeps it and an export writes it."""

    seq: int
    """1 for the user's first record, then one more each time."""
    address: str
    """The user, lowercase ``0x`` hex."""
    kind: AuditKind
    """``card`` (offered), ``decision`` (who decided what), ``outcome`` (the settlement's end),
    ``contact`` (a contact saved or deleted)."""
    at: str
    """When, ISO 8601 UTC with microseconds and ``Z``."""
    chat_id: str | None
    approval_id: str | None
    """The chat and approval the record is about; None for a contact change, which has neither."""
    call_id: str | None
    """The action the record is about; None for a decision on the whole card and a contact change."""
    fingerprint: str | None
    """The intent fingerprint of the action (on the card, the decision and the outcome alike)."""
    body: dict[str, Any] = field(default_factory=dict)
    """What happened: the card's action, the decision, the outcome with its receipt, or the contact
    change (``contact_entry``)."""
    prev: str
    """The previous record's ``hash`` (``GENESIS`` for the first)."""
    hash: str
    """``record_hash`` of this record."""

    def to_json(self) -> dict[str, Any]:
        """The record as an export line's object (every field, ``hash`` last)."""
        return {
            "seq": self.seq, "address": self.address, "kind": self.kind, "at": self.at,
            "chat_id": self.chat_id, "approval_id": self.approval_id, "call_id": self.call_id,
            "fingerprint": self.fingerprint, "body": self.body, "prev": self.prev, "hash": self.hash,
        }

    @classmethod
    def link(
        cls,
        *,
        seq: int,
        prev: str,
        address: str,
        kind: AuditKind,
        at: str,
        chat_id: str | None,
        approval_id: str | None,
        call_id: str | None,
        fingerprint: str | None,
        body: Mapping[str, Any],
    ) -> AuditRecord:
        """A new record after ``prev``, its hash computed."""
        fields: dict[str, Any] = {
            "seq": seq, "address": address.lower(), "kind": kind, "at": at, "chat_id": chat_id,
            "approval_id": approval_id, "call_id": call_id, "fingerprint": fingerprint,
            # round-tripped so the hash is of exactly what a reader of the JSON will see
            "body": json.loads(canonical_json(dict(body))), "prev": prev,
        }
        return cls(**fields, hash=record_hash(fields))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """What happened, before the store links it into the user's chain (``AuditRecord.link``)."""

    address: str
    kind: AuditKind
    chat_id: str | None
    approval_id: str | None
    call_id: str | None
    fingerprint: str | None
    body: Mapping[str, Any]


_CARD_FIELDS = ("name", "args", "summary", "tx", "preview", "warnings", "recipient_name", "facts")


def card_entries(
    owner: str, chat_id: str, request: Mapping[str, Any]
) -> list[AuditEntry]:
    """One ``card`` record per action of an offered ``pending_approval``: what the user was shown."""
    return [
        AuditEntry(
            address=owner, kind="card", chat_id=chat_id, approval_id=str(request["approval_id"]),
            call_id=action.get("call_id"), fingerprint=action.get("fingerprint"),
            body={
                **{key: action[key] for key in _CARD_FIELDS if action.get(key) is not None},
                "expires_at": request.get("expires_at"),
            },
        )
        for action in request.get("action_requests") or ()
    ]


def decision_entries(
    owner: str, chat_id: str, approval_id: str, request: Mapping[str, Any],
    decisions: list[Mapping[str, Any]], by: str,
) -> list[AuditEntry]:
    """One ``decision`` record per action: who decided what (``user``, ``timeout``, ``superseded``), with
    the wallet's hash, or the hash of the bytes it signed, or the edited arguments."""
    entries = []
    actions = list(request.get("action_requests") or ())
    for index, decision in enumerate(decisions):
        action = actions[index] if index < len(actions) else {}
        body: dict[str, Any] = {"decision": decision.get("type"), "by": by}
        for key in ("tx_hash", "acknowledge", "message"):
            if decision.get(key):
                body[key] = decision[key]
        if decision.get("signed_tx"):
            body["signed_tx_hash"] = _keccak_hex(str(decision["signed_tx"]))
        if decision.get("edited_action"):
            body["edited_args"] = decision["edited_action"].get("args")
        entries.append(AuditEntry(
            address=owner, kind="decision", chat_id=chat_id, approval_id=approval_id,
            call_id=action.get("call_id"), fingerprint=action.get("fingerprint"), body=body,
        ))
    return entries


_RECEIPT_STATUS = {"confirmed": 1, "mined": 1, "failed": 0}


def outcome_entry(
    *, owner: str, chat_id: str, approval_id: str, call_id: str, fingerprint: str | None, state: str,
    chain_id: int, tx_hash: str | None, late: bool, evidence: Mapping[str, Any],
) -> AuditEntry:
    """The ``outcome`` record of a settlement that reached a final state, with its receipt's block and
    status where a transaction was mined (what ``receipt_problems`` checks on a node)."""
    body: dict[str, Any] = {"state": state, "chain_id": chain_id, "tx_hash": tx_hash, "late": late}
    block = evidence.get("block_number")
    if tx_hash and isinstance(block, int) and state in _RECEIPT_STATUS:
        body["block_number"] = block
        body["receipt_status"] = _RECEIPT_STATUS[state]
    for key in ("reason", "onchain"):
        if evidence.get(key):
            body[key] = evidence[key]
    return AuditEntry(
        address=owner, kind="outcome", chat_id=chat_id, approval_id=approval_id, call_id=call_id,
        fingerprint=fingerprint, body=body,
    )


def contact_entry(
    owner: str, action: Literal["put", "delete"], label: str, address: str,
    previous: Sequence[Mapping[str, str]] = (),
) -> AuditEntry:
    """The ``contact`` record of a contact saved (``put``) or deleted (``delete``): its label and address
    as stored, and for a save the contacts it replaced (``previous``: the label's earlier address, the
    address's earlier label), so that the chain alone tells what the address book held when."""
    body: dict[str, Any] = {"action": action, "label": label, "address": address}
    if previous:
        body["previous"] = [{"label": p["label"], "address": p["address"]} for p in previous]
    return AuditEntry(address=owner, kind="contact", chat_id=None, approval_id=None, call_id=None,
                      fingerprint=None, body=body)


def _keccak_hex(raw: str) -> str:
    from eth_utils.crypto import keccak

    return "0x" + keccak(hexstr=raw).hex()


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditProblem:
    """Why an exported chain does not verify, at which line."""

    line: int
    """1-based line of the export (0: the file as a whole)."""
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


_FIELDS = frozenset(
    {"seq", "address", "kind", "at", "chat_id", "approval_id", "call_id", "fingerprint", "body", "prev", "hash"}
)


def chain_problems(records: Iterable[Mapping[str, Any]]) -> list[AuditProblem]:
    """Every break in a user's exported chain: an edited, missing, reordered or foreign record.

    Checks the shape, that ``seq`` counts 1, 2, 3 ..., that each ``prev`` is the hash before it and
    that each ``hash`` is the record's own. Receipts are checked on a node by the caller.
    """
    problems: list[AuditProblem] = []
    prev, address = GENESIS, None
    count = 0
    for line, record in enumerate(records, start=1):
        count += 1
        if set(record) != _FIELDS:
            problems.append(AuditProblem(line=line, message=f"fields are {sorted(record)}, not an audit record's"))
            continue
        if record["seq"] != line:
            problems.append(AuditProblem(line=line, message=f"seq is {record['seq']}, expected {line} "
                                                            "(a record is missing, added or out of order)"))
        if address is None:
            address = record["address"]
        elif record["address"] != address:
            problems.append(AuditProblem(line=line, message=f"belongs to {record['address']}, not {address}"))
        if record["kind"] not in KINDS:
            problems.append(AuditProblem(line=line, message=f"unknown kind {record['kind']!r}"))
        if record["prev"] != prev:
            problems.append(AuditProblem(line=line, message="prev is not the hash of the record before it "
                                                            "(a record is missing, added or out of order)"))
        if record_hash(record) != record["hash"]:
            problems.append(AuditProblem(line=line, message="the record was edited: it does not hash to its hash"))
        prev = record["hash"]
    if count == 0:
        problems.append(AuditProblem(line=0, message="the export holds no record"))
    return problems


async def receipt_problems(
    records: Iterable[Mapping[str, Any]], rpc_urls: Iterable[str], *, timeout: float = 10.0
) -> list[AuditProblem]:
    """Every outcome whose receipt a node does not confirm: missing, another block, another status.

    ``rpc_urls`` are nodes of the networks the outcomes name, told apart by their chain id. An
    outcome on a network none of them serves is a problem too: what cannot be checked is not passed.
    """
    from web3 import AsyncHTTPProvider, AsyncWeb3
    from web3.exceptions import TransactionNotFound

    nodes: dict[int, AsyncWeb3[AsyncHTTPProvider]] = {}
    for url in rpc_urls:
        node = AsyncWeb3(AsyncHTTPProvider(url, request_kwargs={"timeout": timeout}))
        nodes[await node.eth.chain_id] = node
    problems: list[AuditProblem] = []
    for line, record in enumerate(records, start=1):
        body = record.get("body")
        if record.get("kind") != "outcome" or not isinstance(body, Mapping) or "block_number" not in body:
            continue  # only a mined outcome names a receipt
        chain_id = body.get("chain_id")
        w3 = nodes.get(chain_id) if isinstance(chain_id, int) else None
        if w3 is None:
            problems.append(AuditProblem(line=line, message=f"no --rpc-url serves chain {body.get('chain_id')}, "
                                                            f"so {body['tx_hash']} cannot be checked"))
            continue
        try:
            receipt = await w3.eth.get_transaction_receipt(body["tx_hash"])
        except TransactionNotFound:
            problems.append(AuditProblem(line=line, message=f"the node has no receipt for {body['tx_hash']}"))
            continue
        if receipt["blockNumber"] != body.get("block_number") or receipt["status"] != body.get("receipt_status"):
            problems.append(AuditProblem(
                line=line,
                message=f"{body['tx_hash']}: the node says block {receipt['blockNumber']} status {receipt['status']}, "
                f"the record says block {body.get('block_number')} status {body.get('receipt_status')}",
            ))
    return problems
