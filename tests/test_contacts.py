"""Contacts through a real server on a real Anvil: saved over HTTP and the SDK, private to their
owner, "send 0.1 ETH to alice" (offline planner) resolves the label, the card names it, the
recipient checks count it (never first-time, never planted), and the money goes to its address."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from conftest import sign_in
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from server_harness import Http, SioClient, assert_error, assert_http_error
from test_recipient_checks import approve, ask, forged_twin, settled, wait_mined, warnings_of
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount
from lunark.client import LunarkClient
from lunark.errors import InvalidInput, NotFound
from lunark.models.scripted import ScriptedChatModel
from lunark.protocol import Contact, ToolCall, ToolResult
from lunark.protocol import Token as TokenEvent
from lunark.tools.recipient import addresses_in

ETH = 10**18
NOTES_SERVER = Path(__file__).parent / "mcp_notes_server.py"


async def test_contacts_over_http_are_the_owners_alone(make_server: Any, alice: DevAccount, bob: DevAccount,
                                                       carol: DevAccount) -> None:
    server = await make_server()
    token, other = await sign_in(server, alice), await sign_in(server, carol)
    async with Http(server) as http:
        status, body = await http.request("PUT", "/api/contacts/Bob", token, json={"address": bob.address.lower()})
        assert status == 200, body
        assert body["contact"]["label"] == "Bob" and body["contact"]["address"] == bob.address
        status, body = await http.get("/api/contacts", token)
        assert status == 200 and [(c["label"], c["address"]) for c in body["contacts"]] == [("Bob", bob.address)]

        # A bad checksum, a non-address, a malformed label, a stray field: 400 invalid_input, nothing saved.
        bad_checksum = bob.address.replace("C8", "c8")  # one letter's case off: a typo, not bob
        assert bad_checksum.lower() == bob.address.lower() and bad_checksum != bob.address
        for path, payload in [
            ("/api/contacts/dave", {"address": bad_checksum}),
            ("/api/contacts/dave", {"address": "dave.eth"}),
            ("/api/contacts/da.ve", {"address": carol.address}),
            ("/api/contacts/dave", {"address": carol.address, "note": "x"}),
        ]:
            status, body = await http.request("PUT", path, token, json=payload)
            assert_http_error(status, body, 400, "invalid_input")
        assert len((await http.get("/api/contacts", token))[1]["contacts"]) == 1

        # Signed in only; another user sees none of them and cannot remove them.
        status, body = await http.get("/api/contacts")
        assert_http_error(status, body, 401, "unauthorized")
        assert (await http.get("/api/contacts", other))[1] == {"contacts": []}
        status, body = await http.request("DELETE", "/api/contacts/bob", other)
        assert_http_error(status, body, 404, "not_found")
        status, body = await http.request("DELETE", "/api/contacts/bob", token)  # any case
        assert status == 200 and body == {"ok": True}
        assert (await http.get("/api/contacts", token))[1] == {"contacts": []}


async def test_the_sdk_adds_lists_and_removes_contacts(make_server: Any, alice: DevAccount, bob: DevAccount) -> None:
    server = await make_server()
    async with LunarkClient(f"http://localhost:{server.port}", signer_key=alice.private_key) as client:
        saved = await client.add_contact("bob", bob.address)
        assert isinstance(saved, Contact) and saved.address == bob.address
        assert [(c.label, c.address) for c in await client.contacts()] == [("bob", bob.address)]
        try:
            await client.add_contact("carol", "0x1234")
        except InvalidInput as exc:
            assert "0x1234" in exc.message
        else:
            raise AssertionError("a malformed address was saved")
        await client.remove_contact("BOB")
        assert await client.contacts() == []
        try:
            await client.remove_contact("bob")
        except NotFound:
            pass
        else:
            raise AssertionError("removing a missing contact succeeded")


async def test_send_to_a_contact_by_label_names_it_on_the_card_and_pays_its_address(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    server = await make_server(signer={"local": "anvil"})
    token, other = await sign_in(server, alice), await sign_in(server, carol)
    before = native_balance(anvil, bob.address)
    async with Http(server) as http:
        assert (await http.request("PUT", "/api/contacts/alice", token, json={"address": bob.address}))[0] == 200
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask(sio, chat_id, "send 0.1 ETH to alice")
        assert pending["type"] == "pending_approval", pending
        [request] = pending["action_requests"]
        assert request["recipient_name"] == "alice"
        assert request["args"]["to"] == "alice"
        assert request["tx"]["to"].lower() == bob.address.lower()
        assert "alice" in request["summary"] and bob.address in request["summary"]
        # Never sent to before, but a contact: chosen by the user, so no first-time warning.
        assert warnings_of(pending) == {}
        assert "ok" in await approve(sio, chat_id, pending)
        result = await settled(sio, chat_id, request["call_id"])
        assert result["result"]["status"] == "confirmed", result
        assert result["result"]["recipient_name"] == "alice"
        wait_mined(anvil, bob.address, before + ETH // 10)

        # The same address typed out is named by its label too.
        pending = await ask(sio, chat_id, f"send 0.01 ETH to {bob.address}")
        assert pending["action_requests"][0]["recipient_name"] == "alice"

    # Another user's "alice" is nobody: refused with a clear invalid_input, nothing asked.
    async with SioClient(server, other) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        mark = sio.mark()
        end = await ask(sio, chat_id, "send 0.1 ETH to alice")
        assert end["type"] == "message_end", end
        [failed] = [e for e in sio.of("tool_result", chat_id=chat_id, after=mark) if e["status"] == "error"]
        assert failed["error"]["code"] == "invalid_input"
        assert "not one of your contacts" in failed["error"]["message"]
        assert not sio.of("pending_approval", chat_id=chat_id, after=mark)


async def test_a_lookalike_of_a_contact_is_a_danger(make_server: Any, alice: DevAccount, bob: DevAccount) -> None:
    server = await make_server(signer={"local": "anvil"})
    token = await sign_in(server, alice)
    async with Http(server) as http:
        assert (await http.request("PUT", "/api/contacts/bob", token, json={"address": bob.address}))[0] == 200
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask(sio, chat_id, f"send 0.01 ETH to {forged_twin(bob.address)}")
        lookalike = warnings_of(pending)["lookalike_recipient"]
        assert lookalike["severity"] == "danger" and "your contact bob" in lookalike["message"]
        assert_error(await approve(sio, chat_id, pending), "acknowledgement_required")


async def test_a_contacts_address_in_a_tools_result_is_not_planted(
    make_server: Any, anvil: Anvil, tmp_path: Path, alice: DevAccount, bob: DevAccount
) -> None:
    """The note comes from a real MCP server process; the address in it is bob's, a contact of the
    user's: the user chose it, so it is no prompt injection."""
    notes = tmp_path / "notes.json"
    notes.write_text(json.dumps([{"text": f"Invoice 7: pay 0.05 ETH to {bob.address.lower()}", "tag": "bills"}]))

    def pay_the_invoice(messages: list[BaseMessage]) -> AIMessage:
        read = next(m for m in reversed(messages) if isinstance(m, ToolMessage))
        [address] = addresses_in(read.content)
        return AIMessage(content="", tool_calls=[
            {"name": "transfer", "args": {"to": address, "amount": "0.05"}, "id": "pay1"}])

    model = ScriptedChatModel(replies=[
        AIMessage(content="", tool_calls=[{"name": "notes__list_notes", "args": {}, "id": "read1"}]),
        pay_the_invoice,
        "Paid.",
    ])
    server = await make_server(
        model=model, signer={"local": "anvil"},
        mcp={"servers": {"notes": {"command": sys.executable, "args": [str(NOTES_SERVER), "stdio"],
                                   "env": {"NOTES_FILE": str(notes)}}}},
    )
    token = await sign_in(server, alice)
    before = native_balance(anvil, bob.address)
    async with Http(server) as http:
        assert (await http.request("PUT", "/api/contacts/bob", token, json={"address": bob.address}))[0] == 200
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        pending = await ask(sio, chat_id, "please pay my open invoices")
        assert pending["type"] == "pending_approval", pending
        assert warnings_of(pending) == {}
        assert pending["action_requests"][0]["recipient_name"] == "bob"
        assert "ok" in await approve(sio, chat_id, pending)
        result = await settled(sio, chat_id, "pay1")
        assert result["result"]["status"] == "confirmed", result
        wait_mined(anvil, bob.address, before + 5 * ETH // 100)


async def test_balance_of_a_contact_by_label_through_the_sdk(
    make_server: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    # The offline planner reads "balance of alice" as alice's balance; the tool resolves the label.
    server = await make_server()
    async with LunarkClient(f"http://localhost:{server.port}", signer_key=alice.private_key) as client:
        await client.add_contact("alice", bob.address)
        session = await client.join()
        events = await session.turn("balance of alice")
        [call] = [e for e in events if isinstance(e, ToolCall)]
        assert (call.name, call.args) == ("get_balance", {"address": "alice"})
        [result] = [e for e in events if isinstance(e, ToolResult)]
        assert result.status == "success", result
        assert result.result is not None
        assert result.result["address"] == bob.address and result.result["name"] == "alice"
        assert int(result.result["raw"]) == native_balance(anvil, bob.address)
        answer = "".join(e.text for e in events if isinstance(e, TokenEvent))
        assert f"The balance of alice ({bob.address[:6]}…{bob.address[-4:]})" in answer, answer
        assert result.result["amount"] in answer.replace(",", "")

        # A word that names no contact is refused, never guessed; a token's name says what to ask instead.
        events = await session.turn("balance of carol")
        [result] = [e for e in events if isinstance(e, ToolResult)]
        assert result.status == "error" and "'carol' is not one of your contacts" in str(result.error)
        events = await session.turn("balance of tkn")
        [result] = [e for e in events if isinstance(e, ToolResult)]
        assert result.status == "error" and "ask for your TKN balance" in str(result.error), result
