"""Measure the heavy suite's big-memory chain one case at a time, resumably.

    python scripts/heavy_chain.py --results docs/heavy_chain.json [--stop-after MIN] [-k EXPR] [--again] [FILES]
    python scripts/heavy_chain.py --results docs/heavy_chain.json --render

The big-memory cases of ``./dev test -m heavy`` (tests/conftest.py ``BIG_MEMORY_CHECKS``, marked
``big_memory``) run one after another, each in a fresh process: together they take hours on 2 cores,
longer than one sitting. This runs each case the way that chain does (``pytest -n 0 -m heavy NODEID``
in a process of its own) and measures its wall time and the peak memory of its process tree
(scripts/peak_memory.py). The results file is rewritten after every case, and cases it already holds
as passed are not run again, so a run that stops (``--stop-after``, Ctrl-C, a closed session) goes on
where it left off (``--again`` measures the selected cases anew, after a change to the code; each
case records the commit it ran at). ``--render`` prints the table the README quotes, with the totals.
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from peak_memory import run_measured

ROOT = Path(__file__).resolve().parents[1]
FORMAT = "crossframe-heavy-chain/1"
ISOLATED = "CROSSFRAME_TEST_ISOLATED"  # tests/conftest.py: run the case in this process, not a child


class UsageError(Exception):
    """A bad argument or results file: one line, exit 2."""


def collect(files=(), keyword=None):
    """The node ids of the big-memory cases in ``files`` (all test files if none), in run order."""
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m", "big_memory",
           *(["-k", keyword] if keyword else []), *files]
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode not in (0, 5):  # 5: nothing collected
        tail = done.stdout.strip().splitlines()[-1:] or ["no output"]
        raise UsageError(f"collecting the big-memory cases failed (exit {done.returncode}): {tail[0]}")
    return [line.strip() for line in done.stdout.splitlines() if "::" in line and not line.startswith(" ")]


def _outcome(status, output):
    """'passed', 'skipped', 'failed' or 'error' from pytest's exit status and its last summary line."""
    last = output.strip().splitlines()[-1] if output.strip() else ""
    if status == 0 and re.search(r"\b1 passed\b", last) and "skipped" not in last:
        return "passed", last
    if status == 0 and "skipped" in last:
        return "skipped", last
    return ("failed" if status == 1 else "error"), last


def measure_case(nodeid, cwd=ROOT, interval=1.0):
    """Run one case alone, in a fresh interpreter; its outcome, wall time and peak tree memory."""
    env = dict(os.environ, **{ISOLATED: "1"})
    cmd = [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-m", "heavy", "-q",
           "--no-header", "-rfEs", nodeid]
    with tempfile.TemporaryFile("w+") as out:
        status, peak, _, wall = run_measured(cmd, interval, cwd=cwd, env=env, stdout=out,
                                             stderr=subprocess.STDOUT, text=True)
        out.seek(0)
        output = out.read()
    outcome, line = _outcome(status, output)
    case = {"outcome": outcome, "summary": line[-300:], "wall_s": round(wall, 1), "peak_gib": round(peak / 2**30, 2)}
    if outcome in ("failed", "error"):
        case["failure"] = failure_lines(output)
    return case


def failure_lines(output, keep=40):
    """Why a case failed: pytest's ``E`` lines (the assertion and its message; the last ``keep``) and its
    short summary's FAILED/ERROR lines, or the output's last lines if it has neither (a killed process)."""
    lines = output.splitlines()
    wanted = [line.rstrip() for line in lines if line.startswith(("E ", "FAILED ", "ERROR "))]
    return (wanted or [line.rstrip() for line in lines if line.strip()])[-keep:]


def machine():
    """Where a figure was measured: cores, memory and the frameworks' versions."""
    with open("/proc/meminfo") as f:
        kib = int(f.readline().split()[1])
    versions = {}
    for name, dists in (("torch", ("torch",)), ("tensorflow", ("tensorflow", "tensorflow-cpu")), ("jax", ("jax",))):
        versions[name] = None
        for dist in dists:  # TensorFlow installs as tensorflow-cpu on some machines (this one)
            try:
                versions[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                pass
    return {"cores": os.cpu_count(), "memory_gib": round(kib / 2**20, 1), "python": platform.python_version(),
            **versions}


def commit(results=None):
    """The checkout a figure was measured at: the commit, with "+changes" if tracked files differ from it
    (``results``, the file this script rewrites after every case, does not count)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD")
    if not head:
        return None
    exclude = [f":(exclude){Path(results).resolve()}"] if results is not None else []
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", *exclude)
    return head + ("+changes" if changed else "")


def load(path):
    """The results at ``path`` ({} if there is no file); anything else there is refused, not replaced."""
    if not path.exists():
        return {"format": FORMAT, "cases": {}}
    if not path.is_file():
        raise UsageError(f"{path}: not a regular file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"{path}: not a results file of this script ({type(e).__name__}); "
                         "give a new path") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("cases"), dict):
        raise UsageError(f"{path}: not a results file of this script (no \"format\": \"{FORMAT}\"); give a new path")
    return data


def save(path, data):
    """Write ``data`` whole or not at all (a temporary file beside ``path``, then a rename)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # an ordinary file's mode, not mkstemp's 0600
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def render(data):
    """The markdown table of the measured cases, then one line of totals."""
    cases, order = data["cases"], data.get("collected") or sorted(data["cases"])
    rows = ["| case | result | wall time | peak memory |", "| --- | --- | --- | --- |"]
    for nodeid in order:
        case = cases.get(nodeid)
        name = nodeid.split("::", 1)[-1]
        file = Path(nodeid.split("::", 1)[0]).name
        if case is None:
            rows.append(f"| `{file}::{name}` | not measured yet | | |")
        else:
            rows.append(f"| `{file}::{name}` | {case['outcome']} | {case['wall_s'] / 60:.1f} min "
                        f"| {case['peak_gib']:.1f} GiB |")
    done = [cases[n] for n in order if n in cases]
    total = sum(c["wall_s"] for c in done) / 60
    peak = max((c["peak_gib"] for c in done), default=0.0)
    rows.append("")
    rows.append(f"{len(done)} of {len(order)} cases measured, "
                f"{sum(c['outcome'] == 'passed' for c in done)} passed; "
                f"{total:.1f} min in all ({total / 60:.2f} h), the largest peak {peak:.1f} GiB")
    failed = [n for n in order if cases.get(n, {}).get("failure")]
    if failed:
        rows += ["", "Why the failed cases failed (the first line pytest gave; the rest in the results file):"]
        rows += [f"- `{Path(n.split('::', 1)[0]).name}::{n.split('::', 1)[-1]}`: {cases[n]['failure'][0][:300]}"
                 for n in failed]
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", required=True, type=Path, help="the JSON file of results (read, then rewritten)")
    p.add_argument("--render", action="store_true", help="print the table of the results file and stop")
    p.add_argument("--stop-after", type=float, metavar="MIN",
                   help="start no case after this many minutes (the one running finishes)")
    p.add_argument("-k", dest="keyword", help="only the cases pytest's -k selects")
    p.add_argument("--again", action="store_true",
                   help="measure the selected cases even where they passed before (after a change to the code)")
    p.add_argument("files", nargs="*", help="test files to take the cases from (default: all)")
    args = p.parse_args(argv)
    try:
        if args.stop_after is not None and not args.stop_after > 0:
            raise UsageError(f"--stop-after: expected minutes > 0, found {args.stop_after}")
        if not args.results.parent.is_dir():
            raise UsageError(f"{args.results}: its folder does not exist")
        data = load(args.results)
        if args.render:
            print(render(data))
            return 0
        for f in args.files:
            if not (ROOT / f).is_file() and not Path(f).is_file():
                raise UsageError(f"{f}: no such test file")
        chain = collect()  # the whole chain, for the table's "k of n"
        cases = collect(args.files, args.keyword) if args.files or args.keyword else chain
    except UsageError as e:
        print(f"heavy_chain: error: {e}", file=sys.stderr)
        return 2
    data["collected"] = chain
    todo = [n for n in cases if args.again or data["cases"].get(n, {}).get("outcome") != "passed"]
    print(f"{len(cases)} big-memory cases, {len(cases) - len(todo)} already measured, {len(todo)} to run",
          file=sys.stderr)
    start = datetime.datetime.now()
    for i, nodeid in enumerate(todo, 1):
        minutes = (datetime.datetime.now() - start).total_seconds() / 60
        if args.stop_after is not None and minutes >= args.stop_after:
            print(f"stopped after {minutes:.1f} min (--stop-after); run again to go on", file=sys.stderr)
            break
        print(f"[{i}/{len(todo)}] {nodeid} ...", file=sys.stderr, flush=True)
        try:
            case = measure_case(nodeid)
        except KeyboardInterrupt:
            print("interrupted: this case is not recorded; run again to go on", file=sys.stderr)
            return 130
        case["date"] = datetime.date.today().isoformat()
        case["machine"] = machine()
        case["commit"] = commit(args.results)
        data["cases"][nodeid] = case
        save(args.results, data)
        print(f"[{i}/{len(todo)}] {nodeid}: {case['outcome']}, {case['wall_s'] / 60:.1f} min, "
              f"{case['peak_gib']:.1f} GiB", file=sys.stderr, flush=True)
    print(render(data))
    return 0 if all(data["cases"].get(n, {}).get("outcome") in ("passed", None) for n in cases) else 1


if __name__ == "__main__":
    sys.exit(main())
