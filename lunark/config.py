"""Configuration: one ``Settings`` object, built at the entry point and passed down.

Sources, strongest first: arguments to ``Settings.load`` (command-line flags),
``LUNARK_*`` environment variables (nested with ``__``, e.g.
``LUNARK_MODEL__PROVIDER=openai``), a TOML or JSON file, then defaults.
``docs/configuration.md`` lists every field.
"""

from __future__ import annotations

import contextvars
import ipaddress
import os
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from lunark.errors import ConfigError, UnknownNetwork
from lunark.models.factory import ModelSettings
from lunark.networks import NetworkConfig, NetworkRegistry
from lunark.tools.policy import SpendingPolicy
from lunark.tools.recipient import RecipientPolicy

__all__ = [
    "ApprovalSettings",
    "ChainSettings",
    "LimitsSettings",
    "McpServerSettings",
    "McpSettings",
    "McpToolSettings",
    "PolicySettings",
    "RateLimit",
    "RateLimitSettings",
    "ServerSettings",
    "Settings",
    "SignerSettings",
    "StoreSettings",
]

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("lunark_config_file", default=None)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChainSettings(_Section):
    default_network: str = Field(default="anvil", description="Network of a new chat (name, alias or chain id).")
    rpc_url: str | None = Field(default=None, description="RPC URL of the default network (overrides its built-in).")
    networks: list[NetworkConfig] = Field(default_factory=list, description="Networks to add or override.")
    track_timeout: float = Field(
        default=300.0, gt=0, description="Seconds the node may not have a transaction before it is reported dropped."
    )
    verify_timeout: float = Field(
        default=30.0, gt=0, description="Seconds to wait for a wallet-broadcast transaction to be visible."
    )


class PolicySettings(_Section):
    per_tx_cap: dict[str, Decimal] = Field(
        default_factory=dict, description='Per-transaction cap per symbol in whole units, e.g. {"ETH": "1"}; "*" = any.'
    )
    daily_cap: dict[str, Decimal] = Field(default_factory=dict, description="Daily (UTC) cap per symbol.")
    allow_recipients: list[str] | None = Field(default=None, description="If set, the only allowed recipients.")
    deny_recipients: list[str] = Field(default_factory=list, description="Recipients never allowed.")
    lookalike_prefix: int = Field(
        default=4, ge=1, le=40,
        description="Hex digits after 0x two different addresses must share (with lookalike_suffix) for the card "
        "to warn lookalike_recipient.",
    )
    lookalike_suffix: int = Field(
        default=4, ge=0, le=39, description="Hex digits at the end they must share too."
    )
    lookalike_log_blocks: int = Field(
        default=5000, ge=0, le=1_000_000,
        description="Recent blocks of the user's ERC-20 Transfer logs (known tokens) read for counterparties; "
        "0 reads none.",
    )
    block_warnings: list[str] = Field(
        default_factory=list,
        description='Warning codes that refuse the action (policy_violation) instead of warning, e.g. '
        '["lookalike_recipient"] (docs/safety.md lists the codes).',
    )

    def build(self) -> SpendingPolicy:
        try:
            return SpendingPolicy.build(
                per_tx_cap=self.per_tx_cap,
                daily_cap=self.daily_cap,
                allow=self.allow_recipients,
                deny=self.deny_recipients,
                recipients=RecipientPolicy(
                    lookalike_prefix=self.lookalike_prefix,
                    lookalike_suffix=self.lookalike_suffix,
                    log_blocks=self.lookalike_log_blocks,
                    block_warnings=frozenset(self.block_warnings),
                ),
            )
        except ValueError as exc:
            raise ConfigError(f"Invalid spending policy: {exc}") from exc


class ApprovalSettings(_Section):
    ttl_seconds: float = Field(default=600.0, gt=0, description="Seconds before a pending approval expires (rejected).")
    on_new_message: Literal["supersede", "busy"] = Field(
        default="supersede",
        description=(
            "A message sent while an approval waits: 'supersede' rejects the approval as superseded and runs the "
            "message; 'busy' refuses the message until the approval is decided."
        ),
    )
    fee_factor: Decimal = Field(
        default=Decimal(2), ge=1, le=100,
        description="A wallet's transaction may cap its network fee at most this many times the fee the card showed.",
    )
    rules: dict[str, Any] = Field(
        default_factory=dict,
        description='Per tool: "always", "never" or {"above": {"native": "0.1", "USDC": "50"}} ("native": the '
        'network\'s own currency, sent without a token; "*": any other token). Defaults: transfer and '
        "switch_network always, get_balance never.",
    )


class SignerSettings(_Section):
    local: Literal["none", "anvil", "key"] = Field(
        default="none",
        description='"anvil": sign with an Anvil dev account (local chains only); "key": with the private key '
        "in the environment variable named by key_env; none: only the user's wallet signs.",
    )
    anvil_account: int = Field(default=0, ge=0, le=9, description="Which Anvil dev account signs.")
    key_env: str = Field(default="LUNARK_SIGNER_KEY", description="Environment variable holding the key.")


_MCP_SERVER_NAME = r"^[A-Za-z][A-Za-z0-9-]{0,23}(_[A-Za-z0-9-]+)*$"
"""Letters, digits, ``-`` and single ``_``: never ``__``, the separator of ``server__tool`` (and never
``.``), so a tool's name tells its server apart and no server can shadow another or a built-in."""


class McpToolSettings(_Section):
    approval: Literal["always", "never"] | None = Field(
        default=None,
        description='Overrides what the tool\'s MCP annotations say: "always" waits for the user, "never" runs '
        "at once. Unset: readOnlyHint true runs at once, anything else waits.",
    )
    enabled: bool = Field(default=True, description="False: the model never sees this tool.")


class McpServerSettings(_Section):
    transport: Literal["stdio", "http"] | None = Field(
        default=None, description='"stdio" (command) or "http" (streamable HTTP, url); unset: from which is given.'
    )
    command: str | None = Field(default=None, description="stdio: the program that runs the MCP server.")
    args: list[str] = Field(default_factory=list, description="stdio: its arguments.")
    env: dict[str, str] = Field(
        default_factory=dict, description="stdio: environment variables for it (added to a minimal safe set)."
    )
    cwd: str | None = Field(default=None, description="stdio: its working directory.")
    url: str | None = Field(default=None, description="http: the streamable HTTP endpoint, e.g. http://host:8000/mcp.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="http: header name -> the environment variable holding its value."
    )
    timeout: float = Field(
        default=30.0, gt=0, le=3600,
        description="Seconds a tool call may take before it fails with tool_error (a slow or hung server).",
    )
    connect_timeout: float = Field(
        default=10.0, gt=0, le=600, description="Seconds to start or reach the server and list its tools."
    )
    approval: Literal["annotations", "always", "never"] = Field(
        default="annotations",
        description='Default for its tools: "annotations" (readOnlyHint true runs at once, the rest waits), '
        '"always" or "never".',
    )
    tools: dict[str, McpToolSettings] = Field(
        default_factory=dict, description="Per tool (its MCP name): approval override, enabled."
    )

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        transport = self.transport or ("stdio" if self.command else "http" if self.url else None)
        if transport is None:
            raise ValueError('give "command" (stdio) or "url" (streamable HTTP)')
        if transport == "stdio" and not self.command:
            raise ValueError('transport "stdio" needs "command"')
        if transport == "http" and not self.url:
            raise ValueError('transport "http" needs "url"')
        if transport == "http" and not self.url.startswith(("http://", "https://")):  # type: ignore[union-attr]
            raise ValueError(f"url {self.url!r} is not an http(s) URL")
        self.transport = transport
        return self


class McpSettings(_Section):
    servers: dict[Annotated[str, StringConstraints(pattern=_MCP_SERVER_NAME)], McpServerSettings] = Field(
        default_factory=dict,
        description="MCP servers whose tools the agent may call, by name; each tool is <server>__<tool> to the "
        "model and <server>.<tool> to people.",
    )


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    domain: str | None = Field(default=None, description="SIWE domain; defaults to host:port.")
    public_url: str | None = Field(
        default=None,
        description="The origin sign-in messages' URI must be on (e.g. https://lunark.example); "
        "defaults to http:// or https:// with the domain.",
    )
    token_ttl_seconds: float = Field(default=86_400.0, gt=0)
    flush_interval_ms: float = Field(default=16.0, ge=0, description="Token coalescing interval.")
    admin_token_env: str = Field(
        default="LUNARK_ADMIN_TOKEN",
        description="Environment variable holding the token that shows /healthz's details; unset: nobody sees them.",
    )
    ping_interval: float = Field(default=25.0, gt=0, description="Seconds between Engine.IO pings.")
    ping_timeout: float = Field(default=20.0, gt=0, description="Seconds a client has to answer a ping.")
    redis_url: str | None = Field(
        default=None,
        description="Redis for Socket.IO fan-out across server processes (redis://host:port/0); none: in-process.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of the load balancers in front of this server: a request "
        "from one of them is counted by the client address its X-Forwarded-For names (the sign-in rate "
        "limit); from anywhere else that header is ignored.",
    )
    workers: int | None = Field(
        default=None, ge=0, le=256,
        description="Turn worker processes. Unset (the default): on SQLite, the number of cores minus one, at "
        "least 1; 0 with store.url, or when the model, tools or environment are given in code. 0 runs the "
        "agent's turns in the serving process; N >= 1 starts N local worker processes that run them while the "
        "serving process only relays. With store.url (a cluster), the workers take turn jobs from the shared "
        "queue in Postgres, with any `lunark worker`.",
    )
    relay_only: bool = Field(
        default=False,
        description="A cluster's relay that starts no worker (store.url and redis_url set): its turn jobs are "
        "run by `lunark worker` processes, on this machine or others.",
    )
    sweep_interval_seconds: float = Field(
        default=1.0, gt=0, le=60,
        description="The longest an expired approval waits to be rejected when no timer of this process knew "
        "of it; with a Postgres store, also how often each process looks for turns and settlements a dead "
        "process left.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 10.0.0.0/8)") from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value or None


class RateLimit(_Section):
    """A token bucket: ``burst`` requests at once, refilled at ``per_minute``; 0 turns it off."""

    per_minute: float = Field(ge=0)
    burst: int = Field(ge=1)


class RateLimitSettings(_Section):
    sign_in: RateLimit = Field(
        default=RateLimit(per_minute=30, burst=30),
        description="GET /auth/nonce and POST /auth/verify, per client IP.",
    )
    create_chat: RateLimit = Field(
        default=RateLimit(per_minute=60, burst=30),
        description="New chats (join_chat without chat_id, POST /api/chats), per account.",
    )
    message: RateLimit = Field(
        default=RateLimit(per_minute=60, burst=30),
        description="send_message and POST .../messages, per account.",
    )
    decision: RateLimit = Field(
        default=RateLimit(per_minute=120, burst=60),
        description="resume_decisions, POST .../decisions and wallet_changed, per account.",
    )
    join: RateLimit = Field(
        default=RateLimit(per_minute=240, burst=120),
        description="join_chat (each replays events), per account.",
    )


class LimitsSettings(_Section):
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="Largest HTTP body or Socket.IO message that is parsed."
    )
    max_depth: int = Field(default=32, ge=2, le=256, description="Deepest JSON nesting accepted.")
    max_string_chars: int = Field(default=262_144, ge=64, description="Longest JSON string, as sent.")
    max_number_chars: int = Field(default=100, ge=20, le=4000, description="Longest JSON number, as sent.")
    max_outgoing_bytes: int = Field(
        default=8_388_608, ge=65_536,
        description="Most a connection may have queued for sending; a client that does not read is disconnected.",
    )
    max_events_in_flight: int = Field(
        default=16, ge=1, description="Socket.IO events of one connection handled at once; more are rate_limited."
    )
    replay_batch: int = Field(default=256, ge=1, description="Events read from the log at a time during a replay.")
    sse_queue: int = Field(
        default=4096, ge=16,
        description="Live events an SSE stream may fall behind before it is ended (reconnect resumes).",
    )
    rate: RateLimitSettings = Field(default_factory=RateLimitSettings)

class StoreSettings(_Section):
    url: str | None = Field(
        default=None,
        description="Postgres for the store, the event log, settlements, the ledger and LangGraph checkpoints "
        "(postgresql://user:password@host:5432/db); none: SQLite files under data_dir.",
    )
    pool_size: int = Field(default=10, ge=1, le=200, description="Most Postgres connections of each pool.")

    @field_validator("url")
    @classmethod
    def _postgres(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (leave it unset for SQLite under data_dir)")
        return value or None


def default_workers() -> int:
    """``server.workers`` when unset: the cores this process may run on, minus one for the serving
    process, at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


class Settings(BaseSettings):
    """Everything Lunark can be configured with."""

    model_config = SettingsConfigDict(env_prefix="LUNARK_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(default=Path(".lunark"), description="Where the SQLite databases live.")
    model: ModelSettings = Field(default_factory=ModelSettings)
    chain: ChainSettings = Field(default_factory=ChainSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
    signer: SignerSettings = Field(default_factory=SignerSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)

    store: StoreSettings = Field(default_factory=StoreSettings)
    plugins: bool = Field(default=True, description="Load tools from the lunark.tools entry points.")
    mcp: McpSettings = Field(default_factory=McpSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get()
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path is not None:
            if path.suffix == ".toml":
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
            else:
                sources.append(JsonConfigSettingsSource(settings_cls, json_file=path))
        return tuple(sources)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Build settings from a file (TOML or JSON), the environment and ``overrides``.

        Raises ``ConfigError`` with every problem listed.
        """
        path = Path(config_file) if config_file else None
        if path is not None and not path.is_file():
            raise ConfigError(f"Configuration file {path} does not exist.")
        token = _config_file.set(path)
        try:
            return cls(**overrides)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise ConfigError(f"Invalid configuration: {problems}") from None
        except SettingsError as exc:  # e.g. an environment variable that is not valid JSON
            raise ConfigError(f"Invalid configuration: {exc}: {exc.__cause__}") from exc
        except (ValueError, TypeError) as exc:
            if path is None or isinstance(exc, ConfigError):
                raise
            # The file itself is malformed (bad TOML or JSON, or not a table at the top).
            raise ConfigError(f"Configuration file {path} could not be read: {exc}", file=str(path)) from exc
        finally:
            _config_file.reset(token)

    def turn_workers(self, *, agent_in_code: bool = False) -> int:
        """How many turn worker processes ``lunark serve`` starts: ``server.workers``, or when it is
        unset, ``default_workers()`` on one machine (SQLite). Unset, it is 0 with ``store.url`` (a
        cluster's processes say what they are: ``--workers N``, ``--relay-only`` or none) and when
        ``agent_in_code`` (a model, tools or environment given in code live in the serving process)."""
        if self.server.workers is not None:
            return self.server.workers
        if agent_in_code or self.store.url:
            return 0
        return default_workers()

    def network_registry(self) -> NetworkRegistry:
        """Built-in networks with the configured additions and overrides."""
        registry = NetworkRegistry.default().with_overrides(self.chain.networks)
        try:  # fail at start-up, not at the first chat
            default = registry.get(self.chain.default_network)
        except UnknownNetwork as exc:
            raise ConfigError(
                f"chain.default_network: {exc.message}", suggestions=exc.suggestions
            ) from exc
        if self.chain.rpc_url:
            registry = registry.with_overrides(
                [NetworkConfig(chain_id=default.chain_id, rpc_urls=[self.chain.rpc_url])]
            )
        return registry
