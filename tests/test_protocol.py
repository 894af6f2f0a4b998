"""The wire protocol models against the contract, and docs/protocol.md against the models."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import lunark.errors
from lunark import protocol
from lunark.chain.types import TxStatus
from lunark.graph.approval import ApproveDecision, Decision, EditDecision, RejectDecision
from lunark.protocol import (
    CLIENT_EVENTS,
    EVENT_MODELS,
    EVENT_TYPES,
    MAX_CONTENT_CHARS,
    MAX_DECISIONS,
    WALLET_EVENTS,
    Abort,
    ActionRequest,
    ApprovalRequest,
    ApprovalResolved,
    ApprovalWarning,
    BalanceChange,
    ContinueMessage,
    Error,
    ErrorAck,
    ErrorBody,
    ErrorCode,
    JoinChat,
    JoinChatAck,
    MessageEnd,
    MessageStart,
    NetworkInfo,
    NetworkSwitch,
    OkAck,
    PendingApproval,
    Preview,
    ResumeDecisions,
    ReviewConfig,
    SendMessage,
    SendMessageAck,
    Status,
    Token,
    ToolResult,
    TxUpdate,
    UnsignedTx,
    Usage,
    WalletChanged,
    WalletChangedAck,
    parse_event,
)
from lunark.protocol._render import render_markdown

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"
BEGIN = "<!-- BEGIN GENERATED: python scripts/gen_protocol_doc.py -->"
END = "<!-- END GENERATED -->"

# --- the contract, copied from /work/shared/design/protocol.md ------------------------------------
# Written out by hand on purpose: a rename in the models fails here.

CONTRACT_ENVELOPE = {"chat_id", "seq", "ts"}
CONTRACT_EVENTS: dict[str, set[str]] = {
    "message_start": {"message_id", "role", "content"},
    "token": {"message_id", "text"},
    "tool_call": {"message_id", "call_id", "name", "args", "status"},
    "tool_result": {"call_id", "status", "result", "error"},
    "pending_approval": {"approval_id", "expires_at", "action_requests", "review_configs"},
    "approval_resolved": {"approval_id", "decisions", "by"},
    "tx_update": {
        "call_id", "tx_hash", "chain_id", "status", "confirmations", "block_number", "explorer_url", "reason",
    },
    "network_switch": {"chain_id", "name", "symbol", "decimals", "rpc_urls", "explorer_url"},
    "status": {"text"},
    "message_end": {"message_id", "finish_reason", "usage"},
    "error": {"code", "message"},
}
CONTRACT_LITERALS: dict[tuple[str, str], set[str]] = {
    ("message_start", "role"): {"user", "assistant"},
    ("tool_call", "status"): {"running", "awaiting_approval"},
    ("tool_result", "status"): {"success", "error", "rejected", "postponed", "superseded"},
    ("approval_resolved", "by"): {"user", "timeout"},
    ("message_end", "finish_reason"): {"stop", "aborted", "error", "awaiting_approval", "length", "interrupted"},
}
CONTRACT_TX_STATUSES = {"submitted", "mined", "confirmed", "failed", "replaced", "mismatch", "dropped"}
CONTRACT_OBJECTS: dict[type[BaseModel], set[str]] = {
    ActionRequest: {
        "call_id", "name", "args", "description", "summary", "tx",
        # informed approval (issue 23): wire names outside clients rely on
        "preview", "warnings", "fingerprint", "recipient_name",
    },
    Preview: {"simulated", "changes", "gas_used", "reason"},
    BalanceChange: {"address", "asset", "symbol", "decimals", "before", "after", "delta"},
    ApprovalWarning: {"code", "severity", "message"},
    ApproveDecision: {"type", "tx_hash", "signed_tx", "acknowledge"},
    ReviewConfig: {"action_name", "allowed_decisions"},
    Usage: {"output_tokens", "ttft_ms", "tokens_per_s"},
    UnsignedTx: {
        "chain_id", "from", "to", "value", "data", "gas", "max_fee_per_gas", "max_priority_fee_per_gas", "nonce",
    },
    ErrorBody: {"code", "message"},
}
CONTRACT_CLIENT_EVENTS: dict[str, tuple[set[str], set[str]]] = {
    "join_chat": ({"chat_id", "last_seq"}, {"chat_id", "last_seq", "network", "pending_approval"}),
    "send_message": ({"chat_id", "content", "client_message_id"}, {"message_id"}),
    "resume_decisions": ({"chat_id", "approval_id", "decisions"}, {"ok"}),
    "abort": ({"chat_id"}, {"ok"}),
    "wallet_changed": ({"chat_id", "chain_id"}, {"ok", "network"}),
    # Lunark's extension: continue an answer cut at the model's output limit.
    "continue_message": ({"chat_id", "message_id"}, {"ok"}),
    # Lunark's extension (issue 15): a tool call the user's own client asks for (lunark mcp).
    "call_tool": ({"chat_id", "name", "args"}, {"call_id"}),
}
CONTRACT_ERROR_CODES = {
    "unauthorized", "forbidden", "not_found", "invalid_input", "busy", "already_decided", "approval_expired",
    "no_pending_approval", "policy_violation", "chain_error", "model_error", "internal", "rate_limited",
    "tool_error",  # an extension (issue 15): an MCP server or plugin service failed, timed out or is down
    # informed approval (issue 23): a danger warning not acknowledged; the outcome changed at signing
    "acknowledgement_required", "preview_changed",
}


def wire_fields(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}


def literal_values(model: type[BaseModel], field: str) -> set[str]:
    return set(typing.get_args(model.model_fields[field].annotation))


# --- samples -------------------------------------------------------------------------------------

ME = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
TO = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
HASH = "0x" + "ab" * 32
TX = {
    "chain_id": "0x7a69",
    "from": ME,
    "to": TO,
    "value": "0x2386f26fc10000",
    "data": "0x",
    "gas": "0x5208",
    "max_fee_per_gas": "0x3b9aca00",
    "max_priority_fee_per_gas": "0x1",
    "nonce": "0x0",
}
APPROVAL = {
    "approval_id": "apr_0123456789abcdef0123",
    "expires_at": "2026-01-01T00:05:00.000Z",
    "action_requests": [
        {
            "call_id": "call_1",
            "name": "transfer",
            "args": {"to": TO, "amount": "0.01"},
            "description": "Send native currency or an ERC-20 token.",
            "summary": "Send 0.01 ETH to 0x3C44…93BC on Anvil (fee ≤ 0.00002 ETH)",
            "tx": TX,
        },
        {
            "call_id": "call_2",
            "name": "switch_network",
            "args": {"network": "sepolia"},
            "description": "Switch network.",
            "summary": "Switch to Sepolia",
        },
    ],
    "review_configs": [
        {"action_name": "transfer", "allowed_decisions": ["approve", "edit", "reject"]},
        {"action_name": "switch_network", "allowed_decisions": ["approve", "reject"]},
    ],
}
NETWORK = {
    "chain_id": 31337,
    "name": "anvil",
    "display_name": "Anvil",
    "symbol": "ETH",
    "decimals": 18,
    "rpc_urls": ["http://127.0.0.1:8545"],
}
ENV = {"chat_id": "chat_1", "ts": 1767225600.125}
SAMPLES: dict[str, dict[str, Any]] = {
    "message_start": {**ENV, "seq": 1, "message_id": "m1", "role": "user", "content": "send 0.01 ETH"},
    "token": {**ENV, "seq": 2, "message_id": "m2", "text": "Sure"},
    "tool_call": {
        **ENV, "seq": 3, "message_id": "m2", "call_id": "call_1", "name": "transfer",
        "args": {"to": TO, "amount": "0.01"}, "status": "awaiting_approval",
    },
    "tool_result": {
        **ENV, "seq": 4, "call_id": "call_0", "status": "error", "result": None,
        "error": {"code": "chain_error", "message": "reverted", "reason": "nope"},
    },
    "pending_approval": {**ENV, "seq": 5, **APPROVAL},
    "approval_resolved": {
        **ENV, "seq": 6, "approval_id": APPROVAL["approval_id"], "by": "user",
        "decisions": [{"type": "approve", "tx_hash": HASH}, {"type": "reject", "message": "not now"}],
    },
    "tx_update": {
        **ENV, "seq": 7, "call_id": "call_1", "tx_hash": HASH, "chain_id": 31337, "status": "confirmed",
        "confirmations": 1, "block_number": 12, "gas_used": 21000,
    },
    "network_switch": {
        **ENV, "seq": 8, "chain_id": 11155111, "name": "sepolia", "symbol": "ETH", "decimals": 18,
        "rpc_urls": ["https://rpc.sepolia.org"], "explorer_url": "https://sepolia.etherscan.io",
    },
    "status": {**ENV, "seq": 9, "text": "waiting for your approval"},
    "message_end": {
        **ENV, "seq": 10, "message_id": "m2", "finish_reason": "awaiting_approval",
        "usage": {"output_tokens": 42, "ttft_ms": 120.5, "tokens_per_s": 33.0},
    },
    "error": {"ts": 1767225600.5, "code": "busy", "message": "A turn is already running in this chat."},
}


# --- the doc --------------------------------------------------------------------------------------


def test_doc_generated_block_matches_models() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    block = text.split(BEGIN)[1].split(END)[0]
    assert block.strip() == render_markdown().strip(), "run: python scripts/gen_protocol_doc.py"


def test_gen_script_check_passes_and_detects_drift(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "gen_protocol_doc.py"
    ok = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    stale = tmp_path / "protocol.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("| `busy` |", "| `bussy` |"), encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, str(script), "--check", "--path", str(stale)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1
    subprocess.run([sys.executable, str(script), "--path", str(stale)], check=True, capture_output=True)
    assert stale.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")


def test_reference_names_every_event_and_error_code() -> None:
    text = render_markdown()
    for name in [*CLIENT_EVENTS, *EVENT_TYPES, *(c.value for c in ErrorCode)]:
        assert f"`{name}`" in text
    for model in (ApproveDecision, EditDecision, RejectDecision):
        assert f"#### `{model.__name__}`" in text


def test_every_protocol_field_has_a_description() -> None:
    models = [m for _, m in inspect.getmembers(protocol, inspect.isclass) if issubclass(m, BaseModel)]
    assert len(models) > 25
    for model in models:
        if model.__module__ != protocol.__name__:
            continue
        for name, info in model.model_fields.items():
            assert info.description, f"{model.__name__}.{name} has no description"


# --- the contract ---------------------------------------------------------------------------------


def test_every_contract_event_exists_with_its_fields() -> None:
    assert set(EVENT_TYPES) == set(CONTRACT_EVENTS)
    for type_, fields in CONTRACT_EVENTS.items():
        model = EVENT_MODELS[type_]
        assert model.model_fields["type"].default == type_
        missing = (fields | CONTRACT_ENVELOPE | {"type"}) - wire_fields(model)
        assert not missing, f"{type_} lacks {missing}"


def test_contract_enumerations_are_accepted() -> None:
    for (type_, field), values in CONTRACT_LITERALS.items():
        assert values <= literal_values(EVENT_MODELS[type_], field), (type_, field)
    assert {s.value for s in TxStatus} == CONTRACT_TX_STATUSES
    assert TxUpdate.model_fields["status"].annotation is TxStatus
    assert {c.value for c in ErrorCode} == CONTRACT_ERROR_CODES
    assert set(typing.get_args(ReviewConfig.model_fields["allowed_decisions"].annotation)[0].__args__) == {
        "approve", "edit", "reject",
    }


def test_contract_objects_have_their_fields() -> None:
    for model, fields in CONTRACT_OBJECTS.items():
        assert fields <= wire_fields(model), model.__name__
    assert set(ApprovalRequest.model_fields) == CONTRACT_EVENTS["pending_approval"]
    assert issubclass(PendingApproval, ApprovalRequest)


def test_client_events_and_acks_have_their_fields() -> None:
    assert set(CLIENT_EVENTS) == set(CONTRACT_CLIENT_EVENTS)
    for event, (payload_fields, ack_fields) in CONTRACT_CLIENT_EVENTS.items():
        payload, ack = CLIENT_EVENTS[event]
        assert wire_fields(payload) == payload_fields, event
        assert ack_fields <= wire_fields(ack), event


def test_wallet_events() -> None:
    assert WALLET_EVENTS == ("pending_approval", "network_switch", "tx_update")
    assert set(WALLET_EVENTS) <= set(EVENT_TYPES)


def test_public_names() -> None:
    for name in protocol.__all__:
        assert hasattr(protocol, name), name
    assert sorted(protocol.__all__) == sorted(set(protocol.__all__))


def test_every_lunark_error_code_is_an_error_code() -> None:
    classes = [c for _, c in inspect.getmembers(lunark.errors, inspect.isclass) if issubclass(c, Exception)]
    errors = [c for c in classes if issubclass(c, lunark.errors.LunarkError)]
    assert len(errors) >= 20
    for cls in errors:
        assert cls.code in ErrorCode.__members__.values(), f"{cls.__name__}.code = {cls.code!r}"
    err = lunark.errors.TransactionFailed("reverted", tx_hash=HASH, block_number=3)
    body = ErrorBody.model_validate(err.to_dict())
    assert body.code is ErrorCode.CHAIN_ERROR and body.model_extra == {"tx_hash": HASH, "block_number": 3}


# --- server events: validate, round-trip, dispatch ------------------------------------------------


@pytest.mark.parametrize("type_", EVENT_TYPES)
def test_sample_event_round_trips_through_json(type_: str) -> None:
    sample = {"type": type_, **SAMPLES[type_]}
    event = parse_event(sample)
    assert type(event) is EVENT_MODELS[type_]
    wire = event.to_wire()
    text = json.dumps(wire)
    assert parse_event(json.loads(text)) == event
    assert parse_event(text) == event
    assert type(event).model_validate_json(event.model_dump_json()) == event
    # Nothing the sample carried is lost (nulls are left out on the wire).
    for key, value in sample.items():
        if value is not None:
            assert key in wire, key


def test_parse_event_picks_the_model() -> None:
    assert isinstance(parse_event({"type": "token", **SAMPLES["token"]}), Token)
    assert isinstance(parse_event({"type": "status", **SAMPLES["status"]}), Status)
    assert isinstance(parse_event({"type": "tool_call", **SAMPLES["tool_call"]}), protocol.ToolCall)
    with pytest.raises(ValidationError):
        parse_event({"type": "nope", **SAMPLES["status"]})
    with pytest.raises(ValidationError):
        parse_event({**SAMPLES["status"]})  # no type
    with pytest.raises(ValidationError):
        parse_event({"type": "token", **SAMPLES["status"]})  # status's fields, token's type


def test_event_details() -> None:
    pending = parse_event({"type": "pending_approval", **SAMPLES["pending_approval"]})
    assert isinstance(pending, PendingApproval)
    tx = pending.action_requests[0].tx
    assert tx is not None and tx.from_ == ME
    assert pending.to_wire()["action_requests"][0]["tx"]["from"] == ME
    assert "tx" not in pending.to_wire()["action_requests"][1]

    resolved = parse_event({"type": "approval_resolved", **SAMPLES["approval_resolved"]})
    assert isinstance(resolved, ApprovalResolved)
    assert [type(d) for d in resolved.decisions] == [ApproveDecision, RejectDecision]

    result = parse_event({"type": "tool_result", **SAMPLES["tool_result"]})
    assert isinstance(result, ToolResult) and isinstance(result.error, ErrorBody)
    assert result.error.model_extra == {"reason": "nope"}
    odd = parse_event({"type": "tool_result", **SAMPLES["tool_result"], "error": {"detail": "?"}})
    assert isinstance(odd, ToolResult) and odd.error == {"detail": "?"}

    update = parse_event({"type": "tx_update", **SAMPLES["tx_update"]})
    assert isinstance(update, TxUpdate) and update.status is TxStatus.CONFIRMED

    error = parse_event({"type": "error", **SAMPLES["error"]})
    assert isinstance(error, Error) and error.seq is None and error.chat_id is None
    assert error.code is ErrorCode.BUSY
    assert isinstance(parse_event({"type": "error", **SAMPLES["error"], "chat_id": "c", "seq": 3}), Error)


def test_constructing_events_fills_the_type() -> None:
    event = MessageEnd(chat_id="c", seq=1, ts=0.0, message_id="m", finish_reason="stop", usage=Usage(output_tokens=0))
    assert event.to_wire() == {
        "type": "message_end", "chat_id": "c", "seq": 1, "ts": 0.0, "message_id": "m", "finish_reason": "stop",
        "usage": {"output_tokens": 0},
    }
    start = MessageStart(chat_id="c", seq=2, ts=1.5, message_id="m", role="assistant")
    assert "content" not in start.to_wire()
    assert NetworkSwitch(chat_id="c", seq=3, ts=1.0, **{k: v for k, v in NETWORK.items() if k != "display_name"})


# --- the constructors every event is built with ---------------------------------------------------

BUILT: dict[str, list[dict[str, Any]]] = {
    "message_start": [protocol.message_start("m1", "assistant"), protocol.message_start("m1", "user", "hi")],
    "token": [protocol.token("m1", "Hel")],
    "tool_call": [
        protocol.tool_call("call_1", "transfer", {"to": TO, "amount": "0.01"}, "running"),
        protocol.tool_call("call_1", "transfer", {}, "awaiting_approval", message_id="m1"),
    ],
    "tool_result": [
        protocol.tool_result("call_1", "success", {"tx_hash": HASH}),
        protocol.tool_result("call_1", "rejected", {"status": "rejected"}),
        protocol.tool_result(
            "call_1", "error", error=lunark.errors.TransactionFailed("reverted", tx_hash=HASH).to_dict()
        ),
    ],
    "pending_approval": [protocol.pending_approval(APPROVAL)],
    "approval_resolved": [
        protocol.approval_resolved(
            "apr_1", [protocol.approve_decision(tx_hash=HASH), protocol.reject_decision("no")], "user"
        ),
        protocol.approval_resolved("apr_1", [protocol.reject_decision("The approval expired.")], "timeout"),
    ],
    "tx_update": [
        protocol.tx_update("call_1", {"tx_hash": HASH, "chain_id": 31337, "status": "confirmed", "confirmations": 1,
                                      "block_number": 12, "gas_used": 21000}, late=True),
        protocol.tx_update("call_1", {"chain_id": 31337, "status": "mismatch", "confirmations": 0,
                                      "reason": "not the approved transfer", "differences": {}}),
    ],
    "network_switch": [protocol.network_switch(**{**NETWORK, "confirmations": 2, "explorer_url": None})],
    "status": [protocol.status("thinking…")],
    "message_end": [
        protocol.message_end("m1", "stop", protocol.usage(42, ttft_ms=120.5, tokens_per_s=33.0)),
        protocol.message_end("m1", "interrupted", protocol.usage(3), message="The server stopped."),
    ],
    "error": [protocol.error("internal", "Internal error."), protocol.error(**lunark.errors.Busy("busy").to_dict())],
}


def without_none(value: Any) -> Any:
    """What ``to_wire`` keeps of a JSON value: no ``null`` member, at any depth."""
    if isinstance(value, dict):
        return {k: without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_none(v) for v in value]
    return value


def test_there_is_a_constructor_for_every_event_type() -> None:
    assert set(BUILT) == set(EVENT_TYPES)
    for type_ in EVENT_TYPES:
        assert callable(getattr(protocol, type_)), type_


@pytest.mark.parametrize(("type_", "built"), [(t, e) for t, events in BUILT.items() for e in events],
                         ids=lambda v: v if isinstance(v, str) else None)
def test_every_constructor_builds_its_model_and_nothing_else(type_: str, built: dict[str, Any]) -> None:
    # Unknown fields are allowed on server events, so validating is not enough: a misspelled key
    # would pass. Every key must be a field of the model, and dumping the model must give it back.
    assert built["type"] == type_
    model = EVENT_MODELS[type_]
    wire = json.loads(json.dumps(built))
    assert set(wire) <= wire_fields(model), set(wire) - wire_fields(model)
    if type_ == "tool_call":
        wire.setdefault("message_id", "m1")  # a graph node's call: run_turn adds its message
    event = parse_event({**wire, "chat_id": "chat_1", "seq": 1, "ts": 1.5})
    assert isinstance(event, model)
    dumped = event.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_unset=True)
    assert dumped == without_none({**wire, "chat_id": "chat_1", "seq": 1, "ts": 1.5})


def test_constructors_write_the_bytes_clients_get() -> None:
    # The order and the nulls are the wire's: the event log stores this text and replays it.
    assert json.dumps(protocol.message_end("m", "error", protocol.usage(0))) == (
        '{"type": "message_end", "message_id": "m", "finish_reason": "error", '
        '"usage": {"output_tokens": 0, "ttft_ms": null, "tokens_per_s": null}}'
    )
    assert json.dumps(protocol.tool_result("c", "error", error={"code": "internal", "message": "x"})) == (
        '{"type": "tool_result", "call_id": "c", "status": "error", "result": null, '
        '"error": {"code": "internal", "message": "x"}}'
    )
    assert list(protocol.tool_call("c", "t", {}, "running", message_id="m")) == [
        "type", "call_id", "name", "args", "status", "message_id"]
    assert list(protocol.error(**lunark.errors.Busy("busy", chat_id="c").to_dict())) == [
        "type", "code", "message", "chat_id"]
    assert protocol.token("m", "a") is not protocol.token("m", "a")  # consumers may add to an event


def test_the_constructors_literals_are_the_models() -> None:
    assert set(typing.get_args(protocol.FinishReason)) == literal_values(MessageEnd, "finish_reason")
    assert set(typing.get_args(protocol.ToolResultStatus)) == literal_values(ToolResult, "status")


def test_an_interrupted_end_says_so_in_status_too() -> None:
    end = protocol.message_end("m", "interrupted", protocol.usage(3), message="stopped")
    assert (end["finish_reason"], end["status"], end["message"]) == ("interrupted", "interrupted", "stopped")
    event = parse_event({**end, "chat_id": "c", "seq": 1, "ts": 0.0})
    assert isinstance(event, MessageEnd) and event.status == "interrupted"
    assert "status" not in protocol.message_end("m", "stop", protocol.usage(3))


@pytest.mark.parametrize(
    ("decision", "model"),
    [
        (protocol.approve_decision(), ApproveDecision),
        (protocol.approve_decision(tx_hash=HASH, acknowledge=["lookalike_recipient"]), ApproveDecision),
        (protocol.approve_decision(signed_tx="0x02f8"), ApproveDecision),
        (protocol.edit_decision("transfer", {"amount": "1"}), EditDecision),
        (protocol.reject_decision(), RejectDecision),
        (protocol.reject_decision("not now"), RejectDecision),
    ],
)
def test_decision_constructors_build_their_models(decision: dict[str, Any], model: type[BaseModel]) -> None:
    parsed = ResumeDecisions.model_validate({"chat_id": "c", "approval_id": "a", "decisions": [decision]})
    assert isinstance(parsed.decisions[0], model)
    assert parsed.decisions[0].model_dump(mode="json", exclude_none=True) == decision


def test_the_event_log_stamps_type_and_chat() -> None:
    assert protocol.chat_event("status", {"text": "x"}, "c") == {"text": "x", "type": "status", "chat_id": "c"}
    assert list(protocol.chat_event("status", protocol.status("x"), "c")) == ["type", "text", "chat_id"]


def test_server_events_keep_unknown_fields() -> None:
    event = parse_event({"type": "token", **SAMPLES["token"], "added_later": {"x": 1}})
    assert event.to_wire()["added_later"] == {"x": 1}
    assert NetworkInfo.model_validate({**NETWORK, "testnet": True}).model_extra == {"testnet": True}


@pytest.mark.parametrize(
    ("type_", "change"),
    [
        ("token", {"seq": 0}),
        ("token", {"seq": "one"}),
        ("token", {"text": None}),
        ("message_start", {"role": "system"}),
        ("tool_call", {"status": "done"}),
        ("tool_result", {"status": "ok"}),
        ("approval_resolved", {"by": "admin"}),
        ("approval_resolved", {"decisions": [{"type": "maybe"}]}),
        ("tx_update", {"status": "pending"}),
        ("tx_update", {"tx_hash": "0x1234"}),
        ("tx_update", {"confirmations": -1}),
        ("message_end", {"finish_reason": "truncated"}),
        ("message_end", {"usage": {}}),
        ("error", {"code": "teapot"}),
    ],
)
def test_malformed_events_are_rejected(type_: str, change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_event({"type": type_, **SAMPLES[type_], **change})


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": 31337},  # a JSON number, not a hex quantity
        {"value": "10000000000000000"},  # decimal
        {"nonce": "0x00"},  # leading zero
        {"gas": "0xZZ"},
        {"from": "0x1234"},
        {"data": "0xabc"},  # odd length
    ],
)
def test_unsigned_tx_integers_are_hex_quantities(change: dict[str, Any]) -> None:
    assert UnsignedTx.model_validate(TX).to_wire() == TX
    with pytest.raises(ValidationError):
        UnsignedTx.model_validate({**TX, **change})


# --- client payloads and acks ---------------------------------------------------------------------


def test_valid_client_payloads() -> None:
    assert JoinChat.model_validate({}) == JoinChat()
    assert JoinChat.model_validate({"chat_id": "chat_1", "last_seq": 0}).last_seq == 0
    assert SendMessage.model_validate(
        {"chat_id": "chat_1", "content": "x" * MAX_CONTENT_CHARS, "client_message_id": "cm:1.a-b"}
    )
    resume = ResumeDecisions.model_validate(
        {
            "chat_id": "chat_1",
            "approval_id": "apr_1",
            "decisions": [
                {"type": "approve", "signed_tx": "0x02f8"},
                {"type": "edit", "edited_action": {"name": "transfer", "args": {"amount": "0.02"}}},
                {"type": "reject"},
            ],
        }
    )
    assert [d.type for d in resume.decisions] == ["approve", "edit", "reject"]
    assert Abort.model_validate({"chat_id": "c"}).chat_id == "c"
    assert WalletChanged.model_validate({"chat_id": "c", "chain_id": 1}).chain_id == 1
    assert ContinueMessage.model_validate({"chat_id": "c", "message_id": "msg_1"}).message_id == "msg_1"
    raw = '{"chat_id": "c", "content": "hi", "client_message_id": "1"}'
    assert SendMessage.model_validate_json(raw).content == "hi"


SEND = {"chat_id": "chat_1", "content": "hi", "client_message_id": "cm1"}
RESUME = {"chat_id": "chat_1", "approval_id": "apr_1", "decisions": [{"type": "approve"}]}


@pytest.mark.parametrize(
    ("model", "payload"),
    [
        (JoinChat, {"chat_id": "c", "extra": 1}),  # unknown field
        (JoinChat, {"last_seq": -1}),
        (JoinChat, {"last_seq": "3"}),  # wrong type, no coercion
        (JoinChat, {"last_seq": True}),
        (JoinChat, {"chat_id": "a b"}),  # bad id charset
        (JoinChat, {"chat_id": "x" * 129}),  # id too long
        (JoinChat, {"chat_id": ""}),
        (JoinChat, {"chat_id": 5}),
        (SendMessage, {**SEND, "content": "x" * (MAX_CONTENT_CHARS + 1)}),  # oversized
        (SendMessage, {**SEND, "content": ""}),
        (SendMessage, {**SEND, "content": ["hi"]}),
        (SendMessage, {**SEND, "client_message_id": "../../etc"}),
        (SendMessage, {**SEND, "chat_id": "chat_1\n"}),
        (SendMessage, {"chat_id": "chat_1", "content": "hi"}),  # missing field
        (SendMessage, {**SEND, "role": "system"}),
        (ResumeDecisions, {**RESUME, "decisions": []}),  # at least one
        (ResumeDecisions, {**RESUME, "decisions": [{"type": "approve"}] * (MAX_DECISIONS + 1)}),
        (ResumeDecisions, {**RESUME, "decisions": [{"type": "yes"}]}),
        (ResumeDecisions, {**RESUME, "decisions": [{"type": "approve", "tx_hash": "0x12"}]}),
        (ResumeDecisions, {**RESUME, "decisions": [{"type": "approve", "extra": 1}]}),
        (ResumeDecisions, {**RESUME, "decisions": {"type": "approve"}}),
        (ResumeDecisions, {**RESUME, "approval_id": "apr 1"}),
        (Abort, {}),
        (Abort, {"chat_id": "c", "force": True}),
        (WalletChanged, {"chat_id": "c", "chain_id": 0}),
        (WalletChanged, {"chat_id": "c", "chain_id": "1"}),
        (WalletChanged, {"chat_id": "c", "chain_id": 1.5}),
        (ContinueMessage, {"chat_id": "c"}),
        (ContinueMessage, {"chat_id": "c", "message_id": "m 1"}),
        (ContinueMessage, {"chat_id": "c", "message_id": 1}),
        (ContinueMessage, {"chat_id": "c", "message_id": "m1", "text": "more"}),
    ],
)
def test_malformed_client_payloads_are_rejected(model: type[BaseModel], payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(payload)


def test_decisions_are_approval_py_models() -> None:
    assert ResumeDecisions.model_fields["decisions"].annotation == list[Decision]
    assert ApprovalResolved.model_fields["decisions"].annotation == list[Decision]


def test_acks() -> None:
    assert OkAck().to_wire() == {"ok": True}
    error = ErrorAck(error=ErrorBody(code=ErrorCode.FORBIDDEN, message="Not your chat."))
    assert error.to_wire() == {"error": {"code": "forbidden", "message": "Not your chat."}}
    ack = JoinChatAck.model_validate(
        {"chat_id": "chat_1", "last_seq": 10, "network": NETWORK, "pending_approval": APPROVAL}
    )
    assert ack.pending_approval is not None and "seq" not in ack.pending_approval.to_wire()
    assert JoinChatAck.model_validate(ack.to_wire()) == ack
    assert "pending_approval" not in JoinChatAck(chat_id="c", last_seq=0, network=ack.network).to_wire()
    assert WalletChangedAck(network=ack.network).to_wire()["ok"] is True
    assert SendMessageAck(message_id="m1").to_wire() == {"message_id": "m1"}
    with pytest.raises(ValidationError):
        JoinChatAck.model_validate({"chat_id": "c", "last_seq": 0, "network": {**NETWORK, "chain_id": 0}})


def test_the_js_clients_constants_are_generated_from_the_models(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "gen_protocol_js.py"
    ok = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    js = ROOT / "lunark" / "web" / "lib" / "protocol.js"
    stale = tmp_path / "protocol.js"
    stale.write_text(js.read_text(encoding="utf-8").replace('"tx_update"]', '"tx_updated"]'), encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, str(script), "--check", "--path", str(stale)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1
    subprocess.run([sys.executable, str(script), "--path", str(stale)], check=True, capture_output=True)
    assert stale.read_text(encoding="utf-8") == js.read_text(encoding="utf-8")


def test_the_js_clients_typescript_declarations_are_generated_from_the_models(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "gen_protocol_js.py"
    dts = ROOT / "lunark" / "web" / "lib" / "protocol.d.ts"
    stale = tmp_path / "protocol.d.ts"
    stale.write_text(dts.read_text(encoding="utf-8").replace("  tx_hash?: string | null;", "  tx_hash: string;", 1))
    bad = subprocess.run(
        [sys.executable, str(script), "--check", "--dts", str(stale)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 1 and "protocol.d.ts is out of date" in bad.stderr
    subprocess.run([sys.executable, str(script), "--dts", str(stale)], check=True, capture_output=True)
    assert stale.read_text(encoding="utf-8") == dts.read_text(encoding="utf-8")

    # Every model of the protocol is a TypeScript interface with its wire fields; every error code,
    # event type and decision is in a union.
    text = dts.read_text(encoding="utf-8")
    models = [
        m for name in protocol.__all__ if isinstance(m := getattr(protocol, name), type) and issubclass(m, BaseModel)
    ]
    for model in models:
        body = text.split(f"export interface {model.__name__} {{\n", 1)[1].split("\n}\n", 1)[0]
        for name, info in model.model_fields.items():
            assert f"  {info.alias or name}" in body, f"{model.__name__}.{name} is not declared"
    for value in [*(c.value for c in ErrorCode), *(s.value for s in TxStatus)]:
        assert f'  | "{value}"' in text
    assert "export type ChatEvent =\n" + "".join(f"  | {m.__name__}\n" for m in EVENT_MODELS.values()).rstrip(
        "\n") + ";" in text
