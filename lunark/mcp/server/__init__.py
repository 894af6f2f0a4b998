"""``lunark mcp``: Lunark's wallet tools as an MCP server, for any MCP host.

A thin front-end: it holds no wallet, no agent and no database. It signs in to a running
``lunark serve`` with the user's session token (from sign-in with Ethereum, given in the host's
configuration as ``LUNARK_TOKEN``), opens one chat there for the host, and turns each MCP tool
call into a call in that chat (``ChatSession.call_tool``, the protocol's ``call_tool``). The
tools are the server's (``LunarkClient.list_tools``): the built-in ``get_balance``, ``transfer``
and ``switch_network``, the entry-point plugins' tools and every configured MCP server's tools
(``server.tool``), annotated by their approval class (``annotations_for``). The server runs a
call as if its model had proposed it: a read-only one answers at once; a state-changing one
becomes a normal approval in the user's rooms, decided in the dApp or the terminal chat with the
user's own wallet. The MCP call returns the outcome: a transfer's
settlement (``confirmed`` with hash and block, ``mismatch``, ``failed``, ``dropped``...),
``rejected`` with the reason, or ``expired``; only a confirmed transfer (or another tool that ran)
is not ``isError``, and a call set aside for the user's new message (``superseded``) is neither a
success nor a failure. Nothing here can approve: the only decision it ever
sends is a rejection, when the host cancels its request, declines the approval page or vanishes.

A host that takes URL-mode elicitations (MCP 2025-11-25, the ``elicitation.url`` capability) is
sent the link to the dApp's page for the approval (``/approve/{approval_id}``), where the user signs
in with their wallet and decides; it hears ``notifications/elicitation/complete`` once the approval
is decided. A host that vanishes while its call waits (killed, its stream dropped, its stdin
closed: no cancel, no DELETE) has the card withdrawn after ``withdraw_after`` seconds.

While a call waits the host gets MCP progress notifications: waiting for approval, approved,
submitted, mined, confirmations. Calls run one at a time in the host's chat.

    lunark mcp --url http://127.0.0.1:8080                    # stdio, for a desktop or IDE host
    lunark mcp --url http://127.0.0.1:8080 --http --port 8765  # streamable HTTP at /mcp

Over HTTP every request must carry ``Authorization: Bearer <the same token>``, so only a host
given the user's token can reach the tools.

The modules, by concern:

- ``front``: ``LunarkMcp``, the server as the host sees it (the tools listed, a call run in the
  host's chat until its outcome);
- ``waiting``: a call waiting for approval (progress, URL elicitation, pinging the host, withdrawing
  the card of a host that cancelled or vanished);
- ``answers``: what the host reads (annotations, descriptions, progress texts, the final result);
- ``serve``: the transports (stdio, streamable HTTP behind the token).
"""

from __future__ import annotations

from lunark.mcp.server.answers import ANNOTATIONS, annotations_for, exposed_name
from lunark.mcp.server.front import LunarkMcp
from lunark.mcp.server.serve import check_token, serve_http, serve_stdio
from lunark.mcp.server.waiting import WITHDRAW_AFTER

__all__ = [
    "ANNOTATIONS", "WITHDRAW_AFTER", "LunarkMcp", "annotations_for", "check_token", "exposed_name", "serve_http",
    "serve_stdio",
]
