"""Command line: parse arguments, build the one Context, call the use cases, format results.

Heavy modules are imported inside the command that needs them, so ``thinpool --help``
and ``thinpool plan --disk-size`` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from thinpool import __version__
from thinpool.cli.exits import EXIT_CHANGES, EXIT_CODES_HELP, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK
from thinpool.core.envelope import envelope
from thinpool.errors import ThinpoolError

if TYPE_CHECKING:
    from thinpool.app.context import Context

__all__ = ["EXIT_CHANGES", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "build_parser", "main"]

# Each command, and the module of thinpool.cli whose add_parsers() adds it; in the order --help lists them.
COMMANDS = {
    "plan": "pool", "apply": "pool", "grow": "pool", "destroy": "pool", "engine": "pool",
    "status": "watch", "doctor": "watch", "metrics": "watch",
    "maintain": "maintain", "backup": "backup", "repair": "repair", "adopt": "adopt",
    "activate": "boot", "install-units": "boot",
    "migrate": "migrate",
    "rehearse": "rehearse",
}  # fmt: skip


def command_named(argv: Sequence[str]) -> str | None:
    """The command argv runs (the first word that is not an option), if it is one."""
    word = next((item for item in argv if not item.startswith("-")), None)
    return word if word in COMMANDS else None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or, when ``command`` is named, of its module's commands only:
    a run imports (and builds) only the part of the CLI it uses."""
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
    modules = [COMMANDS[command]] if command else list(dict.fromkeys(COMMANDS.values()))
    for module in modules:
        importlib.import_module(f".{module}", __package__).add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None, context: Context | None = None) -> int:
    """Run one command; ``context`` is the real system unless a test hands in its own."""
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(command_named(words))
    args = parser.parse_args(words)
    if args.verbose:  # else logging stays unimported unless a command needs it; its warnings print bare
        import logging

        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    handler: Callable[[argparse.Namespace, Context], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_ERROR
    try:
        if context is None:
            from thinpool.app.context import system_context

            context = system_context(json=bool(getattr(args, "json", False)))
        command: str | None = getattr(args, "changes", None)  # cli.arguments.changes_the_host marks these
        if command is None or getattr(args, "dry_run", False):  # a preview changes nothing: it never waits
            return handler(args, context)
        with context.changing(command, args.lock_wait):
            return handler(args, context)
    except ThinpoolError as error:
        if getattr(args, "json", False):
            sys.stdout.write(json.dumps(envelope("thinpool-error", error.to_dict())) + "\n")
        print(f"thinpool: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("thinpool: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
