"""The package's public surface is exactly what we mean it to be."""

import inspect

import lunark
import lunark.errors
import lunark.protocol


def test_public_names() -> None:
    assert set(lunark.__all__) == {
        "Agent", "Settings", "__version__",
        "ChainClient", "ChainClients", "LocalSigner", "Signer", "TransferIntent", "TxProgress", "TxStatus", "TxUpdate",
        "Network", "NetworkRegistry", "Token",
        "Tool", "FunctionTool", "Proposal", "ToolContext", "SpendingPolicy",
        "OfflinePlanner", "ScriptedChatModel",
        *lunark.errors.__all__,
    }
    for name in lunark.__all__:
        assert getattr(lunark, name) is not None
    # one TxUpdate: the wire event; the tracker's own step is TxProgress
    assert lunark.TxUpdate is lunark.protocol.TxUpdate and lunark.TxStatus is lunark.protocol.TxStatus


def test_every_error_is_exported_and_rooted() -> None:
    classes = [c for _, c in inspect.getmembers(lunark.errors, inspect.isclass) if c.__module__ == "lunark.errors"]
    assert {c.__name__ for c in classes} == set(lunark.errors.__all__)
    for cls in classes:
        assert issubclass(cls, lunark.LunarkError)
        assert isinstance(cls.code, str) and cls.code
