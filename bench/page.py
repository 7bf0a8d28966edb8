"""What every benchmark page starts and ends with: the run's date and command, and the write.

A page is read weeks later next to a rerun, so it says exactly how it was made; writing it is
atomic, so an interrupted benchmark never leaves half a page in docs/.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bot.atomic import atomic_write_text


def page_arguments(doc: str | None, out: Path) -> argparse.ArgumentParser:
    """`--out` (default `out`) and `--quick`, for a benchmark that is quick already."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0] if doc else None)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--quick", action="store_true", help="accepted for bench.run_all; this one is quick already")
    return parser


def run_stamp(module: str, argv: Sequence[str] | None, quick_note: str = "") -> str:
    """`- date: … UTC; command: `python -m bench.x --flag`` (with the quick run's warning)."""
    args = list(argv) if argv else sys.argv[1:]
    command = " ".join(["python", "-m", module, *(shlex.quote(a) for a in args)])
    return f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; command: `{command}`" + (
        f" (**{quick_note}; not the real figures**)" if quick_note else "")


def write_page(path: Path, lines: Sequence[str]) -> None:
    atomic_write_text(path, "\n".join(lines))
    sys.stderr.write(f"wrote {path}\n")
