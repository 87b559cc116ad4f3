"""`nas` command line: each subcommand group lives in its own module and registers itself here."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a busy 2-core machine spinning threads made
# training 10x slower. OpenMP reads this once, when torch loads, so it is set before any import.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from search_spaces.errors import UserError  # noqa: E402

# each module's `register(sub)` adds its subcommands to the `nas` parser
COMMAND_GROUPS = ["nas.arch_cli", "nas.search_cli", "nas.supernet_cli", "latency_tables.cli"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's usage dump is noise for a typo: one line, status 2
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="Hardware-aware neural architecture search.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMAND_GROUPS:
        importlib.import_module(module).register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse and dispatch; bad input becomes one line on stderr and exit status 2."""
    prog = parser.prog
    try:
        args = parser.parse_args(argv)
        return args.func(args) or 0
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `nas ... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv=None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
