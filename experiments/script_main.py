"""How every experiment script ends: parse its arguments, run, and turn a UserError into one
line on stderr with exit status 2 (the CLI's rule: never a traceback for bad input)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from search_spaces.errors import UserError


def run_script(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], object], argv: list[str] | None,
               script: str) -> int:
    """`run(parsed arguments)`; 0, or 2 after printing "SCRIPT: error: ..." for a UserError."""
    try:
        run(parser.parse_args(argv))
    except UserError as e:
        print(f"{Path(script).name}: error: {e}", file=sys.stderr)
        return 2
    return 0
