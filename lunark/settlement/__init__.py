"""Settlement: every approved transfer as one durable state machine, from decision to final outcome.

- ``states``: the states and the transition table every move is checked against.
- ``service``: ``Settlements``, which writes ahead, holds the lease and drives each settlement.
"""

from lunark.settlement.service import Lease, Settlements, outcome_message, settlement_id
from lunark.settlement.states import TRANSITIONS, IllegalTransition, SettlementState

__all__ = ["TRANSITIONS", "IllegalTransition", "Lease", "SettlementState", "Settlements", "outcome_message",
           "settlement_id"]
