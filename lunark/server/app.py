"""The Lunark server: aiohttp + python-socketio, the agent, the hub, the runner, the store.

    server = LunarkServer(Settings.load())
    await server.start()
    print(server.url)
    ...
    await server.stop()
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack, suppress
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web
from langchain_core.language_models import BaseChatModel

from lunark.chain.client import ChainClients
from lunark.config import Settings
from lunark.errors import ConfigError, LunarkError
from lunark.graph.agent import Agent
from lunark.models.factory import aclose_chat_model, build_chat_model
from lunark.netutil import free_port
from lunark.server.agui import agui_routes
from lunark.server.auth import Authenticator
from lunark.server.collector import Collector
from lunark.server.fanout import FanoutManager
from lunark.server.http import HttpLimits, errors_middleware, routes
from lunark.server.hub import Hub, settlement_sink
from lunark.server.limits import JsonCodec, Limiters, restore_recursion_limit
from lunark.server.namespace import ChatNamespace
from lunark.server.runner import Runner
from lunark.server.service import ChatService
from lunark.server.transport import TRANSPORT_FACTOR, LunarkSocketServer
from lunark.server.turn_jobs import load_factory
from lunark.server.workers import RemoteRunner, WorkerPool
from lunark.store import open_store
from lunark.tools.base import Tool

if TYPE_CHECKING:
    from lunark.server.cluster import Cluster
    from lunark.server.jobs import QueueRunner
    from lunark.server.queue_worker import LocalWorkers
    from lunark.server.relay import RelayManager

__all__ = ["WEB_ROOT", "LunarkServer"]

logger = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
"""The dApp's static files, served at ``/``."""

SOCKETIO_ESM = WEB_ROOT.parent.parent / "node_modules" / "socket.io-client" / "dist" / "socket.io.esm.min.js"

SWITCH_INTERVAL = 0.001
"""Seconds a thread that wants the GIL waits before the running one must let go (Python: 5 ms).
The store's and the checkpointer's threads give the GIL up at every SQLite call and must win it
back from an event loop that may be busy: each time, up to a whole interval."""
"""socket.io-client's ES module build from the checkout's node_modules, served to the dApp at
``/vendor/socket.io.esm.min.js`` (no build step, no CDN)."""


class LunarkServer:
    """Everything behind one address: Socket.IO, the HTTP mirror, SSE, sign-in, the dApp."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: BaseChatModel | None = None,
        extra_tools: Sequence[Tool] = (),
        environ: Mapping[str, str] | None = None,
        model_factory: str | None = None,
    ) -> None:
        """``model``: the chat model instead of the configured one (this process only); or
        ``model_factory``, ``"module:callable"`` returning one, which turn workers call too."""
        self.settings = settings
        self._model_factory = model_factory
        # The agent's model, tools or environment given in code live in this process: unset, no workers.
        in_code = model is not None or bool(extra_tools) or environ is not None
        self.turn_workers = settings.turn_workers(agent_in_code=in_code)
        """Turn worker processes (``server.workers``, or its default: ``Settings.turn_workers``)."""
        if model is None and model_factory is not None and not (self.turn_workers or settings.server.relay_only):
            model = load_factory(model_factory)()
        self._model = model
        self._extra_tools = extra_tools
        self._environ = environ
        self._stack = AsyncExitStack()
        self.port = settings.server.port or free_port()
        self.host = settings.server.host
        loopback = self.host in ("127.0.0.1", "0.0.0.0", "localhost")
        self.domain = settings.server.domain or f"{'localhost' if loopback else self.host}:{self.port}"
        # A browser on this machine may name a loopback server either way; both are this server.
        self.domain_aliases: tuple[str, ...] = (
            (f"127.0.0.1:{self.port}", f"localhost:{self.port}") if loopback and not settings.server.domain else ()
        )
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host == "0.0.0.0" else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        settings = self.settings
        restore_recursion_limit()  # every import is done by now (limits.py says why)
        limits = settings.limits
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        workers = self.turn_workers
        # A cluster's relay: turn jobs go to the shared queue (lunark.server.jobs), for its N local
        # workers and any `lunark worker` elsewhere; relay_only: for those elsewhere alone.
        queued = bool(settings.store.url) and (workers > 0 or settings.server.relay_only)
        if (settings.server.relay_only or queued) and not (settings.store.url and settings.server.redis_url):
            raise ConfigError("Turn workers on a Postgres store (server.workers, server.relay_only) take their "
                              "jobs from a cluster: set server.redis_url too, or server.workers = 0.")
        if (workers or queued) and (self._model is not None or self._extra_tools):
            raise ConfigError("server.workers builds the agent in each worker process from the settings; a "
                              "model or tools given in code stay in this process: name the model by "
                              "model_factory, or set server.workers = 0.")
        if workers and self._model_factory is None:
            # Built once here and closed: a provider whose package or key is missing fails the start,
            # as in one process, instead of every worker at each of its starts.
            await aclose_chat_model(build_chat_model(settings.model))
        try:
            self.store = await open_store(settings.store.url, settings.data_dir / "lunark.sqlite",
                                          pool_size=settings.store.pool_size)
            self._stack.push_async_callback(self.store.close)
            self.cluster: Cluster | None = None
            if settings.store.url:
                from lunark.server.cluster import Cluster
                from lunark.store import PostgresStore

                assert isinstance(self.store, PostgresStore)
                self.cluster = Cluster(self.store, sweep_interval=settings.server.sweep_interval_seconds)
                # Closed after the agent, its settlement drivers and the turns have stopped (the stack
                # unwinds in reverse): until then this process's locks say it still owns them.
                self._stack.push_async_callback(self.cluster.aclose)
            self.agent: Agent | None = None
            self.registry = settings.network_registry()
            if not workers and not queued:
                self.agent = await self._stack.enter_async_context(
                    Agent.open(settings, model=self._model, extra_tools=self._extra_tools, environ=self._environ,
                               store=self.store)
                )
                self.registry = self.agent.registry
                self.clients = self.agent.clients
            else:  # the agent lives in the workers; this process reads the chain only for /healthz
                self.clients = ChainClients(self.registry)
                self._stack.push_async_callback(self.clients.close)
            # Several processes: Socket.IO rooms through Redis (lunark.server.relay), one turn per chat
            # and takeovers through Postgres (lunark.server.cluster). One process: all in memory.
            self.relay: RelayManager | None = None
            manager: socketio.AsyncManager = FanoutManager()
            if settings.server.redis_url:
                from lunark.server.relay import RelayManager

                self.relay = manager = RelayManager(settings.server.redis_url,
                                                    check_interval=settings.server.sweep_interval_seconds)
                self.relay.store = self.store
            self.sio = LunarkSocketServer(
                limits=limits,
                async_mode="aiohttp",
                cors_allowed_origins="*",  # bearer tokens, no cookies: any origin may connect
                logger=False,
                engineio_logger=False,
                client_manager=manager,
                ping_interval=settings.server.ping_interval,
                ping_timeout=settings.server.ping_timeout,
            )

            if self.relay is not None:
                # Listen to Redis now, not at the first Socket.IO connection (python-socketio's
                # default): a process serving only SSE or HTTP must get the other processes' events.
                self.sio.manager_initialized = True
                self.relay.initialize()
                self._stack.push_async_callback(self.relay.aclose)

            async def emit(event: str, data: dict[str, Any], rooms: list[str]) -> None:
                await self.sio.emit(event, data, to=rooms)

            flush = settings.server.flush_interval_ms / 1000
            self.hub: Hub
            if self.relay is not None:
                from lunark.server.relay import ClusterHub

                self.hub = ClusterHub(self.store, emit, self.relay, flush_interval=flush)
            else:
                fanout = manager if isinstance(manager, FanoutManager) else None

                def emit_now(event: str, data: dict[str, Any], rooms: list[str], text: str | None) -> None:
                    assert fanout is not None
                    fanout.emit_now(event, data, "/", rooms, text=text)

                # Tokens logged and sent without a task or an await (lunark.server.hub); with Redis,
                # every emit goes through the relay's gates instead.
                self.hub = Hub(self.store, emit, flush_interval=flush,
                               emit_now=emit_now if fanout is not None else None)
            self._stack.push_async_callback(self.hub.aclose)
            self.workers: WorkerPool | LocalWorkers | None = None
            self.runner: Runner | RemoteRunner | QueueRunner
            if queued:  # the Postgres driver is loaded by a cluster only (lunark.store says why)
                from lunark.server.jobs import JobQueue, QueueRunner
                from lunark.server.queue_worker import LocalWorkers
                from lunark.store import PostgresStore

                assert self.cluster is not None and isinstance(self.store, PostgresStore)
                queue = JobQueue(self.store, self.cluster.node)
                self.runner = QueueRunner(queue, self.cluster)
                self._stack.push_async_callback(self.runner.aclose)
                await queue.start_relay()
                if workers:  # stopped before the relay: their stopped turns still reach its clients
                    self.workers = LocalWorkers(settings, workers, model_factory=self._model_factory)
                    self._stack.push_async_callback(self.workers.aclose)
                    await self.workers.start()
            elif self.agent is not None:
                self.runner = Runner(self.agent, self.hub, self.store, turns=self.cluster,
                                     supersede=settings.approvals.on_new_message == "supersede",
                                     expiry_interval=settings.server.sweep_interval_seconds)
                self._stack.push_async_callback(self.runner.aclose)
                self.agent.settlements.connect(settlement_sink(self.store, self.hub), lease=self.cluster)
            else:
                # Turns in worker processes (lunark.server.workers): stopped before the hub closes,
                # so that the turns they stop still reach the log.
                self.workers = WorkerPool(settings, self.hub, workers, model_factory=self._model_factory)
                self.runner = RemoteRunner(self.workers)
                self._stack.push_async_callback(self.runner.aclose)
                await self.workers.start()
            self.limiters = Limiters(limits.rate)
            self.service = ChatService(
                store=self.store, runner=self.runner, registry=self.registry,
                default_network=settings.chain.default_network, limiters=self.limiters,
            )
            self.auth = Authenticator(
                self.store,
                domain=self.domain,
                aliases=self.domain_aliases,
                origins=self.sign_in_origins,
                # A sign-in names the chain the wallet is on; any network this server knows is fine.
                allowed_chain_ids=[n.chain_id for n in self.registry],
                session_ttl=_seconds(settings.server.token_ttl_seconds),
            )
            if self.cluster is not None:
                self.auth.announce = self.cluster.revoke_elsewhere
            # The safety net under logout's notification (lunark.server.auth): every process looks up
            # the sessions it holds open, and ends those the store no longer has.
            checks = asyncio.create_task(self.auth.check_forever(settings.server.sweep_interval_seconds),
                                         name="lunark-session-checks")
            self._stack.push_async_callback(_cancel, checks)
            namespace_class = ChatNamespace
            if self.relay is not None:
                from lunark.server.relay import ClusterNamespace

                namespace_class = ClusterNamespace
            self.namespace = namespace_class(auth=self.auth, service=self.service, hub=self.hub, limits=limits,
                                             limiters=self.limiters)
            self.sio.register_namespace(self.namespace)
            # aiohttp's own cap sits above the codec's so that the codec, not aiohttp, answers.
            app = web.Application(middlewares=[errors_middleware],
                                  client_max_size=limits.max_body_bytes * TRANSPORT_FACTOR)
            self.sio.attach(app)
            environ = os.environ if self._environ is None else self._environ
            http_limits = HttpLimits(
                codec=JsonCodec(limits), sign_in=self.limiters.sign_in,
                trusted_proxies=[ipaddress.ip_network(n, strict=False) for n in settings.server.trusted_proxies],
                admin_token=environ.get(settings.server.admin_token_env) or None,
                replay_batch=limits.replay_batch, sse_queue=limits.sse_queue,
            )
            app.add_routes(
                routes(auth=self.auth, service=self.service, hub=self.hub, store=self.store, health=self.health,
                       limits=http_limits)
            )
            # AG-UI (docs/ag-ui.md): the same chats and decisions, for CopilotKit and @ag-ui/client.
            app.add_routes(agui_routes(auth=self.auth, service=self.service, hub=self.hub, codec=http_limits.codec,
                                       sse_queue=limits.sse_queue))
            if WEB_ROOT.is_dir():
                app.router.add_get("/", _index)
                # The approval page an MCP host links to (lunark.mcp.server): the dApp, which
                # opens that approval's chat once the user has signed in with their wallet.
                app.router.add_get("/approve/{approval_id}", _index)
                app.router.add_static("/static/", WEB_ROOT, follow_symlinks=False)
                if SOCKETIO_ESM.is_file():
                    app.router.add_get("/vendor/socket.io.esm.min.js", _socketio_esm)
            self._app_runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
            await self._app_runner.setup()
            self._stack.push_async_callback(self._app_runner.cleanup)
            self._site = web.TCPSite(self._app_runner, self.host, self.port)
            await self._site.start()
            if self.cluster is not None:
                # Before recovery: it takes locks.
                if isinstance(self.runner, Runner) and self.agent is not None:
                    await self.cluster.start(self.runner, self.agent.settlements, self.auth)
                else:  # a relay: its workers run the turns and sweep
                    await self.cluster.start(None, None, self.auth)
            await self.runner.recover()
        except BaseException:
            await self._stack.aclose()
            raise
        logger.info("Lunark listening on %s", self.url)

    def tune_process(self, *, switch_interval: float | None = SWITCH_INTERVAL, **options: Any) -> Collector:
        """What ``lunark serve`` sets for the process it runs in (undone at stop): start-up's objects
        frozen and full garbage collections between turns (``schedule_collections``), and a shorter
        GIL switch interval (``SWITCH_INTERVAL``)."""
        collector = self.schedule_collections(**options)
        if switch_interval is not None:
            saved = sys.getswitchinterval()
            sys.setswitchinterval(switch_interval)
            self._stack.callback(sys.setswitchinterval, saved)
        return collector

    def schedule_collections(self, **options: Any) -> Collector:
        """Freeze start-up's objects and run full garbage collections between turns, as
        ``lunark serve`` does (``lunark.server.collector``; a process-wide setting, undone at stop)."""
        collector = Collector(lambda: self.runner.busy, **options)
        collector.start()
        self._stack.push_async_callback(collector.stop)
        return collector

    @property
    def sign_in_origins(self) -> list[str]:
        """The origins a sign-in message's URI may be on: ``server.public_url``, or this server's
        domain (and its loopback aliases) over http or https."""
        if self.settings.server.public_url:
            return [self.settings.server.public_url]
        return [f"{scheme}://{domain}" for domain in (self.domain, *self.domain_aliases)
                for scheme in ("http", "https")]

    async def health(self, detailed: bool = False) -> dict[str, Any]:
        """Readiness of the database and the default network's RPC. ``detailed`` adds what only an
        operator should see: the RPC's error text (it names the node's host) and connection counts."""
        database = await self.store.healthy()
        network = self.registry.get(self.settings.chain.default_network)
        chain: dict[str, Any] = {"network": network.name, "chain_id": network.chain_id, "ok": False}
        try:
            client = self.clients.get(network)
            chain["block"] = await asyncio.wait_for(client.block_number(), timeout=3)
            await client.ensure_chain()
            chain["ok"] = True
        except (LunarkError, TimeoutError, OSError) as exc:
            chain["error"] = str(exc)
        report: dict[str, Any] = {"ok": database and chain["ok"], "database": database, "chain": chain}
        if detailed:
            report["connections"] = {"sockets": self.sio.eio.connections()}
        if self.relay is not None:
            report["redis"] = await self.relay.healthy()
            report["ok"] = report["ok"] and report["redis"]
        if self.cluster is not None:
            report["cluster"] = {"node": self.cluster.node, "ok": await self.cluster.healthy()}
            report["ok"] = report["ok"] and report["cluster"]["ok"]
        if self.workers is not None:
            # Not part of ok: a chat whose worker restarts waits for it (lunark.server.workers).
            status = self.workers.status()
            report["workers"] = {"count": len(status), "ready": sum(w["ready"] for w in status)}
            if detailed:
                report["workers"]["processes"] = status
        return report

    async def stop(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> LunarkServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_ROOT / "index.html")


async def _socketio_esm(request: web.Request) -> web.FileResponse:
    return web.FileResponse(SOCKETIO_ESM, headers={"Content-Type": "text/javascript"})


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
