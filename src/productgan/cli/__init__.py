"""The ``productgan`` command: one subcommand per job. Parses, validates, calls one function.

Each module here registers the commands of one job in its ``COMMANDS`` (``training``: prepare,
train; ``images``: generate, export; ``explore``: interpolate, variants, project, neighbours,
synth; ``steering``: directions, colourways, steer; ``reports``: evaluate, report; ``serving``:
serve); ``main`` collects them, picks one and turns its errors into one sentence and an exit code.
Options accept dashes or underscores (``--batch-size`` and ``--batch_size``), and reach the
library by name (``common.call``).
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

from productgan.cli import explore, images, reports, serving, steering, training
from productgan.cli.common import Command, normalise, share_busy_cpus
from productgan.errors import ProductganError

COMMANDS: dict[str, Command] = {
    command.name: command
    for module in (training, images, explore, steering, reports, serving)
    for command in module.COMMANDS
}


def _usage() -> str:
    lines = ["usage: productgan COMMAND [options]   (productgan COMMAND --help for its options)", "", "commands:"]
    width = max(map(len, COMMANDS)) + 2
    lines += [f"  {name:<{width}}{command.help}" for name, command in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, args = argv[0], normalise(argv[1:])
    debug = "--debug" in args or os.environ.get("PRODUCTGAN_DEBUG") == "1"
    if command not in COMMANDS:
        print(f"productgan: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    if command != "train":  # train times its own step to decide (train/calibration.py)
        share_busy_cpus()
    try:
        return COMMANDS[command].handler(args)
    except ProductganError as error:
        if debug:
            raise
        print(f"productgan {command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except argparse.ArgumentError as error:
        if debug:
            raise
        message = " ".join(str(error).split())
        print(f"productgan {command}: error: {message}. See `productgan {command} --help`.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"productgan {command}: interrupted.", file=sys.stderr)
        return 130
    except OSError as error:  # a path that cannot be written or read: a full disk, no permission, no folder
        if debug:
            raise
        print(f"productgan {command}: error: {describe_os_error(error)}", file=sys.stderr)
        return 1


def describe_os_error(error: OSError) -> str:
    """An operating-system error as one sentence with the path and what to do about it."""
    where = f" ({error.filename})" if error.filename else ""
    reason = (error.strerror or str(error)).rstrip(".")
    full = error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(error)
    fix = (
        "free some space on that disk and run the command again; earlier results are kept"
        if full
        else "check the permissions"
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
        else "check the path"
    )
    return f"{reason}{where}; {fix}."


if __name__ == "__main__":
    sys.exit(main())
