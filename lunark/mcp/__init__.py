"""The Model Context Protocol, both ways.

- ``lunark.mcp.tools``: MCP servers as tool plugins. Each configured server (``mcp.servers``)
  is connected through ``langchain-mcp-adapters`` and the official ``mcp`` SDK, and each of
  its tools becomes a Lunark ``Tool`` named ``<server>__<tool>`` (``<server>.<tool>`` to
  people) whose approval follows its MCP annotations unless configuration says otherwise.
- ``lunark.mcp.server``: ``lunark mcp``, Lunark's tools (the wallet's, the entry-point plugins' and
  the MCP servers') as an MCP server for any MCP host, bound to one user by a session token; a
  state-changing call waits for that user's decision in the running Lunark server and returns
  the outcome (a transfer's settlement).

``docs/plugins.md`` shows both with configuration examples. Nothing here is imported by
``import lunark``.
"""

from __future__ import annotations

__all__: list[str] = []
