"""Command line: parse arguments, build the one Context, call the use cases, format results.

Heavy modules are imported inside the command that needs them, so ``thinpool --help``
and ``thinpool plan --disk-size`` start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from thinpool import __version__
from thinpool.cli.pool import (
    EXIT_CHANGES,
    EXIT_CODES_HELP,
    EXIT_ERROR,
    EXIT_OK,
    add_apply_parser,
    add_engine_parser,
    add_lifecycle_parsers,
    add_plan_parser,
)
from thinpool.errors import ThinpoolError

if TYPE_CHECKING:
    from thinpool.app.context import Context

EXIT_INTERRUPTED = 130
__all__ = ["EXIT_CHANGES", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    from thinpool.cli.backup import add_parser as add_backup_parser
    from thinpool.cli.boot import add_parsers as add_boot_parsers
    from thinpool.cli.maintain import add_parser as add_maintain_parser
    from thinpool.cli.rehearse import add_parser as add_rehearse_parser
    from thinpool.cli.repair import add_parser as add_repair_parser
    from thinpool.cli.watch import add_parsers as add_watch_parsers

    parser = argparse.ArgumentParser(
        prog="thinpool",
        description="LVM thin-pool storage for container hosts: planned in exact extents, applied "
        "safely and idempotently, rehearsed in a throwaway VM.",
        epilog="start with: thinpool plan --disk-size 744GiB\n\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"thinpool {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every command run (to stderr)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_plan_parser(commands)
    add_apply_parser(commands)
    add_lifecycle_parsers(commands)
    add_engine_parser(commands)
    add_watch_parsers(commands)
    add_maintain_parser(commands)
    add_backup_parser(commands)
    add_repair_parser(commands)
    add_boot_parsers(commands)
    add_rehearse_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None, context: Context | None = None) -> int:
    """Run one command; ``context`` is the real system unless a test hands in its own."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)  # fmt: skip
    handler: Callable[[argparse.Namespace, Context], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        if context is None:
            from thinpool.app.context import system_context

            context = system_context(json=bool(getattr(args, "json", False)))
        return handler(args, context)
    except ThinpoolError as error:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps({"schema_version": 1, "kind": "thinpool-error", **error.to_dict()}) + "\n")
        print(f"thinpool: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("thinpool: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
