"""``lunark serve | worker | demo | chat | mcp | audit``.

- ``serve``: the server, configured by ``--config`` (TOML/JSON), ``LUNARK_*`` and flags.
- ``worker``: a cluster's turn worker, for relays on other machines (``lunark.server.queue_worker``).
- ``demo``: a complete local setup: two Anvil chains (31337 and 31338) with a test
  token deployed and funded, the server with the offline planner, and the dApp.
- ``chat``: the terminal client.
- ``mcp``: Lunark's wallet tools as an MCP server for an MCP host (``lunark.mcp.server``).
- ``audit``: ``export`` a user's hash-chained audit trail as JSONL, ``verify`` an export against a node.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from lunark.errors import LunarkError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lunark", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug information")
    parser.add_argument(
        "--loop", choices=["auto", "uvloop", "asyncio"], default="auto",
        help="event loop for serve and demo: uvloop when installed (auto), or the standard one",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument("--rpc-url", help="RPC URL of the default network's chain node")
    serve.add_argument("--config", type=Path, help="configuration file (TOML or JSON)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="turn worker processes (server.workers; default: the cores minus one, at least 1): "
                       "0 runs turns in this process")
    serve.add_argument("--relay-only", action="store_true", default=None,
                       help="a cluster's relay that runs no turn: `lunark worker` processes take its turn jobs "
                       "(server.relay_only)")

    worker = sub.add_parser(
        "worker", help="a cluster's turn worker: takes turn jobs from Postgres, for the relays (lunark serve)",
        description="Run the agent's turns for a cluster of relays (lunark serve with store.url and "
        "server.redis_url): jobs from the shared queue in Postgres, events to the relays through the event "
        "log and Redis. Start as many as needed, on any machine that reaches Postgres, Redis and the chains.",
    )
    worker.add_argument("--config", type=Path, help="configuration file (TOML or JSON), as the relays'")
    worker.add_argument("--rpc-url", help="RPC URL of the default network's chain node")

    demo = sub.add_parser("demo", help="Anvil + test token + server + dApp, all local")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080, help="server port (a free one if taken)")
    demo.add_argument("--anvil-port", type=int, default=8545, help="Anvil port (a free one if taken)")
    demo.add_argument("--data-dir", type=Path, default=Path(".lunark/demo"), help="wiped at every start")

    mcp = sub.add_parser(
        "mcp", help="Lunark's wallet tools as an MCP server for an MCP host (bound to one user by a token)",
        description="Serve get_balance, transfer and switch_network to an MCP host (stdio by default). "
        "State-changing calls wait for the user's approval in the running Lunark server. See docs/plugins.md.",
    )
    mcp.add_argument("--url", default="http://127.0.0.1:8080", help="the running Lunark server (lunark serve)")
    mcp.add_argument("--token-env", default="LUNARK_TOKEN",
                     help="environment variable holding the user's Lunark session token (default LUNARK_TOKEN)")
    mcp.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="with --http: address to listen on")
    mcp.add_argument("--port", type=int, default=8765, help="with --http: port to listen on (0: a free one, printed)")
    mcp.add_argument("--withdraw-after", type=float, default=60.0, metavar="SECONDS",
                     help="withdraw a waiting approval once its MCP host has been gone this long (default 60)")
    mcp.add_argument("--page-url", metavar="URL",
                     help="where users open the dApp, for the approval links sent to the host (default --url)")

    audit = sub.add_parser(
        "audit", help="the audit trail: export a user's hash-chained records, verify an export against a node",
        description="Every card offered, decision and settlement outcome is a record in a per-user hash chain "
        "(docs/safety.md). export writes a user's chain as JSONL; verify recomputes the chain and checks every "
        "mined outcome's receipt on a node, and fails on any edited, missing or reordered record.",
    )
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_sub.add_parser("export", help="write a user's audit chain as JSONL")
    export.add_argument("--user", required=True, help="the user's address (0x...)")
    export.add_argument("--config", type=Path, help="the server's configuration file (its store)")
    export.add_argument("-o", "--output", type=Path, help="file to write (default: standard output)")
    verify = audit_sub.add_parser("verify", help="check an export's hash chain and its receipts on a node")
    verify.add_argument("file", type=Path, help="the JSONL export")
    verify.add_argument("--rpc-url", action="append", required=True,
                        help="a node of a network the records name (repeat for several networks)")

    # The chat's own options, parsed here: `lunark chat --url URL` and `lunark chat -h` work as
    # printed (a REMAINDER under a subparser refused them).
    from lunark.client import chat

    chat.add_arguments(sub.add_parser(
        "chat", help="terminal chat with a running server", description=chat.DESCRIPTION, epilog=chat.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("aiohttp.access", "httpx", "web3", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.command == "serve":
            return _run(_serve(args), args.loop)
        if args.command == "worker":
            return _run(_worker(args), args.loop)
        if args.command == "demo":
            return _run(_demo(args), args.loop)
        if args.command == "mcp":
            return _run(_mcp(args), "asyncio")
        if args.command == "audit":
            return asyncio.run(_audit_export(args) if args.audit_command == "export" else _audit_verify(args))
        from lunark.client.chat import run as run_chat

        return run_chat(args)
    except LunarkError as exc:
        print(f"lunark: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(main: Coroutine[Any, Any, int], loop: str) -> int:
    """Run the server on uvloop (libuv; docs/performance.md measures what it brings) when it is
    installed, unless ``--loop asyncio`` says otherwise."""
    if loop != "asyncio":
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                main.close()
                raise LunarkError("--loop uvloop: uvloop is not installed (pip install uvloop).") from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def _tune_collector(server: Any) -> None:
    """Start-up objects frozen, full collections between turns (``lunark.server.collector``), and
    a 1 ms GIL switch interval (``LunarkServer.tune_process``)."""
    server.tune_process()


def _loop_name() -> str:
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM. Installed before the "listening" line is printed: a
    signal sent as soon as that line appears must stop the process cleanly, not kill it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve(args: argparse.Namespace) -> int:
    from lunark.config import Settings
    from lunark.server.app import LunarkServer

    overrides: dict[str, Any] = {}
    server_fields = {k: v for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers),
                                                     ("relay_only", args.relay_only))
                     if v is not None}
    if server_fields:
        overrides["server"] = server_fields
    if args.rpc_url:
        overrides["chain"] = {"rpc_url": args.rpc_url}
    settings = Settings.load(args.config, **overrides)  # sections deep-merge with env and file
    async with LunarkServer(settings) as server:
        _tune_collector(server)
        stopped = _stop_on_signals()
        print(
            f"Lunark is listening on {server.url} (sign-in domain {server.domain}, event loop {_loop_name()})",
            flush=True,
        )
        await stopped.wait()
    return 0


async def _worker(args: argparse.Namespace) -> int:
    from lunark.config import Settings
    from lunark.server.queue_worker import serve_worker

    overrides: dict[str, Any] = {"chain": {"rpc_url": args.rpc_url}} if args.rpc_url else {}
    return await serve_worker(Settings.load(args.config, **overrides))


async def _audit_export(args: argparse.Namespace) -> int:
    import json

    from eth_utils.address import is_address

    from lunark.config import Settings
    from lunark.store import open_store

    if not is_address(args.user):
        raise LunarkError(f"--user {args.user!r} is not an address (0x and 40 hex digits).")
    settings = Settings.load(args.config)
    store = await open_store(settings.store.url, settings.data_dir / "lunark.sqlite", pool_size=1)
    try:
        records = await store.audit_records(args.user)
    finally:
        await store.close()
    lines = "".join(json.dumps(record.to_json(), ensure_ascii=False) + "\n" for record in records)
    if args.output is None:
        sys.stdout.write(lines)
    else:
        args.output.write_text(lines)
    print(f"{len(records)} records of {args.user.lower()}"
          + (f", head {records[-1].hash}" if records else ""), file=sys.stderr)
    return 0


async def _audit_verify(args: argparse.Namespace) -> int:
    import json

    from lunark.audit import AuditProblem, chain_problems, receipt_problems

    try:
        text = args.file.read_text()
    except OSError as exc:
        raise LunarkError(f"Cannot read {args.file}: {exc.strerror}.") from None
    records: list[dict[str, Any]] = []
    problems: list[AuditProblem] = []
    for line, raw in enumerate(text.splitlines(), start=1):
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(AuditProblem(line=line, message=f"not JSON ({exc.msg})"))
            record = {}
        records.append(record if isinstance(record, dict) else {})
    problems += chain_problems(records)
    if not problems:
        problems += await receipt_problems(records, args.rpc_url)
    for problem in problems:
        print(f"{args.file}: {problem}", file=sys.stderr)
    if problems:
        print(f"FAILED: {len(problems)} problem(s) in {len(records)} records", file=sys.stderr)
        return 1
    print(f"OK: {len(records)} records, chain intact, every mined outcome's receipt confirmed by the node; "
          f"head {records[-1]['hash']}")
    return 0


async def _mcp(args: argparse.Namespace) -> int:
    import os

    from lunark.mcp.server import check_token, serve_http, serve_stdio

    token = check_token(os.environ.get(args.token_env), args.token_env)
    if not args.withdraw_after > 0:
        raise LunarkError("--withdraw-after must be a number of seconds greater than 0.")
    options = {"withdraw_after": args.withdraw_after, "page_url": args.page_url}
    if args.http:
        def ready(front: Any, port: int) -> None:
            print(f"Lunark MCP server on http://{args.host}:{port}/mcp for {front.client.url}", flush=True)

        await serve_http(args.url, token, host=args.host, port=args.port, ready=ready, **options)
    else:
        await serve_stdio(args.url, token, **options)
    return 0


async def _demo(args: argparse.Namespace) -> int:
    from lunark.chain.anvil import Anvil, free_port
    from lunark.config import Settings
    from lunark.contracts import deploy_contract
    from lunark.contracts.ens import EnsName, deploy_ens
    from lunark.server.app import LunarkServer

    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)  # a fresh chain needs a fresh history
    anvil_port = args.anvil_port if _port_free(args.host, args.anvil_port) else free_port()
    server_port = args.port if _port_free(args.host, args.port) else free_port()
    with Anvil.start(port=anvil_port) as anvil, Anvil.start(chain_id=31338) as anvil2:
        tokens: dict[int, str] = {}
        for node in (anvil, anvil2):
            deployer = node.accounts[9]
            token = deploy_contract(
                node.url, "TestToken", "Lunark Test Token", "TKN", 18, private_key=deployer.private_key
            )
            for account in node.accounts:
                _mint(node, token, deployer.address, account.address, 10_000 * 10**18)
            tokens[node.chain_id] = token
        # The real ENS contracts on the first chain: alice.eth is dev account #1's name and its
        # primary name; ali.eth points at the same account, which does not claim it (the card warns).
        one = anvil.accounts[1]
        ens = deploy_ens(anvil.url, private_key=anvil.accounts[9].private_key, names=[
            EnsName(label="alice", address=one.address, primary_key=one.private_key),
            EnsName(label="ali", address=one.address),
        ])
        settings = Settings.load(
            data_dir=args.data_dir,
            server={"host": args.host, "port": server_port},
            chain={
                "networks": [
                    {"name": "anvil", "rpc_urls": [anvil.url], "ens_registry": ens.registry,
                     "tokens": [{"symbol": "TKN", "address": tokens[31337], "decimals": 18}]},
                    {"name": "anvil-2", "chain_id": 31338, "display_name": "Anvil 2 (local)",
                     "rpc_urls": [anvil2.url], "aliases": ["anvil2", "second"],
                     "tokens": [{"symbol": "TKN", "address": tokens[31338], "decimals": 18}]},
                ]
            },
            model={"delay": 0.02},
        )
        async with LunarkServer(settings) as server:
            _tune_collector(server)
            stopped = _stop_on_signals()
            a0, a1 = anvil.accounts[0], anvil.accounts[1]
            print(
                f"""
Lunark demo is running.

  dApp:          {server.url}/
  Anvil RPC:     {anvil.url}  (chain id 31337), second chain {anvil2.url} (31338)
  Test token:    TKN at {tokens[31337]} (every dev account holds 10,000)
  ENS registry:  {ens.registry}  (alice.eth is dev account #1)

  Connect a wallet: add the network "Anvil" with RPC {anvil.url} and chain id 31337 to MetaMask
  (or any EIP-1193 wallet), import Anvil's published dev key #0 below, open the dApp, Connect, Sign in.

  Dev account #0: {a0.address}
      key {a0.private_key}  (Anvil's published dev key: never use it anywhere else)
  Dev account #1: {a1.address}  (alice.eth: send it something)

  Terminal chat:  .venv/bin/lunark chat --url {server.url}
  Try: "what's my balance", "send 0.5 ETH to {a1.address}", "send 10 TKN to {a1.address}",
       "send half my TKN to {a1.address}", "send 0.1 ETH to alice.eth", "balance of alice.eth",
       "switch to anvil-2"

  ENS names: alice.eth is dev account #1's primary name; ali.eth points at the same account, which
  does not claim it, so a card paying ali.eth warns (ens_reverse_mismatch).

Ctrl-C stops everything.""",
                flush=True,
            )
            await stopped.wait()
    return 0


def _mint(anvil: Any, token: str, sender: str, to: str, amount: int) -> None:
    from eth_utils.abi import function_signature_to_4byte_selector

    data = "0x" + function_signature_to_4byte_selector("mint(address,uint256)").hex()
    data += to[2:].lower().rjust(64, "0") + hex(amount)[2:].rjust(64, "0")
    anvil.rpc("eth_sendTransaction", [{"from": sender, "to": token, "data": data}])


def _port_free(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


if __name__ == "__main__":
    sys.exit(main())
