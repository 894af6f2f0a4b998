"""The chain layer: validation, value objects, async client, signers, intent checks.

    from lunark.chain import ChainClient, LocalSigner, parse_amount
"""

from lunark.chain.client import ChainClient, ChainClients
from lunark.chain.intent import (
    DecodedTx,
    check_transaction,
    decode_signed_transaction,
    describe_transaction,
    diff_intent,
    diff_prepared,
    fetch_transaction,
    verify_signed_transaction,
    verify_transaction_hash,
)
from lunark.chain.signer import LocalSigner, Signer
from lunark.chain.tokens import ERC20_ABI
from lunark.chain.tracker import track_transaction
from lunark.chain.types import (
    Balance,
    PreparedTx,
    TransferIntent,
    TxProgress,
    TxStatus,
    encode_erc20_transfer,
    to_units,
)
from lunark.chain.validation import MAX_UINT256, format_amount, parse_address, parse_amount

__all__ = [
    "ERC20_ABI",
    "MAX_UINT256",
    "Balance",
    "ChainClient",
    "ChainClients",
    "DecodedTx",
    "LocalSigner",
    "PreparedTx",
    "Signer",
    "TransferIntent",
    "TxProgress",
    "TxStatus",
    "check_transaction",
    "decode_signed_transaction",
    "describe_transaction",
    "diff_intent",
    "diff_prepared",
    "encode_erc20_transfer",
    "fetch_transaction",
    "format_amount",
    "parse_address",
    "parse_amount",
    "to_units",
    "track_transaction",
    "verify_signed_transaction",
    "verify_transaction_hash",
]
