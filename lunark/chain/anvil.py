"""A thin, typed handle on a local Anvil node started from the npm package.

Used by the test suite and by ``lunark demo``. The binary comes from
``@foundry-rs/anvil`` (its platform package ships it inside ``node_modules``);
nothing is downloaded. ``LUNARK_ANVIL_BIN`` overrides the location.

    with Anvil.start(chain_id=31337) as anvil:
        anvil.rpc("eth_blockNumber")
        snap = anvil.snapshot(); ...; anvil.revert(snap)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from lunark.chain.devkeys import ANVIL_MNEMONIC, DevAccount, dev_accounts
from lunark.errors import ConfigError, RpcUnavailable
from lunark.netutil import free_port

__all__ = ["ANVIL_MNEMONIC", "Anvil", "DevAccount", "dev_accounts", "find_anvil_binary", "free_port"]

_PLATFORMS = {
    ("linux", "x86_64"): "linux-amd64",
    ("linux", "aarch64"): "linux-arm64",
    ("linux", "arm64"): "linux-arm64",
    ("darwin", "x86_64"): "darwin-amd64",
    ("darwin", "arm64"): "darwin-arm64",
    ("win32", "amd64"): "win32-amd64",
}


def find_anvil_binary(start: Path | None = None) -> Path:
    """Locate the Anvil binary inside a ``node_modules`` above ``start`` (or the cwd).

    Raises ``ConfigError`` telling how to install it when it is missing.
    """
    env = os.environ.get("LUNARK_ANVIL_BIN")
    if env:
        path = Path(env)
        if path.is_file():
            return path
        raise ConfigError(f"LUNARK_ANVIL_BIN={env} is not a file.")
    suffix = _PLATFORMS.get((sys.platform, platform.machine().lower()))
    if suffix is None:
        raise ConfigError(f"Anvil has no npm build for {sys.platform}/{platform.machine()}.")
    exe = "anvil.exe" if sys.platform == "win32" else "anvil"
    roots = [start or Path.cwd(), Path(__file__).resolve()]
    for root in roots:
        for folder in [root, *root.parents]:
            candidate = folder / "node_modules" / "@foundry-rs" / f"anvil-{suffix}" / "bin" / exe
            if candidate.is_file():
                return candidate
    raise ConfigError(
        "Anvil is not installed: run `./dev setup` (or `npm ci`) in the Lunark checkout, "
        "or set LUNARK_ANVIL_BIN to an anvil binary."
    )


class Anvil:
    """A running Anvil process, with a small synchronous JSON-RPC client for test control."""

    def __init__(self, process: subprocess.Popen[bytes], *, port: int, chain_id: int, host: str) -> None:
        self.process = process
        self.port = port
        self.chain_id = chain_id
        self.host = host
        self.url = f"http://{host}:{port}"
        self.accounts = dev_accounts(10)
        self._id = 0

    @classmethod
    def start(
        cls,
        *,
        chain_id: int = 31337,
        port: int | None = None,
        host: str = "127.0.0.1",
        block_time: float | None = None,
        extra_args: list[str] | None = None,
        timeout: float = 30.0,
    ) -> Self:
        """Start Anvil and wait until it answers JSON-RPC."""
        binary = find_anvil_binary()
        port = port or free_port()
        args = [
            str(binary),
            "--host", host,
            "--port", str(port),
            "--chain-id", str(chain_id),
            "--mnemonic", ANVIL_MNEMONIC,
            "--accounts", "10",
            "--silent",
        ]
        if block_time:
            args += ["--block-time", str(block_time)]
        args += extra_args or []
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        anvil = cls(process, port=port, chain_id=chain_id, host=host)
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                raise RpcUnavailable(f"Anvil exited with code {process.returncode}: {err.strip()[:500]}")
            try:
                if int(anvil.rpc("eth_chainId"), 16) == chain_id:
                    return anvil
            except (OSError, RpcUnavailable):
                pass
            if time.monotonic() > deadline:
                anvil.stop()
                raise RpcUnavailable(f"Anvil did not answer on {anvil.url} within {timeout}s.")
            time.sleep(0.05)

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """One JSON-RPC call; raises ``RpcUnavailable`` on a transport or RPC error."""
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params or []})
        request = urllib.request.Request(
            self.url, data=body.encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                reply = json.loads(response.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise RpcUnavailable(f"{method} on {self.url} failed: {exc}") from exc
        if "error" in reply:
            raise RpcUnavailable(f"{method} failed: {reply['error']}", rpc_error=reply["error"])
        return reply["result"]

    # -- test control ------------------------------------------------------------------------

    def snapshot(self) -> str:
        return str(self.rpc("evm_snapshot"))

    def revert(self, snapshot_id: str) -> None:
        if not self.rpc("evm_revert", [snapshot_id]):
            raise RpcUnavailable(f"evm_revert({snapshot_id}) was refused")

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])

    def set_automine(self, enabled: bool) -> None:
        self.rpc("evm_setAutomine", [enabled])

    def set_balance(self, address: str, wei: int) -> None:
        self.rpc("anvil_setBalance", [address, hex(wei)])

    def block_number(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)

    @contextmanager
    def isolated(self) -> Iterator[Self]:
        """Everything done inside is undone afterwards (``evm_snapshot`` / ``evm_revert``)."""
        snap = self.snapshot()
        try:
            yield self
        finally:
            # A transaction sent just before the end may still be on its way into an automined block,
            # and that block could land after the revert. Anvil mines one block at a time: a block
            # mined now comes after it, and the revert undoes both.
            self.rpc("evm_mine")
            self.revert(snap)
            # Transactions still in the pool (sent with automine off) would otherwise be mined
            # into the reverted chain by the next block.
            self.rpc("anvil_dropAllTransactions")
            self.set_automine(True)

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
