"""``dynharness``: the command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable
taking the parsed args and returning the exit code). ``main`` turns every
:class:`~harness.errors.UserError` into one line on stderr and its exit code:
bad input never shows a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from harness.errors import ONE_LINE_ERRORS
from harness.signals import INTERRUPTED_EXIT, signal_name

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS = ("run", "check", "ls", "heal", "cleanup", "image", "cluster", "campaign", "selftest", "explore", "report", "serve",
            "import_edn")

EPILOG = """exit codes: 0 valid, 1 anomalies found, 2 unknown, 3 the run failed or bad input,
  130 interrupted (SIGINT, SIGTERM or SIGHUP: faults healed and cluster torn down first).
examples:
  dynharness run                                  # 30 s demo: 5 local nodes, N=3 R=2 W=2, cart, partitions
  dynharness run --spec examples/riak-lww.toml    # a test spec file (every field is also a flag)
  dynharness check histories/latest               # re-run the checkers on a stored run
  dynharness ls                                   # stored runs and their verdicts
  dynharness explore --nemesis partition,crash    # search fault schedules; shrink a failure to a reproducer
"""


def one_line(text: str) -> str:
    """``text`` with control characters escaped (``\\n``): an error quoting what the user typed
    (a flag value, a path) stays on one line whatever they typed."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags in one line with exit code 3 (not argparse's 2 = unknown)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see --help)\n")
        raise SystemExit(3)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dynharness", description="Jepsen-style fault injection and consistency checking around a reference Dynamo.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"harness.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"harness.cli.{name}":
                continue  # subcommand not built into this version
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 3
    try:
        return int(args.func(args) or 0)
    except ONE_LINE_ERRORS as e:
        sys.stderr.write(f"dynharness: error: {one_line(str(e))}\n")
        return e.exit_code
    except KeyboardInterrupt as e:   # SIGINT, SIGTERM or SIGHUP (harness.signals): cleanup is done by now
        sys.stderr.write(f"dynharness: interrupted by {signal_name(e)}\n")
        return INTERRUPTED_EXIT
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
