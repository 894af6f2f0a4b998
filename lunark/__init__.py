"""Lunark: an LLM agent next to the user's wallet that never moves funds without the user's say-so.

    from lunark import Agent, Settings

    async with Agent.open(Settings.load()) as agent:
        async for event in agent.stream("chat-1", "what's my balance?", user_address=me):
            ...

The public surface is what ``__all__`` lists; everything else is internal.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lunark.chain import ChainClient, ChainClients, LocalSigner, Signer, TransferIntent, TxProgress
    from lunark.config import Settings
    from lunark.errors import (
        AcknowledgementRequired,
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
        InvalidName,
        LunarkError,
        ModelError,
        NonceGap,
        NoPendingApproval,
        NotFound,
        PolicyViolation,
        PreviewChanged,
        RateLimited,
        RpcUnavailable,
        SignerError,
        SimulationFailed,
        ToolFailed,
        TransactionFailed,
        Unauthorized,
        UnknownNetwork,
        UnknownToken,
        UnresolvedName,
        WrongNetwork,
    )
    from lunark.graph import Agent
    from lunark.models import OfflinePlanner
    from lunark.models.scripted import ScriptedChatModel
    from lunark.networks import Network, NetworkRegistry, Token
    from lunark.protocol import TxStatus, TxUpdate
    from lunark.tools.base import FunctionTool, Proposal, Tool, ToolContext
    from lunark.tools.policy import SpendingPolicy

_EXPORTS: dict[str, str] = {
    "AcknowledgementRequired": "lunark.errors",
    "Agent": "lunark.graph",
    "AlreadyDecided": "lunark.errors",
    "ApprovalError": "lunark.errors",
    "ApprovalExpired": "lunark.errors",
    "Busy": "lunark.errors",
    "ChainClient": "lunark.chain",
    "ChainClients": "lunark.chain",
    "ChainError": "lunark.errors",
    "ConfigError": "lunark.errors",
    "Forbidden": "lunark.errors",
    "FunctionTool": "lunark.tools.base",
    "InsufficientFunds": "lunark.errors",
    "IntentMismatch": "lunark.errors",
    "InvalidAddress": "lunark.errors",
    "InvalidAmount": "lunark.errors",
    "InvalidName": "lunark.errors",
    "InvalidDecision": "lunark.errors",
    "InvalidInput": "lunark.errors",
    "LocalSigner": "lunark.chain",
    "LunarkError": "lunark.errors",
    "ModelError": "lunark.errors",
    "Network": "lunark.networks",
    "NetworkRegistry": "lunark.networks",
    "NoPendingApproval": "lunark.errors",
    "NotFound": "lunark.errors",
    "OfflinePlanner": "lunark.models",
    "PolicyViolation": "lunark.errors",
    "NonceGap": "lunark.errors",
    "PreviewChanged": "lunark.errors",
    "RateLimited": "lunark.errors",
    "Proposal": "lunark.tools.base",
    "RpcUnavailable": "lunark.errors",
    "ScriptedChatModel": "lunark.models.scripted",
    "Settings": "lunark.config",
    "Signer": "lunark.chain",
    "SignerError": "lunark.errors",
    "SimulationFailed": "lunark.errors",
    "SpendingPolicy": "lunark.tools.policy",
    "Token": "lunark.networks",
    "Tool": "lunark.tools.base",
    "ToolContext": "lunark.tools.base",
    "ToolFailed": "lunark.errors",
    "TransactionFailed": "lunark.errors",
    "TransferIntent": "lunark.chain",
    "TxProgress": "lunark.chain",
    "TxStatus": "lunark.protocol",
    "TxUpdate": "lunark.protocol",
    "Unauthorized": "lunark.errors",
    "UnknownNetwork": "lunark.errors",
    "UnknownToken": "lunark.errors",
    "UnresolvedName": "lunark.errors",
    "WrongNetwork": "lunark.errors",
}
"""Where each public name lives: imported on first use, so ``import lunark`` (and any of its
light modules: ``lunark.protocol``, ``lunark.client``) loads neither LangGraph nor the server."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lunark' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__version__ = "0.1.0"

__all__ = [
    "AcknowledgementRequired",
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
    "InvalidName",
    "LocalSigner",
    "LunarkError",
    "ModelError",
    "Network",
    "NetworkRegistry",
    "NoPendingApproval",
    "NonceGap",
    "NotFound",
    "OfflinePlanner",
    "PolicyViolation",
    "PreviewChanged",
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
    "ToolFailed",
    "TransactionFailed",
    "TransferIntent",
    "TxProgress",
    "TxStatus",
    "TxUpdate",
    "Unauthorized",
    "UnknownNetwork",
    "UnknownToken",
    "UnresolvedName",
    "WrongNetwork",
    "__version__",
]
