"""Lunark's Python client: the async SDK and a wallet helper for local keys.

    from lunark.client import LunarkClient, sign_and_send

    async with LunarkClient("http://localhost:8080", signer_key=KEY) as client:
        session = await client.join()
        events = await session.turn("what's my balance?")

The terminal chat (``lunark chat``) lives in ``lunark.client.chat``; ``docs/sdk.md``
has a complete example.
"""

from lunark.client.sdk import ERROR_CLASSES, ChatSession, Disconnected, LunarkClient, error_from_body
from lunark.client.wallet import rpc_request, sign_and_send, sign_and_send_all, sign_transaction

__all__ = [
    "ERROR_CLASSES",
    "ChatSession",
    "Disconnected",
    "LunarkClient",
    "error_from_body",
    "rpc_request",
    "sign_and_send",
    "sign_and_send_all",
    "sign_transaction",
]
