"""The wire layer stands alone: what clients import loads no agent, no LangChain and no server."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lunark"
HEAVY = ("langgraph", "langchain", "langchain_core", "langchain_openai", "lunark.graph", "lunark.server")


def loaded_after(statement: str) -> list[str]:
    """Modules loaded by ``statement`` in a fresh interpreter."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return list(json.loads(out.stdout))


@pytest.mark.parametrize("statement", ["import lunark", "import lunark.protocol", "import lunark.client",
                                       "import lunark.siwe"])
def test_the_wire_layer_loads_no_agent_no_langchain_and_no_server(statement: str) -> None:
    heavy = [m for m in loaded_after(statement) if m == "langchain" or m.startswith(HEAVY)]
    assert heavy == [], f"{statement} loaded {heavy[:8]}"


def test_the_server_and_the_signer_load_no_dev_tooling() -> None:
    loaded = loaded_after("import lunark.server.app, lunark.chain.signer")
    assert "lunark.chain.anvil" not in loaded


ON_DEMAND = ("ens_normalize", "openai", "anthropic", "ollama", "langchain_openai", "langchain_anthropic",
             "langchain_ollama", "psycopg", "psycopg_pool", "langgraph.checkpoint.postgres")
"""Loaded only by what needs them: the ENSIP-15 tables (~90 MB) with the first ENS name, a provider's
SDK with a model of that provider, the Postgres driver with a Postgres store."""


def test_a_server_on_sqlite_with_the_offline_planner_loads_no_provider_no_postgres_and_no_ens_tables() -> None:
    loaded = loaded_after(
        "import lunark.server.app, lunark.server.worker, lunark.cli\n"
        "from lunark.config import Settings\n"
        "from lunark.models.factory import bind_tools_with_fallbacks, build_chat_model\n"
        "settings = Settings.load(plugins=False)\n"
        "build_chat_model(settings.model)\n"
        "bind_tools_with_fallbacks(settings.model, [])\n"
        "from lunark.chain.ens import is_ens_name\n"
        "assert not is_ens_name('0x70997970C51812dc3A010C7d01b50e0d17dc79C8')"
    )
    assert [m for m in loaded if m.split(".")[0] in ON_DEMAND or m in ON_DEMAND] == []
    # and each is loaded when it is needed
    assert "ens_normalize" in loaded_after("from lunark.chain.ens import normalize_name\nnormalize_name('alice.eth')")
    needed = loaded_after("from lunark.models import MODEL_FAILURES")
    assert {"openai", "anthropic"} <= set(needed)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


PROTOCOL = sorted((PACKAGE / "protocol").glob("*.py"))
WIRE = ("lunark.protocol", "lunark.errors", "lunark.siwe", "lunark.nonces")
"""What a client may stand on: the protocol and the wire-level modules beside it (the error tree, the
sign-in message, the nonce rule), none of which imports anything above the protocol."""


@pytest.mark.parametrize("path", PROTOCOL, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_protocol_imports_nothing_else_of_lunark(path: Path) -> None:
    bad = sorted(m for m in imports_of(path) if m.startswith("lunark") and not m.startswith("lunark.protocol"))
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "client").glob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_client_stands_only_on_the_wire_layer(path: Path) -> None:
    bad = sorted(m for m in imports_of(path)
                 if m.startswith("lunark") and not m.startswith(("lunark.client", *WIRE)))
    assert bad == [], f"{path.name} imports {bad}"


def runtime_imports_of(path: Path) -> set[str]:
    """What ``path`` imports when it runs: ``imports_of`` without the ``if TYPE_CHECKING:`` blocks
    (annotations only, never loaded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


CLIENT_MODULES = sorted((PACKAGE / "client").glob("*.py"))


def test_the_client_modules_import_each_other_without_a_cycle() -> None:
    # The SDK (sdk on session, connection, ordering, signin, errors, preview) and the terminal chat
    # (chat on chat_commands, chat_turns, chat_approvals, chat_render, chat_io) each build on the
    # parts below them; nothing imports back up (type-only imports aside).
    names = {f"lunark.client.{p.stem}": p for p in CLIENT_MODULES if p.stem != "__init__"}
    edges = {name: sorted(m for m in runtime_imports_of(path) if m in names) for name, path in names.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, "import cycle: " + " -> ".join((*path, name))
        if name not in done:
            for imported in edges[name]:
                visit(imported, (*path, name))
            done.add(name)

    for name in edges:
        visit(name, ())
    assert edges["lunark.client.chat_io"] == [], "the terminal's reading and writing stands alone"


SOURCES = sorted([*PACKAGE.rglob("*.py"), *(PACKAGE / "web").rglob("*.js")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_grows_past_450_lines(path: Path) -> None:
    # Issue 20: a module that mixes concerns over ~450 lines is split by concern (the store by area,
    # settlement by step, the chain client by what it reads, the SDK and the terminal chat, the
    # serving process's workers and their wire, the JS client's protocol and its sign-in).
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= 450, f"{path.relative_to(ROOT)} has {lines} lines"


@pytest.mark.parametrize("module", WIRE[1:])
def test_the_wire_modules_stand_only_on_the_protocol(module: str) -> None:
    path = PACKAGE / f"{module.split('.')[1]}.py"
    bad = sorted(m for m in imports_of(path) if m.startswith("lunark") and not m.startswith(("lunark.protocol", *WIRE)))
    assert bad == [], f"{path.name} imports {bad}"


@pytest.mark.parametrize(
    "path", [*PROTOCOL, PACKAGE / "siwe.py", *sorted((PACKAGE / "client").glob("*.py"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_client_side_module_imports_the_graph_or_the_server(path: Path) -> None:
    # Also imports inside functions: a lazy import is still a dependency.
    bad = sorted(m for m in imports_of(path) if m.startswith(("lunark.graph", "lunark.server")))
    assert bad == [], f"{path.name} imports {bad}"


def test_the_graph_takes_its_decision_shapes_from_the_protocol() -> None:
    from lunark import protocol
    from lunark.graph import approval

    for name in ("ApproveDecision", "EditDecision", "RejectDecision", "EditedAction", "ALL_DECISIONS"):
        assert getattr(approval, name) is getattr(protocol, name), name
    assert not any("lunark.graph.approval" in imports_of(path) for path in PROTOCOL)


APPROVALS_STANDS_ON = ("lunark.protocol", "lunark.errors", "lunark.store")
"""What ``lunark.approvals``, the one owner of approvals, may import: the wire layer and the store."""


def test_approvals_stand_on_the_protocol_and_the_store_only() -> None:
    path = PACKAGE / "approvals.py"
    bad = sorted(m for m in imports_of(path)
                 if m.startswith("lunark") and m != "lunark.approvals" and not m.startswith(APPROVALS_STANDS_ON))
    assert bad == [], f"approvals.py imports {bad}"
    heavy = [m for m in loaded_after("import lunark.approvals") if m == "langchain" or m.startswith(HEAVY)]
    assert heavy == [], f"import lunark.approvals loaded {heavy[:8]}"


def test_the_graph_and_the_server_leave_approvals_to_their_owner() -> None:
    # One owner: no other module parses an expires_at, claims a decision in the store or keeps
    # its own memory of decided approvals (lunark/approvals.py does, for the graph and the server).
    paths = sorted([*(PACKAGE / "graph").rglob("*.py"), *(PACKAGE / "server").rglob("*.py")])
    found = {
        f"{p.relative_to(ROOT)}: {word}"
        for p in paths
        for word in ("fromisoformat", "claim_approval", "self._decided")
        if word in p.read_text(encoding="utf-8")
    }
    assert found == set()
    users = [p.relative_to(ROOT) for p in paths if "lunark.approvals" in imports_of(p)]
    for module in ("graph/nodes.py", "graph/decisions.py", "server/decisions.py"):
        assert Path("lunark", module) in users, module


def store_imports(path: Path) -> list[str]:
    """What ``path`` takes from the store other than through the package's public names."""
    import lunark.store

    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lunark.store"):
            if node.module != "lunark.store":
                found.append(node.module)
            found += [f"lunark.store.{a.name}" for a in node.names if a.name not in lunark.store.__all__]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("lunark.store.")]
    return found


def test_the_graph_and_the_server_use_the_store_through_its_package_only() -> None:
    # The backends' modules are the store's own business: one SQL implementation over two dialects.
    paths = sorted([*(PACKAGE / "graph").rglob("*.py"), *(PACKAGE / "server").rglob("*.py")])
    bad = {str(p.relative_to(ROOT)): store_imports(p) for p in paths if store_imports(p)}
    assert bad == {}


def test_the_store_loads_the_postgres_driver_only_when_asked() -> None:
    assert not [m for m in loaded_after("import lunark.store") if m.startswith(("psycopg", "lunark.store.postgres"))]
    assert "psycopg" in loaded_after("from lunark.store import PostgresStore")


# --- events are built by the protocol only --------------------------------------------------------



def lines_outside(prefix: str, finder: Callable[[Path], list[int]]) -> list[str]:
    """``finder``'s lines, as ``path:line``, in every module of lunark/ outside ``prefix``."""
    return [
        f"{rel}:{line}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not (rel := str(path.relative_to(ROOT))).startswith(prefix)
        for line in finder(path)
    ]


def typed_dict_displays(path: Path) -> list[int]:
    """The lines of ``path``'s dict displays with a ``"type"`` key: events and decisions written by
    hand. A number as its value is a transaction's envelope type (EIP-2718: ``"type": 2``), which no
    event has; every other value counts, a constant or not."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return sorted(
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict)
        for key, value in zip(node.keys, node.values, strict=True)
        if isinstance(key, ast.Constant) and key.value == "type"
        and not (isinstance(value, ast.Constant) and type(value.value) is int)
    )


def test_no_event_is_a_dict_literal_outside_the_protocol() -> None:
    # Every event that leaves the server, and every decision, is built by lunark.protocol's
    # constructors (lunark/protocol/_build.py), so a renamed field cannot diverge in one place.
    found = lines_outside("lunark/protocol/", typed_dict_displays)
    assert found == [], "build these with lunark.protocol's constructors:\n" + "\n".join(found)


def test_the_event_literal_check_finds_a_planted_one(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text('def f(x):\n    return [{"type": "token", "text": x}, {**x, "type": x}, {"type": 2}]\n')
    assert typed_dict_displays(planted) == [2, 2]


# --- every chain call through ChainClient -----------------------------------------------------------


def w3_uses(path: Path) -> list[int]:
    """The lines of ``path`` that reach a web3 instance directly: any attribute named ``w3``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return sorted(node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "w3")


def test_no_module_outside_the_chain_layer_reaches_web3_past_chain_client() -> None:
    # Settlement, the tools, the graph and the server ask ChainClient, which gains what they need
    # (lunark/chain/client.py): one place translates the node's failures and checks its chain id.
    found = lines_outside("lunark/chain/", w3_uses)
    assert found == [], "ask ChainClient instead of its w3:\n" + "\n".join(found)


def test_the_w3_check_finds_a_planted_one(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("async def f(client, w3):\n    await client.w3.eth.block_number\n    return w3.eth\n")
    assert w3_uses(planted) == [2]
