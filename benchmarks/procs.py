"""Servers under test as subprocesses: start, wait for their ready line, read their RSS, stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Server:
    """One server process; ``url`` and ``pid`` once started."""

    def __init__(self, name: str, argv: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.pid = 0
        self._query_lock = asyncio.Lock()

    async def start(self, timeout: float = 60.0) -> Server:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=2**26,  # the answers to "pauses" are one line each, a large one after a long run
        )
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            ready = json.loads(line)
        except (TimeoutError, json.JSONDecodeError) as exc:
            err = b""
            if self.proc.returncode is not None and self.proc.stderr is not None:
                err = await self.proc.stderr.read()
            await self.stop()
            raise RuntimeError(f"{self.name} did not start: {exc!r} {err.decode(errors='replace')[-2000:]}") from exc
        self.url, self.pid = ready["url"], int(ready["pid"])
        asyncio.get_running_loop().create_task(self._drain())
        return self

    async def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        self.stderr_tail = b""
        while chunk := await self.proc.stderr.read(65536):
            self.stderr_tail = (self.stderr_tail + chunk)[-8000:]

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    async def query(self, command: str, timeout: float = 10.0) -> dict[str, Any]:
        """One command on the server's standard input, its one-line JSON answer (``serve.py``)."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        async with self._query_lock:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} is gone: {getattr(self, 'stderr_tail', b'').decode(errors='replace')}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def pauses(self, t0: float, t1: float) -> dict[str, Any]:
        """The server's GC pauses and event-loop stalls between two CLOCK_MONOTONIC times."""
        return await self.query(f"pauses {t0!r} {t1!r}")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def children_cpu_seconds(self) -> float:
        """CPU time so far of the processes this server started and that still run (its turn
        workers, ``lunark+wN``): not in ``cpu_seconds``, which is this process's own."""
        total = 0.0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.pid:
                    total += cpu_seconds(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
        return total

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def python_server(name: str, kind: str, *args: str) -> Server:
    return Server(name, [sys.executable, "-m", "benchmarks.serve", kind, *args])


def revision_server(name: str, rev: str, into: Path, kind: str, *args: str) -> Server:
    """A server run from the ``lunark`` package of git revision ``rev`` (this checkout's
    ``benchmarks``, so every target has the same model, harness and pause monitor; this
    environment's packages), for a before/after in the same run: ``python -m benchmarks --rev REV``."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "lunark"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    if not (into / "benchmarks").exists():
        (into / "benchmarks").symlink_to(ROOT / "benchmarks")
    env = {**os.environ, "PYTHONPATH": str(into)}
    return Server(name, [sys.executable, "-m", "benchmarks.serve", kind, *args], cwd=into, env=env)


def node_server(name: str = "node") -> Server:
    return Server(name, ["node", str(ROOT / "benchmarks" / "node_relay.mjs")])


async def start_all(servers: list[Server]) -> list[Server]:
    await asyncio.gather(*(s.start() for s in servers))
    return servers


async def stop_all(servers: list[Server]) -> None:
    await asyncio.gather(*(s.stop() for s in servers), return_exceptions=True)


def env_info() -> dict[str, Any]:
    import platform

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
    }
