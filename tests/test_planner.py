"""The offline planner: English -> tool calls, tool results -> English, streamed."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from pydantic import BaseModel, ConfigDict, Field

from lunark.models.planner import (
    OfflinePlanner,
    compose_answer,
    plan_reply,
    plan_tool_calls,
    split_tokens,
)

ALICE = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
BOB = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
CAROL = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TX = "0x" + "ab12" * 16


class GetBalance(BaseModel):
    """Read the ETH or token balance of an address (the user's by default)."""

    model_config = ConfigDict(title="get_balance")
    address: str | None = Field(default=None, description="Holder; the user's address if omitted.")
    token: str | None = Field(
        default=None, description="Token symbol or address; native if omitted."
    )


class Transfer(BaseModel):
    """Send ETH or a token. Waits for the user's approval."""

    model_config = ConfigDict(title="transfer")
    to: str = Field(description="Recipient address.")
    amount: str = Field(description="Amount in token units, e.g. '0.5'.")
    token: str | None = Field(
        default=None, description="Token symbol or address; native if omitted."
    )


class SwitchNetwork(BaseModel):
    """Switch the chat to another network. Waits for the user's approval."""

    model_config = ConfigDict(title="switch_network")
    network: str = Field(description="Network name, alias or chain id.")


TOOLS = [GetBalance, Transfer, SwitchNetwork]


def calls_of(text: str, tools: list[Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    return [
        (c["name"], c["args"]) for c in plan_tool_calls(text, TOOLS if tools is None else tools)
    ]


def join(chunks: Sequence[BaseMessage]) -> AIMessageChunk:
    """Sum streamed chunks the way LangChain aggregates them."""
    pieces = [c for c in chunks if isinstance(c, AIMessageChunk)]
    assert len(pieces) == len(chunks)
    total = pieces[0]
    for chunk in pieces[1:]:
        total = total + chunk
    return total


# -- English -> tool calls ---------------------------------------------------------

BALANCE_CASES = [
    ("what's my balance", {}),
    ("What's my balance?", {}),
    ("balance", {}),
    ("how much ETH do I have", {}),
    ("how much ether do i have?", {}),
    ("my TKN balance", {"token": "TKN"}),
    ("what's my tkn balance", {"token": "tkn"}),
    (f"how much USDC does {BOB} have", {"address": BOB, "token": "USDC"}),
    (f"balance of {BOB}", {"address": BOB}),
    (f"check TUSD balance of {BOB}", {"address": BOB, "token": "TUSD"}),
    (f"ETH balance of {BOB}", {"address": BOB}),
    (f"what's the balance of token {TOKEN} for {BOB}?", {"address": BOB, "token": TOKEN}),
    (f"how much {TOKEN} does {BOB} have", {"address": BOB, "token": TOKEN}),
]


@pytest.mark.parametrize(("text", "args"), BALANCE_CASES)
def test_balance_questions(text: str, args: dict[str, str]) -> None:
    assert calls_of(text) == [("get_balance", args)]


TRANSFER_CASES = [
    (f"send 0.5 ETH to {BOB}", {"to": BOB, "amount": "0.5"}),
    (f"Send 0.5 eth to {BOB}.", {"to": BOB, "amount": "0.5"}),
    (f"send .5 ether to {BOB}", {"to": BOB, "amount": ".5"}),
    (f"transfer 10 TKN to {BOB}", {"to": BOB, "amount": "10", "token": "TKN"}),
    (f"please transfer 1000.25 TUSD to {BOB}", {"to": BOB, "amount": "1000.25", "token": "TUSD"}),
    (f"pay {BOB} 3 TUSD", {"to": BOB, "amount": "3", "token": "TUSD"}),
    (f"pay {BOB} 3", {"to": BOB, "amount": "3"}),
    (f"send 5 of token {TOKEN} to {BOB}", {"to": BOB, "amount": "5", "token": TOKEN}),
    (f"send 7 TKN tokens to {BOB}", {"to": BOB, "amount": "7", "token": "TKN"}),
    (f"give {BOB} 2 eth", {"to": BOB, "amount": "2"}),
]


@pytest.mark.parametrize(("text", "args"), TRANSFER_CASES)
def test_transfers(text: str, args: dict[str, str]) -> None:
    assert calls_of(text) == [("transfer", args)]


NETWORK_CASES = [
    ("switch to sepolia", "sepolia"),
    ("Switch to Sepolia please", "Sepolia"),
    ("use base", "base"),
    ("can you use the base network?", "base"),
    ("change network to 8453", "8453"),
    ("switch network to arbitrum one", "arbitrum one"),
    ("go to the second network", "second"),
    ("switch to anvil-2", "anvil-2"),
]


@pytest.mark.parametrize(("text", "network"), NETWORK_CASES)
def test_network_switches(text: str, network: str) -> None:
    assert calls_of(text) == [("switch_network", {"network": network})]


def test_two_transfers_in_one_message_keep_their_order() -> None:
    assert calls_of(f"send 1 eth to {BOB} and 2 TKN to {CAROL}") == [
        ("transfer", {"to": BOB, "amount": "1"}),
        ("transfer", {"to": CAROL, "amount": "2", "token": "TKN"}),
    ]


def test_switch_then_transfer() -> None:
    assert calls_of(f"switch to anvil-2 and send 1 ETH to {BOB}") == [
        ("switch_network", {"network": "anvil-2"}),
        ("transfer", {"to": BOB, "amount": "1"}),
    ]


def test_transfer_on_a_named_network_switches_first() -> None:
    assert calls_of(f"send 1 ETH to {BOB} on base") == [
        ("switch_network", {"network": "base"}),
        ("transfer", {"to": BOB, "amount": "1"}),
    ]


def test_transfer_then_balance() -> None:
    assert calls_of(f"send 0.1 ETH to {BOB}, then check my TKN balance") == [
        ("transfer", {"to": BOB, "amount": "0.1"}),
        ("get_balance", {"token": "TKN"}),
    ]


def test_tool_call_ids_are_openai_style_and_unique() -> None:
    calls = plan_tool_calls(f"send 1 eth to {BOB} and 2 TKN to {CAROL}", TOOLS)
    ids = [c["id"] for c in calls]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i or "") for i in ids)
    assert len(set(ids)) == 2


def test_a_bare_word_after_to_is_passed_on_as_a_possible_contact() -> None:
    # The planner cannot see the address book: the transfer tool resolves the label, or refuses it.
    plan = plan_reply("send 0.1 ETH to alice on sepolia", TOOLS)
    assert [(c["name"], c["args"]) for c in plan.calls][-1] == ("transfer", {"to": "alice", "amount": "0.1"})
    assert plan_reply("send 2 TKN to bob_2", TOOLS).calls[0]["args"] == {"to": "bob_2", "amount": "2", "token": "TKN"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("what's the weather like", "I can check balances"),
        ("hello", "Hi!"),
        ("thanks!", "welcome"),
        ("send 1 ETH to me", "full recipient address"),
        ("send 1 ETH to 0xf39F", "full recipient address"),
        ("send 1 ETH to 0xf39F…2266", "full recipient address"),
        ("send some ETH to " + BOB, "full recipient address"),  # "all", "half", "25%" are shares (test_amounts)
        ("switch networks", "which network"),
        (f"switch to {BOB}", "which network"),
        ("swap 1 ETH for USDC", "can't swap"),
        ("bridge 1 eth to base", "can't bridge"),
        ("stake 32 ETH", "can't stake"),
        (f"approve unlimited TKN for {BOB}", "can't grant token approvals"),
        ("how much is 1 ETH in USD", "can't look up prices"),
        ("what's my seed phrase", "private keys or seed phrases"),
    ],
)
def test_things_it_cannot_do_are_answered_in_text(text: str, says: str) -> None:
    plan = plan_reply(text, TOOLS)
    assert plan.calls == ()
    assert says.lower() in plan.text.lower()


def test_a_message_with_an_unsupported_part_runs_nothing() -> None:
    plan = plan_reply(f"send 1 ETH to {BOB} and swap 2 TKN for USDC", TOOLS)
    assert plan.calls == ()
    assert "can't swap" in plan.text
    assert "haven't done any other part" in plan.text


def test_a_message_with_an_unreadable_part_runs_nothing() -> None:
    # "my friend" is no address, ENS name (those are dotted: bob.eth) or contact label.
    plan = plan_reply("switch to base and send 1 ETH to my friend", TOOLS)
    assert plan.calls == ()
    assert "Nothing was done" in plan.text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("send 0.1 ETH to alice.eth", [("transfer", {"to": "alice.eth", "amount": "0.1"})]),
        # normalisation is the tool's (ENSIP-15): the planner passes the name as written
        ("send 0.1 ETH to Alice.ETH.", [("transfer", {"to": "Alice.ETH", "amount": "0.1"})]),
        ("pay alice.eth 3 TKN", [("transfer", {"to": "alice.eth", "amount": "3", "token": "TKN"})]),
        ("send 1 ETH to bob.base.eth and 2 TKN to carol.xyz", [
            ("transfer", {"to": "bob.base.eth", "amount": "1"}),
            ("transfer", {"to": "carol.xyz", "amount": "2", "token": "TKN"}),
        ]),
        ("send 0.1 ETH to alice.eth on sepolia", [
            ("switch_network", {"network": "sepolia"}), ("transfer", {"to": "alice.eth", "amount": "0.1"}),
        ]),
        ("balance of alice.eth", [("get_balance", {"address": "alice.eth"})]),
        ("what's the TKN balance of alice.eth?", [("get_balance", {"address": "alice.eth", "token": "TKN"})]),
        ("how much TKN does vitalik.eth have", [("get_balance", {"address": "vitalik.eth", "token": "TKN"})]),
        # a dotted token symbol is still a token, not a name
        (f"send 5 USDC.e to {BOB}", [("transfer", {"to": BOB, "amount": "5", "token": "USDC.e"})]),
        ("balance of USDC.e", [("get_balance", {"token": "USDC.e"})]),
    ],
)
def test_ens_names_stand_where_addresses_do(text: str, expected: list[tuple[str, dict[str, Any]]]) -> None:
    assert calls_of(text) == expected


@pytest.mark.parametrize(
    ("text", "args"),
    [
        # A word where the holder stands may be a contact: passed on for the tool to resolve.
        ("balance of alice", {"address": "alice"}),
        ("what's the balance of Alice?", {"address": "Alice"}),
        ("balance for bob", {"address": "bob"}),
        ("what's alice's balance", {"address": "alice"}),
        ("alice's TKN balance", {"address": "alice", "token": "TKN"}),
        ("how much TKN does alice have", {"address": "alice", "token": "TKN"}),
        ("how much does bob have?", {"address": "bob"}),
        ("what's the TKN balance of alice", {"address": "alice", "token": "TKN"}),
        # A word written like a symbol, the native currency, a filler: not a holder.
        ("balance of TKN", {"token": "TKN"}),
        ("balance of USDC", {"token": "USDC"}),
        ("balance of wstETH", {"token": "wstETH"}),
        ("balance of usdc2", {"token": "usdc2"}),
        ("balance of ETH", {}),
        ("balance of ether", {}),
        ("balance of my wallet", {}),
        ("how much do I have", {}),
        ("what's my tkn balance", {"token": "tkn"}),
        (f"balance of token {TOKEN}", {"token": TOKEN}),
    ],
)
def test_a_contact_label_stands_where_the_holder_does(text: str, args: dict[str, str]) -> None:
    assert calls_of(text) == [("get_balance", args)]


def test_unbound_tool_is_explained_not_called() -> None:
    plan = plan_reply(f"send 0.5 ETH to {BOB}", [GetBalance])
    assert plan.calls == ()
    assert "can't send ETH or tokens" in plan.text
    assert "check balances" in plan.text  # says what it can do instead
    assert "switch networks" not in plan.text


def test_no_tools_bound() -> None:
    plan = plan_reply("what's my balance", [])
    assert plan.calls == ()
    assert "no wallet tools" in plan.text


def test_args_only_use_properties_the_schema_has() -> None:
    class GetNativeBalance(BaseModel):
        """Only the native balance."""

        model_config = ConfigDict(title="get_balance")
        address: str | None = None

    assert calls_of("what's my balance", [GetNativeBalance]) == [("get_balance", {})]
    plan = plan_reply("my TKN balance", [GetNativeBalance])
    assert plan.calls == ()
    assert "TKN" in plan.text


def test_schema_synonyms_and_types_are_respected() -> None:
    send = {
        "name": "transfer",
        "description": "Send.",
        "parameters": {
            "type": "object",
            "properties": {"recipient": {"type": "string"}, "amount": {"type": "string"}},
            "required": ["recipient", "amount"],
        },
    }
    switch = {
        "type": "function",
        "function": {
            "name": "switch_network",
            "description": "Switch by chain id.",
            "parameters": {
                "type": "object",
                "properties": {"chain_id": {"type": "integer"}},
                "required": ["chain_id"],
            },
        },
    }
    assert calls_of(f"send 1 ETH to {BOB}", [send]) == [
        ("transfer", {"recipient": BOB, "amount": "1"})
    ]
    assert calls_of("change network to 8453", [switch]) == [("switch_network", {"chain_id": 8453})]
    assert plan_reply("switch to sepolia", [switch]).calls == ()


def test_base_tools_and_callables_bind_too() -> None:
    @tool("get_balance")
    async def balance_tool(address: str | None = None, token: str | None = None) -> str:
        """Read a balance."""
        return "{}"

    def switch_network(network: str) -> str:
        """Switch network.

        Args:
            network: name, alias or chain id.
        """
        return network

    assert calls_of(f"balance of {BOB}", [balance_tool]) == [("get_balance", {"address": BOB})]
    assert calls_of("use base", [switch_network]) == [("switch_network", {"network": "base"})]


# -- the chat model ---------------------------------------------------------------


async def test_bind_tools_and_ainvoke_proposes_calls() -> None:
    model = OfflinePlanner().bind_tools(TOOLS)
    reply = await model.ainvoke([HumanMessage(f"switch to anvil-2 and send 1 ETH to {BOB}")])
    assert isinstance(reply, AIMessage)
    assert reply.content == ""
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("switch_network", {"network": "anvil-2"}),
        ("transfer", {"to": BOB, "amount": "1"}),
    ]
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert reply.usage_metadata is not None


async def test_tool_choice_none_proposes_nothing() -> None:
    model = OfflinePlanner().bind_tools(TOOLS, tool_choice="none")
    reply = await model.ainvoke([HumanMessage(f"send 1 ETH to {BOB}")])
    assert reply.tool_calls == []
    assert isinstance(reply.content, str) and reply.content


async def test_text_streams_in_several_chunks_that_join_to_the_invoke_text() -> None:
    model = OfflinePlanner().bind_tools(TOOLS)
    messages = [HumanMessage("hello there")]
    chunks = [chunk async for chunk in model.astream(messages)]
    text_chunks = [c for c in chunks if c.content]
    assert len(text_chunks) > 1
    whole = await model.ainvoke(messages)
    assert "".join(str(c.content) for c in chunks) == whole.content
    total = join(chunks)
    assert total.content == whole.content
    assert total.usage_metadata is not None
    assert total.usage_metadata["output_tokens"] == len(text_chunks)
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] == len(text_chunks)


def test_sync_stream_and_invoke_agree() -> None:
    model = OfflinePlanner().bind_tools(TOOLS)
    messages = [HumanMessage("swap 1 ETH for USDC")]
    chunks = list(model.stream(messages))
    assert len(chunks) > 2
    assert "".join(str(c.content) for c in chunks) == model.invoke(messages).content


async def test_tool_call_chunks_assemble_into_tool_calls() -> None:
    model = OfflinePlanner().bind_tools(TOOLS)
    messages = [HumanMessage(f"send 1 eth to {BOB} and 2 TKN to {CAROL}")]
    chunks = [chunk async for chunk in model.astream(messages)]
    pieces = [p for c in chunks if isinstance(c, AIMessageChunk) for p in c.tool_call_chunks]
    assert [p["index"] for p in pieces] == [0, 1]
    assert all(isinstance(p["args"], str) for p in pieces)
    total = join(chunks)
    assert total.content == ""
    expected = [
        ("transfer", {"to": BOB, "amount": "1"}),
        ("transfer", {"to": CAROL, "amount": "2", "token": "TKN"}),
    ]
    assert [(c["name"], c["args"]) for c in total.tool_calls] == expected
    assert [c["id"] for c in total.tool_calls] == [p["id"] for p in pieces]
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] == 0
    invoked = await model.ainvoke(messages)
    assert [(c["name"], c["args"]) for c in invoked.tool_calls] == expected


async def test_delay_spaces_out_chunks() -> None:
    model = OfflinePlanner(delay=0.005)
    started = time.perf_counter()
    chunks = [chunk async for chunk in model.astream([HumanMessage("hi")])]
    assert time.perf_counter() - started >= 0.005 * (len(chunks) - 1) * 0.9


def test_llm_type() -> None:
    assert OfflinePlanner()._llm_type == "lunark-offline-planner"


@pytest.mark.parametrize(
    "text",
    ["", "one", "  two  words ", "Sent 0.5 ETH to 0x7099…79C8.\nTransaction confirmed.\n"],
)
def test_split_tokens_round_trips(text: str) -> None:
    assert "".join(split_tokens(text)) == text


# -- tool results -> English ---------------------------------------------------------


async def answer(user: str, results: list[dict[str, Any] | str], **status: Any) -> str:
    """Plan ``user`` with the model, feed it ``results`` (one per call), return its answer."""
    model = OfflinePlanner().bind_tools(TOOLS)
    history: list[BaseMessage] = [HumanMessage(user)]
    proposed = await model.ainvoke(history)
    assert len(proposed.tool_calls) == len(results)
    history.append(proposed)
    for call, result in zip(proposed.tool_calls, results, strict=True):
        content = result if isinstance(result, str) else json.dumps(result)
        history.append(
            ToolMessage(content, tool_call_id=call["id"] or "", name=call["name"], **status)
        )
    reply = await model.ainvoke(history)
    assert reply.tool_calls == []
    assert isinstance(reply.content, str)
    streamed = "".join([str(c.content) async for c in model.astream(history)])
    assert streamed == reply.content
    return reply.content


def sent(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "status": status,
        "tx_hash": TX,
        "amount": "0.5",
        "symbol": "ETH",
        "recipient": BOB,
        "network": "Anvil (local)",
        **extra,
    }


async def test_answer_confirmed_transfer() -> None:
    text = await answer(f"send 0.5 ETH to {BOB}", [sent("confirmed", block_number=12)])
    assert text == (
        "Sent 0.5 ETH to 0x7099…79C8 on Anvil (local). "
        "Transaction 0xab12…ab12 confirmed in block 12."
    )


async def test_answer_confirmed_transfer_links_the_explorer() -> None:
    url = f"https://sepolia.etherscan.io/tx/{TX}"
    text = await answer(f"send 0.5 ETH to {BOB}", [sent("confirmed", explorer_url=url)])
    assert url in text


async def test_answer_failed_transfer() -> None:
    result = sent("failed", block_number=13, reason="execution reverted")
    text = await answer(f"send 0.5 ETH to {BOB}", [result])
    assert "failed on chain" in text
    assert "execution reverted" in text
    assert "nothing was sent" in text
    assert "fee" in text


async def test_answer_mismatch_warns() -> None:
    result = sent("mismatch", reason="value differs from the approval")
    text = await answer(f"send 0.5 ETH to {BOB}", [result])
    assert text.startswith("Warning:")
    assert "does not match" in text
    assert "not accepted" in text
    assert "Sent" not in text


@pytest.mark.parametrize(
    ("status", "says"),
    [
        ("replaced", "did not go through"),
        ("dropped", "nothing was sent"),
        ("submitted", "not confirmed"),
    ],
)
async def test_answer_other_transfer_states_are_honest(status: str, says: str) -> None:
    text = await answer(f"send 0.5 ETH to {BOB}", [sent(status)])
    assert says in text
    assert "confirmed in block" not in text


async def test_answer_rejected_with_reason() -> None:
    result = {"status": "rejected", "message": "wrong recipient"}
    text = await answer(f"send 0.5 ETH to {BOB}", [result])
    assert text == "Okay, I did not send 0.5 ETH to 0x7099…79C8. Your reason: “wrong recipient”."


async def test_answer_rejected_as_error_tool_message() -> None:
    text = await answer(
        f"transfer 10 TKN to {BOB}",
        ["User rejected the tool call for `transfer` with id call_x"],
        status="error",
    )
    assert text == "Okay, I did not send 10 TKN to 0x7099…79C8."


async def test_answer_policy_violation() -> None:
    error = {
        "code": "policy_violation",
        "message": "0.5 ETH is over the per-transaction cap of 0.1 ETH",
    }
    text = await answer(f"send 0.5 ETH to {BOB}", [{"status": "error", "error": error}])
    assert text == "I can't do that: 0.5 ETH is over the per-transaction cap of 0.1 ETH."


async def test_answer_other_error() -> None:
    error = {"code": "invalid_input", "message": "Token 'XYZ' is not known on Anvil (local)."}
    text = await answer(f"send 1 XYZ to {BOB}", [{"status": "error", "error": error}])
    assert text == "That didn't work: Token 'XYZ' is not known on Anvil (local)."


async def test_answer_own_balance() -> None:
    result = {
        "address": ALICE,
        "chain_id": 31337,
        "network": "Anvil (local)",
        "symbol": "ETH",
        "amount": "9999.5",
        "raw": "9999500000000000000000",
        "token": None,
    }
    assert (
        await answer("what's my balance", [result])
        == "Your balance on Anvil (local) is 9999.5 ETH."
    )


async def test_answer_token_balance_of_an_address() -> None:
    result = {
        "address": BOB,
        "chain_id": 31337,
        "network": "Anvil (local)",
        "symbol": "TKN",
        "amount": "1000000.000",
        "raw": str(10**24),
        "token": TOKEN,
    }
    text = await answer(f"how much TKN does {BOB} have", [result])
    assert text == "The TKN balance of 0x7099…79C8 on Anvil (local) is 1,000,000 TKN."


async def test_answer_switch() -> None:
    result = {
        "network": "sepolia",
        "display_name": "Sepolia",
        "chain_id": 11155111,
        "symbol": "ETH",
    }
    assert await answer("switch to sepolia", [result]) == "Switched to Sepolia (chain 11155111)."


async def test_answer_switch_and_transfer_in_call_order() -> None:
    switched = {"network": "anvil-2", "display_name": "Anvil 2", "chain_id": 31338, "symbol": "ETH"}
    text = await answer(
        f"switch to anvil-2 and send 0.5 ETH to {BOB}",
        [switched, sent("confirmed", block_number=3, network="Anvil 2")],
    )
    assert text.splitlines() == [
        "Switched to Anvil 2 (chain 31338).",
        "Sent 0.5 ETH to 0x7099…79C8 on Anvil 2. Transaction 0xab12…ab12 confirmed in block 3.",
    ]


def test_compose_answer_matches_results_by_call_id_and_handles_odd_content() -> None:
    calls = plan_tool_calls(f"what's my balance, then balance of {BOB}", TOOLS)
    first, second = calls
    results = [
        # out of order, one not JSON, one of an unknown shape
        ToolMessage("node unreachable", tool_call_id=second["id"] or ""),
        ToolMessage(
            json.dumps({"weird": [1, 2]}), tool_call_id=first["id"] or "", name="get_balance"
        ),
        ToolMessage(json.dumps({"note": "hi"}), tool_call_id="call_other", name="plugin_tool"),
    ]
    lines = compose_answer(calls, results).splitlines()
    assert lines[0] == "get_balance returned weird: [1, 2]."
    assert lines[1] == "get_balance said: “node unreachable”."
    assert lines[2] == "plugin_tool returned note: hi."


def test_compose_answer_notes_a_missing_result() -> None:
    calls = plan_tool_calls("switch to base", TOOLS)
    assert compose_answer(calls, []) == "I got no result from switch_network."


async def test_answer_after_a_plain_ai_message_or_no_messages() -> None:
    model = OfflinePlanner().bind_tools(TOOLS)
    after = await model.ainvoke([HumanMessage("hi"), AIMessage("Hello!")])
    assert "I can check balances" in str(after.content)
    empty = await OfflinePlanner().ainvoke([])
    assert "no wallet tools" in str(empty.content)
