"""Try crossframe's command line on hostile and careless inputs; print the table of docs/RELIABILITY.md.

    PYTHONPATH=. python scripts/hostile_inputs.py                      # the table on stdout
    PYTHONPATH=. python scripts/hostile_inputs.py --update docs/RELIABILITY.md
    PYTHONPATH=. python scripts/hostile_inputs.py --only fifo,dev-zero  # some cases

Every case builds its input in a fresh temporary directory (beside a "user" file and a "user"
directory that no command is asked to write), runs ``python -m crossframe ...`` in a child process
with a time limit, and records: the exit status, the first ``crossframe: error:`` line, whether a
traceback was printed, the peak resident memory of the child, the time, and every file that appeared,
changed or vanished in the directory. A case passes when the status is the expected one (2 for bad
input), no traceback was printed, nothing outside the expected outputs was touched, and the child
neither hung nor ran out of its memory cap.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- hostile-inputs:begin -->", "<!-- hostile-inputs:end -->"
TIME_LIMIT_S = 180
MEMORY_CAP_BYTES = 6 << 30  # a child that needs more than this for a few-KB input has failed
ARCH = "dsconv_cnn"


@dataclass
class Case:
    key: str
    klass: str
    example: str
    make: Callable  # (dir) -> argv list (after "crossframe"); may write files into dir
    expect: int = 2
    outputs: tuple = ()  # names the command may create (success cases)
    hide: tuple = ()     # modules made unimportable in the child
    signal_after: float | None = None  # send SIGTERM after this many seconds


@dataclass
class Result:
    case: Case
    status: int | None
    line: str
    traceback: bool
    rss_mb: float
    seconds: float
    touched: list = field(default_factory=list)

    @property
    def passed(self):
        return (self.status == self.case.expect and not self.traceback and not self.touched
                and not self.rss_mb * (1 << 20) > MEMORY_CAP_BYTES)


# -- inputs ----------------------------------------------------------------------------------------

def _spec():
    import archspec

    return archspec.load(ARCH)


def _canonical(d, name="w.safetensors", **patch):
    import numpy as np

    import weight_transfer

    spec = _spec()
    w = weight_transfer.random_weights(spec, seed=0)
    for k, v in patch.items():
        w[k.replace("__", ".")] = np.asarray(v, dtype=np.float32)
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in w.items()}, str(d / name),
              metadata={"format": "crossframe-canonical", "spec_name": spec.name})
    return d / name


def _keras_file(d):
    src = _canonical(d)
    dst = d / "w.weights.h5"
    subprocess.run([sys.executable, "-m", "crossframe", "convert", ARCH, str(src), str(dst), "--from", "canonical",
                    "--to", "keras"], check=True, cwd=d, env=_env(), capture_output=True)
    src.unlink()
    return dst


def _h5_replace(path, mutate):
    import h5py

    with h5py.File(path, "r+") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        target = sorted(names)[0]
        mutate(f, target, f[target].shape, f[target].dtype)
        return target


def external_h5(d):
    secret = d / "secret.bin"
    secret.write_bytes(os.urandom(1 << 16))
    path = _keras_file(d)

    def mutate(f, name, shape, dtype):
        import numpy as np

        del f[name]
        f.create_dataset(name, shape=shape, dtype=dtype,
                         external=[(str(secret), 0, int(np.prod(shape)) * np.dtype(dtype).itemsize)])
    _h5_replace(path, mutate)
    return path


def virtual_h5(d):
    import h5py
    import numpy as np

    other = d / "other.h5"
    path = _keras_file(d)
    with h5py.File(path, "r") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        name = sorted(names)[0]
        shape, dtype = f[name].shape, f[name].dtype
    with h5py.File(other, "w") as g:
        g.create_dataset("data", data=np.full(shape, 7, dtype))

    def mutate(f, name, shape, dtype):
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[...] = h5py.VirtualSource(str(other), "data", shape=shape)
        del f[name]
        f.create_virtual_dataset(name, layout)
    _h5_replace(path, mutate)
    return path


def bomb_h5(d):
    path = _keras_file(d)

    def mutate(f, name, shape, dtype):
        del f[name]
        f.create_dataset(name, shape=(1 << 17, 1 << 15), dtype="float32", chunks=(1024, 1024), compression="gzip")
    _h5_replace(path, mutate)
    return path


def bomb_keras_zip(d):
    path = d / "w.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.0.0"}))
        z.writestr("config.json", "{}")
        with z.open("model.weights.h5", "w", force_zip64=True) as member:
            block = bytes(1 << 20)
            for _ in range(8 << 10):  # 8 GiB of zeros, a few MB compressed
                member.write(block)
    return path


def spec_file(d, mutate, name="evil.json"):
    doc = json.loads((ROOT / "archspec" / "specs" / f"{ARCH}.json").read_text())
    text = mutate(doc)
    (d / name).write_text(text if isinstance(text, str) else json.dumps(doc))
    return d / name


def var_chain(doc):
    v = {"v0": [1, 1]}
    for i in range(1, 60):
        v[f"v{i}"] = [f"$v{i - 1}", f"$v{i - 1}"]
    doc["base"]["vars"].update(v)
    doc["base"]["description_extra"] = "$v59"
    doc["base"]["layers"][0]["out"] = "$v59"
    return None


def huge_width(doc):
    doc["base"]["layers"][0]["out"] = 3_000_000
    return None


def summary_of(mutate):
    """A case's argv: ``crossframe summary`` of the dsconv_cnn family file changed by ``mutate``."""
    return lambda d: ["summary", "--variant", ARCH, str(spec_file(d, mutate))]


def raw(text_of):
    def mutate(doc):
        return text_of(json.dumps(doc))
    return mutate


# -- cases -----------------------------------------------------------------------------------------

def cases():
    def convert(src, dst, fr, to, *more):
        return ["convert", ARCH, str(src), str(dst), "--from", fr, "--to", to, *more]

    def user_dir(d):
        u = d / "photos"
        u.mkdir()
        (u / "holiday.jpg").write_bytes(b"\xff\xd8 my picture")
        return u

    def existing(d, name="out.weights.h5"):
        p = d / name
        p.write_bytes(b"my own file")
        return p

    def fifo(d):
        os.mkfifo(d / "pipe.safetensors")
        return d / "pipe.safetensors"

    def random_pt(d):
        p = d / "w.pt"
        p.write_bytes(os.urandom(4096))
        return p

    def truncated(d):
        p = _canonical(d)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
        return p

    def float8(d):
        import torch

        spec = _spec()
        sd = {}
        import torch_impl

        for k, v in torch_impl.build(spec).state_dict().items():
            sd[k] = v.to(torch.float8_e4m3fn) if v.is_floating_point() else v
        torch.save(sd, d / "w.pt")
        return d / "w.pt"

    def nan_weights(d):
        import numpy as np

        name = next(t.name for t in _spec().tensors())
        shape = next(t.shape for t in _spec().tensors())
        return _canonical(d, **{name.replace(".", "__"): np.full(shape, np.nan)})

    def no_resume(d):
        wd = d / "run"
        base = ["train", ARCH, "--workdir", str(wd), "--steps", "2", "--batch-size", "8", "--no-progress"]
        subprocess.run([sys.executable, "-m", "crossframe", *base], check=True, cwd=d, env=_env(), capture_output=True)
        return [*base, "--no-resume"]

    def flax_ckpt(d):
        src = _canonical(d)
        dst = d / "ckpt"
        subprocess.run([sys.executable, "-m", "crossframe", *convert(src, dst, "canonical", "flax")], check=True,
                       cwd=d, env=_env(), capture_output=True)
        return convert(src, dst, "canonical", "flax")

    return [
        Case("flax-into-user-dir", "data loss", "`convert --to flax DST`, DST a non-empty directory of the user's",
             lambda d: convert(_canonical(d), user_dir(d), "canonical", "flax")),
        Case("flax-over-checkpoint", "data loss", "`convert --to flax DST`, DST a checkpoint we wrote, no `--overwrite`",
             flax_ckpt),
        Case("file-over-file", "data loss", "`convert` onto an existing file, no `--overwrite`",
             lambda d: convert(_canonical(d), existing(d), "canonical", "keras")),
        Case("train-export-exists", "data loss", "`train --export-torch F`, F an existing file (refused before training)",
             lambda d: ["train", ARCH, "--workdir", str(d / "run"), "--steps", "2", "--export-torch",
                        str(existing(d, "model.pt"))]),
        Case("train-no-resume", "data loss", "`train --no-resume` on a workdir that holds checkpoints",
             no_resume, expect=0, outputs=("run",)),
        Case("bench-json-exists", "data loss", "`bench --json F`, F an existing file",
             lambda d: ["bench", "--quick", "--suites", "torch", "--json", str(existing(d, "bench.json"))]),
        Case("diff-plot-exists", "data loss", "`diff --plot F`, F an existing file",
             lambda d: ["diff", ARCH, "--a", "torch", "--b", "jax", "--plot", str(existing(d, "plot.png"))]),
        Case("sigterm-convert", "data loss", "SIGTERM 3 s into `convert --verify` (resnet50 canonical -> keras)",
             lambda d: ["convert", "resnet50", str(_big_canonical(d)), str(d / "r50.weights.h5"), "--from",
                        "canonical", "--to", "keras", "--verify"], expect=143, signal_after=3.0),
        Case("h5-external", "leak", "`.weights.h5` whose dataset is external storage pointing at a local file",
             lambda d: convert(external_h5(d), d / "out.safetensors", "keras", "canonical")),
        Case("h5-virtual", "leak", "`.weights.h5` with a virtual dataset mapping another file",
             lambda d: convert(virtual_h5(d), d / "out.safetensors", "keras", "canonical")),
        Case("h5-bomb", "resources", "`.weights.h5` of a few KB declaring a 16 GiB compressed dataset",
             lambda d: convert(bomb_h5(d), d / "out.safetensors", "keras", "canonical")),
        Case("keras-zip-bomb", "resources", "`.keras` archive whose weights member inflates to 8 GiB",
             lambda d: convert(bomb_keras_zip(d), d / "out.safetensors", "keras", "canonical")),
        Case("spec-var-chain", "resources", "spec whose `$var`s double 60 times",
             summary_of(var_chain)),
        Case("spec-huge", "resources", "spec of a 3,000,000-channel conv (billions of parameters)",
             summary_of(huge_width)),
        Case("fifo", "resources", "a FIFO as SRC",
             lambda d: convert(fifo(d), d / "out.weights.h5", "canonical", "keras")),
        Case("dev-zero", "resources", "`/dev/zero` as SRC",
             lambda d: convert(Path("/dev/zero"), d / "out.weights.h5", "torch", "keras")),
        Case("spec-infinity", "clear error", "spec with `\"eps\": Infinity`",
             summary_of(raw(lambda t: t.replace('"eps": 1e-05', '"eps": Infinity')))),
        Case("spec-nan", "clear error", "spec with `\"momentum\": NaN`",
             summary_of(raw(lambda t: t.replace('"momentum": 0.1', '"momentum": NaN')))),
        Case("spec-1e400", "clear error", "spec with a number of 400 digits",
             summary_of(raw(lambda t: t.replace('"num_classes": 10',
                                                                         '"num_classes": 1' + "0" * 400)))),
        Case("spec-string", "clear error", "spec with a string where a number goes",
             summary_of(raw(lambda t: t.replace('"num_classes": 10',
                                                                         '"num_classes": "ten"')))),
        Case("spec-deep", "clear error", "spec JSON nested 10,000 deep",
             summary_of(raw(lambda t: t.replace('"vars": {', '"deep": ' + "[" * 10000
                                                                         + "]" * 10000 + ', "vars": {')))),
        Case("random-pt", "clear error", "4 KB of random bytes as a `.pt`",
             lambda d: convert(random_pt(d), d / "out.safetensors", "torch", "canonical")),
        Case("float8", "clear error", "a `.pt` state_dict of float8 tensors",
             lambda d: convert(float8(d), d / "out.safetensors", "torch", "canonical")),
        Case("truncated", "clear error", "a safetensors file cut in half",
             lambda d: convert(truncated(d), d / "out.weights.h5", "canonical", "keras")),
        Case("nan-weights", "clear error", "weights holding NaN",
             lambda d: convert(nan_weights(d), d / "out.weights.h5", "canonical", "keras")),
        Case("missing-src", "clear error", "a SRC that does not exist",
             lambda d: convert(d / "nope.pt", d / "out.safetensors", "torch", "canonical")),
        Case("bad-input-size", "clear error", "`summary --input-size -3`",
             lambda d: ["summary", ARCH, "--input-size", "-3"]),
        Case("no-tensorflow", "clear error", "`parity` with TensorFlow not installed",
             lambda d: ["parity", ARCH], hide=("tensorflow", "keras")),
        Case("train-lr-nan", "clear error", "`train --lr nan`",
             lambda d: ["train", ARCH, "--workdir", str(d / "run"), "--lr", "nan"]),
    ]


def _big_canonical(d):
    import archspec
    import weight_transfer

    spec = archspec.load("resnet50")
    path = d / "r50.safetensors"
    weight_transfer.save(weight_transfer.random_weights(spec, seed=0), path, spec=spec)
    return path


# -- running ---------------------------------------------------------------------------------------

def _env():
    env = dict(os.environ, CROSSFRAME_PROGRESS="0", PYTHONPATH=str(ROOT))
    env.pop("CROSSFRAME_TRACEBACK", None)
    return env


def _snapshot(d):
    out = {}
    for p in sorted(d.rglob("*")):
        try:
            st = p.lstat()
        except FileNotFoundError:
            continue
        out[p.relative_to(d).as_posix()] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def run_case(case):
    with tempfile.TemporaryDirectory(prefix=f"hostile-{case.key}-") as tmp:
        d = Path(tmp)
        argv = case.make(d)
        before = _snapshot(d)
        hide = "".join(f"sys.modules[{m!r}] = None\n" for m in case.hide)
        # The child reports its own peak (VmHWM of its address space, which starts afresh at exec;
        # getrusage's ru_maxrss would carry over this process's own size through fork and exec).
        peak_file = d.parent / f"{d.name}.peak"
        code = (f"import atexit, sys\n{hide}"
                f"def _peak():\n"
                f"    for line in open('/proc/self/status'):\n"
                f"        if line.startswith('VmHWM:'):\n"
                f"            open({str(peak_file)!r}, 'w').write(line.split()[1])\n"
                f"atexit.register(_peak)\n"
                f"from crossframe.cli import main\nsys.exit(main({argv!r}))\n")
        with open(d.parent / f"{d.name}.out", "w+") as out_f, open(d.parent / f"{d.name}.err", "w+") as err_f:
            started = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "-c", code], cwd=d, env=_env(), stdout=out_f, stderr=err_f)
            status, hung, signalled = None, False, False
            while True:
                pid, raw_status = os.waitpid(proc.pid, os.WNOHANG)
                elapsed = time.perf_counter() - started
                if pid:
                    status = os.waitstatus_to_exitcode(raw_status)
                    status = status if status >= 0 else 128 - status
                    break
                if case.signal_after is not None and not signalled and elapsed >= case.signal_after:
                    proc.send_signal(signal.SIGTERM)
                    signalled = True
                if elapsed > TIME_LIMIT_S:
                    hung = True
                    proc.kill()
                    os.waitpid(proc.pid, 0)
                    break
                time.sleep(0.05)
            proc.returncode = status if status is not None else -9
            seconds = time.perf_counter() - started
            err_f.seek(0)
            err = err_f.read()
        os.unlink(d.parent / f"{d.name}.out")
        os.unlink(d.parent / f"{d.name}.err")
        rss_mb = float(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
        if peak_file.exists():
            peak_file.unlink()
        after = _snapshot(d)
        allowed = lambda name: any(name == o or name.startswith(o + "/") for o in case.outputs)  # noqa: E731
        touched = sorted({n for n in set(before) | set(after) if before.get(n) != after.get(n) and not allowed(n)})
        err = err.replace(str(d), "$DIR")
        lines = [line for line in err.splitlines() if line.startswith("crossframe:")]
        return Result(case, None if hung else status, lines[0] if lines else (err.strip().splitlines() or [""])[-1],
                      "Traceback (most recent call last)" in err, rss_mb, seconds, touched)


def table(results):
    rows = ["| class | input | exit | what the user sees | files touched | peak RSS | time | verdict |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        line = r.line.replace("|", "\\|")
        if len(line) > 160:
            line = line[:157] + "..."
        status = "hang" if r.status is None else str(r.status)
        touched = ", ".join(r.touched) if r.touched else "none"
        rows.append(f"| {r.case.klass} | {r.case.example} | {status} | `{line}` | {touched} | "
                    f"{'-' if r.rss_mb != r.rss_mb else f'{r.rss_mb:.0f} MB'} | {r.seconds:.1f} s | {'ok' if r.passed else 'FAIL'} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated case keys (default: all)")
    parser.add_argument("--list", action="store_true", help="list the case keys and exit")
    parser.add_argument("--update", metavar="MD", default=None,
                        help=f"replace the table between {BEGIN} and {END} in this file")
    args = parser.parse_args(argv)
    selected = cases()
    if args.list:
        print("\n".join(f"{c.key}: {c.example}" for c in selected))
        return 0
    if args.only:
        keys = set(args.only.split(","))
        unknown = keys - {c.key for c in selected}
        if unknown:
            parser.error(f"--only: unknown case(s) {sorted(unknown)}")
        selected = [c for c in selected if c.key in keys]
    results = []
    for case in selected:
        result = run_case(case)
        results.append(result)
        print(f"{case.key}: exit {result.status}, {result.seconds:.1f} s, {'ok' if result.passed else 'FAIL'}",
              file=sys.stderr)
    import platform

    text = (table(results) + f"\n\n{sum(r.passed for r in results)} of {len(results)} cases as expected; "
            f"`PYTHONPATH=. python scripts/hostile_inputs.py`, {time.strftime('%Y-%m-%d')}, "
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.")
    if args.update:
        doc = Path(args.update).read_text()
        if BEGIN not in doc or END not in doc:
            parser.error(f"{args.update}: no {BEGIN} ... {END} markers")
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        Path(args.update).write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    else:
        print(text)
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
