"""An agent built from settings: its store and checkpointer (SQLite files, or Postgres), the
configured model, tools, plugins and MCP servers, the spending policy and the local signer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.base import BaseCheckpointSaver

from lunark.chain.signer import LocalSigner, Signer
from lunark.config import Settings
from lunark.errors import ConfigError
from lunark.graph.checkpoints import ThreadedSqliteSaver
from lunark.models.factory import bind_tools_with_fallbacks
from lunark.models.planner import OfflinePlanner
from lunark.store import Store, open_store
from lunark.tools.base import Tool
from lunark.tools.registry import ToolSet, default_tools, load_plugins

if TYPE_CHECKING:
    from lunark.graph.agent import Agent

__all__ = ["open_agent"]

A = TypeVar("A", bound="Agent")


@asynccontextmanager
async def open_agent(
    cls: type[A],
    settings: Settings,
    *,
    model: BaseChatModel | None = None,
    extra_tools: Sequence[Tool] = (),
    environ: Mapping[str, str] | None = None,
    store: Store | None = None,
) -> AsyncIterator[A]:
    """An agent built from ``settings``: SQLite checkpoints and store under ``data_dir``, or both on
    Postgres with ``store.url`` (``store`` overrides the store), the configured model (``model``
    overrides it, e.g. a scripted one in tests), tools and plugins, policy, signer.
    """
    env = os.environ if environ is None else environ
    registry = settings.network_registry()
    tools = [*default_tools(), *(load_plugins() if settings.plugins else []), *extra_tools]
    toolset = ToolSet(tools, settings.approvals.rules)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    async with AsyncExitStack() as stack:
        if settings.mcp.servers:  # MCP servers' tools join the set (lunark.mcp.tools); closed with the agent
            from lunark.mcp.tools import McpToolbox

            await stack.enter_async_context(McpToolbox.open(settings.mcp, toolset, environ=env))
        if store is None:
            store = await open_store(settings.store.url, settings.data_dir / "lunark.sqlite",
                                     pool_size=settings.store.pool_size)
            stack.push_async_callback(store.close)
        saver: BaseCheckpointSaver[Any]
        if settings.store.url:
            # Several processes share one database: LangGraph's Postgres checkpointer, on psycopg too.
            from lunark.store import open_checkpointer

            saver = await stack.enter_async_context(
                open_checkpointer(settings.store.url, max_size=settings.store.pool_size)
            )
        else:
            # One thread hop per checkpoint operation, no lock shared by every chat (WAL,
            # synchronous = NORMAL): see lunark/graph/checkpoints.py.
            saver = await stack.enter_async_context(
                ThreadedSqliteSaver.open(settings.data_dir / "checkpoints.sqlite")
            )
        agent = cls(
            model=model or OfflinePlanner(),
            bind_tools=None if model is not None else (
                lambda schemas: bind_tools_with_fallbacks(settings.model, schemas, environ=env)
            ),
            registry=registry,
            checkpointer=saver,
            tools=toolset,
            policy=settings.policy.build(),
            store=store,
            signer=_local_signer(settings, env),
            approval_ttl=settings.approvals.ttl_seconds,
            track_timeout=settings.chain.track_timeout,
            verify_timeout=settings.chain.verify_timeout,
            default_network=settings.chain.default_network,
            fee_factor=settings.approvals.fee_factor,
        )
        await agent.ready()
        try:
            yield agent
        finally:
            await agent.aclose()

def _local_signer(settings: Settings, environ: Mapping[str, str]) -> Signer | None:
    local = settings.signer.local
    if local == "anvil":
        return LocalSigner.anvil(settings.signer.anvil_account)
    if local == "key":
        key = environ.get(settings.signer.key_env)
        if not key:
            raise ConfigError(
                f"signer.local is 'key' but the environment variable {settings.signer.key_env} is not set."
            )
        return LocalSigner(key, allowed_chain_ids=None)
    return None
