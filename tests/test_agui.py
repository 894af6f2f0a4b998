"""AG-UI: the official @ag-ui/client HttpAgent (tests/js/agui.mjs) against a real ``lunark serve`` on
a real Anvil, and the ag-ui-validate conformance validator over streams recorded from it."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from conftest import sign_in
from wallet import native_balance, sign_wire_tx

from lunark.approvals import Approval
from lunark.chain.anvil import Anvil, DevAccount
from lunark.fingerprint import action_fingerprint
from lunark.server.agui import interrupts_for

ROOT = Path(__file__).parent.parent
DRIVER = Path(__file__).parent / "js" / "agui.mjs"
VALIDATOR = Path(sys.executable).parent / "ag-ui-validate"
ETH = 10**18


class AguiClient:
    """tests/js/agui.mjs: one HttpAgent on one thread, a command per line in, an answer per line out."""

    def __init__(self, url: str, token: str, thread_id: str | None = None) -> None:
        self.args = [url, token, *([thread_id] if thread_id else [])]
        self.process: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> AguiClient:
        node = shutil.which("node")
        assert node is not None, "node runs the official AG-UI client"
        self.process = await asyncio.create_subprocess_exec(
            node, str(DRIVER), *self.args, cwd=ROOT,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    async def command(self, op: str, **fields: Any) -> dict[str, Any]:
        process = self.process
        assert process is not None and process.stdin is not None and process.stdout is not None
        process.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
        await process.stdin.drain()
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if not line:
            assert process.stderr is not None
            raise AssertionError(f"agui.mjs ended: {(await process.stderr.read()).decode()}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def say(self, text: str) -> dict[str, Any]:
        return await self.command("say", text=text)

    async def resume(self, *entries: dict[str, Any]) -> dict[str, Any]:
        return await self.command("resume", resume=list(entries))


def types(answer: dict[str, Any]) -> list[str]:
    return [e["type"] for e in answer["events"]]


def finished(answer: dict[str, Any]) -> dict[str, Any]:
    assert "error" not in answer, answer
    last = answer["events"][-1]
    assert last["type"] == "RUN_FINISHED", types(answer)
    return dict(last)


def run_error(answer: dict[str, Any]) -> dict[str, Any]:
    [error] = [e for e in answer["events"] if e["type"] == "RUN_ERROR"]
    assert answer["events"][-1] is not None and answer["events"][-1]["type"] == "RUN_ERROR", types(answer)
    return dict(error)


def the_interrupt(answer: dict[str, Any]) -> dict[str, Any]:
    outcome = finished(answer)["outcome"]
    assert outcome["type"] == "interrupt", outcome
    [interrupt] = outcome["interrupts"]
    return dict(interrupt)


def assistant_text(answer: dict[str, Any]) -> str:
    return "".join(e["delta"] for e in answer["events"] if e["type"] == "TEXT_MESSAGE_CONTENT")


def approve(interrupt: dict[str, Any], **payload: Any) -> dict[str, Any]:
    fingerprint = interrupt["metadata"]["governance"]["actionFingerprint"]
    return {"interruptId": interrupt["id"], "status": "resolved",
            "payload": {"type": "approve", "actionFingerprint": fingerprint, **payload}}


async def test_an_agui_client_chats_and_approves_a_wallet_signed_transfer(
    serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount
) -> None:
    server = await serve()
    token = await sign_in(server, alice)
    bob_before, carol_before = native_balance(anvil, bob.address), native_balance(anvil, carol.address)

    async with AguiClient(server.url, token, "copilot-thread-1") as client:
        # A plain answer streams as one text message inside one run.
        hello = await client.say("hello")
        assert types(hello)[0] == "RUN_STARTED" and hello["events"][0]["threadId"] == "copilot-thread-1"
        shown = [t for t in types(hello) if t != "CUSTOM"]  # lunark.status: "thinking…"
        assert shown[:2] == ["RUN_STARTED", "TEXT_MESSAGE_START"] and shown[-2:] == ["TEXT_MESSAGE_END", "RUN_FINISHED"]
        assert set(shown[2:-2]) == {"TEXT_MESSAGE_CONTENT"}
        assert finished(hello)["outcome"] == {"type": "success"}
        assert "send ETH or tokens" in assistant_text(hello)
        assert hello["messages"][-1]["role"] == "assistant" and "check balances" in hello["messages"][-1]["content"]

        # A transfer stops the run with an interrupt that carries the card.
        asked = await client.say(f"send 0.25 ETH to {bob.address}")
        interrupt = the_interrupt(asked)
        [start] = [e for e in asked["events"] if e["type"] == "TOOL_CALL_START"]
        assert start["toolCallName"] == "transfer" and interrupt["toolCallId"] == start["toolCallId"]
        assert interrupt["reason"] == "tool_approval"
        assert "0.25 ETH" in interrupt["message"] and bob.address in interrupt["message"]
        card = interrupt["metadata"]
        assert card["amount"] == "0.25" and card["recipient"] == bob.address and card["symbol"] == "ETH"
        assert card["network"]["chainId"] == 31337 and card["network"]["name"] == "anvil"
        assert int(card["fee"]["maxFeeWei"]) > 0 and card["fee"]["symbol"] == "ETH"
        assert card["tx"]["to"] == bob.address and int(card["tx"]["value"], 16) == ETH // 4
        fingerprint = card["governance"]["actionFingerprint"]
        # The card's own intent fingerprint, as every other client of the chat sees it.
        assert fingerprint == action_fingerprint("transfer", card["args"], 31337, card["tx"])
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
                http.get(f"{server.url}/api/chats/copilot-thread-1") as response:
            [request] = (await response.json())["pending_approval"]["action_requests"]
        assert request["fingerprint"] == fingerprint
        # The simulated balance changes come with it: bob gets 0.25 ETH.
        assert card["preview"]["simulated"] is True
        assert any(c["address"] == bob.address and c["delta"] == str(ETH // 4) for c in card["preview"]["changes"])
        assert datetime.fromisoformat(interrupt["expiresAt"].replace("Z", "+00:00")) > datetime.now(UTC)
        approve_schema = next(v for v in interrupt["responseSchema"]["oneOf"]
                              if v["properties"]["type"]["const"] == "approve")
        assert approve_schema["properties"]["actionFingerprint"]["const"] == fingerprint
        assert {v["properties"]["type"]["const"] for v in interrupt["responseSchema"]["oneOf"]} == {
            "approve", "edit", "reject"}
        assert [i["id"] for i in asked["pendingInterrupts"]] == [interrupt["id"]]

        # A decision bound to another card is refused, and nothing is decided.
        signed = sign_wire_tx(card["tx"], alice.private_key)
        forged = approve(interrupt, signedTx=signed)
        forged["payload"]["actionFingerprint"] = "0" * 64
        refused = await client.resume(forged)
        error = run_error(refused)
        assert error["code"] == "invalid_input" and "fingerprint" in error["message"]
        assert native_balance(anvil, bob.address) == bob_before

        # The wallet signs the card's transaction; the server checks it, broadcasts it, follows it.
        done = await client.resume(approve(interrupt, signedTx=signed))
        end = finished(done)
        assert end["outcome"] == {"type": "success"}
        updates = [e["value"] for e in done["events"] if e["type"] == "CUSTOM" and e["name"] == "lunark.tx_update"]
        assert [u["status"] for u in updates][-1] == "confirmed", updates
        [result] = [e for e in done["events"] if e["type"] == "TOOL_CALL_RESULT"]
        assert result["toolCallId"] == interrupt["toolCallId"] and json.loads(result["content"])["status"] == "success"
        assert "confirmed" in assistant_text(done).lower()
        assert done["pendingInterrupts"] == []
        tx_hash = updates[-1]["tx_hash"]
        receipt = anvil.rpc("eth_getTransactionReceipt", [tx_hash])
        assert receipt["status"] == "0x1" and receipt["from"].lower() == alice.address.lower()
        assert native_balance(anvil, bob.address) - bob_before == ETH // 4

        # The same decision again is late: Lunark's already_decided, as a run error.
        again = await client.command("raw", input={"resume": [approve(interrupt, signedTx=signed)]})
        assert "error" not in again, again
        assert [e["type"] for e in again["events"]] == ["RUN_STARTED", "RUN_ERROR"]
        assert again["events"][-1]["code"] == "already_decided"

        # A rejection reaches the model as a rejected tool result, and nothing is sent.
        second = the_interrupt(await client.say(f"send 1 ETH to {carol.address}"))
        rejected = await client.resume({"interruptId": second["id"], "status": "resolved",
                                        "payload": {"type": "reject", "message": "not today"}})
        assert finished(rejected)["outcome"] == {"type": "success"}
        [result] = [e for e in rejected["events"] if e["type"] == "TOOL_CALL_RESULT"]
        assert json.loads(result["content"])["status"] == "rejected"
        assert native_balance(anvil, carol.address) == carol_before

    # The thread is a Lunark chat of the signed-in user, with everything the other clients see.
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http, \
            http.get(f"{server.url}/api/chats/copilot-thread-1") as response:
        detail = await response.json()
    [tx] = detail["transactions"]
    assert tx["tx_hash"] == tx_hash and tx["status"] == "confirmed"
    assert [m["role"] for m in detail["messages"]][:2] == ["user", "assistant"]


async def test_a_late_resume_of_an_expired_approval_is_a_run_error(
    serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    server = await serve(approvals={"ttl_seconds": 2}, server={"sweep_interval_seconds": 0.2})
    token = await sign_in(server, alice)
    before = native_balance(anvil, bob.address)
    async with AguiClient(server.url, token) as client:
        interrupt = the_interrupt(await client.say(f"send 0.1 ETH to {bob.address}"))
        expires = datetime.fromisoformat(interrupt["expiresAt"].replace("Z", "+00:00"))
        await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.0)
        signed = sign_wire_tx(interrupt["metadata"]["tx"], alice.private_key)

        # The official client itself refuses to answer an interrupt past its expiresAt...
        stale = await client.resume(approve(interrupt, signedTx=signed))
        assert "expired" in stale["error"] and stale["events"] == []

        # ...and a client that sends it anyway gets Lunark's approval_expired, with nothing sent.
        late = await client.command("raw", input={"resume": [approve(interrupt, signedTx=signed)]})
        assert [e["type"] for e in late["events"]] == ["RUN_STARTED", "RUN_ERROR"], late
        assert late["events"][-1]["code"] == "approval_expired"
    assert native_balance(anvil, bob.address) == before


async def test_refusals_before_a_run_are_http_errors(serve: Any, alice: DevAccount, bob: DevAccount) -> None:
    server = await serve()
    alice_token, bob_token = await sign_in(server, alice), await sign_in(server, bob)
    async with AguiClient(server.url, "not-a-token", "t-401") as client:
        unauthorized = await client.say("hello")
    assert unauthorized["status"] == 401 and unauthorized["payload"]["error"]["code"] == "unauthorized"

    async with AguiClient(server.url, alice_token, "alices-thread") as client:
        # An edit is a decision too: the card is prepared again and offered as a new interrupt.
        first = the_interrupt(await client.say(f"send 0.25 ETH to {bob.address}"))
        fingerprint = first["metadata"]["governance"]["actionFingerprint"]
        edited = await client.resume({"interruptId": first["id"], "status": "resolved", "payload": {
            "type": "edit", "actionFingerprint": fingerprint, "args": {"to": bob.address, "amount": "0.1"}}})
        again = the_interrupt(edited)
        assert again["id"] != first["id"] and again["metadata"]["amount"] == "0.1"
        assert int(again["metadata"]["tx"]["value"], 16) == 10**17
        assert again["metadata"]["governance"]["actionFingerprint"] != fingerprint
        # Cancelling it in the app rejects it.
        cancelled = await client.resume({"interruptId": again["id"], "status": "cancelled"})
        [result] = [e for e in cancelled["events"] if e["type"] == "TOOL_CALL_RESULT"]
        assert json.loads(result["content"])["status"] == "rejected"
        assert finished(cancelled)["outcome"] == {"type": "success"} and cancelled["pendingInterrupts"] == []
    async with AguiClient(server.url, bob_token, "alices-thread") as client:
        forbidden = await client.say("hello")
    assert forbidden["status"] == 403 and forbidden["payload"]["error"]["code"] == "forbidden"


async def _record(http: aiohttp.ClientSession, url: str, body: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """POST a RunAgentInput and keep the SSE body exactly as it came, for the validator."""
    async with http.post(f"{url}/ag-ui", json=body, headers={"Accept": "text/event-stream"}) as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        raw = await response.read()
    await asyncio.to_thread(path.write_bytes, raw)
    return [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]


async def _validate(target: str, *options: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        str(VALIDATOR), target, *options, "--json", "--features", "agentic-chat,backend-tool-rendering",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"ag-ui-validate found errors:\n{stdout.decode()}\n{stderr.decode()}"
    report: dict[str, Any] = json.loads(stdout)
    return report


async def test_recorded_streams_pass_the_conformance_validator(
    serve: Any, tmp_path: Path, alice: DevAccount, bob: DevAccount
) -> None:
    server = await serve()
    token = await sign_in(server, alice)
    thread = f"validated-{int(time.time())}"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        chat = await _record(http, server.url, {
            "threadId": thread, "runId": "r1", "protocolVersion": "1.0",
            "messages": [{"id": "u1", "role": "user", "content": "hello"}],
        }, tmp_path / "chat.sse")
        interrupted = await _record(http, server.url, {
            "threadId": thread, "runId": "r2", "protocolVersion": "1.0",
            "messages": [{"id": "u2", "role": "user", "content": f"send 0.5 ETH to {bob.address}"}],
        }, tmp_path / "interrupt.sse")
        [interrupt] = interrupted[-1]["outcome"]["interrupts"]
        resumed = await _record(http, server.url, {
            "threadId": thread, "runId": "r3", "protocolVersion": "1.0", "messages": [],
            "resume": [{"interruptId": interrupt["id"], "status": "cancelled"}],
        }, tmp_path / "resume.sse")
    assert chat[0]["type"] == "RUN_STARTED" and chat[0]["protocolVersion"] == "1.0"
    assert chat[-1]["type"] == "RUN_FINISHED" and resumed[-1]["type"] == "RUN_FINISHED"
    for name, events in (("chat", chat), ("interrupt", interrupted), ("resume", resumed)):
        report = await _validate(str(tmp_path / f"{name}.sse"))
        assert report["eventCount"] == len(events) and report["internalErrors"] == []
        assert report["summary"]["errors"] == 0 and report["summary"]["warnings"] == 0, report["diagnostics"]

    # Live, as the validator's own client: it posts its RunAgentInput and checks the transport too.
    report = await _validate(f"{server.url}/ag-ui", "--header", f"Authorization: Bearer {token}")
    assert report["summary"]["errors"] == 0 and report["summary"]["warnings"] == 0, report["diagnostics"]
    assert report["features"]["agentic-chat"] == "exercised" and report["eventCount"] >= 4
    assert "AGUI505" not in {s["rule"] for s in report["skipped"]}  # the Content-Type was checked


def test_an_interrupt_carries_the_informed_cards_preview_warnings_name_and_fingerprint() -> None:
    """What the card computes (issue 23: preview, warnings, ENS name, fingerprint) reaches the
    interrupt as it is, and the server's fingerprint is the one a resume must name."""
    tx = {"chain_id": "0x7a69", "from": "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
          "to": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "value": "0x3782dace9d90000", "data": "0x",
          "gas": "0x5208", "max_fee_per_gas": "0x3b9aca00", "max_priority_fee_per_gas": "0x1", "nonce": "0x0"}
    change = {"address": tx["from"], "asset": "native", "symbol": "ETH", "decimals": 18,
              "before": "1000", "after": "750", "delta": "-250"}
    pending = {
        "approval_id": "apr_1", "expires_at": "2026-12-07T03:24:33.268Z",
        "action_requests": [{
            "call_id": "call_1", "name": "transfer", "args": {"to": tx["to"], "amount": "0.25"},
            "description": "Transfer 0.25 ETH.", "summary": "Send 0.25 ETH to bob.eth", "tx": tx,
            "preview": {"simulated": True, "changes": [change], "gas_used": 21000, "max_fee": "21000000000000"},
            "warnings": [{"code": "new_recipient", "severity": "info", "message": "You never sent to it."}],
            "fingerprint": "ab" * 32, "recipient_name": "bob.eth",
        }],
        "review_configs": [{"action_name": "transfer", "allowed_decisions": ["approve", "reject"]}],
    }
    [interrupt] = interrupts_for(Approval.of(pending), lambda chain_id: {"chainId": chain_id, "symbol": "ETH"}, 31337)
    wire = interrupt.model_dump(mode="json", by_alias=True)
    card = wire["metadata"]
    assert wire["id"] == "apr_1:call_1" and wire["toolCallId"] == "call_1"
    assert wire["expiresAt"] == pending["expires_at"]
    assert card["governance"] == {"actionFingerprint": "ab" * 32}
    assert card["recipientName"] == "bob.eth" and card["preview"]["changes"] == [change]
    assert card["warnings"] == pending["action_requests"][0]["warnings"]
    assert card["fee"] == {"maxFeeWei": "21000000000000", "symbol": "ETH"}
    assert card["allowedDecisions"] == ["approve", "reject"]
    assert [v["properties"]["type"]["const"] for v in wire["responseSchema"]["oneOf"]] == ["approve", "reject"]


def test_a_card_offered_before_cards_had_fingerprints_gets_the_same_hash() -> None:
    """An approval checkpointed by an older server has no fingerprint: the interrupt carries the
    one lunark.fingerprint computes, and a resume is bound to it all the same."""
    pending = {
        "approval_id": "apr_2", "expires_at": "2026-12-07T03:24:33.268Z",
        "action_requests": [{"call_id": "call_2", "name": "switch_network", "args": {"network": "anvil-2"},
                             "description": "Switch network.", "summary": "Switch to Anvil 2", "tx": None}],
        "review_configs": [],
    }
    [interrupt] = interrupts_for(Approval.of(pending), lambda chain_id: None, 31337)
    expected = action_fingerprint("switch_network", {"network": "anvil-2"}, 31337, None)
    assert interrupt.metadata is not None and interrupt.metadata["governance"]["actionFingerprint"] == expected
