"""Settings: defaults, TOML and JSON files, LUNARK_* environment variables, precedence, errors."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from lunark.config import Settings
from lunark.errors import ConfigError
from lunark.networks import ANVIL_CHAIN_ID

TOML = """
data_dir = "/var/lib/lunark-from-file"
plugins = false

[model]
provider = "openai"
model = "file-model"
base_url = "http://localhost:11434/v1"

[chain]
default_network = "sepolia"
rpc_url = "http://file-node:8545"

[[chain.networks]]
name = "gnosis"
chain_id = 100
symbol = "xDAI"
rpc_urls = ["https://rpc.gnosischain.com"]

[policy]
per_tx_cap = { ETH = "2" }
daily_cap = { ETH = "5", "*" = "100" }
deny_recipients = ["0x90F79bf6EB2c4f870365E785982E1f101E93b906"]

[approvals]
ttl_seconds = 120

[approvals.rules]
transfer = { above = { native = "0.1" } }

[server]
port = 9000
"""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test sees only the LUNARK_* variables it sets itself."""
    for name in list(os.environ):
        if name.startswith("LUNARK_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def toml_file(tmp_path: Path) -> Path:
    path = tmp_path / "lunark.toml"
    path.write_text(TOML)
    return path


def test_defaults() -> None:
    settings = Settings.load()
    assert settings.data_dir == Path(".lunark")
    assert settings.model.provider == "offline"
    assert settings.chain.default_network == "anvil" and settings.chain.rpc_url is None
    assert settings.chain.networks == []
    assert settings.policy.per_tx_cap == {} and settings.policy.allow_recipients is None
    assert settings.approvals.ttl_seconds == 600 and settings.approvals.rules == {}
    assert settings.signer.local == "none"
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    assert settings.plugins is True
    registry = settings.network_registry()
    assert registry.get("anvil").rpc_url == "http://127.0.0.1:8545"


def test_turn_workers_default_to_the_cores_but_one_on_one_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """``lunark serve`` runs turns in worker processes by default: cores - 1, at least 1, on SQLite;
    ``server.workers = 0`` (or the environment's) keeps them in the serving process."""
    cores = len(os.sched_getaffinity(0))
    settings = Settings.load()
    assert settings.server.workers is None
    assert settings.turn_workers() == max(1, cores - 1)
    assert settings.turn_workers(agent_in_code=True) == 0, "a model given in code lives in this process"
    assert Settings.load(store={"url": "postgresql://db/lunark"}).turn_workers() == 0, "a cluster says what it runs"
    assert Settings.load(server={"workers": 0}).turn_workers() == 0
    assert Settings.load(server={"workers": 3}).turn_workers(agent_in_code=True) == 3, "as asked (start refuses it)"
    monkeypatch.setenv("LUNARK_SERVER__WORKERS", "0")
    assert Settings.load().turn_workers() == 0


def test_toml_file(toml_file: Path) -> None:
    settings = Settings.load(toml_file)
    assert settings.data_dir == Path("/var/lib/lunark-from-file")
    assert settings.plugins is False
    assert settings.model.provider == "openai" and settings.model.model == "file-model"
    assert settings.model.base_url == "http://localhost:11434/v1"
    assert settings.model.timeout == 60, "unset fields of a section keep their defaults"
    assert settings.chain.default_network == "sepolia"
    assert settings.policy.per_tx_cap == {"ETH": Decimal(2)}
    assert settings.policy.daily_cap == {"ETH": Decimal(5), "*": Decimal(100)}
    assert settings.approvals.ttl_seconds == 120
    assert settings.server.port == 9000

    policy = settings.policy.build()
    assert policy.per_tx_cap == {"ETH": Decimal(2)}
    assert "0x90F79bf6EB2c4f870365E785982E1f101E93b906" in policy.deny

    registry = settings.network_registry()
    assert registry.get("sepolia").rpc_url == "http://file-node:8545", "rpc_url goes to the default network"
    assert registry.get("ethereum").rpc_url == "https://ethereum-rpc.publicnode.com"
    assert registry.get(100).symbol == "xDAI"


def test_a_provider_model_string_overrides_the_files_model(
    toml_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LUNARK_MODEL__PROVIDER", "anthropic:claude-from-env")
    model = Settings.load(toml_file).model
    assert (model.provider, model.model) == ("anthropic", "claude-from-env")
    assert model.key_variable == "ANTHROPIC_API_KEY"


def test_json_file(tmp_path: Path) -> None:
    path = tmp_path / "lunark.json"
    path.write_text(
        json.dumps(
            {
                "model": {"provider": "openai", "model": "json-model", "max_retries": 0},
                "policy": {"per_tx_cap": {"ETH": "0.5"}, "allow_recipients": []},
                "signer": {"local": "anvil", "anvil_account": 3},
            }
        )
    )
    settings = Settings.load(path)
    assert settings.model.model == "json-model" and settings.model.max_retries == 0
    assert settings.policy.per_tx_cap == {"ETH": Decimal("0.5")}
    assert settings.policy.build().allow == frozenset(), "an empty allow list allows nobody"
    assert settings.signer.local == "anvil" and settings.signer.anvil_account == 3


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LUNARK_MODEL__PROVIDER", "openai")
    monkeypatch.setenv("LUNARK_CHAIN__RPC_URL", "http://env-node:8545")
    monkeypatch.setenv("LUNARK_POLICY__PER_TX_CAP", '{"ETH":"1"}')
    monkeypatch.setenv("LUNARK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LUNARK_PLUGINS", "false")
    settings = Settings.load()
    assert settings.model.provider == "openai"
    assert settings.chain.rpc_url == "http://env-node:8545"
    assert settings.policy.per_tx_cap == {"ETH": Decimal(1)}
    assert settings.data_dir == tmp_path
    assert settings.plugins is False
    assert settings.network_registry().get(ANVIL_CHAIN_ID).rpc_url == "http://env-node:8545"


def test_precedence_overrides_then_env_then_file_then_defaults(
    monkeypatch: pytest.MonkeyPatch, toml_file: Path
) -> None:
    monkeypatch.setenv("LUNARK_MODEL__MODEL", "env-model")
    monkeypatch.setenv("LUNARK_CHAIN__RPC_URL", "http://env-node:8545")
    monkeypatch.setenv("LUNARK_POLICY__PER_TX_CAP", '{"ETH":"1"}')
    settings = Settings.load(toml_file, chain={"rpc_url": "http://flag-node:8545"})
    assert settings.chain.rpc_url == "http://flag-node:8545", "overrides beat the environment"
    assert settings.chain.default_network == "sepolia", "an override of one field keeps the file's others"
    assert settings.model.model == "env-model", "the environment beats the file"
    assert settings.model.provider == "openai", "the file's other model fields stay"
    assert settings.policy.per_tx_cap == {"ETH": Decimal(1)}
    assert settings.policy.daily_cap == {"ETH": Decimal(5), "*": Decimal(100)}
    assert settings.model.temperature == 0.0, "defaults fill what nobody set"
    assert settings.network_registry().get("sepolia").rpc_url == "http://flag-node:8545"


@pytest.mark.parametrize(
    ("overrides", "problems"),
    [
        ({"server": {"port": 70000}}, ["server.port"]),
        ({"model": {"provider": "anthropic"}}, ["model", "needs a model name", "anthropic:<model>"]),
        ({"model": {"provider": "antropic:claude-x"}}, ["model.provider", "unknown model provider", "anthropic"]),
        ({"model": {"provider": "anthropic:"}}, ["model", "names no model after the colon"]),
        ({"model": {"base_url": "localhost:11434"}}, ["model.base_url", "http://"]),
        ({"policy": {"per_tx_cap": {"ETH": "lots"}}}, ["policy.per_tx_cap.ETH"]),
        ({"approvals": {"ttl_seconds": 0}}, ["approvals.ttl_seconds"]),
        ({"signer": {"local": "ledger"}}, ["signer.local"]),
        ({"colour": "blue"}, ["colour", "Extra inputs"]),
        ({"chain": {"rpc": "http://x"}}, ["chain.rpc"]),
        ({"server": {"port": -1}, "signer": {"anvil_account": 10}}, ["server.port", "signer.anvil_account"]),
    ],
)
def test_invalid_values_are_listed(overrides: dict[str, object], problems: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.load(**overrides)
    assert caught.value.message.startswith("Invalid configuration:")
    for problem in problems:
        assert problem in caught.value.message


def test_invalid_value_in_a_file(tmp_path: Path) -> None:
    path = tmp_path / "lunark.toml"
    path.write_text('[model]\nprovider = "offline"\ntemperature = 9\n')
    with pytest.raises(ConfigError, match=r"model\.temperature"):
        Settings.load(path)


def test_invalid_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNARK_SERVER__PORT", "eighty")
    with pytest.raises(ConfigError, match=r"server\.port"):
        Settings.load()


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNARK_SERVER__TRUSTED_PROXIES", '["10.0.0.0/8", "::1"]')
    assert Settings.load().server.trusted_proxies == ["10.0.0.0/8", "::1"]
    monkeypatch.setenv("LUNARK_SERVER__TRUSTED_PROXIES", '["nginx"]')
    with pytest.raises(ConfigError, match=r"server\.trusted_proxies.*'nginx' is not an IP address"):
        Settings.load()


def test_environment_value_that_is_not_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNARK_POLICY__PER_TX_CAP", "ETH=1")
    with pytest.raises(ConfigError, match="policy"):
        Settings.load()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("name", "text"),
    [("broken.toml", "[model\nprovider = "), ("broken.json", '{"model": '), ("list.json", "[1, 2]")],
)
def test_malformed_file(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        Settings.load(path)
    assert str(path) in caught.value.message


def test_unknown_default_network_fails_at_start_up() -> None:
    settings = Settings.load(chain={"default_network": "sepola"})
    with pytest.raises(ConfigError, match=r"chain\.default_network") as caught:
        settings.network_registry()
    assert caught.value.details["suggestions"] == ["sepolia"]
    with_rpc = Settings.load(chain={"default_network": "nowhere", "rpc_url": "http://node:8545"})
    with pytest.raises(ConfigError, match="nowhere"):
        with_rpc.network_registry()


def test_default_network_by_chain_id_or_alias_gets_the_rpc_url() -> None:
    settings = Settings.load(chain={"default_network": "0x2105", "rpc_url": "http://base-node"})
    assert settings.network_registry().get("base").rpc_urls == ("http://base-node",)
    settings = Settings.load(chain={"default_network": "ETH", "rpc_url": "http://eth-node"})
    registry = settings.network_registry()
    assert registry.get("ethereum").rpc_urls == ("http://eth-node",)
    assert registry.get("ethereum").name == "ethereum"


def test_invalid_network_override_is_a_config_error() -> None:
    settings = Settings.load(chain={"networks": [{"chain_id": 100}]})
    with pytest.raises(ConfigError, match="name and chain_id"):
        settings.network_registry()


def test_invalid_policy_address_is_a_config_error() -> None:
    settings = Settings.load(policy={"deny_recipients": ["0x1234"]})
    with pytest.raises(ConfigError, match="spending policy"):
        settings.policy.build()
