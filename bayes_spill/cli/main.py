"""The ``bayes-spill`` command: a thin layer that parses arguments and calls one library function.

Bad input (the package's own errors) is reported as one clear message and exit code 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys

from bayes_spill.cli import bench, calibration, checking, fitting, policy, prepare, tables, twostep
from bayes_spill.errors import BayesSpillError

COMMAND_GROUPS = (fitting, policy, twostep, calibration, checking, tables, bench, prepare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayes-spill",
        description="Knowledge spillovers, absorptive capacity and spatial sorting (Lychagin 2010) as one Bayesian model.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    received: list[int] = []

    def interrupt(signum, frame):
        # SIGTERM (``kill``, a batch scheduler's time limit) is handled like Ctrl-C, so that the
        # atomic writers remove their temporary files and nothing half-written is left.
        received.append(signum)
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: signals cannot be handled here
        previous = None
    try:
        return args.func(args)
    except BayesSpillError as exc:
        print(f"bayes-spill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. an output folder that cannot be created or written
        print(f"bayes-spill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # a command that was writing a fit folder says what the folder holds (fit_folder.Interrupted)
        outcome = getattr(exc, "outcome", None) or "no partial output was written"
        print(f"bayes-spill {args.command}: interrupted; {outcome}", file=sys.stderr)
        return 128 + (received[0] if received else signal.SIGINT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
