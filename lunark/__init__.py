"""Lunark: an LLM agent next to the user's wallet that never moves funds without the user's say-so.

    from lunark import Agent, Settings

    async with Agent.open(Settings.load()) as agent:
        async for event in agent.stream("chat-1", "what's my balance?", user_address=me):
            ...

The public surface is what ``__all__`` lists; everything else is internal.
"""

from lunark.chain import ChainClient, ChainClients, LocalSigner, Signer, TransferIntent, TxStatus, TxUpdate
from lunark.config import Settings
from lunark.errors import (
    AlreadyDecided,
    ApprovalError,
    ApprovalExpired,
    Busy,
    ChainError,
    ConfigError,
    Forbidden,
    InsufficientFunds,
    IntentMismatch,
    InvalidAddress,
    InvalidAmount,
    InvalidDecision,
    InvalidInput,
    LunarkError,
    ModelError,
    NoPendingApproval,
    NotFound,
    PolicyViolation,
    RateLimited,
    RpcUnavailable,
    SignerError,
    SimulationFailed,
    TransactionFailed,
    Unauthorized,
    UnknownNetwork,
    UnknownToken,
    WrongNetwork,
)
from lunark.graph import Agent
from lunark.models import OfflinePlanner
from lunark.models.scripted import ScriptedChatModel
from lunark.networks import Network, NetworkRegistry, Token
from lunark.tools.base import FunctionTool, Proposal, Tool, ToolContext
from lunark.tools.policy import SpendingPolicy

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AlreadyDecided",
    "ApprovalError",
    "ApprovalExpired",
    "Busy",
    "ChainClient",
    "ChainClients",
    "ChainError",
    "ConfigError",
    "Forbidden",
    "FunctionTool",
    "InsufficientFunds",
    "IntentMismatch",
    "InvalidAddress",
    "InvalidAmount",
    "InvalidDecision",
    "InvalidInput",
    "LocalSigner",
    "LunarkError",
    "ModelError",
    "Network",
    "NetworkRegistry",
    "NoPendingApproval",
    "NotFound",
    "OfflinePlanner",
    "PolicyViolation",
    "Proposal",
    "RateLimited",
    "RpcUnavailable",
    "ScriptedChatModel",
    "Settings",
    "Signer",
    "SignerError",
    "SimulationFailed",
    "SpendingPolicy",
    "Token",
    "Tool",
    "ToolContext",
    "TransactionFailed",
    "TransferIntent",
    "TxStatus",
    "TxUpdate",
    "Unauthorized",
    "UnknownNetwork",
    "UnknownToken",
    "WrongNetwork",
    "__version__",
]
