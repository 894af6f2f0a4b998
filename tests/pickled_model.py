"""A chat model object handed to turn workers, for ``LUNARK_TEST_WORKERS`` (tests/server_harness.py).

A test that gives ``make_server`` a model object runs it in the serving process; turn workers build
their model in their own process from a ``"module:callable"`` factory. ``factory_for(model, path)``
pickles the model to ``path`` and returns ``"pickled_model:<path>"``, which each worker imports and
calls to unpickle its own copy (a copy: what the test's object records is not the workers')."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any


def factory_for(model: Any, path: Path) -> str | None:
    """The factory of a copy of ``model``, or None if it cannot be pickled (it stays in-process)."""
    try:
        data = pickle.dumps(model)
    except Exception:
        return None
    path.write_bytes(data)
    return f"pickled_model:{path}"


def __getattr__(name: str) -> Callable[[], Any]:
    """``pickled_model:<path>``: ``load_factory`` asks this module for the attribute ``<path>``."""
    if not name.startswith("/"):
        raise AttributeError(name)
    return lambda: pickle.loads(Path(name).read_bytes())
