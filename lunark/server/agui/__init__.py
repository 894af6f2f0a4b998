"""AG-UI: Lunark as an agent any AG-UI client (CopilotKit, ``@ag-ui/client``) can run.

``POST /ag-ui`` takes a ``RunAgentInput`` and answers with the run's events over Server-Sent
Events, encoded by the official ``ag-ui-protocol`` package. It is a view of the same chat the
Socket.IO and HTTP clients see, not a second agent: the thread is a Lunark chat, the last user
message is a ``send_message``, and a resume is a ``resume_decisions`` through the same runner,
so every rule of the approval flow (one decision, exactly once; expiry fails closed; a signed
transaction checked against what was approved) holds here unchanged.

One run is one turn::

    RUN_STARTED
      TEXT_MESSAGE_START/CONTENT/END       <- message_start (assistant) / token / message_end
      TOOL_CALL_START/ARGS/END, _RESULT    <- tool_call / tool_result
      CUSTOM lunark.tx_update, ...         <- tx_update, status, approval_resolved, network_switch
    RUN_FINISHED                           <- message_end: stop, length (success), aborted (cancelled)
    RUN_FINISHED outcome.type=interrupt    <- pending_approval, then message_end awaiting_approval
    RUN_ERROR code=<Lunark error code>     <- error, or a refused message or decision
    RUN_ERROR code=interrupted             <- message_end interrupted (the server writing it stopped)

An interrupt is one action of the approval card (``<approval_id>:<call_id>``) with the card as
its ``metadata`` and ``metadata.governance.actionFingerprint``; a resume must answer every
action of the card and, to approve or edit, name that fingerprint (docs/ag-ui.md).

The modules, by concern:

- ``interrupts``: an approval as interrupts (the card, its response schema, its fingerprint) and a
  resume entry back as a Lunark decision;
- ``events``: one run, a turn's Lunark events as ``ag_ui.core`` events;
- ``routes``: the aiohttp route, sign-in, starting the turn and following the chat's live events.
"""

from __future__ import annotations

from lunark.server.agui.events import CUSTOM_PREFIX
from lunark.server.agui.interrupts import INTERRUPT_REASON, action_fingerprint, interrupts_for
from lunark.server.agui.routes import agui_routes

__all__ = ["CUSTOM_PREFIX", "INTERRUPT_REASON", "action_fingerprint", "agui_routes", "interrupts_for"]
