"""The one-process server tests again, with the store and checkpoints on Postgres and Socket.IO through Redis.

The same test functions (imported from their modules) run against a server configured as one
process of a cluster (``store.url``, ``server.redis_url``): one server must behave exactly as it
does on SQLite. ``tests/test_cluster.py`` covers several processes.
"""

from __future__ import annotations

from typing import Any

import pytest
from services import RedisServer
from test_server_approvals import (
    test_a_pending_approval_survives_a_restart_and_is_approved_once,
    test_an_expired_approval_is_rejected_by_timeout_and_cannot_be_approved,
    test_concurrent_decisions_apply_exactly_once,
    test_wallet_changed_makes_a_pending_approval_stale,
)
from test_server_chat import (
    test_abort_stops_the_stream_promptly_and_the_chat_goes_on,
    test_balance_question_streams_and_is_persisted,
    test_busy_while_a_turn_runs_and_client_message_id_is_idempotent,
    test_rejection_moves_nothing_and_is_explained,
    test_transfer_signed_by_the_wallet_is_confirmed_and_seen_in_the_user_room,
)
from test_server_replay import (
    test_socket_reconnect_with_last_seq_gets_every_later_event_once,
    test_sse_reconnect_with_last_event_id_gets_every_later_event_once,
)
from test_settlement import (
    test_a_hash_settles_only_its_own_approval,
    test_a_wallet_hash_after_expiry_is_recorded_and_followed,
    test_abort_after_broadcast_stops_the_answer_not_the_tracking,
    test_the_daily_cap_holds_across_chats_with_approvals_waiting,
)

__all__ = [
    "test_a_hash_settles_only_its_own_approval",
    "test_a_pending_approval_survives_a_restart_and_is_approved_once",
    "test_a_wallet_hash_after_expiry_is_recorded_and_followed",
    "test_abort_after_broadcast_stops_the_answer_not_the_tracking",
    "test_abort_stops_the_stream_promptly_and_the_chat_goes_on",
    "test_an_expired_approval_is_rejected_by_timeout_and_cannot_be_approved",
    "test_balance_question_streams_and_is_persisted",
    "test_busy_while_a_turn_runs_and_client_message_id_is_idempotent",
    "test_concurrent_decisions_apply_exactly_once",
    "test_rejection_moves_nothing_and_is_explained",
    "test_socket_reconnect_with_last_seq_gets_every_later_event_once",
    "test_sse_reconnect_with_last_event_id_gets_every_later_event_once",
    "test_the_daily_cap_holds_across_chats_with_approvals_waiting",
    "test_transfer_signed_by_the_wallet_is_confirmed_and_seen_in_the_user_room",
    "test_wallet_changed_makes_a_pending_approval_stale",
]


@pytest.fixture
def make_server(pg_url: str, redis_server: RedisServer, make_server: Any) -> Any:
    """conftest's ``make_server``, each server on this test's Postgres database and the session's Redis."""

    async def make(**overrides: Any) -> Any:
        store = {"url": pg_url, "pool_size": 4, **overrides.pop("store", {})}
        server = {"redis_url": redis_server.url, "sweep_interval_seconds": 0.25, **overrides.pop("server", {})}
        return await make_server(store=store, server=server, **overrides)

    return make
