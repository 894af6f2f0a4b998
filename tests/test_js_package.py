"""lunark/web/lib as the npm package @lunark/client: packed, installed into a fresh project with
no network, imported from Node against a real ``lunark serve``, and type-checked with ``tsc``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conftest import sign_in
from wallet import native_balance

from lunark.chain.anvil import Anvil, DevAccount

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lunark" / "web" / "lib"
CONSUMERS = Path(__file__).parent / "js" / "package"
ETH = 10**18
# What the tarball holds: the library and its declarations, nothing of the page.
PACKED = {
    "package.json", "index.js", "index.d.ts", "markdown.js", "markdown.d.ts", "protocol.js", "protocol.d.ts",
    "reducer.js", "reducer.d.ts", "siwe.js", "transport.js", "transport.d.ts",
}


def npm(*args: str, cwd: Path) -> str:
    """Run npm offline: the package must install from its tarball alone."""
    assert shutil.which("npm"), "npm is needed (it comes with node)"
    env = {**os.environ, "npm_config_offline": "true", "npm_config_audit": "false", "npm_config_fund": "false",
           "npm_config_update_notifier": "false"}
    done = subprocess.run(["npm", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, f"npm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh dApp project with the packed @lunark/client installed, and socket.io-client, which
    a dApp brings itself (the package takes its `io` as an argument)."""
    base = tmp_path_factory.mktemp("jslib")
    packed = base / "packed"
    packed.mkdir()
    tarball = packed / npm("pack", str(LIB), "--pack-destination", str(packed), cwd=base).strip().splitlines()[-1]
    project = base / "dapp"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "dapp", "private": True, "type": "module"}))
    npm("install", str(tarball), cwd=project)
    (project / "node_modules" / "socket.io-client").symlink_to(ROOT / "node_modules" / "socket.io-client")
    return project


def test_the_tarball_holds_the_library_and_nothing_else(installed: Path) -> None:
    [tarball] = (installed.parent / "packed").glob("*.tgz")
    assert tarball.name == "lunark-client-0.1.0.tgz"
    with tarfile.open(tarball) as archive:
        names = {name.removeprefix("package/") for name in archive.getnames()}
    assert names == PACKED
    manifest = json.loads((LIB / "package.json").read_text())
    assert manifest["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    # Nothing to fetch: no dependencies, socket.io-client an optional peer the dApp provides.
    assert "dependencies" not in manifest
    assert manifest["peerDependenciesMeta"]["socket.io-client"]["optional"] is True
    lock = json.loads((installed / "package-lock.json").read_text())
    assert set(lock["packages"]) == {"", "node_modules/@lunark/client"}


def test_a_checkout_installs_too(tmp_path: Path) -> None:
    # `npm install ./lunark/web/lib` links the checkout: the same entry points, the page's files.
    project = tmp_path / "dapp"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "dapp", "private": True, "type": "module"}))
    npm("install", str(LIB), cwd=project)
    assert (project / "node_modules" / "@lunark" / "client").resolve() == LIB
    probe = (
        "const p = await import('@lunark/client/protocol'); const r = await import('@lunark/client/reducer');"
        "const t = await import('@lunark/client/transport');"
        "console.log(JSON.stringify([p.reject('no'), r.initialState('c1').chatId, typeof t.LunarkTransport]));"
    )
    out = subprocess.run(["node", "--input-type=module", "-e", probe], cwd=project, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert json.loads(out) == [{"type": "reject", "message": "no"}, "c1", "function"]


async def test_a_dapp_streams_an_answer_and_approves_a_transfer_with_the_installed_package(
    installed: Path, serve: Any, anvil: Anvil, alice: DevAccount, bob: DevAccount
) -> None:
    node = shutil.which("node")
    assert node is not None
    shutil.copy(CONSUMERS / "consumer.mjs", installed / "consumer.mjs")
    server = await serve(signer={"local": "anvil"})
    token = await sign_in(server, alice)
    before = native_balance(anvil, bob.address)
    process = await asyncio.create_subprocess_exec(
        node, "consumer.mjs", server.url, token, bob.address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=installed,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = stdout.decode().strip().splitlines()
    assert process.returncode == 0 and lines, f"consumer.mjs exited {process.returncode}: {lines}\n{stderr.decode()}"
    summary = json.loads(lines[-1])

    assert summary["ok"] is True and summary["network"] == "anvil" and summary["same_from_index"] is True
    hello = summary["hello"]
    assert hello["finish_reason"] == "stop" and hello["tokens"] >= 1 and "send ETH or tokens" in hello["text"]
    assert "0.25 ETH" in summary["summary"] and bob.address in summary["summary"]
    assert summary["allowed"] == ["approve", "edit", "reject"]
    assert summary["tx"]["history"][0] == "submitted" and summary["tx"]["history"][-1] == "confirmed"
    assert "confirmed" in summary["answer"].lower()
    assert summary["gap"] is None and "tx_update" in summary["event_types"]
    assert native_balance(anvil, bob.address) - before == ETH // 4
    receipt = anvil.rpc("eth_getTransactionReceipt", [summary["tx"]["hash"]])
    assert receipt["status"] == "0x1" and receipt["from"].lower() == alice.address.lower()


def tsc() -> Path:
    found = ROOT / "node_modules" / "typescript" / "bin" / "tsc"
    assert found.exists(), "typescript is a devDependency in package.json: run npm install"
    return found


def type_check(project: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(tsc()), "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext",
         "--moduleResolution", "nodenext", "--lib", "es2022,dom", "--types", "", *files],
        cwd=project, capture_output=True, text=True, timeout=180, check=False,
    )


def test_a_typescript_dapp_type_checks_against_the_declarations(installed: Path) -> None:
    shutil.copy(CONSUMERS / "consumer.ts", installed / "consumer.ts")
    checked = type_check(installed, "consumer.ts")
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # And the check bites: a consumer that reads a field no event has fails.
    wrong = (installed / "consumer.ts").read_text().replace("return event.text;", "return event.txt;", 1)
    (installed / "wrong.ts").write_text(wrong)
    failed = type_check(installed, "wrong.ts")
    assert failed.returncode != 0 and "Property 'txt' does not exist" in failed.stdout, failed.stdout


def test_the_declarations_name_exactly_what_each_module_exports(installed: Path) -> None:
    # Hand-written declarations drift when a function is added to the JS and not to its .d.ts:
    # every runtime export must be declared, and nothing declared that is not exported.
    probe = "for (const m of ['protocol','transport','reducer','markdown']) " \
            "console.log(m, JSON.stringify(Object.keys(await import('@lunark/client/' + m))));"
    out = subprocess.run(["node", "--input-type=module", "-e", probe], cwd=installed, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    lines = []
    for line in out.strip().splitlines():
        module, names = line.split(" ", 1)
        keys = ", ".join(f"{name}: true" for name in json.loads(names))
        lines += [f'import * as {module} from "@lunark/client/{module}";',
                  f"export const {module}Exports: Record<keyof typeof {module}, true> = {{ {keys} }};"]
    (installed / "exports.ts").write_text("\n".join(lines) + "\n")
    checked = type_check(installed, "exports.ts")
    assert checked.returncode == 0, checked.stdout + checked.stderr
