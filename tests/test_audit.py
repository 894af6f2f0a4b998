"""The audit trail's hash chain: an edited, missing, reordered or foreign record never verifies."""

from __future__ import annotations

import copy
from typing import Any

from lunark.audit import GENESIS, AuditRecord, canonical_json, chain_problems, fingerprint, record_hash

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
