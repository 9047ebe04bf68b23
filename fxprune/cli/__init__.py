"""The ``fxprune`` command: prune, inspect, export and benchmark models from a shell or a build.

MODEL is a torchvision model name (``resnet18``, ``r2plus1d_18``), a ``package.module:factory``
spec (called without arguments), or a ``.pt2`` archive written by :func:`fxprune.serialize.save`.
Inputs are random tensors of the ``--input-shape`` shapes: one positional argument per shape,
or all of them as one list argument with ``--input-list`` (SlowFast's ``forward([slow, fast])``).

Exit codes: 0 success; 1 unexpected internal error (re-run with ``--debug``); 2 usage or user
error (unknown model, malformed shape or ratio, missing weights, any ``FxPruneError``); 3 a
benchmark budget was missed. ``--json`` prints one JSON document on stdout and nothing else;
progress and warnings go to stderr (``--quiet`` silences them).

This module assembles the parser and maps errors to exit codes; the subcommands live in
:mod:`fxprune.cli.commands`, their options in :mod:`fxprune.cli.arguments`.

Example:
    $ fxprune prune resnet18 --ratio 0.5 --input-shape 1,3,224,224 -o pruned.pt2 --onnx pruned.onnx
    $ fxprune bench resnet18 pruned.pt2 --input-shape 1,3,224,224 --max-latency-ms 10 --min-speedup 1.5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from ..errors import FxPruneError, RewriteError
from ..version import __version__
from .arguments import (
    EPILOGS,
    add_bench_arguments,
    add_export_arguments,
    add_inspect_arguments,
    add_prune_arguments,
)

# Handlers are bound to names of this module because build_parser looks them up here each time
# it runs: that keeps every one replaceable (tests patch ``cli._inspect`` to fake a crash).
from .commands import bench_command as _bench
from .commands import export_command as _export
from .commands import inspect_command as _inspect
from .commands import prune_command as _prune
from .commands import sensitivity_command as _sensitivity
from .inputs import parse_shape
from .output import EXIT_BUDGET, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, Progress
from .sensitivity import add_sensitivity_arguments

__all__ = ["EXIT_BUDGET", "EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"fxprune: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``fxprune`` argument parser with its four subcommands."""
    parser = _Parser(prog="fxprune", description="Structured pruning for PyTorch CNNs (2D and 3D): prune, "
                     "inspect, export to ONNX, benchmark.", epilog="Run 'fxprune COMMAND --help' for examples.")
    parser.add_argument("--version", action="version", version=f"fxprune {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout, nothing else")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress or warnings on stderr")
    common.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    inputs = _Parser(add_help=False)
    inputs.add_argument("--input-shape", action="append", type=parse_shape, metavar="N,C,...",
                        help="shape of one random input tensor (repeatable)")
    inputs.add_argument("--input-list", action="store_true", help="pass the tensors as one list argument")

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, parents=[inputs, common],
                                  epilog=EPILOGS[name], formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(handler=handler)
        return sub

    add_prune_arguments(command("prune", "Prune a model and save it as .pt2 (and ONNX).", _prune))
    add_inspect_arguments(command("inspect", "List the channel groups of a model.", _inspect))
    add_export_arguments(command("export", "Export a model or a .pt2 to ONNX, checked in ONNX Runtime.", _export))
    add_bench_arguments(command("bench", "Benchmark an original and a pruned model; check budgets.", _bench))
    add_sensitivity_arguments(command("sensitivity", "Prune each channel group alone and measure a metric.",
                                      _sensitivity))
    return parser


def _one_line(error: BaseException | str) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


@contextlib.contextmanager
def _quiet_libraries(args: argparse.Namespace) -> Iterator[list[warnings.WarningMessage]]:
    """Keep library warnings and logs off the terminal unless --debug; collect fxprune's own warnings."""
    if args.debug:
        yield []
        return
    torch_logger = logging.getLogger("torch")
    level = torch_logger.level
    torch_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        torch_logger.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    stdout, progress = sys.stdout, Progress(args.quiet)
    try:
        with _quiet_libraries(args) as caught, contextlib.redirect_stdout(sys.stderr):
            try:
                outcome = args.handler(args, progress)
            finally:
                own = [w for w in caught if str(w.message).startswith("fxprune")]
                for warning in own if not args.quiet else ():
                    print(f"warning: {_one_line(str(warning.message))}", file=sys.stderr)
    except (FxPruneError, OSError) as error:  # OSError: a path that cannot be read or written
        if args.debug:
            traceback.print_exc()
        internal = isinstance(error, RewriteError)
        hint = " (an internal error: please report it with --debug output)" if internal else ""
        print(f"fxprune: error: {_one_line(error)}{hint}", file=sys.stderr)
        return EXIT_INTERNAL if internal else EXIT_USAGE
    except KeyboardInterrupt:
        print("fxprune: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a bug or an unforeseen library failure: short message, --debug for more
        if args.debug:
            traceback.print_exc()
        print(f"fxprune: internal error: {type(error).__name__}: {_one_line(error)[:300]} "
              "(re-run with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    print(json.dumps(outcome.data, indent=2, default=str) if args.json else outcome.text, file=stdout, flush=True)
    for problem in outcome.problems:
        print(f"fxprune: {problem}", file=sys.stderr)
    return outcome.code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fxprune`` command with ``argv`` (default ``sys.argv[1:]``) and return its exit status.

    Example:
        >>> main(["inspect", "resnet18", "--input-shape", "1,3,64,64", "--quiet"])
        0
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    return _run(args)
