"""The generated reference: docs/protocol.md's section and lunark/web/lib's constants (scripts/)."""

from __future__ import annotations

import enum
import json
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lunark.protocol._client import CLIENT_EVENTS
from lunark.protocol._codes import ERROR_MEANINGS, FINAL_TX_STATUSES, HTTP_STATUS, ErrorCode, TxStatus
from lunark.protocol._decisions import ALL_DECISIONS, ApproveDecision, EditDecision, EditedAction, RejectDecision
from lunark.protocol._events import EVENT_MODELS, EVENT_TYPES, WALLET_EVENTS, _ChatEvent
from lunark.protocol._objects import (
    ActionRequest,
    ApprovalRequest,
    ApprovalWarning,
    BalanceChange,
    ErrorAck,
    ErrorBody,
    Fact,
    NetworkInfo,
    OkAck,
    Preview,
    ReviewConfig,
    UnsignedTx,
    Usage,
)

# --- the generated reference ---------------------------------------------------------------------

_DECISION_MODELS: tuple[type[BaseModel], ...] = (ApproveDecision, EditDecision, EditedAction, RejectDecision)
_SHARED_MODELS: tuple[type[BaseModel], ...] = (
    ErrorBody,
    ErrorAck,
    OkAck,
    NetworkInfo,
    ApprovalRequest,
    ActionRequest,
    Fact,
    Preview,
    BalanceChange,
    ApprovalWarning,
    ReviewConfig,
    UnsignedTx,
    Usage,
)
_ENVELOPE = ("type", "chat_id", "seq", "ts")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner = typing.get_args(tp)[0]
        if _is_union(inner) and set(typing.get_args(inner)) == {ApproveDecision, EditDecision, RejectDecision}:
            return "Decision"
        return _type_name(inner)
    if _is_union(tp):
        return " | ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return " | ".join("true" if a is True else f'"{a}"' for a in typing.get_args(tp))
    if origin is list:
        return f"[{_type_name(typing.get_args(tp)[0])}]"
    if origin is dict or tp is dict:
        return "object"
    if tp is Any:
        return "JSON"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        if tp is ErrorCode:
            return "ErrorCode"
        return " | ".join(f'"{m.value}"' for m in tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__
    names = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in names:
        return names[tp]
    raise TypeError(f"no doc name for {tp!r}")  # pragma: no cover - a new field type needs one


def _metadata(info: FieldInfo) -> list[Any]:
    found = list(info.metadata)
    # Constraints inside an Annotated alias under a union (``_ChatId | None``) stay on the alias.
    for arg in typing.get_args(info.annotation):
        if typing.get_origin(arg) is Annotated:
            for meta in typing.get_args(arg)[1:]:
                found += meta.metadata if isinstance(meta, FieldInfo) else [meta]
    return found


@dataclass(frozen=True, slots=True)
class Wording:
    """How a constraint reads: the doc's table is terse, the type declarations' comments are prose."""

    pattern: str = "`{}`"
    chars: str = "chars"
    at_most: str = "≤ {} {}"
    at_least: str = "≥ {} {}"


def constraint_parts(info: FieldInfo, wording: Wording = Wording()) -> list[str]:
    """A field's length, bound and pattern constraints, in words (the doc and ``protocol.d.ts``)."""
    parts: list[str] = []
    lengths: dict[str, int] = {}
    for meta in _metadata(info):
        for key in ("min_length", "max_length"):
            if getattr(meta, key, None) is not None:
                lengths[key] = getattr(meta, key)
        for key, sign in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            if getattr(meta, key, None) is not None:
                parts.append(f"{sign} {getattr(meta, key)}")
        if getattr(meta, "pattern", None) is not None:
            parts.append(wording.pattern.format(meta.pattern))
    unit = "items" if typing.get_origin(info.annotation) is list else wording.chars
    low, high = lengths.get("min_length"), lengths.get("max_length")
    if low is not None and high is not None:
        parts.insert(0, f"{low}–{high} {unit}")
    elif high is not None:
        parts.insert(0, wording.at_most.format(high, unit))
    elif low is not None:
        parts.insert(0, wording.at_least.format(low, unit))
    return parts


def _constraints(info: FieldInfo) -> str:
    return ", ".join(constraint_parts(info))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _description(model: type[BaseModel], name: str, info: FieldInfo) -> str:
    return info.description or ""


def _wire_name(name: str, info: FieldInfo) -> str:
    return info.alias or name


def _field_rows(model: type[BaseModel], names: list[str], *, constraints: bool) -> list[str]:
    if constraints:
        rows = ["| field | type | required | constraints | description |", "| --- | --- | --- | --- | --- |"]
    else:
        rows = ["| field | type | required | description |", "| --- | --- | --- | --- |"]
    for name in names:
        info = model.model_fields[name]
        cells = [
            f"`{_wire_name(name, info)}`",
            _type_name(info.annotation),
            # A non-null default is always on the wire (to_wire() drops only nulls).
            "yes" if info.is_required() or info.default is not None else "no",
        ]
        if constraints:
            cells.append(_constraints(info))
        cells.append(_description(model, name, info))
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _doc(model: type[BaseModel]) -> str:
    text = model.__doc__ or ""
    return " ".join(text.strip().split("\n\n")[0].split()).replace("``", "`")


def _model_section(model: type[BaseModel], level: str, *, constraints: bool = True) -> list[str]:
    return [
        f"{level} `{model.__name__}`",
        "",
        _doc(model),
        "",
        *_field_rows(model, list(model.model_fields), constraints=constraints),
        "",
    ]


def render_markdown() -> str:
    """The reference section of ``docs/protocol.md``, generated from the models."""
    out: list[str] = ["### Client -> server events", ""]
    out += [
        "Payloads reject unknown fields and values of the wrong JSON type (no coercion).",
        "Every event is acked: with the ack below, or with an `ErrorAck` on failure.",
        "",
    ]
    for event, (payload, ack) in CLIENT_EVENTS.items():
        out += [
            f"#### `{event}`",
            "",
            f"{_doc(payload)} Payload `{payload.__name__}`:",
            "",
            *_field_rows(payload, list(payload.model_fields), constraints=True),
            "",
        ]
        if ack is OkAck:
            out += ["Ack: `OkAck` (`{\"ok\": true}`).", ""]
        else:
            out += [
                f"Ack `{ack.__name__}`:",
                "",
                *_field_rows(ack, list(ack.model_fields), constraints=False),
                "",
            ]

    out += ["### Server -> client chat events", ""]
    out += [
        "Every chat event carries these fields (`error` makes `chat_id` and `seq` optional).",
        "Unknown fields may appear and must be ignored.",
        "",
        *_field_rows(_ChatEvent, list(_ENVELOPE), constraints=True),
        "",
    ]
    base = _ChatEvent.model_fields
    for type_, model in EVENT_MODELS.items():
        fields = model.model_fields
        own = [
            name
            for name in fields
            if name != "type"
            and not (
                name in base
                and fields[name].annotation == base[name].annotation
                and fields[name].is_required() == base[name].is_required()
            )
        ]
        wallet = " Also sent to `user:{address}`." if type_ in WALLET_EVENTS else ""
        out += [
            f"#### `{type_}`",
            "",
            f"{_doc(model)}{wallet} Model `{model.__name__}`:",
            "",
            *_field_rows(model, own, constraints=True),
            "",
        ]

    out += ["### Objects", ""]
    for shared in _SHARED_MODELS:
        out += _model_section(shared, "####")

    out += [
        "### Decisions",
        "",
        "`Decision` is one of the following, told apart by `type`; one per action request, in order.",
        f"A tool's `allowed_decisions` is a subset of {', '.join(f'`{d}`' for d in ALL_DECISIONS)}.",
        "",
    ]
    for decision in _DECISION_MODELS:
        out += _model_section(decision, "####")

    out += ["### Error codes", "", "| code | meaning |", "| --- | --- |"]
    out += [f"| `{code.value}` | {_cell(ERROR_MEANINGS[code])} |" for code in ErrorCode]
    return "\n".join(out) + "\n"


def render_js_constants() -> str:
    """The constants block of ``lunark/web/lib/protocol.js`` (``scripts/gen_protocol_js.py``)."""

    def js(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    lines = [
        "/** Socket.IO event names of chat events. */",
        f"export const EVENT_TYPES = Object.freeze({js(list(EVENT_TYPES))});",
        "",
        "/** Events also sent to `user:{address}`, i.e. possibly for a chat the socket has not joined. */",
        f"export const WALLET_EVENTS = Object.freeze({js(list(WALLET_EVENTS))});",
        "",
        "/** Events a client sends; each is answered by an ack. */",
        f"export const CLIENT_EVENTS = Object.freeze({js(list(CLIENT_EVENTS))});",
        "",
        "/** tx_update statuses, and those after which nothing more happens to the transaction. */",
        f"export const TX_STATUSES = Object.freeze({js([status.value for status in TxStatus])});",
        f"export const FINAL_TX_STATUSES = Object.freeze({js(list(FINAL_TX_STATUSES))});",
        "",
        "/** Decision types, one per action request. */",
        f"export const DECISION_TYPES = Object.freeze({js(list(ALL_DECISIONS))});",
        "",
        "/** Error codes and the HTTP status of each on the HTTP mirror. */",
        "export const ERROR_CODES = Object.freeze({",
        *(f"  {code.value}: {HTTP_STATUS[code]}," for code in ErrorCode),
        "});",
    ]
    return "\n".join(lines) + "\n"
