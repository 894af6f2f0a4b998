"""Rewrite the generated blocks of the dApp's JavaScript client from lunark.protocol.

    python scripts/gen_protocol_js.py           # rewrite both blocks in place
    python scripts/gen_protocol_js.py --check   # exit 1 if either file is out of date

Event names, statuses, decision types and error codes are defined once, in Python; the dApp's
JavaScript client gets them from here, as constants in lunark/web/lib/protocol.js and as
TypeScript declarations of every model (events, acks, payloads, objects, decisions, error codes)
in lunark/web/lib/protocol.d.ts. Only the text between the markers is replaced: the hand-written
declarations of the module's functions live around the block.
"""

from __future__ import annotations

import argparse
import enum
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo

import lunark.protocol as protocol
from lunark.protocol import (
    CLIENT_EVENTS,
    ERROR_MEANINGS,
    EVENT_MODELS,
    HTTP_STATUS,
    ApproveDecision,
    EditDecision,
    ErrorCode,
    RejectDecision,
)
from lunark.protocol._render import Wording, constraint_parts, render_js_constants

LIB = Path(__file__).resolve().parent.parent / "lunark" / "web" / "lib"
JS = LIB / "protocol.js"
DTS = LIB / "protocol.d.ts"
BEGIN = "// BEGIN GENERATED: python scripts/gen_protocol_js.py (from lunark/protocol/)"
END = "// END GENERATED"

DECISIONS: tuple[type[BaseModel], ...] = (ApproveDecision, EditDecision, RejectDecision)


def replace_block(text: str, block: str) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"expected exactly one {BEGIN!r} and one {END!r}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block}{END}{tail}"


def render(text: str) -> str:
    """protocol.js with its constants block regenerated."""
    return replace_block(text, render_js_constants())


def render_dts(text: str) -> str:
    """protocol.d.ts with its declarations block regenerated."""
    return replace_block(text, render_ts_declarations())


# --- TypeScript -------------------------------------------------------------------------------


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_decision(tp: Any) -> bool:
    return _is_union(tp) and set(typing.get_args(tp)) == set(DECISIONS)


def ts_type(tp: Any) -> str:
    """The TypeScript type of a field's annotation, ``None`` left out (optionality says it)."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        inner = typing.get_args(tp)[0]
        return "Decision" if _is_decision(inner) else ts_type(inner)
    if _is_union(tp):
        return " | ".join(ts_type(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is Literal:
        return " | ".join("true" if a is True else "false" if a is False else f'"{a}"' for a in typing.get_args(tp))
    if origin is list:
        item = ts_type(typing.get_args(tp)[0])
        return f"Array<{item}>" if " " in item else f"{item}[]"
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        return f"Record<string, {ts_type(args[1]) if args else 'unknown'}>"
    if tp is Any:
        return "unknown"
    if isinstance(tp, type) and issubclass(tp, enum.Enum | BaseModel):
        return tp.__name__
    names = {str: "string", int: "number", float: "number", bool: "boolean"}
    if tp in names:
        return names[tp]
    raise TypeError(f"no TypeScript type for {tp!r}")  # a new field type needs one


def _nullable(tp: Any) -> bool:
    if typing.get_origin(tp) is Annotated:
        return _nullable(typing.get_args(tp)[0])
    return _is_union(tp) and type(None) in typing.get_args(tp)


def _referenced(tp: Any) -> Iterator[type]:
    """Models and enums a field's annotation names."""
    if isinstance(tp, type) and issubclass(tp, enum.Enum | BaseModel):
        yield tp
    for arg in typing.get_args(tp):
        yield from _referenced(arg)


PROSE = Wording(pattern="Matches `{}`", chars="characters", at_most="At most {} {}", at_least="At least {} {}")


def _constraints(info: FieldInfo) -> list[str]:
    return constraint_parts(info, PROSE)


def _comment(text: str, indent: str = "") -> list[str]:
    text = " ".join(text.split()).replace("``", "`").replace("*/", "*\\/")
    return [f"{indent}/** {text} */"] if text else []


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").strip().split("\n\n")[0].split()).replace("``", "`")


def _interface(model: type[BaseModel]) -> list[str]:
    # Server -> client models keep unknown fields (extra="allow") and always send a field with a
    # non-null default; what a client sends may leave out any field with a default.
    from_server = model.model_config.get("extra") == "allow"
    lines = [*_comment(_doc(model)), f"export interface {model.__name__} {{"]
    for name, info in model.model_fields.items():
        wire = info.alias or name
        required = info.is_required() or (from_server and info.default is not None)
        constraints = _constraints(info)
        description = (info.description or "").rstrip(".")
        text = ". ".join(p for p in (description, ", ".join(constraints)) if p)
        lines += _comment(f"{text}." if text else "", "  ")
        null = " | null" if _nullable(info.annotation) else ""
        lines.append(f"  {wire}{'' if required else '?'}: {ts_type(info.annotation)}{null};")
    lines += ["}", ""]
    return lines


def _union(name: str, members: list[str], doc: str) -> list[str]:
    return [*_comment(doc), f"export type {name} =", *(f"  | {m}" for m in members[:-1]), f"  | {members[-1]};", ""]


def render_ts_declarations() -> str:
    """The generated block of ``lunark/web/lib/protocol.d.ts``: every model of lunark.protocol."""
    sections: list[tuple[str, list[type[BaseModel]]]] = [
        ("Client -> server payloads (each acked)", [payload for payload, _ in CLIENT_EVENTS.values()]),
        ("Acks", list(dict.fromkeys([*(ack for _, ack in CLIENT_EVENTS.values()), protocol.ErrorAck]))),
        ("Server -> client chat events", list(EVENT_MODELS.values())),
        ("Decisions", [*DECISIONS, protocol.EditedAction]),
    ]
    emitted = {m for _, models in sections for m in models}
    # Objects: every other public model, and whatever a field names (found to a fixed point).
    objects = [
        m for name in protocol.__all__
        if isinstance(m := getattr(protocol, name), type) and issubclass(m, BaseModel) and m not in emitted
    ]
    enums: list[type[enum.Enum]] = []
    todo: list[type[BaseModel]] = [m for _, models in sections for m in models] + objects
    seen: set[type[BaseModel]] = set()
    while todo:
        model = todo.pop(0)
        if model in seen:
            continue
        seen.add(model)
        for info in model.model_fields.values():
            for ref in _referenced(info.annotation):
                if issubclass(ref, enum.Enum):
                    if ref not in enums:
                        enums.append(ref)
                elif issubclass(ref, BaseModel):
                    if ref not in emitted and ref not in objects:
                        objects.append(ref)
                    todo.append(ref)
    sections.insert(3, ("Objects", objects))

    out: list[str] = []
    for enum_type in enums:
        if enum_type is ErrorCode:
            continue
        doc = " ".join((enum_type.__doc__ or "").split()) or enum_type.__name__
        out += _union(enum_type.__name__, [f'"{m.value}"' for m in enum_type], doc)
    out += ["/** The contract's error codes; every error ack and error event carries one. */"]
    out += ["export type ErrorCode ="]
    out += [line for code in ErrorCode for line in (*_comment(ERROR_MEANINGS[code], "  "), f'  | "{code.value}"')]
    out[-1] += ";"
    out.append("")
    for title, models in sections:
        out += [f"// -- {title} " + "-" * (92 - len(title)), ""]
        for model in models:
            out += _interface(model)
        if title.startswith("Server -> client"):
            doc = "Any server -> client chat event, told apart by `type`."
            out += _union("ChatEvent", [m.__name__ for m in models], doc)
            out += [
                "/** The `type` of a chat event, also its Socket.IO event name. */",
                'export type ChatEventType = ChatEvent["type"];',
                "",
                "/** The chat event of one type: `ChatEventOf<\"tx_update\">` is `TxUpdate`. */",
                "export type ChatEventOf<T extends ChatEventType> = Extract<ChatEvent, { type: T }>;",
                "",
            ]
        if title == "Decisions":
            doc = "One decision per action request, told apart by `type`."
            out += _union("Decision", [m.__name__ for m in DECISIONS], doc)
        if title.startswith("Acks"):
            out += ["/** Each client event's payload and the ack it gets on success (failure: `ErrorAck`). */"]
            out += ["export interface ClientEvents {"]
            out += [
                f"  {event}: {{ payload: {payload.__name__}; ack: {ack.__name__} }};"
                for event, (payload, ack) in CLIENT_EVENTS.items()
            ]
            out += ["}", ""]
    out += [
        "// -- Constants (protocol.js) " + "-" * 72,
        "",
        "/** Socket.IO event names of chat events. */",
        "export declare const EVENT_TYPES: readonly ChatEventType[];",
        "/** Events also sent to `user:{address}`, i.e. possibly for a chat the socket has not joined. */",
        "export declare const WALLET_EVENTS: readonly ChatEventType[];",
        "/** Events a client sends; each is answered by an ack. */",
        "export declare const CLIENT_EVENTS: readonly (keyof ClientEvents)[];",
        "/** tx_update statuses, and those after which nothing more happens to the transaction. */",
        "export declare const TX_STATUSES: readonly TxStatus[];",
        "export declare const FINAL_TX_STATUSES: readonly TxStatus[];",
        "/** Decision types, one per action request. */",
        'export declare const DECISION_TYPES: readonly Decision["type"][];',
        "/** Error codes and the HTTP status of each on the HTTP mirror. */",
        "export declare const ERROR_CODES: {",
        *(f"  readonly {code.value}: {HTTP_STATUS[code]};" for code in ErrorCode),
        "};",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    parser.add_argument("--path", type=Path, default=JS, help="the constants (default: the dApp's protocol.js)")
    parser.add_argument("--dts", type=Path, default=DTS, help="the declarations (default: the dApp's protocol.d.ts)")
    args = parser.parse_args(argv)
    stale = 0
    for path, rewrite in ((args.path, render), (args.dts, render_dts)):
        text = path.read_text(encoding="utf-8")
        fresh = rewrite(text)
        if args.check:
            if fresh != text:
                print(f"{path} is out of date: run python scripts/gen_protocol_js.py", file=sys.stderr)
                stale = 1
            continue
        path.write_text(fresh, encoding="utf-8")
        print(f"rewrote {path}")
    return stale


if __name__ == "__main__":
    sys.exit(main())
