"""An MCP host in its own process, to be killed mid-approval: it connects to ``lunark mcp`` (stdio:
it starts the process, as a desktop host does; http: the endpoint given), calls ``transfer`` and
waits for the answer it will never read. It prints ``calling`` once the request is sent.

    python tests/mcp_vanishing_host.py stdio <lunark url> <token> <withdraw-after> <to> <amount>
    python tests/mcp_vanishing_host.py http <endpoint> <token> - <to> <amount>
"""

from __future__ import annotations

import asyncio
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


async def call(host: ClientSession, to: str, amount: str) -> None:
    await host.initialize()
    task = asyncio.create_task(host.call_tool("transfer", {"to": to, "amount": amount}))
    await asyncio.sleep(0.2)
    print("calling", flush=True)
    await task


async def main(transport: str, where: str, token: str, withdraw_after: str, to: str, amount: str) -> None:
    if transport == "stdio":
        args = ["-m", "lunark.cli", "mcp", "--url", where, "--withdraw-after", withdraw_after]
        params = StdioServerParameters(command=sys.executable, args=args, env={"LUNARK_TOKEN": token})
        async with stdio_client(params) as (read, write), ClientSession(read, write) as host:
            await call(host, to, amount)
    else:
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        async with http, streamable_http_client(where, http_client=http) as (read, write, _), \
                ClientSession(read, write) as host:
            await call(host, to, amount)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:7]))
