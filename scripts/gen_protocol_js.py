"""Rewrite the generated constants block of lunark/web/lib/protocol.js from lunark.protocol.

    python scripts/gen_protocol_js.py           # rewrite the block in place
    python scripts/gen_protocol_js.py --check   # exit 1 if the file is out of date

Event names, statuses, decision types and error codes are defined once, in Python; the dApp's
JavaScript client gets them from here. Only the text between the markers is replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lunark.protocol import render_js_constants

JS = Path(__file__).resolve().parent.parent / "lunark" / "web" / "lib" / "protocol.js"
BEGIN = "// BEGIN GENERATED: python scripts/gen_protocol_js.py (from lunark/protocol.py)"
END = "// END GENERATED"


def render(text: str) -> str:
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError(f"expected exactly one {BEGIN!r} and one {END!r}")
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{render_js_constants()}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")
    parser.add_argument("--path", type=Path, default=JS, help="the file (default: the dApp's protocol.js)")
    args = parser.parse_args(argv)
    text = args.path.read_text(encoding="utf-8")
    fresh = render(text)
    if args.check:
        if fresh != text:
            print(f"{args.path} is out of date: run python scripts/gen_protocol_js.py", file=sys.stderr)
            return 1
        return 0
    args.path.write_text(fresh, encoding="utf-8")
    print(f"rewrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
