"""``lunark serve`` as a user runs it: a real process, on uvloop or the standard loop, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from lunark.chain.anvil import Anvil

LUNARK = [sys.executable, "-c", "import sys; from lunark.cli import main; sys.exit(main())"]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_serve_runs_on_the_chosen_loop_and_stops_cleanly(loop: str, anvil: Anvil, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *LUNARK, "--loop", loop, "serve", "--port", "0", "--rpc-url", anvil.url,
        env={**os.environ, "LUNARK_DATA_DIR": str(tmp_path / "data"), "LUNARK_PLUGINS": "false"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        found = re.search(r"listening on (http://\S+) .*event loop (\w+)\)", line)
        assert found, line
        assert found.group(2) == loop
        async with aiohttp.ClientSession() as http, http.get(found.group(1) + "/healthz") as response:
            assert response.status == 200
            assert (await response.json())["ok"] is True
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_asking_for_a_loop_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    # A Python without uvloop: a site directory that hides it.
    hide = tmp_path / "site"
    (hide / "uvloop").mkdir(parents=True)
    (hide / "uvloop" / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    proc = await asyncio.create_subprocess_exec(
        *LUNARK, "--loop", "uvloop", "serve", "--port", "0",
        env={**os.environ, "PYTHONPATH": str(hide), "LUNARK_DATA_DIR": str(tmp_path / "data")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert "uvloop is not installed" in err.decode()
