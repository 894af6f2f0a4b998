"""``lunark mcp``'s transports: stdio for a desktop or IDE host, streamable HTTP behind the token."""

from __future__ import annotations

import asyncio
import hmac
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from lunark.client import LunarkClient
from lunark.errors import Unauthorized
from lunark.mcp.server.front import LunarkMcp
from lunark.mcp.server.waiting import WITHDRAW_AFTER

__all__ = ["check_token", "serve_http", "serve_stdio"]


@asynccontextmanager
async def _connected(url: str, token: str, **options: Any) -> AsyncIterator[LunarkMcp]:
    client = LunarkClient(url, token=token)
    front = LunarkMcp(client, **options)
    try:
        await front.start()
        yield front
    finally:
        await client.close()


async def serve_stdio(url: str, token: str, *, withdraw_after: float = WITHDRAW_AFTER,
                      page_url: str | None = None) -> None:
    """Serve the host on this process's stdin/stdout until it closes them.

    A closed stdin with a call still waiting for approval means the host quit or was killed: the
    process stays ``withdraw_after`` seconds for the user to decide in Lunark, then withdraws the
    card and exits. SIGTERM or SIGINT withdraws it at once."""
    from mcp.server.stdio import stdio_server

    async with _connected(url, token, withdraw_after=withdraw_after, page_url=page_url) as front, \
            stdio_server() as (read, write):
        inbox, messages = anyio.create_memory_object_stream[Any](0)

        async def relay() -> None:
            # Between stdin and the MCP session, to know that stdin closed before the session
            # cancels the calls in flight: they are then the host's vanishing, not its cancel.
            async with inbox:
                async for message in read:
                    await inbox.send(message)
                front.host_gone = True

        loop = asyncio.get_running_loop()
        received: list[signal.Signals] = []
        async with anyio.create_task_group() as group:
            def stop(sig: signal.Signals) -> None:
                received.append(sig)
                front.stopping.set()
                group.cancel_scope.cancel()

            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop, sig)
            group.start_soon(relay)
            await front.server.run(messages, write, front.server.create_initialization_options())
            group.cancel_scope.cancel()
        if received:
            # The calls are withdrawn. stdin's reader is a thread blocked in read() that nothing can
            # cancel while the host keeps stdin open: end the way the signal asked, without it.
            await front.client.close()
            signal.signal(received[0], signal.SIG_DFL)
            os.kill(os.getpid(), received[0])


async def serve_http(url: str, token: str, *, host: str, port: int, ready: Any = None,
                     withdraw_after: float = WITHDRAW_AFTER, page_url: str | None = None) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp``; every request must carry the token.
    ``ready(front, port)`` is called once it listens (``port`` is the bound one: ``0`` picks a free
    port). A host whose call waits for approval is pinged on that call's stream; one that has not
    answered for ``withdraw_after`` seconds (it was killed, or dropped the stream without a cancel
    or a DELETE) has the card withdrawn."""
    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from starlette.types import Receive, Scope, Send

    async with _connected(url, token, withdraw_after=withdraw_after, page_url=page_url) as front:
        manager = StreamableHTTPSessionManager(app=front.server)
        expected = f"Bearer {token}".encode()

        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                response = JSONResponse(
                    {"error": {"code": "unauthorized", "message": "Send Authorization: Bearer <your Lunark token>."}},
                    status_code=401,
                )
                await response(scope, receive, send)
                return
            await manager.handle_request(scope, receive, send)

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with manager.run():
                yield

        class Endpoint:  # an ASGI app, not a request handler, to Starlette's Route
            __call__ = staticmethod(endpoint)

        # /mcp exactly as printed (a Mount alone answers it with a 307 to /mcp/), and /mcp/ too
        app = Starlette(routes=[Route("/mcp", Endpoint()), Mount("/mcp", app=endpoint)], lifespan=lifespan)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")

        class Server(uvicorn.Server):
            async def startup(self, sockets: Any = None) -> None:
                await super().startup(sockets)
                if ready is not None and self.started:  # listening now: say so, with the bound port
                    ready(front, self.servers[0].sockets[0].getsockname()[1])

        await Server(config).serve()


def check_token(token: str | None, variable: str) -> str:
    if not token:
        raise Unauthorized(
            f"No Lunark session token: set {variable} to the token of a sign-in (the dApp shows it, or "
            "LunarkClient.sign_in returns it)."
        )
    return token
