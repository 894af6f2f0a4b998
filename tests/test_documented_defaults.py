"""Every default the docs state is the default ``Settings()`` has, so the two cannot drift.

docs/configuration.md's field table is read row by row: each field is found in ``Settings()`` (or,
for ``<name>`` and ``[]`` entries, in the model of one such entry) and its documented default is
compared with the real one. A row whose default the test cannot read fails, rather than being
skipped, until it is taught here. docs/troubleshooting.md states defaults in sentences: each one is
found by its wording and compared the same way, and the ``busy`` entry must say what the default
``approvals.on_new_message`` does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest

from lunark.config import RateLimit, Settings
from lunark.networks import GWEI, NetworkRegistry

DOCS = Path(__file__).resolve().parent.parent / "docs"

NOT_A_VALUE = {
    # field: what the docs say instead of a value, and what that must mean in Settings()
    "mcp.servers.<name>.transport": ("from the above", None),
    "server.domain": ("`host:port`", None),  # unset: host:port at start-up
    "server.workers": ("cores − 1", None),  # unset: Settings.turn_workers() at start-up (default_workers)
    "approvals.rules": ("built-in", {}),  # no configured rules: the tools' own (transfer always, ...)
    "mcp.servers.<name>.tools.<tool>": ("none", {}),
    # unset: the provider's own URL and key variable (ModelSettings.url, .key_variable)
    "model.base_url": ("the provider's", None),
    "model.api_key_env": ("the provider's", None),
}


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """``Settings()`` as a fresh install has it: no LUNARK_* variables, no configuration file."""
    import os

    for key in list(os.environ):
        if key.startswith("LUNARK_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return Settings()


def field_rows() -> Iterator[tuple[list[str], str]]:
    """docs/configuration.md's ``| field | default | meaning |`` rows: the field paths, the default cell."""
    text = (DOCS / "configuration.md").read_text()
    table = text.split("## Fields", 1)[1]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        parent = names[0].rsplit(".", 1)[0] if "." in names[0] else ""
        paths = [names[0], *(f"{parent}.{n}" if parent and "." not in n else n for n in names[1:])]
        yield paths, cells[1]


def model_of(annotation: Any) -> Any:
    """The model a ``dict[str, M]``, ``list[M]`` or ``M | None`` field holds."""
    origin = get_origin(annotation)
    if origin in (dict, list):
        return get_args(annotation)[-1]
    if origin is not None:
        return next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def default_at(settings: Settings, path: str) -> Any:
    """The default at a dotted path; ``<name>`` and ``[]`` step into a fresh entry's model."""
    value: Any = settings
    cls: Any = type(settings)
    parts = re.split(r"\.(?![^<]*>)", path)
    for index, part in enumerate(parts):
        key = part.removesuffix("[]")
        if part.startswith("<"):
            if index == len(parts) - 1:
                return value  # "any entry": by default there is none
            value = None  # an entry of a dict: defaults are the entry model's
            continue
        field = cls.model_fields[key]
        value = getattr(value, key) if value is not None else field.get_default(call_default_factory=True)
        cls = model_of(field.annotation)
        if part.endswith("[]"):
            value = None
    return value


def documented(cell: str, count: int) -> list[Any]:
    """The documented default(s) of a row, as Python values (``none`` -> None)."""
    rate = re.fullmatch(r"`(\d+)`/min, burst `(\d+)`", cell)
    if rate:
        return [RateLimit(per_minute=float(rate.group(1)), burst=int(rate.group(2)))]
    if cell == "none":
        return [None] * count
    values = re.findall(r"`([^`]*)`", cell)
    if cell.startswith("`") and len(values) >= count:
        return [_literal(v) for v in values[:count]]
    raise AssertionError(f"docs/configuration.md: cannot read the default {cell!r}; teach this test")


def _literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if text == "[]":
        return []
    if text == "{}":
        return {}
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return Decimal(text)
    return text.strip('"')


def same(documented_value: Any, actual: Any) -> bool:
    if documented_value is None:
        return actual is None or actual in ([], {}, "")
    if isinstance(documented_value, Decimal):
        return not isinstance(actual, bool) and isinstance(actual, int | float | Decimal) and (
            Decimal(str(actual)) == documented_value)
    if isinstance(actual, Path):
        return str(actual) == documented_value
    return bool(documented_value == actual)


def test_every_default_in_the_configuration_table_is_the_settings_default(defaults: Settings) -> None:
    registry = NetworkRegistry.default()
    checked = 0
    for paths, cell in field_rows():
        if paths[0] in NOT_A_VALUE:
            said, meant = NOT_A_VALUE[paths[0]]
            assert cell == said, f"{paths[0]}: the docs now say {cell!r}; check it against Settings()"
            assert default_at(defaults, paths[0]) == meant, paths[0]
            continue
        if paths[0].startswith("chain.networks[].") and (per := re.fullmatch(
                r"([a-z0-9 ,-]+): `([^`]+)`; others none", cell)):
            # A default some built-in networks have and the rest lack.
            names = set(re.split(r", | and ", per.group(1)))
            assert names <= {network.name for network in registry}, names
            for network in registry:
                actual = getattr(network, paths[0].rsplit(".", 1)[1])
                expected = per.group(2) if network.name in names else None
                assert actual == expected, f"docs/configuration.md: {paths[0]} of {network.name} is {actual!r}"
            checked += 1
            continue
        values = documented(cell, len(paths))
        for path, value in zip(paths, values, strict=True):
            if path.startswith("chain.networks[]."):
                # An override's default is the built-in network's own value.
                leaf = path.rsplit(".", 1)[1]
                assert default_at(defaults, path) is None, path
                anvil = registry.get("anvil")
                actual = anvil.max_fee_per_gas // GWEI if leaf == "max_fee_per_gas_gwei" else getattr(anvil, leaf)
                if leaf == "max_fee_per_gas_gwei":
                    polygon = re.search(r"\(Polygon `(\d+)`\)", cell)
                    assert polygon and registry.get("polygon").max_fee_per_gas // GWEI == int(polygon.group(1))
            else:
                actual = default_at(defaults, path)
            assert same(value, actual), (
                f"docs/configuration.md says {path} defaults to {cell}; Settings() has {actual!r}")
            checked += 1
    assert checked >= 60, f"only {checked} documented defaults were read; has the table moved?"


TROUBLESHOOTING_DEFAULTS = [
    # (the sentence's wording, the field, what it says, converted to the field's unit)
    (r"sessions last (\d+) hours by\s+default \(`server\.token_ttl_seconds`\)",
     "server.token_ttl_seconds", lambda m: int(m.group(1)) * 3600),
    (r"above `max_fee_per_gas_gwei` \((\d+) gwei by default\)", None, lambda m: int(m.group(1))),
    (r"Approvals live `approvals\.ttl_seconds` \((\d+) minutes\)", "approvals.ttl_seconds",
     lambda m: int(m.group(1)) * 60),
    (r"Keep the default `server\.flush_interval_ms` \((\d+)\)", "server.flush_interval_ms", lambda m: int(m.group(1))),
    (r"not refused by default\s+\(`approvals\.on_new_message = \"(\w+)\"`\)", "approvals.on_new_message",
     lambda m: m.group(1)),
]


@pytest.mark.parametrize(("wording", "path", "value"), TROUBLESHOOTING_DEFAULTS,
                         ids=[p or "max_fee_per_gas_gwei" for _, p, _ in TROUBLESHOOTING_DEFAULTS])
def test_each_default_troubleshooting_states_is_the_settings_default(
    defaults: Settings, wording: str, path: str | None, value: Any
) -> None:
    text = (DOCS / "troubleshooting.md").read_text()
    found = re.search(wording, text)
    assert found, f"docs/troubleshooting.md no longer says /{wording}/: update this test with the new wording"
    actual = NetworkRegistry.default().get("anvil").max_fee_per_gas // GWEI if path is None else default_at(
        defaults, path)
    assert same(_literal(str(value(found))), actual), (found.group(0), actual)


def test_the_busy_entry_says_what_the_default_does_with_a_message_while_an_approval_waits(
    defaults: Settings,
) -> None:
    text = (DOCS / "troubleshooting.md").read_text()
    entry = text.split("**`busy`.**", 1)[1].split("\n\n", 1)[0]
    entry = " ".join(entry.split())
    assert defaults.approvals.on_new_message == "supersede"
    # The finding: it said a chat waiting for an approval "takes no new message", which is only
    # true with on_new_message = "busy".
    assert "takes no new message" not in entry, entry
    assert "sets the approval aside" in entry and 'by: "superseded"' in entry, entry
    assert 'Only with `approvals.on_new_message = "busy"`' in entry, entry


def test_the_troubleshooting_page_names_only_fields_settings_has(defaults: Settings) -> None:
    # A stated default of a field that was renamed away would compare against nothing.
    text = (DOCS / "troubleshooting.md").read_text()
    for path in set(re.findall(r"`((?:server|approvals|chain|limits|model|policy|signer|store|mcp)\.[a-z_.]+)`",
                               text)):
        default_at(defaults, path.rstrip("."))

