"""MCP servers as tool plugins, with the same approval guarantees as Lunark's own tools.

Each server of ``Settings.mcp.servers`` is reached over stdio (a command Lunark starts) or
streamable HTTP (a URL), through ``langchain-mcp-adapters`` (sessions, tool conversion and
calls) and the official ``mcp`` SDK (the protocol). Nothing of the protocol is written here.

Names. A tool ``add_note`` of server ``notes`` is ``notes__add_note`` to the model and on the
wire (OpenAI's and Anthropic's function names allow only ``[A-Za-z0-9_-]``, at most 64
characters) and ``notes.add_note`` to people (the approval card). Server names cannot contain
``__``, so the first ``__`` always ends the server's name and two servers cannot shadow each
other; a name some other tool (built-in, plugin, another server) already has is refused by the
``ToolSet`` and the MCP tool left out, with a warning.

Approval follows the tool's MCP annotations unless configuration overrides it: ``readOnlyHint:
true`` runs at once; anything else, including no annotations, waits for the user's decision
(fail closed). Annotations are the server's own claims: for a server you do not trust, set
``approval = "always"``.

Failures. A server that cannot be started or reached, a call that takes longer than its
``timeout``, a server that dies mid-call and an error result all end the call with a
``tool_error`` (``ToolFailed``) naming the server and the tool; the turn goes on. A server
that died is started (or reached) again at its next call. A server that was down when the agent
started is tried again in the background, and its tools appear once it answers.

Tool lists. When a server sends ``notifications/tools/list_changed``, its tools are listed again
and the agent's model sees the new list from its next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

import jsonschema
import mcp.types as mcp_types
from jsonschema.validators import validator_for
from langchain_core.messages import ToolMessage
from langchain_core.messages.tool import tool_call
from langchain_core.tools import BaseTool
from langchain_mcp_adapters.sessions import Connection, create_session
from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from pydantic import BaseModel, ConfigDict, model_validator

from lunark.config import McpServerSettings, McpSettings
from lunark.errors import ConfigError, ToolFailed
from lunark.tools.base import ApprovalRule, Decision, Proposal, ToolContext
from lunark.tools.registry import ToolSet

__all__ = ["SEPARATOR", "McpServer", "McpTool", "McpToolbox", "display_name", "model_name"]

logger = logging.getLogger(__name__)

SEPARATOR = "__"
"""Between server and tool in the name the model and the wire see (``notes__add_note``)."""

_REQUEST_TIMEOUT = 408
"""The error code the SDK gives a request its read timeout cut (HTTP's 408, as the SDK uses it)."""
_NAME_LIMIT = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_ARG_CHARS = 500
_DESCRIPTION_CHARS = 1000


def model_name(server: str, tool: str) -> str:
    """``server__tool``, safe for every chat API: other characters become ``_``, and a name over 64
    characters is cut and ends with a short hash of the whole, so it stays unique."""
    name = f"{server}{SEPARATOR}{_UNSAFE.sub('_', tool)}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(f"{server}/{tool}".encode()).hexdigest()[:8]
    return f"{name[: _NAME_LIMIT - 9]}_{digest}"


def display_name(server: str, tool: str) -> str:
    """``server.tool``: what people read."""
    return f"{server}.{tool}"


def args_model(name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """A pydantic model that validates arguments against an MCP tool's JSON Schema, exactly (with
    ``jsonschema``), and gives that schema back to the model unchanged. Raises ``ConfigError`` for
    a schema that is not one."""
    schema = dict(schema) if schema else {"properties": {}}
    schema.setdefault("type", "object")  # MCP input schemas are objects; some servers leave it implicit
    try:
        validator_cls = validator_for(schema, default=jsonschema.Draft202012Validator)
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConfigError(f"MCP tool {name!r} has an invalid input schema: {exc.message}", tool=name) from None
    validator = validator_cls(schema)

    class McpArgs(BaseModel):
        model_config = ConfigDict(extra="allow")

        @model_validator(mode="before")
        @classmethod
        def _matches_schema(cls, data: Any) -> Any:
            if isinstance(data, BaseModel):
                data = data.model_dump()
            errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
            if errors:
                raise ValueError("; ".join(
                    f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}" for e in errors[:5]
                ))
            return data

        @classmethod
        def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
            copy: dict[str, Any] = json.loads(json.dumps(schema))  # the model binding may change what it gets
            return copy

    McpArgs.__name__ = McpArgs.__qualname__ = f"{_UNSAFE.sub('_', name)}_args"
    return McpArgs


@dataclass(frozen=True, slots=True, kw_only=True)
class _Listed:
    """One tool as the server listed it, and the adapter's LangChain tool that calls it."""

    tool: mcp_types.Tool
    call: BaseTool


class McpTool:
    """One MCP tool as a Lunark ``Tool``: the model sees its name, description and input schema;
    the approval card shows the server, the tool, its title, description, hints and arguments."""

    def __init__(self, server: McpServer, listed: mcp_types.Tool, approval: ApprovalRule) -> None:
        self.server = server
        self.tool_name = listed.name
        """The tool's own name on its server."""
        self.name = model_name(server.name, listed.name)
        annotations = listed.annotations
        self.title = listed.title or (annotations.title if annotations is not None else None) or listed.name
        self.hints = annotations.model_dump(exclude_none=True, exclude={"title"}) if annotations is not None else {}
        """The tool's MCP annotations (``readOnlyHint``, ``destructiveHint``, ...) as the server gave them."""
        text = (listed.description or "").strip()
        self.about = text[:_DESCRIPTION_CHARS]
        self.description = f"[MCP server {server.name}, tool {listed.name}] {self.about or self.title}"
        self.args_schema = args_model(self.name, listed.inputSchema)
        self.approval: ApprovalRule = approval

    @property
    def display(self) -> str:
        return display_name(self.server.name, self.tool_name)

    def _hint_text(self) -> str:
        if not self.hints:
            return "none declared (treated as state-changing)"
        words = []
        if self.hints.get("readOnlyHint"):
            words.append("read-only")
        elif self.hints.get("destructiveHint", True):
            # The MCP default for a tool that is not read-only is destructive.
            words.append("destructive: may delete or overwrite data")
        else:
            words.append("changes state (not destructive)")
        if self.hints.get("idempotentHint"):
            words.append("idempotent")
        if self.hints.get("openWorldHint", True):
            words.append("open world: reaches beyond the server (web, other services)")
        else:
            words.append("closed world")
        return "; ".join(words)

    async def prepare(self, args: BaseModel, ctx: ToolContext) -> Proposal:
        values = args.model_dump(mode="json")
        shown = ", ".join(f"{k}={_short(v, 60)}" for k, v in values.items())
        facts: list[tuple[str, str]] = [
            ("Server", f"{self.server.name} ({self.server.where})"),
            ("Tool", f"{self.display} — {self.title}"),
        ]
        if self.about:
            facts.append(("What it does", self.about))
        facts.append(("Hints", self._hint_text()))
        facts.extend((f"· {key}", _short(value, _ARG_CHARS)) for key, value in values.items())
        if not values:
            facts.append(("Arguments", "none"))
        return Proposal(
            summary=f"Run {self.display} ({self.title}){f' with {shown}' if shown else ''} on MCP server "
            f"{self.server.name}",
            description=self.about or self.title,
            data={"mcp": {"server": self.server.name, "tool": self.tool_name}},
            facts=tuple(facts),
        )

    async def execute(
        self, args: BaseModel, ctx: ToolContext, proposal: Proposal, decision: Decision | None
    ) -> dict[str, Any]:
        return await self.server.call(self.tool_name, args.model_dump(mode="json"), call_id=ctx.call_id or "call")


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class McpServer:
    """One configured MCP server: its connection (kept open, started again after a failure) and
    its tools, kept in the agent's ``ToolSet`` as the group ``mcp:<name>``."""

    def __init__(
        self, name: str, settings: McpServerSettings, toolset: ToolSet, *, environ: Mapping[str, str]
    ) -> None:
        self.name = name
        self.settings = settings
        self.toolset = toolset
        self.group = f"mcp:{name}"
        self._connection = _connection(name, settings, environ, self._on_message)
        self.where = (
            f"stdio: {' '.join([settings.command or '', *settings.args])}" if settings.transport == "stdio"
            else f"http: {settings.url}"
        )
        self._session: ClientSession | None = None
        self._listed: dict[str, _Listed] = {}
        self._runner: asyncio.Task[None] | None = None
        self._drop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.last_error: str | None = None
        """Why the server could not be reached last time, if it could not."""

    # -- connection ------------------------------------------------------------------------------

    async def session(self) -> ClientSession:
        """The live session, connecting (starting the process, for stdio) when there is none.
        Raises ``ToolFailed`` when the server does not answer within ``connect_timeout``."""
        if self._session is not None:
            return self._session
        async with self._lock:
            if self._session is not None:
                return self._session
            if self._closed:
                raise ToolFailed(f"MCP server {self.name!r} is shut down.", server=self.name)
            ready: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
            self._drop = asyncio.Event()
            self._runner = asyncio.create_task(self._hold(ready, self._drop), name=f"lunark-mcp-{self.name}")
            try:
                async with asyncio.timeout(self.settings.connect_timeout):
                    session = await asyncio.shield(ready)
            except TimeoutError:
                await self._stop_runner()
                self.last_error = f"no answer within {self.settings.connect_timeout:g} s"
                raise ToolFailed(
                    f"MCP server {self.name!r} ({self.where}) did not answer within "
                    f"{self.settings.connect_timeout:g} s.", server=self.name,
                ) from None
            except Exception as exc:
                await self._stop_runner()
                self.last_error = _reason(exc)
                raise ToolFailed(
                    f"MCP server {self.name!r} ({self.where}) could not be reached: {self.last_error}",
                    server=self.name,
                ) from None
            self.last_error = None
            self._session = session
            return session

    async def _hold(self, ready: asyncio.Future[ClientSession], drop: asyncio.Event) -> None:
        """The connection's whole life in one task: anyio's cancel scopes must be entered and left in
        the same task, which the agent's start and stop may not be."""
        try:
            async with create_session(self._connection) as session:
                await session.initialize()
                listed = await self._list(session)
                self._install(listed)
                if not ready.done():
                    ready.set_result(session)
                await drop.wait()
        except Exception as exc:  # handed to whoever waits for the connection, or logged
            if not ready.done():
                ready.set_exception(exc)
                ready.exception()  # retrieved here too: the waiter may have timed out already
            else:
                logger.warning("MCP server %r disconnected: %s", self.name, _reason(exc))
        finally:
            if not ready.done():
                ready.cancel()
            self._session = None

    async def _stop_runner(self) -> None:
        runner, self._runner = self._runner, None
        self._session = None
        if self._drop is not None:
            self._drop.set()
        if runner is not None and not runner.done():
            try:
                async with asyncio.timeout(5):
                    await asyncio.wait({runner})
            except TimeoutError:
                runner.cancel()
                await asyncio.wait({runner})

    async def reset(self) -> None:
        """Drop the connection (after a failed or timed-out call); the next call connects again."""
        async with self._lock:
            await self._stop_runner()

    async def _list(self, session: ClientSession) -> dict[str, _Listed]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # pages
            page = await session.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.nextCursor
            if not cursor:
                break
        return {
            tool.name: _Listed(tool=tool, call=convert_mcp_tool_to_langchain_tool(session, tool, server_name=self.name))
            for tool in tools
        }

    def _install(self, listed: dict[str, _Listed]) -> None:
        self._listed = listed
        tools: list[McpTool] = []
        for name, item in listed.items():
            override = self.settings.tools.get(name)
            if override is not None and not override.enabled:
                continue
            try:
                tools.append(McpTool(self, item.tool, self._rule(item.tool, override.approval if override else None)))
            except ConfigError as exc:
                logger.warning("MCP server %r: tool %r left out: %s", self.name, name, exc.message)
        refused = self.toolset.replace_group(self.group, tools)
        logger.info("MCP server %r (%s): tools %s", self.name, self.where,
                    ", ".join(self.toolset.group(self.group)) or "none")
        for name in refused:
            logger.warning("MCP server %r: tool %r left out: another tool has that name", self.name, name)
        unknown = set(self.settings.tools) - set(listed)
        if unknown:
            logger.warning("MCP server %r has no tools %s (named in its configuration)", self.name, sorted(unknown))

    def _rule(self, tool: mcp_types.Tool, override: str | None) -> ApprovalRule:
        chosen = override or self.settings.approval
        if chosen in ("always", "never"):
            return chosen  # type: ignore[return-value]
        read_only = tool.annotations is not None and tool.annotations.readOnlyHint is True
        return "never" if read_only else "always"  # no annotations, or not read-only: ask (fail closed)

    async def _on_message(self, message: Any) -> None:
        """The session's incoming notifications. A list change is handled in a task of its own:
        this runs in the session's receive loop, which must go on to read the answer."""
        root = getattr(message, "root", None)
        if isinstance(root, mcp_types.ToolListChangedNotification):
            self._spawn(self.refresh())
        elif isinstance(message, Exception):
            logger.warning("MCP server %r sent something unreadable: %s", self.name, message)

    async def refresh(self) -> None:
        """List the server's tools again and put the new list in the agent's tool set."""
        session = self._session
        if session is None:
            return
        try:
            async with asyncio.timeout(self.settings.connect_timeout):
                listed = await self._list(session)
        except Exception as exc:
            logger.warning("MCP server %r: listing its tools again failed: %s", self.name, _reason(exc))
            return
        self._install(listed)  # logs the new list

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def start(self) -> None:
        """Connect and list the tools, or, if the server does not answer, say why and keep trying
        in the background: its tools appear once it does."""
        try:
            await self.session()
        except ToolFailed as exc:
            logger.warning("%s Its tools are missing until it answers; retrying in the background.", exc.message)
            self._spawn(self._retry())

    async def _retry(self) -> None:
        for delay in (*_RETRY_DELAYS, *([_RETRY_DELAYS[-1]] * 10_000)):
            await asyncio.sleep(delay)
            if self._closed or self._session is not None:
                return
            try:
                await self.session()
            except ToolFailed:
                continue
            logger.info("MCP server %r answers now; its tools are available.", self.name)
            return

    # -- calls -----------------------------------------------------------------------------------

    async def call(self, tool: str, args: dict[str, Any], *, call_id: str) -> dict[str, Any]:
        """Call ``tool`` with ``args``; the result as JSON: ``{"server", "tool", "result"}``. Every
        failure is a ``ToolFailed`` that says what happened, within ``connect_timeout`` plus
        ``timeout``."""
        what = display_name(self.name, tool)
        await self.session()
        listed = self._listed.get(tool)
        if listed is None:
            raise ToolFailed(f"MCP server {self.name!r} no longer has the tool {tool!r}.", server=self.name, tool=tool)
        request = tool_call(name=listed.call.name, args=args, id=call_id)
        try:
            async with asyncio.timeout(self.settings.timeout):
                message = await listed.call.ainvoke(request)
        except Exception as exc:
            timed_out = isinstance(exc, TimeoutError) or (
                isinstance(exc, McpError) and exc.error.code == _REQUEST_TIMEOUT
            )
            await self.reset()  # a timed-out or broken connection is not reused
            if timed_out:
                raise ToolFailed(
                    f"{what} did not answer within {self.settings.timeout:g} s (MCP server {self.name!r}).",
                    server=self.name, tool=tool, timeout=self.settings.timeout,
                ) from None
            if isinstance(exc, McpError) and exc.error.code == mcp_types.CONNECTION_CLOSED:
                raise ToolFailed(
                    f"MCP server {self.name!r} closed the connection while running {what} (did it crash?). "
                    "It is started again at the next call.", server=self.name, tool=tool,
                ) from None
            raise ToolFailed(f"{what} failed: {_reason(exc)}", server=self.name, tool=tool) from None
        return _result(self.name, tool, message)

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.reset()


def _result(server: str, tool: str, message: Any) -> dict[str, Any]:
    """An MCP tool's answer as the tool card and the model see it. Text that is JSON is JSON;
    structured content is preferred; an error result raises ``ToolFailed`` with its text."""
    if not isinstance(message, ToolMessage):
        return {"server": server, "tool": tool, "result": message}
    blocks = message.content if isinstance(message.content, list) else [message.content]
    texts = [b if isinstance(b, str) else str(b.get("text", "")) for b in blocks
             if isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text")]
    others = [
        {k: v for k, v in b.items() if k in ("type", "mime_type", "url")}
        for b in blocks if isinstance(b, dict) and b.get("type") != "text"
    ]
    text = "\n".join(texts)
    if message.status == "error":
        raise ToolFailed(
            f"{display_name(server, tool)} reported an error: {text or 'no details'}", server=server, tool=tool
        )
    artifact = message.artifact if isinstance(message.artifact, dict) else {}
    structured = artifact.get("structured_content")
    value: Any
    if isinstance(structured, dict):
        # FastMCP wraps a result that is not an object as {"result": ...}.
        value = structured["result"] if set(structured) == {"result"} else structured
    else:
        try:
            value = json.loads(text) if text else None
        except ValueError:
            value = text
    out: dict[str, Any] = {"server": server, "tool": tool, "result": value}
    if others:
        out["content"] = others  # images, files: named, not inlined
    return out


def _reason(exc: BaseException) -> str:
    """The innermost useful message of an exception (anyio wraps failures in groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).strip()
    if isinstance(exc, FileNotFoundError):
        return f"the command was not found ({exc.filename or text})"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _connection(
    name: str, settings: McpServerSettings, environ: Mapping[str, str], on_message: Any
) -> Connection:
    # No session-wide read timeout: it would cut a slow start (initialize) too, which has its own
    # budget (connect_timeout); each call is bounded by ``timeout`` instead.
    session_kwargs = {"message_handler": on_message}
    if settings.transport == "stdio":
        assert settings.command is not None
        return {
            "transport": "stdio",
            "command": settings.command,
            "args": list(settings.args),
            # Added to the SDK's minimal environment (PATH, HOME, ...), never the whole of ours.
            "env": dict(settings.env),
            "cwd": settings.cwd,
            "session_kwargs": session_kwargs,
        }
    headers: dict[str, str] = {}
    for header, variable in settings.headers.items():
        value = environ.get(variable)
        if value is None:
            raise ConfigError(
                f"mcp.servers.{name}.headers.{header}: the environment variable {variable} is not set.",
                server=name, variable=variable,
            )
        headers[header] = value
    assert settings.url is not None
    return {
        "transport": "streamable_http",
        "url": settings.url,
        "headers": headers,
        "timeout": timedelta(seconds=settings.connect_timeout),
        "session_kwargs": session_kwargs,
    }


class McpToolbox:
    """Every configured MCP server, its tools in the agent's ``ToolSet``::

        async with McpToolbox.open(settings.mcp, toolset) as toolbox:
            ...  # toolset now holds notes__add_note, ...
    """

    GROUP_PREFIX: ClassVar[str] = "mcp:"

    def __init__(self, settings: McpSettings, toolset: ToolSet, *, environ: Mapping[str, str]) -> None:
        self.servers = {
            name: McpServer(name, server, toolset, environ=environ) for name, server in settings.servers.items()
        }

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: McpSettings, toolset: ToolSet, *, environ: Mapping[str, str]
    ) -> AsyncIterator[McpToolbox]:
        """Connect every server at once (each within its ``connect_timeout``) and list its tools; a
        server that does not answer is tried again in the background. Closed on exit."""
        toolbox = cls(settings, toolset, environ=environ)
        try:
            await asyncio.gather(*(server.start() for server in toolbox.servers.values()))
            yield toolbox
        finally:
            await asyncio.gather(*(server.aclose() for server in toolbox.servers.values()))

    def tools(self) -> Sequence[str]:
        """The model-side names of every MCP tool available now."""
        return [name for server in self.servers.values() for name in server.toolset.group(server.group)]

