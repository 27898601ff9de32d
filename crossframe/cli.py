"""The ``crossframe`` command line: a small dispatcher over the modules in ``crossframe/commands``.

``main(argv)`` imports only the module of the subcommand being run, parses its arguments and calls
its ``run(args)``. Bad input (``archspec.CrossframeError`` and its subclasses, a missing file) becomes one line on stderr,
``crossframe: error: <message>``, and exit status 2; ``--traceback`` (or ``CROSSFRAME_TRACEBACK=1``)
shows the full traceback instead. Bad input is ``archspec.CrossframeError`` (``SpecError``,
``WeightError``, ``ConfigError`` ...) or an ``OSError`` naming a path; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from archspec.errors import CrossframeError, Interrupted

from . import __version__, commands

PROG = "crossframe"
EXIT_USAGE = 2


def _selected(argv):
    """The subcommand named in ``argv`` (its first non-option word), before parsing."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token
    return None


def build_parser(selected=None):
    """The argument parser; only ``selected``'s module is imported (to add its arguments).

    Returns ``(parser, module)``, ``module`` being None when no known subcommand is selected.
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Efficient CNNs from one JSON spec in PyTorch, Keras and Flax.",
        epilog=f"`{PROG} COMMAND -h` describes a command.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="show the Python traceback of an error instead of one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    module = None
    for name in commands.names():
        if name == selected:
            module = commands.load(name)
            p = sub.add_parser(name, help=module.HELP, description=module.HELP)
            module.add_arguments(p)
        else:
            sub.add_parser(name, help=commands.help_of(name), add_help=False)
    return parser, module


def _ours(err):
    """Whether ``err`` is bad input (exit 2, one line) rather than a bug (traceback).

    Bad input is :class:`archspec.CrossframeError`, which every package raises wherever a user can
    cause a failure, or an ``OSError`` about a path (a missing file, a full disk, no permission).
    """
    return isinstance(err, CrossframeError) or (isinstance(err, OSError) and err.filename is not None)


def one_line(err) -> str:
    """``err``'s message on one line (``WeightError.one_line()`` where the error offers one)."""
    if callable(getattr(err, "one_line", None)):
        text = err.one_line()
    elif isinstance(err, OSError) and err.filename is not None:
        text = f"{err.filename}: {err.strerror or err}"
    else:
        text = str(err)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return "; ".join(lines) or type(err).__name__


def main(argv=None) -> int:
    """Run ``crossframe`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        parser, module = build_parser(_selected(argv))
    except CrossframeError as err:  # a command whose framework is missing cannot even list its flags
        if os.environ.get("CROSSFRAME_TRACEBACK", "") not in ("", "0") or "--traceback" in argv:
            raise
        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)  # usage errors: argparse prints them and exits with status 2
    args.cli_argv = argv  # a launcher (train --processes) starts the same command again
    show_traceback = args.traceback or os.environ.get("CROSSFRAME_TRACEBACK", "") not in ("", "0")
    previous = _raise_on_sigterm()
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt as err:
        status = err.exit_status if isinstance(err, Interrupted) else 128 + signal.SIGINT
        print(f"{PROG}: interrupted ({signal.Signals(status - 128).name})", file=sys.stderr)
        return status
    except BrokenPipeError:  # `crossframe list | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as err:
        if show_traceback or not _ours(err):
            raise
        print(f"{PROG}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_on_sigterm():
    """Make SIGTERM raise :class:`Interrupted` (as Ctrl-C raises KeyboardInterrupt), so that staged
    outputs are cleaned up and training saves; returns the previous handler (None off the main thread)."""
    def handler(signum, frame):
        raise Interrupted(signum)
    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return None


if __name__ == "__main__":
    sys.exit(main())
