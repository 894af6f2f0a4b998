"""Several server processes on one Postgres: who runs what, and what happens when a process dies.

Every guarantee of one process holds across many because its state lives in the database, and the
database says which process owns what:

- **One turn per chat, cluster-wide.** A process claims ``turn:{chat_id}`` before a turn starts and
  releases it when the turn's task ends. Claims are Postgres session advisory locks, all held on
  one connection of the process: a process that dies (``kill -9`` included) loses its connection,
  and Postgres releases every lock it held at once. No lease to expire, no clock to trust.
- **Decisions** are claimed in the database (``approvals.state``), whichever process receives them;
  the chat's turn claim makes a decision wait for the turn that asked to finish sending, even on
  another process.
- **Settlements** are driven under ``settle:{settlement_id}``: every process runs a waiting driver
  for each unfinished settlement, and the first to get the lock after its driver's process died
  carries it on from its durable record (``lunark.settlement``).
- **Expiry and takeover** run on every process, at least every ``server.sweep_interval_seconds``:
  pending approvals past ``expires_at`` are expired as rejections (fail closed) by each process's
  expiry clock (``lunark.server.expiry``); the sweep applies claimed decisions whose chat no turn
  holds (the process that claimed them died), closes the answers a dead process was writing
  (``message_end`` with ``finish_reason: "interrupted"``: an answer's turn holds the chat's lock
  until its end is logged) and gives unfinished settlements a driver. Whichever process is alive
  does it; the locks make sure only one does.
- **Aborts** reach the turn wherever it runs: a process with no such turn sends ``NOTIFY``, and the
  process running it aborts it.
- **Logouts** reach every process: the process that ended the session in the database sends
  ``NOTIFY``, and each process closes the sockets and SSE streams it holds open with that session.
  A process that missed the notification (its listener was reconnecting) finds the session gone at its
  next session check (``Authenticator.check_sessions``, every ``sweep_interval``, and at once when the
  listener is back).

If the lock connection itself breaks, this process can no longer prove it owns anything: it stops
its turns and settlement drivers (others may take them over) and reconnects. That is the fencing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import psycopg

from lunark.ids import new_id
from lunark.store import PostgresStore, advisory_key

if TYPE_CHECKING:
    from lunark.server.auth import Authenticator
    from lunark.server.runner import Runner
    from lunark.settlement import Settlements

__all__ = ["Cluster"]

logger = logging.getLogger(__name__)

_ABORT_CHANNEL = "lunark_abort"
_REVOKE_CHANNEL = "lunark_revoke"
LISTENER_NAME = "lunark-listen"
"""``application_name`` of each process's notification connection (what an operator sees in
``pg_stat_activity``)."""


class Cluster:
    """This process's part in a cluster of Lunark servers sharing one Postgres database."""

    def __init__(self, store: PostgresStore, *, sweep_interval: float = 1.0) -> None:
        self.store = store
        self.sweep_interval = sweep_interval
        self.node = new_id("node_")
        """This process, in logs."""
        self._locks: psycopg.AsyncConnection[Any] | None = None
        self._locks_guard = asyncio.Lock()
        self._held: set[str] = set()
        """Names this process holds, or is releasing (a local claim fails until the unlock is done)."""
        self._listener: psycopg.AsyncConnection[Any] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: Runner | None = None
        self._settlements: Settlements | None = None
        self._auth: Authenticator | None = None
        """Pending approvals the sweep found no paused turn for: not tried again by this process."""
        self.healthy_locks = False

    # -- life -----------------------------------------------------------------------------------

    async def start(self, runner: Runner | None, settlements: Settlements | None,
                    auth: Authenticator | None = None) -> None:
        """``runner`` and ``settlements`` None: a relay whose turns run in workers (``lunark.server.jobs``);
        it only passes logouts on, and the workers sweep."""
        self._runner, self._settlements, self._auth = runner, settlements, auth
        await self._connect_locks()
        self._listener = await self._connect_listener()
        self._spawn(self._listen(), "lunark-cluster-listen")
        self._spawn(self._sweep_forever(), "lunark-cluster-sweep")
        logger.info("cluster node %s joined (sweep every %ss)", self.node, self.sweep_interval)

    async def aclose(self) -> None:
        """Stop sweeping and listening, then close the connections: every lock goes with them."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with suppress(asyncio.CancelledError, Exception):
                await task
        for conn in (self._listener, self._locks):
            if conn is not None:
                with suppress(Exception):
                    await conn.close()  # and Postgres releases every lock this process held
        self._listener = self._locks = None
        self._held.clear()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _connect_listener(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.store.url, autocommit=True,
                                                     application_name=LISTENER_NAME)
        await conn.execute(f"LISTEN {_ABORT_CHANNEL}")
        await conn.execute(f"LISTEN {_REVOKE_CHANNEL}")
        return conn

    async def _connect_locks(self) -> None:
        # Named after the node: an operator (or a test) finds who holds a chat's lock in pg_locks.
        self._locks = await psycopg.AsyncConnection.connect(self.store.url, autocommit=True,
                                                            application_name=f"lunark-locks {self.node}")
        self.healthy_locks = True

    # -- locks (runner.TurnLocks and settlement.Lease) ------------------------------------------

    async def acquire(self, name: str) -> bool:
        """Take ``name`` for this process unless anyone (this process included) holds it."""
        if name in self._held or self._locks is None:
            return False
        self._held.add(name)  # no await before this: two local claims cannot both pass
        try:
            async with self._locks_guard:
                cursor = await self._locks.execute("SELECT pg_try_advisory_lock(%s)", (advisory_key(name),))
                row = await cursor.fetchone()
        except (psycopg.Error, OSError) as exc:
            self._held.discard(name)
            logger.warning("cluster lock %s not taken: %s", name, exc)
            return False
        if not (row and row[0]):
            self._held.discard(name)
            return False
        return True

    def release(self, name: str) -> None:
        if name in self._held and self._locks is not None:
            self._spawn(self._unlock(name), f"lunark-unlock-{name}")

    async def _unlock(self, name: str) -> None:
        try:
            if self._locks is not None:
                async with self._locks_guard:
                    await self._locks.execute("SELECT pg_advisory_unlock(%s)", (advisory_key(name),))
        except (psycopg.Error, OSError) as exc:
            logger.warning("cluster lock %s not released (the connection will be): %s", name, exc)
        finally:
            self._held.discard(name)

    async def acquire_turn(self, chat_id: str) -> bool:
        return await self.acquire(f"turn:{chat_id}")

    def release_turn(self, chat_id: str) -> None:
        self.release(f"turn:{chat_id}")

    async def abort_elsewhere(self, chat_id: str) -> None:
        async with self.store.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (_ABORT_CHANNEL, chat_id))

    async def revoke_elsewhere(self, address: str, token_hash: str | None) -> None:
        """Tell every other process that sessions ended (``Authenticator.announce``): the one of
        ``token_hash``, or with ``None`` every session of ``address``. Hashes only, never tokens."""
        payload = json.dumps({"node": self.node, "address": address, "token_hash": token_hash})
        async with self.store.connection() as conn:
            await conn.execute("SELECT pg_notify(%s, %s)", (_REVOKE_CHANNEL, payload))

    # -- what comes from other processes ----------------------------------------------------------

    async def _listen(self) -> None:
        while True:
            try:
                assert self._listener is not None
                async for notify in self._listener.notifies():
                    if notify.channel == _ABORT_CHANNEL and self._runner is not None:
                        self._spawn(self._runner.abort(notify.payload, forward=False),
                                    f"lunark-abort-{notify.payload}")
                    elif notify.channel == _REVOKE_CHANNEL:
                        self._revoked(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("cluster listener lost its connection (%s); reconnecting", exc)
                await asyncio.sleep(self.sweep_interval)
                with suppress(Exception):
                    if self._listener is not None:
                        await self._listener.close()
                    self._listener = await self._connect_listener()
                    if self._auth is not None:
                        # Logouts announced meanwhile were missed: look the open sessions up now.
                        self._spawn(self._auth.check_sessions(), "lunark-session-check")

    def _revoked(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            node, address, hashed = message["node"], message["address"], message["token_hash"]
        except (ValueError, KeyError, TypeError):
            logger.warning("ignoring a malformed logout notification: %.200r", payload)
            return
        if self._auth is None or node == self.node or not isinstance(address, str):
            return  # this process ended them itself before telling the others
        self._spawn(self._auth.sessions_ended(address, hashed if isinstance(hashed, str) else None),
                    "lunark-logout")

    # -- the sweep --------------------------------------------------------------------------------

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval)
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("cluster sweep failed; trying again in %ss", self.sweep_interval)

    async def sweep(self) -> None:
        """One pass: check the lock connection, then expire, take over and carry on what is due."""
        if not await self._check_locks():
            return
        runner, settlements = self._runner, self._settlements
        if runner is None or settlements is None:
            return  # a relay: the workers take over what a dead process left
        await settlements.resume_all()  # a waiting driver for each unfinished settlement
        # (Pending approvals that are due: every process's runner.clock, lunark.server.expiry.)
        for record in await self.store.approvals(["decided"]):
            await runner.recover_approval(record)
        await runner.recover_answers()  # answers a dead process was writing end as interrupted

    async def _check_locks(self) -> bool:
        try:
            assert self._locks is not None
            async with self._locks_guard:
                await self._locks.execute("SELECT 1")
            return True
        except (psycopg.Error, OSError, AssertionError) as exc:
            self.healthy_locks = False
            logger.error("cluster lock connection lost (%s): stopping this process's turns and settlements", exc)
            await self._fence()
            try:
                await self._connect_locks()
            except (psycopg.Error, OSError) as again:
                logger.error("cluster lock connection not back yet: %s", again)
            return False

    async def _fence(self) -> None:
        """Every lock this process held is gone with its connection: stop what it guarded."""
        self._held.clear()
        if self._settlements is not None:
            await self._settlements.aclose()
        if self._runner is not None:
            await self._runner.aclose()
        with suppress(Exception):
            if self._locks is not None:
                await self._locks.close()
        self._locks = None

    async def healthy(self) -> bool:
        if self._locks is None or self._locks.closed:
            return False
        try:
            async with asyncio.timeout(3), self._locks_guard:
                await self._locks.execute("SELECT 1")
            return True
        except (psycopg.Error, OSError, TimeoutError):
            return False
