"""The MCP servers' connections: each kept open in a task of its own, started again after a failure,
retried in the background while down, its tool list kept in the agent's ``ToolSet``; and a call
with its timeout and failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, ClassVar

import mcp.types as mcp_types
from langchain_core.messages.tool import tool_call
from langchain_mcp_adapters.sessions import Connection, create_session
from langchain_mcp_adapters.tools import convert_mcp_tool_to_langchain_tool
from mcp import ClientSession
from mcp.shared.exceptions import McpError

from lunark.config import McpServerSettings, McpSettings
from lunark.errors import ConfigError, ToolFailed
from lunark.mcp.tools.results import reason, tool_result
from lunark.mcp.tools.tool import Listed, McpTool, approval_rule, display_name
from lunark.tools.registry import ToolSet

__all__ = ["McpServer", "McpToolbox"]

logger = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 408
"""The error code the SDK gives a request its read timeout cut (HTTP's 408, as the SDK uses it)."""
_RETRY_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


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
        self._listed: dict[str, Listed] = {}
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
                self.last_error = reason(exc)
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
                logger.warning("MCP server %r disconnected: %s", self.name, reason(exc))
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

    async def _list(self, session: ClientSession) -> dict[str, Listed]:
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        for _ in range(100):  # pages
            page = await session.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.nextCursor
            if not cursor:
                break
        return {
            tool.name: Listed(tool=tool, call=convert_mcp_tool_to_langchain_tool(session, tool, server_name=self.name))
            for tool in tools
        }

    def _install(self, listed: dict[str, Listed]) -> None:
        self._listed = listed
        tools: list[McpTool] = []
        for name, item in listed.items():
            override = self.settings.tools.get(name)
            if override is not None and not override.enabled:
                continue
            chosen = (override.approval if override else None) or self.settings.approval
            try:
                tools.append(McpTool(self, item.tool, approval_rule(item.tool, chosen)))
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
            logger.warning("MCP server %r: listing its tools again failed: %s", self.name, reason(exc))
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
            raise ToolFailed(f"{what} failed: {reason(exc)}", server=self.name, tool=tool) from None
        return tool_result(self.name, tool, message)

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.reset()


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
