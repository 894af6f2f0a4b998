"""``lunark mcp --http`` as a user starts it (the console script, from a documented line), and an MCP
host that reaches it over streamable HTTP with the MCP SDK's own client.

    async with lunark_mcp_http(argv, token, url) as endpoint, http_host(endpoint, token) as host:
        tools = (await host.list_tools()).tools
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

_ANNOUNCED = re.compile(r"^Lunark MCP server on (http://\S+/mcp) for ")


def on_a_free_port(argv: Sequence[str]) -> list[str]:
    """``argv`` with its ``--port`` made ``0`` (a free one; the process prints which)."""
    out = list(argv)
    if "--port" in out:
        out[out.index("--port") + 1] = "0"
    else:
        out += ["--port", "0"]
    return out


@asynccontextmanager
async def lunark_mcp_http(argv: Sequence[str], token: str, *, env: dict[str, str] | None = None) -> AsyncIterator[str]:
    """Run ``argv`` (``lunark mcp ... --http``) with the token in ``LUNARK_TOKEN``; yields the endpoint
    it announces once it listens. Stopped (SIGTERM) on exit."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LUNARK_")}
    environ.update(env or {})
    environ["LUNARK_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        *on_a_free_port(argv), env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        found = _ANNOUNCED.match(line)
        if not found:
            err = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
            raise AssertionError(f"{' '.join(argv)} did not start: {line!r}\n{err}")
        yield found.group(1)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@asynccontextmanager
async def http_host(endpoint: str, token: str, **options: Any) -> AsyncIterator[ClientSession]:
    """An MCP host configured with ``{"url": endpoint, "headers": {"Authorization": "Bearer <token>"}}``;
    ``options`` go to its ``ClientSession`` (``elicitation_callback=`` declares URL elicitation)."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http, streamable_http_client(endpoint, http_client=http) as (read, write, _), \
            ClientSession(read, write, **options) as host:
        await asyncio.wait_for(host.initialize(), 60)
        yield host
