"""Test harness: real Anvil nodes from node_modules, isolated per test with evm_snapshot/evm_revert.

Session fixtures start two Anvils (chain ids 31337 and 31338) and deploy the
test contracts once; every test that touches a chain runs inside a snapshot
that is reverted afterwards. A missing Anvil fails the run: it never skips.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_typing import ChecksumAddress

from lunark.chain.anvil import Anvil, DevAccount
from lunark.contracts import deploy_contract
from lunark.contracts.ens import EnsName, deploy_ens
from lunark.networks import ANVIL_CHAIN_ID, NetworkConfig, NetworkRegistry, TokenConfig

SECOND_CHAIN_ID = 31338
INITIAL_TOKENS = 1_000_000 * 10**18


@dataclass(frozen=True)
class World:
    """What the session deployed on one Anvil."""

    anvil: Anvil
    token: ChecksumAddress
    """TestToken "TKN", 18 decimals; every dev account holds 1,000,000 TKN."""
    usd: ChecksumAddress
    """TestToken "TUSD", 6 decimals; every dev account holds 1,000,000 TUSD."""
    reverter: ChecksumAddress
    """A contract whose calls revert with a reason."""
    ens_registry: ChecksumAddress | None = None
    """The real ENS contracts (first chain only): alice.eth -> accounts[1], its primary name; ali.eth ->
    accounts[1] too (whose primary name is alice.eth, not ali.eth); nameless.eth -> accounts[2], which
    has no primary name."""


def _deploy_world(anvil: Anvil, *, ens: bool = False) -> World:
    deployer = anvil.accounts[9]
    token = deploy_contract(anvil.url, "TestToken", "Test Token", "TKN", 18, private_key=deployer.private_key)
    usd = deploy_contract(anvil.url, "TestToken", "Test USD", "TUSD", 6, private_key=deployer.private_key)
    reverter = deploy_contract(anvil.url, "Reverter", private_key=deployer.private_key)
    ens_registry = None
    if ens:
        one, two = anvil.accounts[1], anvil.accounts[2]
        ens_registry = deploy_ens(anvil.url, private_key=deployer.private_key, names=[
            EnsName(label="alice", address=one.address, primary_key=one.private_key),
            EnsName(label="ali", address=one.address),
            EnsName(label="nameless", address=two.address),
        ]).registry
    sent = []
    for account in anvil.accounts:
        sent.append(_mint(anvil, token, deployer, account.address, INITIAL_TOKENS))
        sent.append(_mint(anvil, usd, deployer, account.address, 1_000_000 * 10**6))
    # Automine answers a send before its block is sealed: without this wait the last mints' blocks
    # could land during the first test, which then fails `_shared_chains_left_as_found`.
    deadline = time.monotonic() + 10
    while not all(anvil.rpc("eth_getTransactionReceipt", [h]) for h in sent):
        assert time.monotonic() < deadline, "the session's mint transactions were never mined"
        time.sleep(0.01)
    return World(anvil=anvil, token=token, usd=usd, reverter=reverter, ens_registry=ens_registry)


def _mint(anvil: Anvil, token: str, deployer: DevAccount, to: str, amount: int) -> str:
    # mint(address,uint256) has the same argument layout as transfer(address,uint256).
    from eth_utils import function_signature_to_4byte_selector

    from lunark.chain.types import encode_erc20_transfer

    data = "0x" + function_signature_to_4byte_selector("mint(address,uint256)").hex()
    data += encode_erc20_transfer(to, amount)[10:]
    return str(anvil.rpc("eth_sendTransaction", [{"from": deployer.address, "to": token, "data": data}]))


@pytest.fixture(scope="session")
def world() -> Iterator[World]:
    with Anvil.start(chain_id=ANVIL_CHAIN_ID) as anvil:
        yield _deploy_world(anvil, ens=True)


@pytest.fixture(scope="session")
def world2() -> Iterator[World]:
    with Anvil.start(chain_id=SECOND_CHAIN_ID) as anvil:
        yield _deploy_world(anvil)


@pytest.fixture(autouse=True)
def _shared_chains_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test that changed a session chain without undoing it.

    A test that sends a transaction must run inside ``anvil``/``anvil2`` (and stop whatever it
    started before they revert); otherwise the change leaks into every later test, which then
    fails far from the cause, in an order-dependent way."""
    worlds = [request.getfixturevalue(name) for name in ("world", "world2") if name in request.fixturenames]
    before = [(w, w.anvil.rpc("eth_blockNumber")) for w in worlds]
    yield
    for w, block in before:
        now = w.anvil.rpc("eth_blockNumber")
        assert now == block, (
            f"chain {w.anvil.chain_id} moved from block {int(block, 16)} to {int(now, 16)} and was "
            "not reverted: use the `anvil`/`anvil2` fixtures for tests that send transactions"
        )


@pytest.fixture
def anvil(world: World) -> Iterator[Anvil]:
    """The main Anvil (31337), with everything a test does undone afterwards."""
    with world.anvil.isolated() as node:
        yield node


@pytest.fixture
def anvil2(world2: World) -> Iterator[Anvil]:
    """A second Anvil (31338) for multi-network tests, isolated per test."""
    with world2.anvil.isolated() as node:
        yield node


@pytest.fixture
def accounts(world: World) -> list[DevAccount]:
    return world.anvil.accounts


@pytest.fixture
def alice(accounts: list[DevAccount]) -> DevAccount:
    return accounts[0]


@pytest.fixture
def bob(accounts: list[DevAccount]) -> DevAccount:
    return accounts[1]


@pytest.fixture
def carol(accounts: list[DevAccount]) -> DevAccount:
    return accounts[2]


@pytest.fixture
def mallory(accounts: list[DevAccount]) -> DevAccount:
    return accounts[3]


@pytest.fixture
def registry(world: World, world2: World) -> NetworkRegistry:
    """Built-in networks with `anvil` pointed at the test Anvil and `anvil-2` (31338) added,
    each knowing its test tokens TKN and TUSD."""

    def tokens(w: World) -> list[TokenConfig]:
        return [
            TokenConfig(symbol="TKN", address=w.token, decimals=18, name="Test Token"),
            TokenConfig(symbol="TUSD", address=w.usd, decimals=6, name="Test USD"),
        ]

    return NetworkRegistry.default().with_overrides(
        [
            NetworkConfig(
                name="anvil", rpc_urls=[world.anvil.url], tokens=tokens(world), ens_registry=world.ens_registry
            ),
            NetworkConfig(
                name="anvil-2",
                chain_id=SECOND_CHAIN_ID,
                display_name="Anvil 2 (local)",
                rpc_urls=[world2.anvil.url],
                aliases=["second", "anvil2"],
                tokens=tokens(world2),
            ),
        ]
    )


# -- the server --------------------------------------------------------------------------------


def sign_in_message(
    domain: str, uri: str, address: str, nonce: str, *, chain_id: int = ANVIL_CHAIN_ID, **fields: Any
) -> str:
    """An EIP-4361 message as a wallet-connected page would build it."""
    from datetime import UTC, datetime

    from lunark.siwe import SiweMessage

    values: dict[str, Any] = {
        "domain": domain, "address": address, "statement": "Sign in to Lunark.", "uri": uri, "version": "1",
        "chain_id": chain_id, "nonce": nonce, "issued_at": datetime.now(UTC),
    }
    values.update(fields)
    return SiweMessage(**values).to_text()


async def sign_in(server: Any, account: DevAccount) -> str:
    """Sign in over HTTP exactly as a client does (nonce, EIP-191 signature, verify); returns the token."""
    import aiohttp
    from eth_account import Account
    from eth_account.messages import encode_defunct

    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/auth/nonce") as response:
            nonce = (await response.json())["nonce"]
        # The URI is the page's origin: the server's own URL, or the public one behind a load balancer.
        uri = getattr(server, "public_url", None) or server.url
        message = sign_in_message(server.domain, uri, account.address, nonce)
        signature = Account.sign_message(encode_defunct(text=message), account.private_key).signature
        body = {"message": message, "signature": "0x" + bytes(signature).hex()}
        async with http.post(server.url + "/auth/verify", json=body) as response:
            assert response.status == 200, await response.text()
            return str((await response.json())["token"])


def server_settings(data_dir: Any, world: World, world2: World | None = None, **overrides: Any) -> Any:
    """Settings for a test server on a free port, its default network the test Anvil with TKN and TUSD."""
    from lunark.config import Settings

    networks: list[dict[str, Any]] = [{
        "name": "anvil", "rpc_urls": [world.anvil.url], "ens_registry": world.ens_registry,
        "tokens": [{"symbol": "TKN", "address": world.token, "decimals": 18},
                   {"symbol": "TUSD", "address": world.usd, "decimals": 6}],
    }]
    if world2 is not None:
        networks.append({
            "name": "anvil-2", "chain_id": SECOND_CHAIN_ID, "display_name": "Anvil 2 (local)",
            "rpc_urls": [world2.anvil.url], "aliases": ["anvil2"],
            "tokens": [{"symbol": "TKN", "address": world2.token, "decimals": 18}],
        })
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "plugins": False,
        "chain": {"networks": networks, "track_timeout": 30, "verify_timeout": 5},
        "server": {"port": 0},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key] = {**values[key], **value}
        else:
            values[key] = value
    return Settings.load(**values)


if os.environ.get("LUNARK_TEST_WORKERS"):  # turn workers import pickled_model (make_server below)
    _here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_here, os.environ.get("PYTHONPATH")) if p)


@pytest.fixture
async def make_server(tmp_path: Any, world: World, world2: World, anvil: Anvil, anvil2: Anvil) -> Any:
    """Start real Lunark servers on free ports: ``await make_server(signer={"local": "anvil"}, model=...)``.

    It depends on the isolated ``anvil`` and ``anvil2`` so that its servers stop before the chains
    are reverted: a transaction a server is still broadcasting or tracking must not land on the
    shared chain after the revert and leak into the next test."""
    from pickled_model import factory_for
    from server_harness import with_test_workers

    from lunark.server.app import LunarkServer

    servers: list[LunarkServer] = []

    async def make(*, model: Any = None, data_dir: Any = None, **overrides: Any) -> LunarkServer:
        settings = server_settings(data_dir or tmp_path / f"server{len(servers)}", world, world2, **overrides)
        settings = with_test_workers(settings)  # server.workers = 0 unless the test or LUNARK_TEST_WORKERS says
        factory = None
        if model is not None and settings.server.workers:  # a model object goes to the workers, pickled
            factory = factory_for(model, tmp_path / f"model{len(servers)}.pickle")
            if factory is None:  # it cannot be pickled: it stays in this process
                settings = settings.model_copy(update={"server": settings.server.model_copy(update={"workers": 0})})
        server = LunarkServer(settings, model=None if factory else model, model_factory=factory, environ={})
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


@pytest.fixture
async def serve(tmp_path: Any, world: World, world2: World, anvil: Anvil, anvil2: Anvil) -> Any:
    """Start real ``lunark serve`` processes: ``await serve(env={...}, limits={...})``.

    For what must be shown not to kill the server: a test checks ``server.alive()``. Like
    ``make_server``, the processes stop before the chains are reverted."""
    from server_harness import ServeProcess

    processes: list[Any] = []

    async def start(*, env: dict[str, str] | None = None, **overrides: Any) -> Any:
        settings = server_settings(tmp_path / f"serve{len(processes)}", world, world2, **overrides)
        process = ServeProcess(settings, env=env)
        processes.append(process)
        return await process.start()

    yield start
    for process in processes:
        await process.stop()


# -- Postgres and Redis (tests/services.py) ---------------------------------------------------


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real Postgres server for the session (Debian's package; run as ``postgres`` under root)."""
    from services import PostgresServer

    with PostgresServer.start() as server:
        yield server


@pytest.fixture
def pg_url(postgres: Any) -> Iterator[str]:
    """A fresh, empty database on the session's Postgres, dropped after the test."""
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """A real redis-server for the session, on a free loopback port."""
    from services import RedisServer

    with RedisServer.start() as server:
        yield server
