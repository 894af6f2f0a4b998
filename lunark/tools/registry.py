"""The set of tools an agent may call, which of them need approval, and plugins.

Third-party tools register through the entry-point group ``lunark.tools``. An
entry point names either a ``Tool`` object, a list of them, or a callable that
returns one or a list::

    [project.entry-points."lunark.tools"]
    weather = "lunark_weather:tools"
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from importlib.metadata import entry_points
from typing import Any

from lunark.errors import ConfigError, InvalidInput
from lunark.protocol import ToolInfo
from lunark.tools.balance import GetBalance
from lunark.tools.base import ApprovalRule, Proposal, Tool
from lunark.tools.network import SwitchNetwork
from lunark.tools.policy import cap_units
from lunark.tools.transfer import Transfer

__all__ = [
    "PLUGIN_GROUP", "AmountAbove", "ToolSet", "amount_above", "default_tools", "load_plugins", "parse_approval_rule",
]

PLUGIN_GROUP = "lunark.tools"
_BUILTIN = (GetBalance, Transfer, SwitchNetwork)


def default_tools() -> list[Tool]:
    """The built-in tools: ``get_balance``, ``transfer``, ``switch_network``."""
    return [GetBalance(), Transfer(), SwitchNetwork()]


@dataclass(frozen=True, slots=True)
class AmountAbove:
    """A rule: approval needed when a transfer's resolved amount is above the limit for its asset.

    Judged on the prepared transfer, never on the model's words: ``"native"`` is the network's
    currency however the model named it (``"ETH"``, or nothing), a symbol is a token the network
    knows, ``"*"`` any other; amounts compare in base units. A token with no limit, or a call that
    resolved to no transfer, needs approval (fail closed).
    """

    limits: Mapping[str, Decimal]

    def needs(self, proposal: Proposal) -> bool:
        prepared = proposal.data.get("prepared")
        if not isinstance(prepared, Mapping):
            return True
        key = "NATIVE" if not prepared.get("token") else str(prepared.get("symbol", "")).upper()
        limit = self.limits.get(key, self.limits.get("*"))
        if limit is None:
            return True
        try:
            return int(prepared["amount"]) > cap_units(limit, int(prepared["decimals"]))
        except (KeyError, TypeError, ValueError):
            return True


def amount_above(limits: Mapping[str, Decimal | str | int]) -> AmountAbove:
    """``AmountAbove`` from ``{symbol or "native" or "*": whole units}``."""
    return AmountAbove({k.upper(): Decimal(str(v)) for k, v in limits.items()})


def parse_approval_rule(raw: Any) -> ApprovalRule:
    """``"always"``, ``"never"`` or ``{"above": {symbol: amount}}`` from configuration."""
    if raw in ("always", "never"):
        return raw  # type: ignore[no-any-return]
    if isinstance(raw, Mapping) and set(raw) == {"above"} and isinstance(raw["above"], Mapping):
        try:
            return amount_above(raw["above"])
        except InvalidOperation:
            raise ConfigError(
                f"Approval rule {raw!r}: every limit must be a number of whole units, e.g. \"0.1\"."
            ) from None
    if callable(raw):
        return raw  # type: ignore[no-any-return]
    raise ConfigError(
        f"Approval rule {raw!r} is not one of 'always', 'never' or {{'above': {{SYMBOL: amount}}}}."
    )


class ToolSet:
    """The tools of one agent, by name, with their approval rules.

    Besides its fixed tools it holds named groups that can change while the agent runs (an MCP
    server's tools, when the server says its list changed): ``replace_group`` swaps one group's
    tools, never letting a name shadow a tool of another group or a fixed one, and tells the
    listeners (``on_change``: the agent binds the new list to its model).
    """

    def __init__(self, tools: Iterable[Tool], approvals: Mapping[str, Any] | None = None) -> None:
        self.version = 0
        """Grows by one each time the set of tools changes."""
        self._groups: dict[str, list[str]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if not isinstance(tool, Tool):
                raise ConfigError(f"{tool!r} is not a Lunark tool (see lunark.tools.base.Tool).")
            if tool.name in self._tools:
                raise ConfigError(f"Two tools are named {tool.name!r}.")
            self._tools[tool.name] = tool
        self._rules: dict[str, ApprovalRule] = {}
        for name, raw in (approvals or {}).items():
            if name not in self._tools:
                raise ConfigError(f"Approval rule for unknown tool {name!r} (tools: {', '.join(self._tools)}).")
            self._rules[name] = parse_approval_rule(raw)

    def replace_group(self, group: str, tools: Iterable[Tool]) -> list[str]:
        """Make ``tools`` the whole of ``group`` (dropping what it held before); returns the names
        left out because a fixed tool or another group has them already."""
        for name in self._groups.pop(group, []):
            self._tools.pop(name, None)
        added: list[str] = []
        refused: list[str] = []
        for tool in tools:
            if not isinstance(tool, Tool):
                raise ConfigError(f"{tool!r} is not a Lunark tool (see lunark.tools.base.Tool).")
            if tool.name in self._tools:
                refused.append(tool.name)
                continue
            self._tools[tool.name] = tool
            added.append(tool.name)
        self._groups[group] = added
        self.version += 1
        for listener in list(self._listeners):
            listener()
        return refused

    def group(self, group: str) -> list[str]:
        """The names ``group`` holds now."""
        return list(self._groups.get(group, []))

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously) after every ``replace_group``."""
        self._listeners.append(listener)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise InvalidInput(
                f"There is no tool named {name!r} (tools: {', '.join(self._tools)}).", tool=name
            ) from None

    def rule(self, name: str) -> ApprovalRule:
        return self._rules.get(name, self.get(name).approval)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def info(self) -> list[ToolInfo]:
        """Every tool as ``GET /api/tools`` lists it: name, schema, approval class, where it comes from
        and, for an MCP tool, its server and declared annotations."""
        servers = {name: group.removeprefix("mcp:") for group, names in self._groups.items()
                   if group.startswith("mcp:") for name in names}
        out = []
        for tool in self:
            rule = self.rule(tool.name)
            server = servers.get(tool.name)
            hints = getattr(tool, "hints", None) if server is not None else None
            title = getattr(tool, "title", None)
            out.append(ToolInfo(
                name=tool.name,
                display_name=str(getattr(tool, "display", tool.name)) if server is not None else tool.name,
                title=title if isinstance(title, str) else None,
                description=tool.description,
                input_schema=tool.args_schema.model_json_schema(),
                approval=rule if rule in ("always", "never") else "rule",
                source="mcp" if server is not None else "builtin" if isinstance(tool, _BUILTIN) else "plugin",
                mcp_server=server,
                hints={k: v for k, v in (hints or {}).items() if isinstance(v, bool)},
            ))
        return out

    def schemas(self) -> list[dict[str, Any]]:
        """The tools in OpenAI function format, for ``model.bind_tools``."""
        # LangChain's own constructor of the format; imported here, as only the agent binds tools
        # (the tools and their registry load no LangChain).
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return [
            convert_to_openai_tool({
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.args_schema.model_json_schema(),
            })
            for tool in self
        ]


def load_plugins(group: str = PLUGIN_GROUP) -> list[Tool]:
    """Tools from installed packages' ``lunark.tools`` entry points."""
    tools: list[Tool] = []
    for ep in entry_points(group=group):
        try:
            obj = ep.load()
            if not isinstance(obj, Tool) and callable(obj):
                obj = obj()  # a factory can fail too, and must name its plugin the same way
        except Exception as exc:  # a broken plugin must name itself, not crash start-up obscurely
            raise ConfigError(f"Plugin {ep.name!r} ({ep.value}) failed to load: {exc}", plugin=ep.name) from exc
        found = [obj] if isinstance(obj, Tool) else list(obj) if isinstance(obj, Iterable) else [obj]
        for tool in found:
            if not isinstance(tool, Tool):
                raise ConfigError(f"Plugin {ep.name!r} gave {tool!r}, which is not a Lunark tool.", plugin=ep.name)
            tools.append(tool)
    return tools
