"""One agent process for the restart test: start a transfer, or decide on its approval, then exit.

Usage (the one argument is a JSON object)::

    python tests/agent_proc.py start  '{"db": ..., "rpc_url": ..., "tokens": [...], "user": ..., "to": ...}'
    python tests/agent_proc.py resume '{... as above ..., "approval_id": "apr_..."}'

``start`` runs "send 0.75 ETH to <to>" and prints the pending approval as one
JSON line. ``resume`` approves it (the Anvil dev account 0 signs) and prints
every event as a JSON line. A ``LunarkError`` prints ``{"error": code, ...}``
and exits with status 3, so the caller can tell it from a crash (status 1).

Nothing is shared with the caller but the SQLite file and the Anvil node.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from lunark.chain.signer import LocalSigner
from lunark.errors import LunarkError
from lunark.graph import Agent
from lunark.models.planner import OfflinePlanner
from lunark.networks import NetworkConfig, NetworkRegistry, TokenConfig

THREAD = "restart-chat"
LUNARK_ERROR_EXIT = 3


def emit(obj: Any) -> None:
    print(json.dumps(obj, default=str), flush=True)


async def main(mode: str, params: dict[str, Any]) -> int:
    registry = NetworkRegistry.default().with_overrides(
        [
            NetworkConfig(
                name="anvil",
                rpc_urls=[params["rpc_url"]],
                tokens=[TokenConfig(**token) for token in params.get("tokens", [])],
            )
        ]
    )
    async with AsyncSqliteSaver.from_conn_string(params["db"]) as saver:
        agent = Agent(
            model=OfflinePlanner(),
            registry=registry,
            checkpointer=saver,
            signer=LocalSigner.anvil(0),
            track_timeout=30,
            verify_timeout=5,
        )
        try:
            if mode == "start":
                async for _ in agent.stream(
                    THREAD, f"send 0.75 ETH to {params['to']}", user_address=params["user"], chain_id=31337
                ):
                    pass
                emit(await agent.pending_approval(THREAD))
            elif mode == "resume":
                async for event in agent.resume(THREAD, params["approval_id"], [{"type": "approve"}]):
                    emit(event)
            else:
                raise SystemExit(f"unknown mode {mode!r}")
        except LunarkError as exc:
            emit({"error": exc.code, "message": exc.message})
            return LUNARK_ERROR_EXIT
        finally:
            await agent.aclose()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]))))
