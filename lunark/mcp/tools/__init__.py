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

The modules, by concern:

- ``tool``: one MCP tool as a Lunark ``Tool`` (names, argument schema, approval class, the card);
- ``sessions``: ``McpServer`` (one server's connection, its tool list, a call) and ``McpToolbox``
  (every configured server);
- ``results``: a tool's answer as the card and the model see it.
"""

from __future__ import annotations

from lunark.mcp.tools.sessions import McpServer, McpToolbox
from lunark.mcp.tools.tool import SEPARATOR, McpTool, display_name, model_name

__all__ = ["SEPARATOR", "McpServer", "McpTool", "McpToolbox", "display_name", "model_name"]
