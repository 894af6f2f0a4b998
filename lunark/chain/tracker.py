"""Follow a broadcast transaction until it is confirmed, failed, replaced or dropped.

Tracked by hash and by ``(sender, nonce)``, so a transaction the wallet sped
up or cancelled (same nonce, another hash) shows as ``replaced`` instead of
hanging forever::

    async for update in track_transaction(w3, network, tx_hash, sender=addr, nonce=7):
        emit(update.to_dict())          # submitted, mined (1..N-1), confirmed

Statuses: ``submitted`` first; ``mined`` when a receipt appears and again for
each new confirmation count; ``confirmed`` after ``confirmations`` blocks
(final); ``failed`` for a receipt with status 0 (final); ``replaced`` when the
nonce was used by another transaction (final); ``dropped`` when nothing was
mined within ``timeout`` (final). A receipt that vanishes (reorg) sends the
transaction back to ``submitted``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from eth_typing import BlockNumber, HexStr
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3Exception
from web3.types import TxParams, TxReceipt, Wei

from lunark.chain.intent import _check_hash
from lunark.chain.types import TxStatus, TxUpdate
from lunark.errors import InvalidInput, RpcUnavailable
from lunark.networks import Network

__all__ = ["MAX_REPLACEMENT_SCAN_BLOCKS", "track_transaction"]

MAX_REPLACEMENT_SCAN_BLOCKS = 256
"""How many recent blocks are searched for the transaction that took a replaced nonce."""

_REVERT_REPLAY_TIMEOUT = 5.0
"""The revert reason is a nicety: give the replay this long, then say "reverted"."""

# A single failed poll (connection reset, node restarting, RPC error) must not
# end tracking; they are retried until the node has been silent for `timeout`.
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (Web3Exception, OSError, TimeoutError)

_REPLAY_GIVE_UP: tuple[type[BaseException], ...] = (*_TRANSIENT_ERRORS, KeyError)

_T = TypeVar("_T")


class _Poller:
    """One tracked transaction's RPC calls, remembering when the node last answered."""

    def __init__(self, w3: AsyncWeb3[Any], tx_hash: str, *, silence_limit: float) -> None:
        self.w3 = w3
        self.tx_hash = tx_hash
        self.silence_limit = silence_limit
        self._loop = asyncio.get_running_loop()
        self.last_ok = self._loop.time()
        self.last_error: BaseException | None = None

    def now(self) -> float:
        return self._loop.time()

    async def call(self, awaitable: Awaitable[_T]) -> tuple[bool, _T | None]:
        """``(True, result)``, or ``(False, None)`` after a transient failure."""
        try:
            result = await awaitable
        except _TRANSIENT_ERRORS as exc:
            if isinstance(exc, TransactionNotFound):
                raise
            self.last_error = exc
            if self.now() - self.last_ok > self.silence_limit:
                raise RpcUnavailable(
                    f"The node did not answer for {self.silence_limit:g}s while tracking "
                    f"{self.tx_hash}: {exc}",
                    tx_hash=self.tx_hash,
                ) from exc
            return False, None
        self.last_ok = self.now()
        self.last_error = None
        return True, result

    async def receipt(self) -> tuple[bool, TxReceipt | None]:
        """``(ok, receipt)``: ``(True, None)`` means the node answered that there is none."""
        try:
            return await self.call(self.w3.eth.get_transaction_receipt(HexStr(self.tx_hash)))
        except TransactionNotFound:
            self.last_ok = self.now()
            return True, None


async def _revert_reason(w3: AsyncWeb3[Any], tx_hash: str, block: int) -> str:
    """Replay the transaction with ``eth_call`` on the parent block's state to read why it reverted.

    Best effort: a node without that historical state, or a revert that does not
    reproduce, gives plain "reverted".
    """
    try:
        async with asyncio.timeout(_REVERT_REPLAY_TIMEOUT):
            tx = await w3.eth.get_transaction(HexStr(tx_hash))
            call: TxParams = {
                "from": tx["from"],
                "to": tx["to"],
                "value": Wei(tx.get("value", 0)),
                "data": HexBytes(tx.get("input", b"")),
                "gas": tx["gas"],
            }
            await w3.eth.call(call, block_identifier=BlockNumber(max(block - 1, 0)))
    except ContractLogicError as exc:
        message = str(exc.message or "").strip()
        return message or "reverted"
    except _REPLAY_GIVE_UP:
        return "reverted"
    return "reverted"


async def _find_replacement(
    poller: _Poller, sender: str, nonce: int, first_block: int | None
) -> str | None:
    """Hash of the mined transaction from ``sender`` with ``nonce``, searching recent blocks."""
    ok, latest = await poller.call(poller.w3.eth.get_block_number())
    if not ok or latest is None:
        return None
    lowest = max(latest - MAX_REPLACEMENT_SCAN_BLOCKS + 1, 0)
    if first_block is not None:
        lowest = max(lowest, first_block)
    wanted = sender.lower()
    # Newest first: the nonce was consumed recently, most likely in the last few blocks.
    for number in range(latest, lowest - 1, -1):
        ok, block = await poller.call(
            poller.w3.eth.get_block(BlockNumber(number), full_transactions=True)
        )
        if not ok or block is None:
            continue
        for tx in block.get("transactions", []):
            if isinstance(tx, bytes):
                continue
            if str(tx.get("from", "")).lower() == wanted and tx.get("nonce") == nonce:
                tx_hash = tx.get("hash")
                return HexBytes(tx_hash).to_0x_hex() if tx_hash is not None else None
    return None


async def track_transaction(
    w3: AsyncWeb3[Any],
    network: Network,
    tx_hash: str,
    *,
    sender: str,
    nonce: int,
    confirmations: int | None = None,
    poll_interval: float = 0.25,
    # Not a bound on the call: how long an unmined transaction is waited for before `dropped`.
    timeout: float = 120.0,
) -> AsyncIterator[TxUpdate]:
    """Yield a ``TxUpdate`` each time the transaction's status (or confirmation count) changes.

    ``confirmations`` defaults to ``network.confirmations``. ``timeout`` bounds
    how long the transaction may stay unmined (then ``dropped``; the clock
    restarts after a reorg) and how long the node may stay unreachable (then
    ``RpcUnavailable`` is raised). Once mined, tracking waits for blocks as long
    as the chain makes progress; close the generator (``aclose``) to stop early.
    """
    tx_hash = _check_hash(tx_hash)
    try:
        sender = to_checksum_address(sender)
    except ValueError as exc:
        raise InvalidInput(f"{sender!r} is not an address.", value=sender) from exc
    required = network.confirmations if confirmations is None else confirmations
    required = max(required, 1)
    explorer_url = network.explorer_tx_url(tx_hash)
    poller = _Poller(w3, tx_hash, silence_limit=timeout)

    def update(status: TxStatus, **fields: Any) -> TxUpdate:
        return TxUpdate(
            tx_hash=tx_hash,
            chain_id=network.chain_id,
            status=status,
            explorer_url=explorer_url,
            **fields,
        )

    # Where a search for a replacement may start; taken before anything can be mined.
    _, first_block = await poller.call(w3.eth.get_block_number())
    yield update(TxStatus.SUBMITTED)

    deadline = poller.now() + timeout
    mined_in: HexBytes | None = None  # hash of the block the receipt we reported is in
    reported = 0  # highest confirmation count reported for that block

    while True:
        ok, receipt = await poller.receipt()
        if ok and receipt is None and mined_in is not None:
            # Reorged out: it may come back in another block, or be dropped or replaced.
            mined_in, reported = None, 0
            deadline = poller.now() + timeout
            yield update(TxStatus.SUBMITTED)
        elif ok and receipt is not None:
            block_number = int(receipt["blockNumber"])
            gas_used = int(receipt["gasUsed"])
            if int(receipt["status"]) == 0:
                reason = await _revert_reason(w3, tx_hash, block_number)
                yield update(
                    TxStatus.FAILED,
                    confirmations=1,
                    block_number=block_number,
                    gas_used=gas_used,
                    reason=reason,
                )
                return
            block_hash = HexBytes(receipt["blockHash"])
            if block_hash != mined_in:
                mined_in, reported = block_hash, 1
                yield update(
                    TxStatus.MINED, confirmations=1, block_number=block_number, gas_used=gas_used
                )
            ok, latest = await poller.call(w3.eth.get_block_number())
            if ok and latest is not None:
                count = latest - block_number + 1
                if count >= required:
                    yield update(
                        TxStatus.CONFIRMED,
                        confirmations=count,
                        block_number=block_number,
                        gas_used=gas_used,
                    )
                    return
                if count > reported:
                    reported = count
                    yield update(
                        TxStatus.MINED,
                        confirmations=count,
                        block_number=block_number,
                        gas_used=gas_used,
                    )
        elif ok:
            ok, used = await poller.call(w3.eth.get_transaction_count(sender, "latest"))
            if ok and used is not None and used > nonce:
                # The nonce is spent. Ours may have been mined between the two calls.
                ok, receipt = await poller.receipt()
                if ok and receipt is None:
                    replaced_by = await _find_replacement(poller, sender, nonce, first_block)
                    # Found as ours means the node's receipt index lags: wait for it.
                    if replaced_by is None or replaced_by.lower() != tx_hash:
                        yield update(
                            TxStatus.REPLACED,
                            replaced_by=replaced_by,
                            reason=f"nonce {nonce} was used by another transaction",
                        )
                        return
                # Otherwise it was mined in between: the next poll reports it.
        if mined_in is None and poller.now() >= deadline:
            # One last look, so a transaction mined just now is not called dropped.
            ok, receipt = await poller.receipt()
            if not ok:
                raise RpcUnavailable(
                    f"Could not reach the node to learn whether {tx_hash} was mined: "
                    f"{poller.last_error}",
                    tx_hash=tx_hash,
                )
            if receipt is None:
                yield update(
                    TxStatus.DROPPED,
                    reason=f"not mined within {timeout:g}s; it may still be pending in a mempool",
                )
                return
        await asyncio.sleep(poll_interval)
