"""ENS names through the real server, resolved against the real ENS contracts on Anvil.

The session's first chain has the registry with fallback, the public resolver and the reverse
registrar (conftest): alice.eth -> accounts[1], its primary name; ali.eth -> accounts[1] too, whose
primary name is alice.eth; nameless.eth -> accounts[2], which has no primary name. The second chain
has no ENS at all.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import World, sign_in
from langchain_core.messages import AIMessage
from server_harness import Http, SioClient
from wallet import native_balance, wallet_send

from lunark.chain.anvil import Anvil, DevAccount
from lunark.chain.client import ChainClient
from lunark.chain.ens import normalize_name, primary_name, resolve_name
from lunark.client.sdk import preview_lines
from lunark.errors import InvalidName, UnresolvedName
from lunark.models.scripted import ScriptedChatModel
from lunark.networks import NetworkRegistry
from lunark.protocol import ActionRequest
from lunark.tools.balance import BalanceArgs
from lunark.tools.transfer import TransferArgs

ETH = 10**18


def text_of(events: list[dict[str, Any]], message_id: str) -> str:
    return "".join(e["text"] for e in events if e["type"] == "token" and e["message_id"] == message_id)


async def ask(sio: SioClient, chat_id: str, text: str) -> tuple[int, dict[str, Any]]:
    """Send a message; returns where its events start and the message_end of the turn."""
    mark = sio.mark()
    ack = await sio.call("send_message", {"chat_id": chat_id, "content": text, "client_message_id": f"m{mark}"})
    assert "message_id" in ack, ack
    end = await sio.wait_event("message_end", chat_id=chat_id, after=mark)
    return mark, end


async def test_send_to_an_ens_name_shows_name_and_address_and_pays_that_address(
    make_server: Any, anvil: Anvil, alice: DevAccount, accounts: list[DevAccount]
) -> None:
    named = accounts[1]  # alice.eth
    server = await make_server()  # the wallet signs
    token = await sign_in(server, alice)
    before = native_balance(anvil, named.address)
    async with SioClient(server, token) as sio, Http(server) as http:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        # ENSIP-15 normalises the name as typed: Alice.ETH is alice.eth
        mark, end = await ask(sio, chat_id, "send 0.1 ETH to Alice.ETH")
        assert end["finish_reason"] == "awaiting_approval"
        pending = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark)
        [request] = pending["action_requests"]
        assert request["recipient_name"] == "alice.eth"
        assert request["tx"]["to"] == named.address
        assert "alice.eth" in request["summary"] and named.address in request["summary"]
        # alice.eth is the address's own primary name: no ens_reverse_mismatch (only the recipient checks'
        # first_time_recipient: she never paid it before).
        assert [w["code"] for w in request.get("warnings", [])] == ["first_time_recipient"]
        # A client that rejoins sees the same card.
        _, detail = await http.get(f"/api/chats/{chat_id}", token)
        assert detail["pending_approval"]["action_requests"][0]["recipient_name"] == "alice.eth"

        tx_hash = wallet_send(anvil, request["tx"], alice.private_key)
        mark = sio.mark()
        ack = await sio.call("resume_decisions", {"chat_id": chat_id, "approval_id": pending["approval_id"],
                                                  "decisions": [{"type": "approve", "tx_hash": tx_hash}]})
        assert ack == {"ok": True}
        confirmed = await sio.wait_event("tx_update", chat_id=chat_id, status="confirmed", after=mark)
        assert confirmed["tx_hash"].lower() == tx_hash.lower()
        end = await sio.wait_event("message_end", chat_id=chat_id, after=mark)
        assert end["finish_reason"] == "stop"
        [result] = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert result["status"] == "success"
        assert result["result"]["recipient"] == named.address
        assert result["result"]["recipient_name"] == "alice.eth"
        assert "alice.eth" in text_of(sio.events, end["message_id"])
    assert native_balance(anvil, named.address) - before == ETH // 10


async def test_balance_of_an_ens_name(make_server: Any, anvil: Anvil, alice: DevAccount,
                                      accounts: list[DevAccount]) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        mark, end = await ask(sio, chat_id, "balance of alice.eth")
        assert end["finish_reason"] == "stop"
        [result] = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert result["status"] == "success"
        assert result["result"]["address"] == accounts[1].address
        assert result["result"]["name"] == "alice.eth"
        assert int(result["result"]["raw"]) == native_balance(anvil, accounts[1].address)
        answer = text_of(sio.events, end["message_id"])
        assert "alice.eth" in answer and result["result"]["amount"] in answer.replace(",", "")


async def test_any_models_tool_call_may_name_the_recipient(
    make_server: Any, alice: DevAccount, accounts: list[DevAccount]
) -> None:
    # What a model reads: both tools say they take a name.
    assert "ENS name" in TransferArgs.model_fields["to"].description  # type: ignore[operator]
    assert "ENS name" in BalanceArgs.model_fields["address"].description  # type: ignore[operator]
    model = ScriptedChatModel(replies=[
        AIMessage(content="", tool_calls=[
            {"name": "transfer", "args": {"to": "alice.eth", "amount": "0.2", "token": "TKN"}, "id": "c1"},
        ]),
    ])
    server = await make_server(model=model)
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        mark, end = await ask(sio, chat_id, "pay my friend")
        assert end["finish_reason"] == "awaiting_approval"
        pending = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark)
        [request] = pending["action_requests"]
        assert request["recipient_name"] == "alice.eth" and request["args"]["to"] == "alice.eth"
        # a token transfer: the transaction calls the token; the recipient is in its data
        assert accounts[1].address[2:].lower() in request["tx"]["data"].lower()
        assert "0.2 TKN to alice.eth (" + accounts[1].address + ")" in request["summary"]
        # The preview names the address paid (in the calldata, not the token contract) by its name too,
        # as the terminal and lunark mcp print it.
        short = f"{accounts[1].address[:6]}…{accounts[1].address[-4:]}"
        lines = preview_lines(ActionRequest.model_validate(request))
        assert lines[0].startswith("you -0.2 TKN (")
        assert lines[1].startswith(f"recipient alice.eth ({short}) +0.2 TKN (")


@pytest.mark.parametrize(
    ("name", "holder", "says"),
    [
        ("ali.eth", 1, "primary ENS name is alice.eth, not ali.eth"),
        ("nameless.eth", 2, "has no primary ENS name"),
    ],
)
async def test_a_name_its_address_does_not_claim_warns_ens_reverse_mismatch(
    make_server: Any, alice: DevAccount, accounts: list[DevAccount], name: str, holder: int, says: str
) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        mark, end = await ask(sio, chat_id, f"send 0.1 ETH to {name}")
        assert end["finish_reason"] == "awaiting_approval"
        pending = await sio.wait_event("pending_approval", chat_id=chat_id, after=mark)
        [request] = pending["action_requests"]
        assert request["recipient_name"] == name and request["tx"]["to"] == accounts[holder].address
        [warning] = [w for w in request["warnings"] if w["code"] == "ens_reverse_mismatch"]
        assert warning["code"] == "ens_reverse_mismatch" and warning["severity"] == "warning"
        assert says in warning["message"] and accounts[holder].address in warning["message"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("send 0.1 ETH to nobody.eth", "nobody.eth is not registered on Anvil (local)"),
        ("balance of nobody.eth", "nobody.eth is not registered on Anvil (local)"),
        # ENSIP-15 allows an underscore only at the start of a label: refused, never "cured"
        ("send 0.1 ETH to al_ice.eth", "is not a valid ENS name"),
    ],
)
async def test_a_name_that_does_not_resolve_is_refused_and_nothing_is_offered(
    make_server: Any, alice: DevAccount, text: str, says: str
) -> None:
    server = await make_server()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        mark, end = await ask(sio, chat_id, text)
        assert end["finish_reason"] == "stop"
        assert not sio.of("pending_approval", chat_id=chat_id)
        [result] = sio.of("tool_result", chat_id=chat_id, after=mark)
        assert result["status"] == "error"
        assert result["error"]["code"] == "invalid_input" and says in result["error"]["message"]
        assert says in text_of(sio.events, end["message_id"])


async def test_a_network_without_an_ens_registry_refuses_names(registry: NetworkRegistry, world2: World) -> None:
    client = ChainClient(registry.get("anvil-2"))
    try:
        with pytest.raises(UnresolvedName, match=r"Anvil 2 \(local\) has no ENS registry configured"):
            await resolve_name(client, "alice.eth")
        assert await primary_name(client, world2.anvil.accounts[1].address) is None
    finally:
        await client.close()


async def test_resolution_reads_the_configured_registry(registry: NetworkRegistry, anvil: Anvil,
                                                        accounts: list[DevAccount]) -> None:
    client = ChainClient(registry.get("anvil"))
    try:
        resolved = await resolve_name(client, "ALICE.eth")
        assert (resolved.name, resolved.address) == ("alice.eth", accounts[1].address)
        assert await primary_name(client, accounts[1].address) == "alice.eth"
        assert await primary_name(client, accounts[2].address) is None
        with pytest.raises(UnresolvedName, match=r"x\.alice\.eth has no Ethereum address"):
            await resolve_name(client, "x.alice.eth")  # a subname nobody set up
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("Alice.ETH", "alice.eth"), ("  alice.eth ", "alice.eth"), ("ＡＬＩＣＥ.eth", "alice.eth"), ("🚀.eth", "🚀.eth")],
)
def test_names_are_normalised_per_ensip15(raw: str, normal: str) -> None:
    assert normalize_name(raw) == normal


@pytest.mark.parametrize("raw", ["al_ice.eth", "ali ce.eth", "alice..eth", "alice", "", "a" * 256 + ".eth"])
def test_invalid_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidName):
        normalize_name(raw)
