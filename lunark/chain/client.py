"""Async, typed access to one EVM network: balances, tokens, transfer preparation, broadcast.

Every failure comes out as a ``lunark.errors`` type with structured fields:
an unreachable node is ``RpcUnavailable``, a node on another chain is
``WrongNetwork``, a transfer that would revert is ``SimulationFailed`` (with
the decoded revert reason), one the sender cannot pay is ``InsufficientFunds``.

    async with ChainClient(registry.get("anvil")) as client:
        balance = await client.balance(alice, "TUSD")
        prepared = await client.prepare_transfer(alice, bob, "1.5", "TUSD")
        tx_hash = await client.send_raw_transaction(await signer.sign_transaction(prepared))

``ChainClient`` is one class put together by concern: the connection and its error translation
(``lunark.chain.connection``), balances and token metadata (``lunark.chain.reads``), transfer
preparation and fees (``lunark.chain.prepare``), the ``eth_simulateV1`` preview
(``lunark.chain.simulate``); broadcast, nonces and the reads settlement, tracking and the recipient
checks make are here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from types import TracebackType
from typing import Any, Self

from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3.exceptions import TransactionNotFound
from web3.types import LogReceipt

from lunark.chain.decoded import DecodedTx, fetch_transaction
from lunark.chain.prepare import DEFAULT_PRIORITY_FEE, TransferPreparation
from lunark.chain.preview import TRANSFER_TOPIC
from lunark.chain.simulate import TransferSimulation
from lunark.chain.tracker import track_transaction
from lunark.chain.types import TransferIntent, TxProgress
from lunark.chain.validation import parse_address
from lunark.errors import ChainError, InvalidInput
from lunark.networks import Network, NetworkRegistry

__all__ = ["DEFAULT_PRIORITY_FEE", "ChainClient", "ChainClients"]


class ChainClient(TransferPreparation, TransferSimulation):
    """Async web3 access to one network.

    Reads verify first that the node serves the network's chain id (once, then
    cached). ``close()`` closes the HTTP session, including that of an injected
    ``w3``; use ``async with`` to make sure it happens.
    """

    # -- nonces and broadcast ------------------------------------------------------------------

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

    # -- reads for settlement, tracking and the recipient checks ------------------------------------
    # Web3's own exceptions pass through these (no translation, no chain-id check): the settlement
    # driver tells a node that is away (retried) from one that answers "not found" by them, and the
    # recipient checks tell a node that caps eth_getLogs (a partial check) from one that is away.

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
        (``lunark.chain.decoded.fetch_transaction``: ``ChainError`` if it does not). One read ahead
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

    async def code_at(self, address: str) -> bytes:
        """The code at ``address`` at the latest block (empty for an account without code)."""
        return bytes(await self.w3.eth.get_code(to_checksum_address(address)))

    async def token_transfer_logs(
        self, owner: str, tokens: Sequence[str], blocks: int
    ) -> tuple[list[LogReceipt], list[LogReceipt]]:
        """``(sent, received)``: the ERC-20 ``Transfer`` logs of ``tokens`` from and to ``owner`` in
        the last ``blocks`` blocks (one ``eth_blockNumber``, then two ``eth_getLogs`` at once)."""
        w3 = self.w3
        latest = await w3.eth.block_number
        topic = "0x" + "0" * 24 + owner.lower().removeprefix("0x")
        base: dict[str, Any] = {
            "fromBlock": max(0, latest - blocks + 1), "toBlock": latest,
            "address": [to_checksum_address(t) for t in tokens],
        }
        sent, received = await asyncio.gather(
            w3.eth.get_logs({**base, "topics": [TRANSFER_TOPIC, topic]}),  # type: ignore[typeddict-item]
            w3.eth.get_logs({**base, "topics": [TRANSFER_TOPIC, None, topic]}),  # type: ignore[typeddict-item]
        )
        return list(sent), list(received)


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


_READ_AHEAD = 64
"""At most this many transactions read ahead and not asked for yet, per network."""


def _forget(read: asyncio.Future[DecodedTx]) -> None:
    if not read.done():
        read.cancel()
