"""Async, typed access to one EVM network: balances, tokens, transfer preparation, broadcast.

Every failure comes out as a ``lunark.errors`` type with structured fields:
an unreachable node is ``RpcUnavailable``, a node on another chain is
``WrongNetwork``, a transfer that would revert is ``SimulationFailed`` (with
the decoded revert reason), one the sender cannot pay is ``InsufficientFunds``.

    async with ChainClient(registry.get("anvil")) as client:
        balance = await client.balance(alice, "TUSD")
        prepared = await client.prepare_transfer(alice, bob, "1.5", "TUSD")
        tx_hash = await client.send_raw_transaction(await signer.sign_transaction(prepared))
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from decimal import Decimal
from types import TracebackType
from typing import Any, Final, Literal, NoReturn, Self
from urllib.parse import urlsplit

import aiohttp
from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_typing import ABIFunction, ChecksumAddress, HexStr
from eth_utils.abi import function_abi_to_4byte_selector
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.exceptions import (
    ContractLogicError,
    ContractPanicError,
    RequestTimedOut,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.providers.persistent import PersistentConnectionProvider
from web3.providers.rpc.utils import REQUEST_RETRY_ALLOWLIST, ExceptionRetryConfiguration
from web3.types import BlockIdentifier, RPCEndpoint, TxParams, Wei

from lunark.chain.intent import DecodedTx, fetch_transaction
from lunark.chain.preview import NATIVE, BalancePreview, changes_for, net_deltas, transfers_in_logs
from lunark.chain.tokens import ERC20_ABI, ERC20_DECIMALS, ERC20_NAME, ERC20_SYMBOL
from lunark.chain.tracker import track_transaction
from lunark.chain.types import Balance, PreparedTx, TransferIntent, TxProgress
from lunark.chain.validation import MAX_UINT256, format_amount, parse_address, parse_amount
from lunark.errors import (
    ChainError,
    ConfigError,
    InsufficientFunds,
    InvalidAmount,
    InvalidInput,
    RpcUnavailable,
    SimulationFailed,
    UnknownToken,
    WrongNetwork,
)
from lunark.networks import Network, NetworkRegistry, Token

__all__ = ["DEFAULT_PRIORITY_FEE", "ChainClient", "ChainClients"]

DEFAULT_PRIORITY_FEE: Final = 10**9
"""Tip (1 gwei) used when the node cannot suggest one."""

_ERROR_STRING_SELECTOR: Final = "0x08c379a0"  # Error(string)
_MAX_SYMBOL_CHARS: Final = 32
_MAX_NAME_CHARS: Final = 64
_MAX_DECIMALS: Final = 77  # 10**78 > 2**256: more decimals than this cannot be a real token

# eth_sendRawTransaction is not retried: a retry after a lost response only
# produces "already known" or "nonce too low" for a transaction that went out.
_RETRY_METHODS: Final = [m for m in REQUEST_RETRY_ALLOWLIST if m != "eth_sendRawTransaction"]


class ChainClient:
    """Async web3 access to one network.

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

    # -- reads ---------------------------------------------------------------------------------

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

    async def native_balance(self, address: str) -> Balance:
        """``address``'s balance of the network's native currency."""
        owner = parse_address(address)
        await self.ensure_chain()
        with self._translate(f"reading the {self.network.symbol} balance of {owner}"):
            raw = await self.w3.eth.get_balance(owner)
        return Balance(
            address=owner,
            chain_id=self.network.chain_id,
            symbol=self.network.symbol,
            decimals=self.network.decimals,
            raw=int(raw),
        )

    async def resolve_token(self, token: str) -> Token:
        """The ERC-20 token named by a symbol known on this network or by a contract address.

        Decimals and symbol always come from the contract (a misconfigured
        decimals value would scale every amount wrongly); configuration only
        maps symbols to addresses and supplies a fallback name. Results are
        cached per address. Raises ``UnknownToken`` for an unknown symbol (listing
        the known ones), an address without code or one that does not answer
        ``decimals()``.
        """
        if not isinstance(token, str) or not token.strip():
            raise UnknownToken("No token given; name a token symbol or contract address.")
        query = token.strip()
        if self.network.is_native(query):
            raise UnknownToken(
                f"{query} is the native currency of {self.network.display_name}, not an ERC-20 "
                "token; ask for it without a token.",
                token=query,
                chain_id=self.network.chain_id,
            )
        configured: Token | None
        if query[:2].lower() == "0x":
            address = parse_address(query, field="token")
            configured = next((t for t in self.network.tokens if t.address == address), None)
        else:
            configured = self.network.token(query)
            address = configured.address
        cached = self._tokens.get(address)
        if cached is not None:
            return cached
        await self.ensure_chain()
        resolved = await self._read_token(address, configured)
        self._tokens[address] = resolved
        return resolved

    async def token_balance(self, address: str, token: str) -> Balance:
        """``address``'s balance of ``token`` (symbol or contract address)."""
        owner = parse_address(address)
        meta = await self.resolve_token(token)
        raw = await self._raw_token_balance(meta, owner)
        return Balance(
            address=owner,
            chain_id=self.network.chain_id,
            symbol=meta.symbol,
            decimals=meta.decimals,
            raw=raw,
            token=meta.address,
        )

    async def balance(self, address: str, token: str | None = None) -> Balance:
        """The native balance when ``token`` is None or the native symbol (any case), else
        the balance of ``token``."""
        if token is None or self.network.is_native(token):
            return await self.native_balance(address)
        return await self.token_balance(address, token)

    # -- transfers -----------------------------------------------------------------------------

    async def build_intent(
        self,
        sender: str,
        recipient: str,
        amount: str | int | Decimal,
        token: str | None = None,
    ) -> TransferIntent:
        """Validate a transfer request and state it exactly, in smallest units.

        ``amount`` is in whole tokens (``"1.5"``), with the token's decimals.
        Refuses sending to oneself and sending tokens to the token contract
        itself, both nearly always mistakes.
        """
        from_address = parse_address(sender, field="sender")
        to_address = parse_address(recipient, field="recipient")
        if from_address == to_address:
            raise InvalidInput(
                f"The recipient {to_address} is the sender itself; sending to yourself only "
                "costs a fee. Check the recipient address.",
                field="recipient",
                value=to_address,
            )
        if token is None or self.network.is_native(token):
            return TransferIntent(
                chain_id=self.network.chain_id,
                sender=from_address,
                recipient=to_address,
                amount=parse_amount(amount, self.network.decimals, symbol=self.network.symbol),
                symbol=self.network.symbol,
                decimals=self.network.decimals,
            )
        meta = await self.resolve_token(token)
        if to_address == meta.address:
            raise InvalidInput(
                f"The recipient {to_address} is the {meta.symbol} token contract itself; tokens "
                "sent there are usually lost for good. Check the recipient address.",
                field="recipient",
                value=to_address,
            )
        return TransferIntent(
            chain_id=self.network.chain_id,
            sender=from_address,
            recipient=to_address,
            amount=parse_amount(amount, meta.decimals, symbol=meta.symbol),
            symbol=meta.symbol,
            decimals=meta.decimals,
            token=meta.address,
        )

    async def prepare(self, intent: TransferIntent, *, nonce_at_least: int | None = None) -> PreparedTx:
        """Build the unsigned EIP-1559 transaction for ``intent``, after checking it can succeed.

        Checks balances (``InsufficientFunds``, counting the worst-case fee),
        simulates with ``eth_call`` at ``pending`` (``SimulationFailed`` with the
        decoded revert reason), then sets gas (estimate plus headroom), the
        pending nonce and fees (``2 * base fee + tip``). ``nonce_at_least``: the
        nonce after the transactions already prepared ahead of this one (several
        in one approval take successive nonces, ``lunark.nonces``).
        """
        await self.ensure_chain()
        network = self.network
        if intent.chain_id != network.chain_id:
            raise WrongNetwork(
                f"This transfer is for chain {intent.chain_id}, but this client is on "
                f"{network.display_name} (chain {network.chain_id}); prepare it on its own "
                "network.",
                expected=network.chain_id,
                actual=intent.chain_id,
            )
        if not 0 < intent.amount <= MAX_UINT256:
            raise InvalidAmount(
                f"Transfer amount {intent.amount} is out of range.", value=str(intent.amount)
            )
        sender = intent.sender
        native = network.symbol

        with self._translate(f"reading the {native} balance of {sender}"):
            native_raw = int(await self.w3.eth.get_balance(sender, "pending"))
        if intent.token is not None:
            token = Token(symbol=intent.symbol, address=intent.token, decimals=intent.decimals)
            token_raw = await self._raw_token_balance(token, sender, block="pending")
            if token_raw < intent.amount:
                raise InsufficientFunds(
                    f"{sender} holds {self._fmt(token_raw, intent)} but the transfer needs "
                    f"{self._fmt(intent.amount, intent)}.",
                    needed=intent.amount,
                    available=token_raw,
                    symbol=intent.symbol,
                )
        elif native_raw < intent.amount:
            raise InsufficientFunds(
                f"{sender} holds {self._fmt_native(native_raw)} but the transfer needs "
                f"{self._fmt_native(intent.amount)} plus the network fee.",
                needed=intent.amount,
                available=native_raw,
                symbol=native,
            )

        tx: TxParams = {
            "from": sender,
            "to": intent.tx_to,
            "value": Wei(intent.tx_value),
            "data": intent.tx_data,
        }
        with self._translate("simulating the transfer"):
            try:
                await self.w3.eth.call(tx, "pending", ccip_read_enabled=False)
                estimate = await self.w3.eth.estimate_gas(tx, "pending")
            except ContractLogicError as exc:
                self._raise_simulation_failed(exc, intent)
        gas = -(-estimate * (100 + self.gas_headroom_percent) // 100)

        with self._translate("reading the nonce and fees"):
            nonce = max(int(await self.w3.eth.get_transaction_count(sender, "pending")), nonce_at_least or 0)
            block = await self.w3.eth.get_block("latest")
            priority_fee = await self._priority_fee()
        base_fee = block.get("baseFeePerGas")
        if base_fee is None:
            raise ChainError(
                f"{network.display_name} reports no base fee, so it does not support EIP-1559 "
                "transactions, which Lunark prepares.",
                chain_id=network.chain_id,
            )
        # The node's suggestion is bounded by the network's configured ceiling: one high-tip
        # transaction in a recent block must not make a plain transfer's card ask for a fortune.
        ceiling = network.max_fee_per_gas
        if int(base_fee) > ceiling:
            raise ChainError(
                f"The {network.display_name} base fee is now {_gwei(int(base_fee))} gwei, above this "
                f"server's ceiling of {_gwei(ceiling)} gwei per gas (max_fee_per_gas_gwei of the network "
                "in chain.networks); nothing was prepared. Try again when fees are lower.",
                chain_id=network.chain_id, base_fee=int(base_fee), ceiling=ceiling,
            )
        priority_fee = min(priority_fee, ceiling - int(base_fee))
        max_fee_per_gas = min(2 * int(base_fee) + priority_fee, ceiling)

        worst_fee = gas * max_fee_per_gas
        if intent.token is None and native_raw < intent.amount + worst_fee:
            needed = intent.amount + worst_fee
            raise InsufficientFunds(
                f"{sender} holds {self._fmt_native(native_raw)}, but sending "
                f"{self._fmt_native(intent.amount)} needs up to {self._fmt_native(needed)} "
                f"including up to {self._fmt_native(worst_fee)} in network fees.",
                needed=needed,
                available=native_raw,
                symbol=native,
            )
        if intent.token is not None and native_raw < worst_fee:
            raise InsufficientFunds(
                f"{sender} holds {self._fmt_native(native_raw)}, not enough for the network fee "
                f"(up to {self._fmt_native(worst_fee)}) of sending "
                f"{self._fmt(intent.amount, intent)}.",
                needed=worst_fee,
                available=native_raw,
                symbol=native,
            )
        return PreparedTx(
            intent=intent,
            nonce=nonce,
            gas=gas,
            max_fee_per_gas=max_fee_per_gas,
            max_priority_fee_per_gas=priority_fee,
        )

    async def prepare_transfer(
        self,
        sender: str,
        recipient: str,
        amount: str | int | Decimal,
        token: str | None = None,
    ) -> PreparedTx:
        """``build_intent`` then ``prepare``."""
        return await self.prepare(await self.build_intent(sender, recipient, amount, token))

    async def pending_nonce(self, address: str) -> int:
        """The next nonce of ``address`` the node would accept and mine: transactions waiting in its
        pool count, one waiting behind a gap does not."""
        owner = parse_address(address)
        await self.ensure_chain()
        with self._translate(f"reading the nonce of {owner}"):
            return int(await self.w3.eth.get_transaction_count(owner, "pending"))

    async def send_raw_transaction(self, raw: bytes | str) -> str:
        """Broadcast a signed transaction; returns its ``0x`` hash.

        A refusal by the node (nonce too low, underpriced, ...) is a ``ChainError``
        carrying the node's message as ``node_message``.
        """
        try:
            payload = HexBytes(raw)
        except (ValueError, TypeError) as exc:
            raise InvalidInput("The signed transaction is not hex or bytes.", field="raw") from exc
        if not payload:
            raise InvalidInput("The signed transaction is empty.", field="raw")
        await self.ensure_chain()
        with self._translate("broadcasting the transaction"):
            tx_hash = await self.w3.eth.send_raw_transaction(bytes(payload))
        return tx_hash.to_0x_hex()

    # -- reads for settlement and tracking --------------------------------------------------------
    # Web3's own exceptions pass through these (no translation, no chain-id check): the settlement
    # driver tells a node that is away (retried) from one that answers "not found" by them.

    async def block_number(self) -> int:
        """The node's latest block number."""
        return int(await self.w3.eth.block_number)

    async def knows_transaction(self, tx_hash: str) -> bool:
        """Whether the node has the transaction (pending or mined)."""
        try:
            await self.w3.eth.get_transaction(HexStr(tx_hash))
        except TransactionNotFound:
            return False
        return True

    async def mined_block(self, tx_hash: str) -> int | None:
        """The block the transaction is mined in; None while pending or unknown."""
        try:
            mined = (await self.w3.eth.get_transaction(HexStr(tx_hash))).get("blockNumber")
        except TransactionNotFound:
            return None
        return None if mined is None else int(mined)

    async def transaction(self, tx_hash: str, *, timeout: float = 10.0) -> DecodedTx:
        """The transaction, decoded, waiting up to ``timeout`` seconds for the node to see it
        (``lunark.chain.intent.fetch_transaction``: ``ChainError`` if it does not). One read ahead
        (``read_ahead``) is used when it found it."""
        early = self._early.pop(str(tx_hash).lower(), None)
        if early is not None:
            with suppress(ChainError):  # not seen then: waited for below, as without it
                return await early
        return await fetch_transaction(self.w3, tx_hash, timeout=timeout)

    def read_ahead(self, tx_hash: str) -> None:
        """Start reading a transaction ``transaction`` is about to be asked for (a wallet's hash,
        while its approval's settlement is being written), so that the read is not in line after
        the write. Unused reads are dropped, oldest first, beyond a few."""
        key = str(tx_hash).lower()
        if key in self._early:
            return
        while len(self._early) >= _READ_AHEAD:
            _forget(self._early.pop(next(iter(self._early))))
        read = asyncio.ensure_future(fetch_transaction(self.w3, tx_hash, timeout=0))
        read.add_done_callback(lambda done: None if done.cancelled() else done.exception())
        self._early[key] = read

    def track(
        self,
        tx_hash: str,
        *,
        sender: str,
        nonce: int,
        intent: TransferIntent | None = None,
        first_block: int | None = None,
        poll_interval: float = 0.25,
        timeout: float = 120.0,
    ) -> AsyncIterator[TxProgress]:
        """The transaction's progress on this network (``lunark.chain.tracker.track_transaction``)."""
        return track_transaction(self.w3, self.network, tx_hash, sender=sender, nonce=nonce, intent=intent,
                                 first_block=first_block, poll_interval=poll_interval, timeout=timeout)

    async def preview(
        self, prepared: PreparedTx, *, block: int | None = None, queued: bool = False, movements_only: bool = False
    ) -> BalancePreview:
        """Simulate ``prepared`` exactly (``eth_simulateV1``) at the latest block (or on top of
        ``block``, for a transaction already mined in the next one): the balance changes
        of the user and the recipient, every party's movements, gas used and the worst-case fee.
        ``queued``: its nonce follows others of the same approval not sent yet, which a validating
        node would refuse now; it is simulated at the account's next nonce instead (what a transfer
        moves does not depend on its nonce), and again at its own when it is signed.

        A node without ``eth_simulateV1``, or one that refuses the simulation, gives a preview with
        ``simulated`` False and the reason: the card then says there is none (never a guess). A
        transaction the simulation says reverts raises ``SimulationFailed``.

        ``movements_only``: what the re-check at signing compares (who moves what, whether the
        recipient has code), simulated on the latest block in one round trip: no ``before``
        balances, so no ``changes``.
        """
        intent = prepared.intent
        await self.ensure_chain()
        if block is None and not movements_only:
            with self._translate("reading the latest block"):
                block = int(await self.w3.eth.block_number)
        at: Literal["latest"] | int = "latest" if block is None else block
        call = {
            "from": intent.sender, "to": intent.tx_to, "value": hex(intent.tx_value), "data": intent.tx_data,
            "gas": hex(prepared.gas), "maxFeePerGas": hex(prepared.max_fee_per_gas),
            "maxPriorityFeePerGas": hex(prepared.max_priority_fee_per_gas),
            **({} if queued else {"nonce": hex(prepared.nonce)}),
        }
        params = [{"blockStateCalls": [{"calls": [call]}], "traceTransfers": True, "validation": True},
                  at if isinstance(at, str) else hex(at)]

        async def simulate() -> tuple[Any, str | None]:
            """The node's answer, or why there is none (a node that is away is not a reason: it raises)."""
            try:
                with self._translate("simulating the transfer"):
                    return await self.w3.manager.coro_request(RPCEndpoint("eth_simulateV1"), params), None
            except RpcUnavailable:
                raise
            except ChainError as exc:
                if exc.details.get("rpc_code") == -32601:
                    return None, "this node does not support eth_simulateV1"
                return None, f"the node could not simulate it ({exc.details.get('node_message') or exc.message})"

        async def has_code() -> bool:
            with self._translate(f"reading the code at {intent.recipient}"):
                return bool(await self.w3.eth.get_code(intent.recipient, at))

        # Both at once: the card waits for the slower of the two, not their sum.
        (blocks, why), code = await asyncio.gather(simulate(), has_code())
        if why is not None:
            return BalancePreview(simulated=False, max_fee=prepared.max_fee, reason=why)
        try:
            result = blocks[0]["calls"][0]
            status = int(result["status"], 16) if isinstance(result["status"], str) else int(result["status"])
            gas_used = result["gasUsed"]
            gas_used = int(gas_used, 16) if isinstance(gas_used, str) else int(gas_used)
            movements = transfers_in_logs(result.get("logs") or ())
        except (LookupError, TypeError, ValueError):
            return BalancePreview(simulated=False, max_fee=prepared.max_fee,
                                  reason="the node's eth_simulateV1 answer could not be read")
        if status != 1:
            raw = result.get("returnData") or "0x"
            reason, data = _revert_reason(ContractLogicError(str((result.get("error") or {}).get("message") or ""),
                                                             data=raw if len(raw) > 2 else None))
            raise SimulationFailed(
                f"Sending {self._fmt(intent.amount, intent)} to {intent.recipient} would fail on "
                f"{self.network.display_name}: {reason or 'the transaction reverts without a reason'}. "
                "Nothing was sent.",
                reason=reason, revert_data=data, chain_id=self.network.chain_id,
            )
        deltas = net_deltas(movements)
        moved = tuple(sorted((a, s, d) for (a, s), d in deltas.items()))
        if movements_only:
            return BalancePreview(simulated=True, gas_used=gas_used, max_fee=prepared.max_fee, moved=moved,
                                  recipient_has_code=bool(code))
        assert block is not None  # read above
        number = block
        parties = [intent.sender, intent.recipient]
        shown = [key for key in deltas if key[0] in parties]
        units: dict[str, tuple[str, int]] = {NATIVE: (self.network.symbol, self.network.decimals)}
        for asset in {asset for _, asset in deltas} - {NATIVE}:
            try:
                token = await self.resolve_token(asset)
                units[asset] = (token.symbol, token.decimals)
            except UnknownToken:
                units[asset] = (asset[:10], 0)  # not an ERC-20 that says its decimals: base units, as logged

        async def before(key: tuple[ChecksumAddress, str]) -> int:
            owner, asset = key
            if asset == NATIVE:
                with self._translate(f"reading the {self.network.symbol} balance of {owner}"):
                    return int(await self.w3.eth.get_balance(owner, number))
            token = Token(symbol=units[asset][0], address=to_checksum_address(asset), decimals=units[asset][1])
            return await self._raw_token_balance(token, owner, block=number)

        balances = await asyncio.gather(*(before(key) for key in shown))
        preview = BalancePreview(
            simulated=True, gas_used=gas_used, max_fee=prepared.max_fee, block=number,
            changes=changes_for(parties, {k: deltas[k] for k in shown}, dict(zip(shown, balances, strict=True)),
                                units),
            moved=moved,
            recipient_has_code=bool(code),
        )
        self._units.update(units)
        return preview

    def units(self, asset: str) -> tuple[str, int] | None:
        """``(symbol, decimals)`` of an asset a preview met (``"native"`` or a token address)."""
        if asset == NATIVE:
            return self.network.symbol, self.network.decimals
        return self._units.get(asset)

    # -- internals -----------------------------------------------------------------------------

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
            reason, data = _revert_reason(exc)
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

    def _raise_simulation_failed(self, exc: ContractLogicError, intent: TransferIntent) -> NoReturn:
        reason, data = _revert_reason(exc)
        raise SimulationFailed(
            f"Sending {self._fmt(intent.amount, intent)} to {intent.recipient} would fail on "
            f"{self.network.display_name}: {reason or 'the transaction reverts without a reason'}. "
            "Nothing was sent.",
            reason=reason,
            revert_data=data,
            chain_id=self.network.chain_id,
        ) from exc

    async def _priority_fee(self) -> int:
        try:
            return int(await self.w3.eth.max_priority_fee)
        except Web3RPCError:
            # Neither eth_maxPriorityFeePerGas nor eth_feeHistory: a fixed tip still gets included.
            return DEFAULT_PRIORITY_FEE

    async def _raw_token_balance(
        self, token: Token, owner: ChecksumAddress, *, block: BlockIdentifier = "latest"
    ) -> int:
        contract = self.w3.eth.contract(address=token.address, abi=ERC20_ABI)
        with self._translate(f"reading the {token.symbol} balance of {owner}"):
            raw = await contract.functions.balanceOf(owner).call(
                block_identifier=block, ccip_read_enabled=False
            )
        return int(raw)

    async def _static_call(self, address: ChecksumAddress, fn: ABIFunction) -> bytes | None:
        """Raw return data of a no-argument view function; None when it reverts."""
        selector = HexStr("0x" + function_abi_to_4byte_selector(fn).hex())
        with self._translate(f"calling {fn['name']}() on {address}"):
            try:
                result = await self.w3.eth.call(
                    {"to": address, "data": selector}, "latest", ccip_read_enabled=False
                )
            except ContractLogicError:
                return None  # the contract does not implement it
        return bytes(result)

    async def _read_token(self, address: ChecksumAddress, configured: Token | None) -> Token:
        network = self.network
        label = f"{address} (configured as {configured.symbol})" if configured else address
        with self._translate(f"reading the code at {address}"):
            code = await self.w3.eth.get_code(address)
        if not code:
            raise UnknownToken(
                f"There is no contract at {label} on {network.display_name}; check the token "
                "address and the network.",
                token=address,
                chain_id=network.chain_id,
            )
        data = await self._static_call(address, ERC20_DECIMALS)
        decimals = int.from_bytes(data[:32], "big") if data and len(data) >= 32 else None
        if decimals is None or decimals > _MAX_DECIMALS:
            raise UnknownToken(
                f"The contract at {label} on {network.display_name} does not answer decimals() "
                "like an ERC-20 token; it cannot be transferred as one.",
                token=address,
                chain_id=network.chain_id,
            )
        symbol = _clean_text(await self._static_call(address, ERC20_SYMBOL), _MAX_SYMBOL_CHARS)
        name = _clean_text(await self._static_call(address, ERC20_NAME), _MAX_NAME_CHARS)
        return Token(
            symbol=symbol or (configured.symbol if configured else address[:10]),
            address=address,
            decimals=decimals,
            name=name or (configured.name if configured else None),
        )

    def _fmt(self, raw: int, intent: TransferIntent) -> str:
        return f"{format_amount(raw, intent.decimals)} {intent.symbol}"

    def _fmt_native(self, raw: int) -> str:
        return f"{format_amount(raw, self.network.decimals)} {self.network.symbol}"


class ChainClients:
    """One ChainClient per network, made on first use."""

    registry: NetworkRegistry

    def __init__(
        self,
        registry: NetworkRegistry,
        *,
        gas_headroom_percent: int = 20,
        request_timeout: float = 10.0,
    ) -> None:
        self.registry = registry
        self._options: dict[str, Any] = {
            "gas_headroom_percent": gas_headroom_percent,
            "request_timeout": request_timeout,
        }
        self._clients: dict[Network, ChainClient] = {}

    def get(self, network: Network | int | str) -> ChainClient:
        """The client for a network given by value, chain id, name or alias.

        Raises ``UnknownNetwork`` when the registry does not know it.
        """
        resolved = network if isinstance(network, Network) else self.registry.get(network)
        client = self._clients.get(resolved)
        if client is None:
            client = self._clients[resolved] = ChainClient(resolved, **self._options)
        return client

    async def close(self) -> None:
        """Close every client made so far."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _gwei(wei: int) -> str:
    return format_amount(wei, 9)


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


def _revert_reason(exc: ContractLogicError) -> tuple[str | None, str | None]:
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


def _clean_text(data: bytes | None, limit: int) -> str | None:
    """A token's symbol or name as safe display text (ABI string or bytes32), or None.

    Token metadata is chosen by whoever deployed the contract and ends up in
    the model's context and the user's screen: keep it short and printable.
    """
    if not data:
        return None
    text: str
    try:
        (decoded,) = abi_decode(["string"], data)
        text = str(decoded)
    except (DecodingError, UnicodeDecodeError, OverflowError):
        if len(data) != 32:
            return None
        text = data.rstrip(b"\0").decode("utf-8", errors="replace")  # bytes32, e.g. old MKR
    cleaned = "".join(c for c in text if unicodedata.category(c)[0] not in "CZ" or c == " ")
    cleaned = " ".join(cleaned.split())[:limit]
    return cleaned or None


_READ_AHEAD = 64
"""At most this many transactions read ahead and not asked for yet, per network."""


def _forget(read: asyncio.Future[DecodedTx]) -> None:
    if not read.done():
        read.cancel()
