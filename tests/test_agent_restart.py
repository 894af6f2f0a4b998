"""A graph paused for approval in one process resumes correctly in a new process after the first one exits.

Each step runs ``tests/agent_proc.py`` as its own Python process; the only
things they share are the SQLite checkpoint file and the Anvil node.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import World
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount

pytestmark = pytest.mark.slow

ETH = 10**18
SCRIPT = Path(__file__).with_name("agent_proc.py")
REPO = Path(__file__).resolve().parent.parent
LUNARK_ERROR_EXIT = 3


def run(mode: str, params: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run one agent process to completion (``subprocess.run`` returns only after it exited)."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), mode, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        check=False,
    )


def json_lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_paused_approval_resumes_in_a_new_process(
    tmp_path: Path, world: World, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    params: dict[str, Any] = {
        "db": str(tmp_path / "checkpoints.sqlite"),
        "rpc_url": anvil.url,
        "tokens": [{"symbol": "TKN", "address": world.token, "decimals": 18}],
        "user": alice.address,
        "to": bob.address,
    }
    before = native_balance(anvil, bob.address)

    started = run("start", params)
    assert started.returncode == 0, started.stderr
    [pending] = json_lines(started)
    assert pending["approval_id"].startswith("apr_")
    [request] = pending["action_requests"]
    assert request["name"] == "transfer" and "0.75 ETH" in request["summary"]
    assert native_balance(anvil, bob.address) == before, "nothing moves before approval"

    resumed = run("resume", {**params, "approval_id": pending["approval_id"]})
    assert resumed.returncode == 0, resumed.stderr
    events = json_lines(resumed)
    [resolved] = [e for e in events if e["type"] == "approval_resolved"]
    assert resolved["approval_id"] == pending["approval_id"], "the same approval was decided"
    assert resolved["decisions"] == [{"type": "approve"}]
    updates = [e for e in events if e["type"] == "tx_update"]
    assert updates[-1]["status"] == "confirmed"
    assert all(u["call_id"] == request["call_id"] for u in updates)
    [result] = [e for e in events if e["type"] == "tool_result"]
    assert result["status"] == "success" and result["result"]["status"] == "confirmed"
    assert events[-1]["type"] == "message_end" and events[-1]["finish_reason"] == "stop"
    assert native_balance(anvil, bob.address) - before == 3 * ETH // 4

    again = run("resume", {**params, "approval_id": pending["approval_id"]})
    assert again.returncode == LUNARK_ERROR_EXIT, again.stderr
    [error] = json_lines(again)
    assert error["error"] == "already_decided"
    assert native_balance(anvil, bob.address) - before == 3 * ETH // 4, "a second decision moves nothing"
