"""The `rlnorm` command line: one subcommand per job, each a thin layer over a library function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_norms(args: argparse.Namespace) -> int:
    from rlnorm.norms import describe_norms

    for name, description in describe_norms().items():
        print(f"{name:<10} {description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlnorm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    norms = commands.add_parser("norms", help="list the registered normalization layers")
    norms.set_defaults(func=_cmd_norms)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
