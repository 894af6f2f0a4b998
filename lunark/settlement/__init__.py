"""Settlement: every approved transfer as one durable state machine, from decision to final outcome.

- ``states``: the states and the transition table every move is checked against.
- ``service``: ``Settlements``, which writes ahead, holds each settlement's lease and drives it.
- ``binding``: which transaction a decision offers, and whether it may settle its approval.
- ``broadcast``: signed bytes written ahead go out at most once.
- ``tracking``: a transaction that is out followed to its end (and what a wallet sent instead).
- ``ledger``: what a settlement counts against the daily caps.
- ``outcome``: its ``tx_update`` evidence and its outcome in plain words.

- Write ahead: a process that dies at any instant leaves a record that says what may have
  happened; ``Settlements.resume_all`` finds out at the next start and carries every unfinished
  settlement to a final state.
- The service, not the turn, owns tracking: an aborted turn or a restart never stops it.
- Spending: the amount reserved when the approval was asked is held at execution, spent at
  broadcast and released when nothing went out.
"""

from lunark.settlement.outcome import outcome_message
from lunark.settlement.service import Lease, Settlements, settlement_id
from lunark.settlement.states import TRANSITIONS, IllegalTransition, SettlementState

__all__ = ["TRANSITIONS", "IllegalTransition", "Lease", "SettlementState", "Settlements", "outcome_message",
           "settlement_id"]
