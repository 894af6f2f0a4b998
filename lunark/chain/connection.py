"""One connection to one EVM node, with every web3 and transport failure said as a Lunark error.

``NodeConnection`` is the base of ``lunark.chain.client.ChainClient``: it makes the provider
(retries, timeout, no CCIP-read), checks once that the node serves the network's chain id, and
turns failures inside ``_translate`` blocks into ``RpcUnavailable`` (the node is away),
``ChainError`` (it answered with an error, or a contract reverted: ``revert_reason`` decodes
why) with structured fields.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, Final, NoReturn, Self
from urllib.parse import urlsplit

import aiohttp
from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_typing import ChecksumAddress
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import (
    ContractLogicError,
    ContractPanicError,
    RequestTimedOut,
    Web3Exception,
    Web3RPCError,
)
from web3.providers.persistent import PersistentConnectionProvider
from web3.providers.rpc.utils import REQUEST_RETRY_ALLOWLIST, ExceptionRetryConfiguration

from lunark.chain.decoded import DecodedTx
from lunark.chain.types import TransferIntent
from lunark.chain.validation import format_amount
from lunark.errors import ChainError, ConfigError, RpcUnavailable, WrongNetwork
from lunark.networks import Network, Token

__all__ = ["NodeConnection", "revert_reason"]

_ERROR_STRING_SELECTOR: Final = "0x08c379a0"  # Error(string)

# eth_sendRawTransaction is not retried: a retry after a lost response only
# produces "already known" or "nonce too low" for a transaction that went out.
_RETRY_METHODS: Final = [m for m in REQUEST_RETRY_ALLOWLIST if m != "eth_sendRawTransaction"]


class NodeConnection:
    """The node of one network, its failures translated (``_translate``); what ``ChainClient`` reads
    and writes through.

    Reads verify first that the node serves the network's chain id (once, then
    cached). ``close()`` closes the HTTP session, including that of an injected
    ``w3``; use ``async with`` to make sure it happens.
    """

    network: Network
    w3: AsyncWeb3[Any]

    def __init__(
        self,
        network: Network,
        *,
        w3: AsyncWeb3[Any] | None = None,
        gas_headroom_percent: int = 20,
        request_timeout: float = 10.0,
    ) -> None:
        if gas_headroom_percent < 0:
            raise ConfigError(f"gas_headroom_percent must be >= 0, got {gas_headroom_percent}.")
        self.network = network
        self.gas_headroom_percent = gas_headroom_percent
        if w3 is None:
            provider = AsyncHTTPProvider(
                network.rpc_url,
                request_kwargs={"timeout": aiohttp.ClientTimeout(total=request_timeout)},
                exception_retry_configuration=ExceptionRetryConfiguration(
                    errors=(aiohttp.ClientError, TimeoutError),
                    retries=3,
                    backoff_factor=0.1,
                    method_allowlist=_RETRY_METHODS,
                ),
            )
            # CCIP-read (EIP-3668) would let any contract we call make us fetch URLs it chooses.
            provider.global_ccip_read_enabled = False
            w3 = AsyncWeb3(provider)
        self.w3 = w3
        self._chain_verified = False
        self._tokens: dict[ChecksumAddress, Token] = {}
        self._units: dict[str, tuple[str, int]] = {}
        self._early: dict[str, asyncio.Future[DecodedTx]] = {}
        """Transactions read ahead of ``transaction`` (``read_ahead``), by lowercase hash."""

    def __repr__(self) -> str:
        network = self.network
        return f"ChainClient({network.name!r}, chain_id={network.chain_id}, rpc={self._endpoint})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the provider's HTTP session (or persistent connection)."""
        provider = self.w3.provider
        if isinstance(provider, AsyncHTTPProvider | PersistentConnectionProvider):
            await provider.disconnect()

    async def ensure_chain(self) -> None:
        """Check once that the node serves ``network.chain_id``.

        Raises ``WrongNetwork`` when it serves another chain and ``RpcUnavailable``
        when it does not answer; only success is cached.
        """
        if self._chain_verified:
            return
        with self._translate("checking the chain id"):
            actual = await self.w3.eth.chain_id
        expected = self.network.chain_id
        if actual != expected:
            raise WrongNetwork(
                f"The RPC endpoint {self._endpoint} configured for {self.network.display_name} "
                f"serves chain {actual}, not chain {expected}; fix the network's RPC URL.",
                expected=expected,
                actual=actual,
            )
        self._chain_verified = True

    @property
    def _endpoint(self) -> str:
        # Scheme, host and port only: paths and user info often carry API keys.
        provider = self.w3.provider
        url = str(getattr(provider, "endpoint_uri", "") or "")
        if not url:
            return type(provider).__name__
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"

    def errors(self, action: str) -> AbstractContextManager[None]:
        """Web3 and transport failures inside the block as Lunark errors, for helpers that read the
        chain through this client (ENS resolution)."""
        return self._translate(action)

    @contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """Turn web3 and transport failures inside the block into Lunark errors."""
        network = self.network
        try:
            yield
        except ContractLogicError as exc:
            reason, data = revert_reason(exc)
            raise ChainError(
                f"A contract reverted while {action} on {network.display_name}: "
                f"{reason or 'no reason given'}.",
                reason=reason,
                revert_data=data,
                chain_id=network.chain_id,
            ) from exc
        except RequestTimedOut as exc:
            self._raise_unavailable(action, _node_message(exc), exc)
        except Web3RPCError as exc:
            message = _node_message(exc)
            raise ChainError(
                f"The {network.display_name} node returned an error while {action}: {message}",
                node_message=message,
                rpc_code=_node_code(exc),
                chain_id=network.chain_id,
            ) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._raise_unavailable(action, str(exc) or type(exc).__name__, exc)
        except Web3Exception as exc:
            raise ChainError(
                f"Unexpected answer from the {network.display_name} node while {action}: {exc}",
                chain_id=network.chain_id,
            ) from exc

    def _raise_unavailable(self, action: str, detail: str, exc: BaseException) -> NoReturn:
        raise RpcUnavailable(
            f"The {self.network.display_name} RPC endpoint {self._endpoint} did not answer while "
            f"{action} ({detail}). Check that the node is running and the RPC URL is right.",
            network=self.network.name,
            chain_id=self.network.chain_id,
            endpoint=self._endpoint,
        ) from exc

    def _fmt(self, raw: int, intent: TransferIntent) -> str:
        return f"{format_amount(raw, intent.decimals)} {intent.symbol}"

    def _fmt_native(self, raw: int) -> str:
        return f"{format_amount(raw, self.network.decimals)} {self.network.symbol}"


def _node_message(exc: Web3RPCError) -> str:
    response = exc.rpc_response or {}
    error = response.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return str(exc.message)


def _node_code(exc: Web3RPCError) -> int | None:
    response = exc.rpc_response or {}
    error = response.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) else None


def revert_reason(exc: ContractLogicError) -> tuple[str | None, str | None]:
    """``(reason, revert data)``; the reason is the ``Error(string)`` text, the panic
    description or a custom error's selector."""
    data = exc.data
    if isinstance(data, dict):  # some nodes nest it: {"data": "0x..."}
        nested = data.get("data")
        data = nested if isinstance(nested, str) else None
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        if data[:10] == _ERROR_STRING_SELECTOR:
            try:
                (text,) = abi_decode(["string"], bytes.fromhex(data[10:]))
            except (DecodingError, ValueError):
                return data[:10], data
            return str(text), data
        if isinstance(exc, ContractPanicError):
            return str(exc.message), data
        return data[:10], data  # a custom error: its selector identifies it
    message = (exc.message or "").strip()
    for prefix in ("execution reverted:", "execution reverted", "reverted:"):
        if message.lower().startswith(prefix):
            message = message[len(prefix) :].strip()
            break
    return message or None, data if isinstance(data, str) else None
