"""Run a command and report its wall time and the peak memory of its whole process tree.

    python scripts/peak_memory.py [--interval S] [--log FILE] -- ./dev test -m heavy

``/usr/bin/time -v`` reports the largest *single* process; a pytest run with two xdist workers is
three processes whose memory adds up, and what has to fit the machine is the sum. This samples the
resident set (RSS, from /proc, Linux only) of the command and all its descendants every
``--interval`` seconds and prints the largest total seen, with the time it took and the exit status
(the command's own, which this script exits with). Sampling can miss a spike shorter than the
interval; the README's figures use the default of 1 s.
"""

import argparse
import os
import signal
import subprocess
import sys
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children():
    """{pid: parent pid} of every process visible in /proc."""
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: the fields after the last ')'
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
    return parents


def _rss(pid):
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0  # gone between the listing and the read


def tree_rss(root):
    """Total RSS in bytes of ``root`` and all its descendants."""
    parents = _children()
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(_rss(pid) for pid in tree)


def run_measured(command, interval=1.0, log=None, **popen):
    """Run ``command`` to its end; ``(exit status, peak tree RSS in bytes, minutes at the peak, wall
    seconds)``. ``log``: an open file that gets a 'seconds total_GB' line per sample. A Ctrl-C waits
    for the command (which got the signal too) and is raised again; a SIGTERM (from the main thread's
    handler, here) is passed on to the command, which is waited for, and raised as KeyboardInterrupt:
    a ``kill`` of this script leaves no command running on without it."""
    start = time.monotonic()
    proc = subprocess.Popen(command, **popen)
    peak, at = 0, 0.0

    def pass_on(signum, frame):
        proc.send_signal(signum)
        raise KeyboardInterrupt

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, pass_on) if main_thread else None
    try:
        while proc.poll() is None:
            total = tree_rss(proc.pid)
            now = time.monotonic() - start
            if total > peak:
                peak, at = total, now
            if log:
                log.write(f"{now:.0f} {total / 2**30:.2f}\n")
                log.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        proc.wait()
        raise
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return proc.returncode, peak, at / 60, time.monotonic() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default 1)")
    p.add_argument("--log", help="also append 'seconds total_GB' samples to this file")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("no command given (put it after --)")
    log = open(args.log, "a") if args.log else None
    try:
        status, peak, at, elapsed = run_measured(command, args.interval, log)
    except KeyboardInterrupt:
        return 130
    finally:
        if log:
            log.close()
    print(f"peak memory of the process tree: {peak / 2**30:.1f} GiB (at {at:.1f} min); "
          f"wall time {elapsed / 60:.1f} min; exit status {status}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
