"""Rewrite the generated reference block of docs/protocol.md from lunark.protocol.

    python scripts/gen_protocol_doc.py           # rewrite the block in place
    python scripts/gen_protocol_doc.py --check   # exit 1 if the doc is out of date

Only the text between the BEGIN/END markers is replaced; the prose around it
is written by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lunark.protocol._render import render_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
BEGIN = "<!-- BEGIN GENERATED: python scripts/gen_protocol_doc.py -->"
END = "<!-- END GENERATED -->"


def split(text: str) -> tuple[str, str, str]:
    """The doc as (before and including BEGIN, the generated block, END and after)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"expected exactly one {BEGIN!r} and one {END!r}")
    head, rest = text.split(BEGIN)
    block, tail = rest.split(END)
    return head + BEGIN, block, END + tail


def render(text: str) -> str:
    """``text`` with its generated block replaced by the current reference."""
    head, _, tail = split(text)
    return f"{head}\n\n{render_markdown()}\n{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/protocol.md is out of date")
    parser.add_argument("--path", type=Path, default=DOC, help="the doc to rewrite (default: docs/protocol.md)")
    args = parser.parse_args(argv)
    text = args.path.read_text(encoding="utf-8")
    updated = render(text)
    if args.check:
        if updated != text:
            print(f"{args.path} is out of date: run python scripts/gen_protocol_doc.py", file=sys.stderr)
            return 1
        return 0
    if updated != text:
        args.path.write_text(updated, encoding="utf-8")
        print(f"rewrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
