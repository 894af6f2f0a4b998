"""Follow a broadcast transaction until it is confirmed, failed, replaced or dropped.

Tracked by hash and by ``(sender, nonce)``. Given the approved ``intent``, a
wallet's speed-up (same nonce, same transfer, another fee) is followed to its
end under the new hash; a cancel or anything else at that nonce ends
``replaced``, saying what the replacement did::

    async for update in track_transaction(w3, network, tx_hash, sender=addr, nonce=7, intent=intent):
        emit(update.to_dict())          # submitted, mined (1..N-1), confirmed

Statuses: ``submitted`` first; ``submitted`` again with ``replaces`` when a
speed-up is found (every later update carries ``replaces`` and the new hash);
``mined`` when a receipt appears and again for each new confirmation count;
``confirmed`` after ``confirmations`` blocks (final); ``failed`` for a receipt
with status 0 (final); ``replaced`` when another transaction took the nonce
(final); ``dropped`` when the node has not known the transaction for
``timeout`` seconds and its nonce is still unused (final): one still waiting in
the node's pool is never dropped. A receipt that vanishes (reorg) sends the
transaction back to ``submitted``.

Resumable: after a restart, track the same hash again with the ``first_block``
persisted the first time; a transaction mined meanwhile is reported mined and
confirmed at once, a replacement mined meanwhile is found from that block on.
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
from web3.types import RPCEndpoint, TxParams, TxReceipt, Wei

from lunark.chain.decoded import DecodedTx, check_hash, from_node
from lunark.chain.intent import ALLOWED_TX_TYPES, diff_intent
from lunark.chain.types import TransferIntent, TxProgress, TxStatus
from lunark.chain.wording import describe_transaction
from lunark.errors import InvalidInput, RpcUnavailable
from lunark.networks import Network

__all__ = ["MAX_REPLACEMENT_SCAN_BLOCKS", "track_transaction"]

MAX_REPLACEMENT_SCAN_BLOCKS = 256
"""How many recent blocks are scanned for the transaction that took a nonce, when the node
cannot answer nonce queries at past blocks (the usual search is a bisection, any distance)."""

_REVERT_REPLAY_TIMEOUT = 5.0
"""The revert reason is a nicety: give the replay this long, then say "reverted"."""

# A single failed poll (connection reset, node restarting, RPC error) must not
# end tracking; they are retried until the node has been silent for `timeout`.
_TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (Web3Exception, OSError, TimeoutError)

_REPLAY_GIVE_UP: tuple[type[BaseException], ...] = (*_TRANSIENT_ERRORS, KeyError)

# JSON-RPC "method not found" / "not supported": the node will never answer it.
_UNSUPPORTED_CODES = frozenset({-32601, -32604})

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
        self.sender_nonce_lookup = True
        """False once the node said it has no ``eth_getTransactionBySenderAndNonce``."""

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

    async def known(self) -> tuple[bool, bool]:
        """``(ok, known)``: whether the node has the transaction, in its pool or in a block."""
        try:
            ok, tx = await self.call(self.w3.eth.get_transaction(HexStr(self.tx_hash)))
        except TransactionNotFound:
            self.last_ok = self.now()
            return True, False
        return ok, tx is not None

    async def pending_at(self, sender: str, nonce: int) -> tuple[bool, DecodedTx | None]:
        """``(ok, tx)``: the transaction waiting in the node's pool at ``(sender, nonce)``, if any.

        Asked with ``eth_getTransactionBySenderAndNonce`` (Anvil, reth); a node
        without it answers ``(True, None)``: a speed-up is then seen once mined.
        """
        if not self.sender_nonce_lookup:
            return True, None
        ok, response = await self.call(
            self.w3.provider.make_request(
                RPCEndpoint("eth_getTransactionBySenderAndNonce"), [sender, hex(nonce)]
            )
        )
        if not ok or response is None:
            return False, None
        error = response.get("error")
        if error:
            code = error.get("code") if isinstance(error, dict) else None
            text = str(error.get("message", "") if isinstance(error, dict) else error).lower()
            if code in _UNSUPPORTED_CODES or "not found" in text or "not supported" in text:
                self.sender_nonce_lookup = False
                return True, None
            return False, None
        tx = response.get("result")
        if not isinstance(tx, dict) or tx.get("blockNumber") is not None or not tx.get("hash"):
            return True, None  # none, or mined: the nonce check will see it
        try:
            return True, from_node(str(tx["hash"]).lower(), tx)
        except (KeyError, TypeError, ValueError):
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


def _mined_match(block: Any, sender: str, nonce: int) -> DecodedTx | None:
    wanted = sender.lower()
    for tx in block.get("transactions", []):
        if isinstance(tx, bytes):
            continue
        if str(tx.get("from", "")).lower() == wanted and tx.get("nonce") == nonce:
            tx_hash = tx.get("hash")
            if tx_hash is not None:
                return from_node(HexBytes(tx_hash).to_0x_hex(), tx)
    return None


async def _find_mined_at_nonce(
    poller: _Poller, sender: str, nonce: int, first_block: int, *, bisect: bool = True
) -> tuple[bool, DecodedTx | None]:
    """``(ok, tx)``: the mined transaction from ``sender`` with ``nonce``, searched from ``first_block``.

    Bisects on the sender's nonce at past blocks (a few calls, however far
    back); a node that keeps no state that old is scanned block by block
    instead, newest first, over at most ``MAX_REPLACEMENT_SCAN_BLOCKS``.
    ``ok`` is False when the node could not be asked (try again later).
    """
    w3 = poller.w3
    ok, latest = await poller.call(w3.eth.get_block_number())
    if not ok or latest is None:
        return False, None
    low, high = min(max(first_block, 0), int(latest)), int(latest)
    while bisect and low < high:
        middle = (low + high) // 2
        ok, used = await poller.call(
            w3.eth.get_transaction_count(to_checksum_address(sender), BlockNumber(middle))
        )
        if not ok or used is None:
            bisect = False
        elif used > nonce:
            high = middle
        else:
            low = middle + 1
    if bisect:
        ok, block = await poller.call(w3.eth.get_block(BlockNumber(high), full_transactions=True))
        if not ok or block is None:
            return False, None
        found = _mined_match(block, sender, nonce)
        if found is not None:
            return True, found
    # Newest first: the nonce was consumed recently, most likely in the last few blocks.
    lowest = max(latest - MAX_REPLACEMENT_SCAN_BLOCKS + 1, first_block, 0)
    for number in range(latest, lowest - 1, -1):
        ok, block = await poller.call(w3.eth.get_block(BlockNumber(number), full_transactions=True))
        if not ok or block is None:
            continue
        found = _mined_match(block, sender, nonce)
        if found is not None:
            return True, found
    return True, None


async def track_transaction(
    w3: AsyncWeb3[Any],
    network: Network,
    tx_hash: str,
    *,
    sender: str,
    nonce: int,
    intent: TransferIntent | None = None,
    first_block: int | None = None,
    confirmations: int | None = None,
    poll_interval: float = 0.25,
    # Not a bound on the call: how long the node may not know the transaction before `dropped`.
    timeout: float = 120.0,
) -> AsyncIterator[TxProgress]:
    """Yield a ``TxProgress`` each time the transaction's status (or confirmation count) changes.

    ``intent`` is the approved transfer: a transaction that took the nonce and
    moves exactly it (``diff_intent`` empty, type 0-2; the fee may differ) is a
    speed-up, followed under its own hash. Without it every replacement ends
    ``replaced``. ``first_block`` is where a search for the transaction that took
    the nonce starts: the block before the broadcast; default, the current block
    (pass the persisted one when resuming). ``confirmations`` defaults to
    ``network.confirmations``. ``timeout`` bounds how long the node may not know
    the transaction (nor any other at its nonce) before ``dropped`` (the clock
    restarts whenever the node shows it, and after a reorg) and how long the node
    may stay unreachable (then ``RpcUnavailable`` is raised). Once mined, or while
    pending, tracking goes on as long as it takes; close the generator
    (``aclose``) to stop early.
    """
    tx_hash = check_hash(tx_hash)
    try:
        sender = to_checksum_address(sender)
    except ValueError as exc:
        raise InvalidInput(f"{sender!r} is not an address.", value=sender) from exc
    required = network.confirmations if confirmations is None else confirmations
    required = max(required, 1)
    poller = _Poller(w3, tx_hash, silence_limit=timeout)
    current = tx_hash  # the hash followed now: ours, or the speed-up that replaced it
    replaces: str | None = None
    ours = {tx_hash}

    def update(status: TxStatus, **fields: Any) -> TxProgress:
        return TxProgress(
            tx_hash=current,
            chain_id=network.chain_id,
            status=status,
            explorer_url=network.explorer_tx_url(current),
            replaces=replaces,
            **fields,
        )

    def same_transfer(tx: DecodedTx) -> bool:
        if tx.tx_hash in ours:
            return True
        return intent is not None and tx.type in ALLOWED_TX_TYPES and not diff_intent(intent, tx)

    def replaced_reason(tx: DecodedTx | None) -> str:
        if tx is None:
            return (
                f"nonce {nonce} was used by another transaction, which could not be found "
                f"from block {first_block} on"
            )
        does = describe_transaction(tx, network=network, intent=intent)
        reason = f"Another transaction with the same nonce ({nonce}) was mined instead; it {does}."
        return reason + (" The approved transfer was not made." if intent is not None else "")

    if first_block is None:
        # Taken before anything can be mined: a replacement lands in this block or later.
        ok, block_now = await poller.call(w3.eth.get_block_number())
        first_block = int(block_now) if ok and block_now is not None else 0
    yield update(TxStatus.SUBMITTED)

    last_known = poller.now()  # when the node last showed it (or another tx at its nonce)
    mined_in: HexBytes | None = None  # hash of the block the receipt we reported is in
    reported = 0  # highest confirmation count reported for that block

    while True:
        absent = False  # this poll saw: no receipt, unknown to the node, nonce unused, nothing pending
        # The head is read with the receipt, not after it: a confirmation count is then one round trip
        # away (a head read before a block that holds the receipt only undercounts, never overcounts).
        (ok, receipt), (head_ok, head) = await asyncio.gather(poller.receipt(), poller.call(w3.eth.get_block_number()))
        if ok and receipt is None and mined_in is not None:
            # Reorged out: it may come back in another block, or be dropped or replaced.
            mined_in, reported = None, 0
            last_known = poller.now()
            yield update(TxStatus.SUBMITTED)
        elif ok and receipt is not None:
            block_number = int(receipt["blockNumber"])
            gas_used = int(receipt["gasUsed"])
            mined = {"block_number": block_number, "gas_used": gas_used}
            if int(receipt["status"]) == 0:
                reason = await _revert_reason(w3, current, block_number)
                yield update(TxStatus.FAILED, confirmations=1, reason=reason, **mined)
                return
            count = max(head - block_number + 1, 1) if head_ok and head is not None else 1
            block_hash = HexBytes(receipt["blockHash"])
            if block_hash != mined_in:
                # Mined (or resumed after it was): report it, with the blocks already on top.
                mined_in, reported = block_hash, count
                yield update(TxStatus.MINED, confirmations=count, **mined)
            if count >= required:
                yield update(TxStatus.CONFIRMED, confirmations=count, **mined)
                return
            if count > reported:
                reported = count
                yield update(TxStatus.MINED, confirmations=count, **mined)
        elif ok:
            ok, known = await poller.known()
            if ok and known:
                last_known = poller.now()  # pending in its pool (or mined, receipt not indexed yet)
            elif ok:
                ok, used = await poller.call(w3.eth.get_transaction_count(sender, "latest"))
                if ok and used is not None and used > nonce:
                    # The nonce is spent. Ours may have been mined between the calls.
                    ok, receipt = await poller.receipt()
                    if ok and receipt is None:
                        ok, taker = await _find_mined_at_nonce(poller, sender, nonce, first_block)
                        if ok and taker is not None and taker.tx_hash == current:
                            pass  # ours after all: the node's receipt index lags, wait for it
                        elif ok and taker is not None and same_transfer(taker):
                            replaces, current = current, taker.tx_hash
                            ours.add(current)
                            poller.tx_hash = current
                            yield update(TxStatus.SUBMITTED)
                            continue  # its receipt is there: report it at once
                        elif ok:
                            yield update(
                                TxStatus.REPLACED,
                                replaced_by=taker.tx_hash if taker is not None else None,
                                reason=replaced_reason(taker),
                            )
                            return
                elif ok:
                    ok, waiting = await poller.pending_at(sender, nonce)
                    if ok and waiting is not None:
                        # A transaction waits at our nonce: nothing is final until one is
                        # mined, so ours is not dropped meanwhile.
                        last_known = poller.now()
                        if waiting.tx_hash != current and same_transfer(waiting):
                            replaces, current = current, waiting.tx_hash
                            ours.add(current)
                            poller.tx_hash = current
                            yield update(TxStatus.SUBMITTED)
                    elif ok:
                        absent = True
        if absent and poller.now() - last_known >= timeout:
            yield update(
                TxStatus.DROPPED,
                reason=(
                    f"the node has not had it for {timeout:g}s and nonce {nonce} is still "
                    "unused: it is not in the mempool and was not mined"
                ),
            )
            return
        await asyncio.sleep(poll_interval)
