"""The audit trail (issue 23): every card, decision and outcome in the user's hash chain, exported and
verified with the console script against the node; an edited, missing, reordered or forged record fails."""

from __future__ import annotations

import asyncio
import copy
import json
import os
from pathlib import Path
from typing import Any

from chat_process import LUNARK
from conftest import sign_in
from server_harness import Http, SioClient
from test_truthful_results import ask, decide
from wallet import sign_wire_tx

from lunark.audit import GENESIS, AuditRecord, canonical_json, chain_problems, fingerprint, record_hash
from lunark.chain.anvil import Anvil, DevAccount

USER = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"


def chain(n: int = 4) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        kind = ("card", "decision", "outcome")[(seq - 1) % 3]
        record = AuditRecord.link(
            seq=seq, prev=prev, address=USER, kind=kind, at=f"2026-12-07T03:00:0{seq}.000000Z",
            chat_id="chat_1", approval_id="apr_1", call_id="call_1", fingerprint="ab" * 32,
            body={"amount": "500000000000000000", "to": "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"},
        )
        records.append(record.to_json())
        prev = record.hash
    return records


def test_an_untouched_chain_verifies() -> None:
    assert chain_problems(chain()) == []


def test_canonical_json_and_fingerprint_do_not_depend_on_key_order() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'
    assert fingerprint({"b": 1, "a": 2}) == fingerprint({"a": 2, "b": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_an_edited_record_fails_even_with_its_hash_recomputed() -> None:
    edited = chain()
    edited[1]["body"]["amount"] = "5000000000000000000"
    assert [p.line for p in chain_problems(edited)] == [2]

    rehashed = copy.deepcopy(edited)
    rehashed[1]["hash"] = record_hash(rehashed[1])  # the forger fixes the record's own hash...
    assert [p.line for p in chain_problems(rehashed)] == [3]  # ...and the next record's prev gives it away


def test_a_missing_or_reordered_record_fails() -> None:
    missing = chain()
    del missing[1]
    assert chain_problems(missing)
    reordered = chain()
    reordered[1], reordered[2] = reordered[2], reordered[1]
    assert {p.line for p in chain_problems(reordered)} == {2, 3, 4}


def test_a_foreign_or_malformed_record_fails() -> None:
    foreign = chain()
    foreign[2]["address"] = "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
    assert any("belongs to" in p.message for p in chain_problems(foreign))
    assert chain_problems([{"seq": 1}])[0].line == 1
    assert str(chain_problems([])[0]) == "the export holds no record"


# -- through a real server, exported and verified with the console script ----------------------------


async def lunark(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(LUNARK), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_every_card_decision_and_outcome_is_in_the_users_chain_and_an_export_verifies(
    serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, tmp_path: Path
) -> None:
    server = await serve()
    token = await sign_in(server, alice)
    async with SioClient(server, token) as sio:
        chat_id = (await sio.call("join_chat", {}))["chat_id"]
        sent = await ask(sio, chat_id, f"send 0.25 ETH to {bob.address}", "m1")
        request = sent["action_requests"][0]
        signed = sign_wire_tx(request["tx"], alice.private_key)
        mark = sio.mark()
        await sio.call("resume_decisions", decide(chat_id, sent, {"type": "approve", "signed_tx": signed}))
        confirmed = await sio.wait_event("tx_update", chat_id=chat_id, status="confirmed", after=mark, timeout=60)
        await sio.wait_event("message_end", chat_id=chat_id, after=mark, timeout=30)
        refused = await ask(sio, chat_id, f"send 0.5 ETH to {bob.address}", "m2")
        await sio.call("resume_decisions", decide(chat_id, refused, {"type": "reject", "message": "not today"}))
        await sio.wait_event("approval_resolved", chat_id=chat_id, approval_id=refused["approval_id"])

    export = tmp_path / "trail.jsonl"
    config = str(server.data_dir / "config.json")
    code, _, err = await lunark("audit", "export", "--user", alice.address, "--config", config, "-o", str(export))
    assert code == 0, err
    records = [json.loads(line) for line in export.read_text().splitlines()]
    assert [(r["kind"], r["approval_id"]) for r in records] == [
        ("card", sent["approval_id"]), ("decision", sent["approval_id"]), ("outcome", sent["approval_id"]),
        ("card", refused["approval_id"]), ("decision", refused["approval_id"]),
    ]
    card, decision, outcome = records[:3]
    assert card["fingerprint"] == request["fingerprint"] == decision["fingerprint"] == outcome["fingerprint"]
    assert card["body"]["tx"] == request["tx"] and card["body"]["preview"] == request["preview"]
    assert decision["body"] == {"decision": "approve", "by": "user", "signed_tx_hash": confirmed["tx_hash"]}
    receipt = anvil.rpc("eth_getTransactionReceipt", [confirmed["tx_hash"]])
    assert outcome["body"]["state"] == "confirmed" and outcome["body"]["tx_hash"] == confirmed["tx_hash"]
    assert outcome["body"]["block_number"] == int(receipt["blockNumber"], 16) and outcome["body"]["receipt_status"] == 1
    assert records[4]["body"] == {"decision": "reject", "by": "user", "message": "not today"}

    code, out, err = await lunark("audit", "verify", str(export), "--rpc-url", anvil.url)
    assert code == 0, err
    assert out.startswith("OK: 5 records") and records[-1]["hash"] in out

    # An edited amount, a record dropped, two swapped, an outcome's block moved even with every hash
    # recomputed: each is caught, by the chain or by the node.
    edited = [dict(r) for r in records]
    edited[0] = {**edited[0], "body": {**edited[0]["body"], "summary": "Send 0.025 ETH"}}
    dropped = records[:1] + records[2:]
    swapped = [records[1], records[0], *records[2:]]
    forged = [dict(r) for r in records[:3]]
    forged[2] = {**forged[2], "body": {**forged[2]["body"], "block_number": forged[2]["body"]["block_number"] + 1}}
    forged[2]["hash"] = record_hash(forged[2])
    for name, lines in (("edited", edited), ("dropped", dropped), ("swapped", swapped), ("forged", forged)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in lines))
        code, _, err = await lunark("audit", "verify", str(path), "--rpc-url", anvil.url)
        assert code == 1 and "FAILED" in err, (name, err)
    assert "the node says block" in err


async def test_audit_commands_refuse_bad_input_with_a_clear_message(tmp_path: Path, anvil: Anvil) -> None:
    code, _, err = await lunark("audit", "export", "--user", "alice", "--config", str(tmp_path / "none.json"))
    assert code == 2 and "is not an address" in err
    code, _, err = await lunark("audit", "verify", str(tmp_path / "missing.jsonl"), "--rpc-url", anvil.url)
    assert code == 2 and "Cannot read" in err
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")
    code, _, err = await lunark("audit", "verify", str(garbage), "--rpc-url", anvil.url)
    assert code == 1 and "line 1: not JSON" in err


async def test_contact_changes_over_http_are_in_the_chain_and_an_edited_one_fails_verification(
    serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount, carol: DevAccount, tmp_path: Path
) -> None:
    # A contact silences first_time_recipient and counts as typed by the user: one planted by a
    # stolen session must show in the trail, and an export that hides or alters it must not verify.
    server = await serve()
    token = await sign_in(server, alice)
    async with Http(server) as http:
        for method, path, payload in [
            ("PUT", "/api/contacts/bob", {"address": bob.address}),
            ("PUT", "/api/contacts/bob", {"address": bob.address}),  # saved again: nothing changes
            ("PUT", "/api/contacts/Bob", {"address": carol.address}),  # pointed elsewhere
            ("DELETE", "/api/contacts/bob", None),
        ]:
            status, body = await http.request(method, path, token, json=payload)
            assert status == 200, body

    export = tmp_path / "trail.jsonl"
    config = str(server.data_dir / "config.json")
    code, _, err = await lunark("audit", "export", "--user", alice.address, "--config", config, "-o", str(export))
    assert code == 0, err
    records = [json.loads(line) for line in export.read_text().splitlines()]
    assert [(r["kind"], r["chat_id"], r["approval_id"], r["call_id"], r["fingerprint"]) for r in records] == [
        ("contact", None, None, None, None)
    ] * 3
    assert [r["body"] for r in records] == [
        {"action": "put", "label": "bob", "address": bob.address},
        {"action": "put", "label": "Bob", "address": carol.address,
         "previous": [{"label": "bob", "address": bob.address}]},
        {"action": "delete", "label": "Bob", "address": carol.address},
    ]
    code, out, err = await lunark("audit", "verify", str(export), "--rpc-url", anvil.url)
    assert code == 0, err
    assert out.startswith("OK: 3 records") and records[-1]["hash"] in out

    # The planted address swapped back for bob's, or the record of it dropped: both fail, at that line.
    edited = [dict(r) for r in records]
    edited[1] = {**edited[1], "body": {**edited[1]["body"], "address": bob.address}}
    dropped = [records[0], records[2]]
    for name, lines, line in (("edited", edited, 2), ("dropped", dropped, 2)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in lines))
        code, _, err = await lunark("audit", "verify", str(path), "--rpc-url", anvil.url)
        assert code == 1 and "FAILED" in err and f"line {line}:" in err, (name, err)
