"""The offline planner: Lunark's embedded default chat model.

No network, no weights, no randomness. It reads the conversation's last
message and either proposes tool calls (from plain English) or writes an
answer (from the tool results of the turn), and streams it token by token
like a hosted model would, so the whole agent, approval flow and streaming
path work without a model service::

    model = OfflinePlanner().bind_tools([get_balance, transfer, switch_network])
    await model.ainvoke([HumanMessage("send 0.5 ETH to 0x7099…79C8")])  # a full address
    # AIMessage(content="", tool_calls=[{"name": "transfer",
    #     "args": {"to": "0x7099…79C8", "amount": "0.5"}, ...}])

The pieces are pure functions the tests (and curious users) can call:
``plan_reply`` / ``plan_tool_calls`` for English -> tool calls,
``compose_answer`` for tool results -> English, ``split_tokens`` for how
text is streamed.

Parsing is deliberately conservative: a message is either understood in full
or nothing in it runs. If one part asks for something the planner cannot do
(a swap, an unlimited approval) or cannot read (a transfer without a full
address), it answers in text and proposes no calls, so nobody approves half a
request by surprise.

The planner is three pieces, one per module:

- ``chat_model``: ``OfflinePlanner``, the LangChain chat model (streaming, usage, the output
  limit and ``CONTINUE_PROMPT``);
- ``parser``: English -> intents -> tool calls (``plan_reply``, ``plan_tool_calls``);
- ``answers``: tool results -> English (``compose_answer``).
"""

from lunark.models.planner.answers import compose_answer
from lunark.models.planner.chat_model import CONTINUE_PROMPT, OfflinePlanner, split_tokens
from lunark.models.planner.parser import Plan, plan_reply, plan_tool_calls

__all__ = [
    "CONTINUE_PROMPT",
    "OfflinePlanner",
    "Plan",
    "compose_answer",
    "plan_reply",
    "plan_tool_calls",
    "split_tokens",
]
