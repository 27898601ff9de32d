"""Benchmark results (JSON) -> markdown tables and a plot for docs/BENCHMARKS.md.

    python -m benchmarks.report RESULTS.json [MORE.json ...] [--update docs/BENCHMARKS.md] [--plot docs/benchmarks.png]

``RESULTS.json`` is what ``crossframe bench --json`` (all suites) or one suite's ``--json`` wrote;
several files are shown as one, their suites in the order given.
``--update`` replaces the text between ``<!-- bench:results:begin -->`` and
``<!-- bench:results:end -->`` in the file with the tables; without it they go to stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
TITLES = {
    "torch_vs_libs": "torch_impl vs torchvision / timm",
    "tf_vs_keras": "tf_impl vs keras.applications",
    "jax_vs_torch": "jax_impl (jit) vs torch_impl",
    "jax_vs_flax": "jax_impl vs hand-written Flax (jit, same step function; fp32 and bf16)",
    "padding_cost": "tf_same padding vs symmetric (ratio = tf_same / symmetric throughput)",
}
# the targets: ours >= 0.98x the library (jax_impl: the hand-written Flax model); tf_same costs
# under 3%; JAX vs torch has none
TARGETS = {"torch_vs_libs": 0.98, "tf_vs_keras": 0.98, "jax_vs_flax": 0.98, "padding_cost": 0.97}
METRIC_NAMES = {"infer_small": "infer", "infer_large": "infer", "train": "train step"}


def suites_of(data):
    """The suite results in ``data``: a combined file (``{"suites": [...]}``) or one suite's."""
    return data["suites"] if "suites" in data else [data]


def _fmt(x, digits=1):
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def _metric(rec):
    return f"{METRIC_NAMES.get(rec['metric'], rec['metric'])} b{rec['batch']}"


def ratio_rows(suite):
    """One row per (record, pair): what the tables and the plot show."""
    rows = []
    for rec in suite["records"]:
        for r in rec["ratios"]:
            c = rec["contenders"]
            rows.append({"suite": suite["suite"], "model": rec["model"], "mode": rec["mode"], "metric": _metric(rec),
                         "ours": r["ours"], "ref": r["ref"], "ours_ips": c[r["ours"]]["images_per_s"],
                         "ref_ips": c[r["ref"]]["images_per_s"], "median": r["median"], "cpu": r.get("cpu_median"),
                         "low": min(r["per_round"]), "high": max(r["per_round"]),
                         "first": ({k: v.get("first_call_s") for k, v in c.items()} if rec.get("compiled") else None),
                         "load": rec.get("load_average"),
                         "label": rec.get("label")})
    return rows


def format_ratio_table(suite):
    rows = ratio_rows(suite)
    padding = suite["suite"] == "padding_cost"
    head = ("| network | framework | mode | measure | tf_same img/s | symmetric img/s | tf_same / symmetric | cost "
            "| range | CPU-time ratio |"
            if padding else
            "| network | mode | measure | ours | ours img/s | reference | ref img/s | ours / ref | range "
            "| CPU-time ratio | first call s (ours / ref) |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        span = f"{r['low']:.2f}-{r['high']:.2f}"
        cpu = "-" if r["cpu"] is None else f"{r['cpu']:.3f}"
        if padding:
            lines.append(f"| {r['model']} | {r['label'] or r['ours']} | {r['mode']} | {r['metric']} | {_fmt(r['ours_ips'])} "
                         f"| {_fmt(r['ref_ips'])} | {r['median']:.3f} | {100 * (1 - r['median']):+.1f}% | {span} | {cpu} |")
        else:
            first = "-"
            if r["first"]:
                first = f"{_fmt(r['first'].get(r['ours']))} / {_fmt(r['first'].get(r['ref']))}"
            lines.append(f"| {r['model']} | {r['mode']} | {r['metric']} | {r['ours']} | {_fmt(r['ours_ips'])} | {r['ref']} "
                         f"| {_fmt(r['ref_ips'])} | **{r['median']:.3f}** | {span} | {cpu} | {first} |")
    return "\n".join(lines)


def format_probe_table(suite):
    probes = suite.get("probes") or []
    if not probes:
        return ""
    lines = ["| network | contender | mode | infer first call s | infer 2nd call s | infer peak MiB "
             "| train first call s | train 2nd call s | train peak MiB |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in probes:
        if "error" in p:
            lines.append(f"| {p['model']} | {p['contender']} | {p.get('mode', '')} | error: "
                         f"{p['error'].splitlines()[-1][:80] if p['error'] else ''} | | | | | | |")
            continue
        i, t = p.get("infer_large") or {}, p.get("train") or {}
        lines.append(f"| {p['model']} | {p['contender']} | {p.get('mode', '')} | {_fmt(i.get('first_call_s'), 2)} "
                     f"| {_fmt(i.get('second_call_s'), 2)} | {_fmt(i.get('peak_mb'), 0)} "
                     f"| {_fmt(t.get('first_call_s'), 2)} | {_fmt(t.get('second_call_s'), 2)} "
                     f"| {_fmt(t.get('peak_mb'), 0)} |")
    return "\n".join(lines)


def format_convert(suite):
    med, runs = suite["median"], suite["runs"]
    ref = med["reference"]["work_s"]
    size = suite["checkpoint_mb"]
    lines = [f"### ResNet-152 checkpoint conversion ({size:.0f} MiB; median of {len(runs['reference'])} fresh processes)",
             "", "| case | work s | x reference | imports s | peak RSS MiB | peak - baseline MiB | x checkpoint |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for case, m in med.items():
        extra = m["peak_rss_mb"] - m["baseline_rss_mb"]
        lines.append(f"| {case} | {m['work_s']:.2f} | {m['work_s'] / ref:.2f} | {m['imports_s']:.2f} "
                     f"| {m['peak_rss_mb']:.0f} | {extra:.0f} | {extra / size:.2f} |")
    load = suite.get("machine", {}).get("load_average")
    if load:
        lines += ["", f"load average at the end: {' '.join(f'{x:.1f}' for x in load)}; "
                      "`python benchmarks/convert_resnet152.py` (docs/CONVERT.md explains the cases)"]
    return "\n".join(lines)


def format_suite(suite):
    if "error" in suite:
        return f"### {TITLES.get(suite['suite'], suite['suite'])}\n\nfailed: {suite['error']}"
    if suite["suite"] == "convert_resnet152":
        return format_convert(suite)
    s = suite["settings"]
    parts = [f"### {TITLES.get(suite['suite'], suite['suite'])}", "",
             f"device {s['device']}, large batch {s['batch']}, input {s['input_size'] or 'spec default (224)'}, "
             f"{s['rounds']} alternating rounds ({s.get('small_rounds', s['rounds'])} at batch 1; median of per-round "
             f"ratios, range = min-max over rounds); threads per framework {s.get('threads') or 'default'}; "
             f"load average {suite_load(suite)}; {suite['elapsed_s'] / 60:.1f} min",
             "", format_ratio_table(suite)]
    probe = format_probe_table(suite)
    if probe:
        batch = s["batch"]
        parts += ["", f"Fresh process per contender, batch {batch}: first call (tracing/compilation included) "
                      "and peak memory above the post-build baseline (see `benchmarks/common.py`):", "", probe]
    if suite["suite"] == "jax_vs_torch" and not any(r["metric"] == "train" for r in suite["records"]):
        rows = probe_train_ratios(suite)
        if rows:
            parts += ["", "Training step from the probes (second call, one sample each, not alternated):", "",
                      "| network | jax_impl s | torch_impl s | jax / torch throughput |", "| --- | ---: | ---: | ---: |"]
            parts += [f"| {m} | {j:.2f} | {t:.2f} | **{t / j:.3f}** |" for m, j, t in rows]
    if suite.get("notes"):
        parts += ["", "Notes: " + "; ".join(suite["notes"])]
    return "\n".join(parts)


def probe_train_ratios(suite, ours="jax_impl", ref="torch_impl"):
    """``[(model, ours s, ref s)]``: the training step's second call in each side's probe process."""
    by = {(p["model"], p["contender"]): p for p in suite.get("probes") or () if "error" not in p}
    rows = []
    for (model, contender), p in by.items():
        other = by.get((model, ref))
        if contender == ours and other and p["train"].get("second_call_s") and other["train"].get("second_call_s"):
            rows.append((model, p["train"]["second_call_s"], other["train"]["second_call_s"]))
    return rows


def suite_load(suite):
    loads = [rec["load_average"][0] for rec in suite["records"] if rec.get("load_average")]
    if not loads:
        return "?"
    return f"{min(loads):.1f}-{max(loads):.1f} (1-min, during the run)"


def format_all(data):
    return "\n\n".join(format_suite(s) for s in suites_of(data))


def headline(data):
    """Median of the per-measurement ratios, per (suite, reference, mode)."""
    groups = {}
    for suite in suites_of(data):
        if not suite.get("records"):
            continue
        for r in ratio_rows(suite):
            groups.setdefault((suite["suite"], r["ref"], r["mode"]), []).append(r["median"])
    return {k: statistics.median(v) for k, v in groups.items()}


def plot(data, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = [s for s in suites_of(data) if s.get("records")]
    heights = [max(2.0, 0.22 * len(ratio_rows(s)) + 0.9) for s in suites]
    fig, axes = plt.subplots(len(suites), 1, figsize=(9, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, suite in zip(axes[:, 0], suites):
        rows = ratio_rows(suite)
        labels = [f"{r['model']} {r['mode']} {r['metric']}" +
                  (f" {r['label']}" if r['label'] else f" vs {r['ref']}") for r in rows]
        y = list(range(len(rows)))[::-1]
        med = [r["median"] for r in rows]
        err = [[r["median"] - r["low"] for r in rows], [r["high"] - r["median"] for r in rows]]
        ax.axvline(1.0, color="k", lw=0.8)
        target = TARGETS.get(suite["suite"])
        colors = ["0.6" if target is None else "tab:green" if m >= target else "tab:red" for m in med]
        ax.barh(y, [m - 1 for m in med], left=1, color=colors, alpha=0.7, xerr=err, ecolor="0.3", capsize=2)
        if target is not None:
            ax.axvline(target, color="tab:red", lw=0.8, ls="--")
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_title(TITLES.get(suite["suite"], suite["suite"]), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        lo = min([0.9] + [r["low"] for r in rows])
        hi = max([1.1] + [r["high"] for r in rows])
        ax.set_xlim(max(0.0, lo - 0.05), hi + 0.05)
    axes[-1, 0].set_xlabel("throughput ratio, median over alternating rounds (whiskers: min-max; dashed: target)",
                           fontsize=8)
    m = suites[0]["machine"] if suites else {}
    fig.suptitle(f"crossframe benchmarks, {suites[0]['settings']['device'] if suites else ''}: {m.get('cpu', '')}, "
                 f"{m.get('nproc', '?')} cores", fontsize=9)
    fig.tight_layout()
    from weight_transfer.files import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def check_markers(path):
    """The text of markdown file ``path``, refused (BenchError) unless it has the results markers:
    ``--report`` rewrites only what lies between them, and nothing of a file without them."""
    from .common import BenchError

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"--report {path}: no such file (it must exist and hold the {BEGIN} ... {END} markers)")
    doc = path.read_text(encoding="utf-8")
    if BEGIN not in doc or END not in doc or doc.index(BEGIN) > doc.index(END):
        raise BenchError(f"--report {path}: no {BEGIN} ... {END} markers to replace; the file is left as it is")
    return doc


def update_file(path, text):
    """Replace the marked results section of ``path`` (atomically; the rest of the file kept byte for byte)."""
    from weight_transfer.files import atomic_write

    doc = check_markers(path)
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{text}\n{END}{tail}"
    atomic_write(path, lambda tmp: Path(tmp).write_text(new, encoding="utf-8"))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="JSON written by `crossframe bench --json` or a suite's --json")
    parser.add_argument("--update", metavar="MD", help="replace the marked results section of this file")
    parser.add_argument("--plot", metavar="PNG", help="write the ratio plot here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    args = parser.parse_args(argv)
    if args.plot:
        from weight_transfer.outputs import claim

        claim(args.plot, overwrite=args.overwrite, what="--plot")
    if args.update:
        check_markers(args.update)
    data = {"suites": [suite for path in args.results for suite in suites_of(json.loads(Path(path).read_text()))]}
    text = format_all(data)
    if args.update:
        update_file(args.update, text)
    else:
        print(text)
    if args.plot:
        plot(data, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
