"""The metrics log (JSON lines) and its plot (matplotlib, Agg backend, no display needed).

One record per line: ``{"step", "epoch", "split": "train", "loss", "accuracy", "lr", "grad_norm"}``
for a training step (``step`` counts updates done; the loss is that of the batch the update
used), ``{"step", "epoch", "split": "test", "loss", "accuracy", "count"}`` for an evaluation, plus
``"ema_loss", "ema_accuracy"`` (the moving average's, on the same test split) in a run with ``--ema``.
The last training record of each logged window of steps also holds the window's throughput:
``seconds`` (its wall time, evaluations and saves excluded), ``window_steps``, ``step_seconds``, ``images_per_s``
(global batch x steps / seconds) and ``input_wait`` (the fraction of the window spent waiting for
the input pipeline: reading, decoding and assembling the global batch). The first window of a run
includes the compilation; :func:`throughput` leaves it out.
"""

from __future__ import annotations

import json
import os


def throughput_fields(seconds, steps, global_batch, input_seconds):
    seconds = max(seconds, 1e-9)
    return {"seconds": round(seconds, 4), "window_steps": steps, "step_seconds": round(seconds / steps, 5),
            "images_per_s": round(steps * global_batch / seconds, 2),
            "input_wait": round(min(input_seconds / seconds, 1.0), 4)}


def throughput(records, after_step=0):
    """``{'images_per_s', 'step_seconds', 'input_wait', 'steps'}`` over the windows logged after
    ``after_step``, the first of them (the compilation) left out; ``None`` when none is left."""
    windows = [r for r in records if r.get("split") == "train" and "window_steps" in r and r["step"] > after_step][1:]
    if not windows:
        return None
    seconds = sum(r["seconds"] for r in windows)
    steps = sum(r["window_steps"] for r in windows)
    images = sum(r["images_per_s"] * r["seconds"] for r in windows)
    waited = sum(r["input_wait"] * r["seconds"] for r in windows)
    return {"images_per_s": round(images / seconds, 2), "step_seconds": round(seconds / steps, 5),
            "input_wait": round(waited / seconds, 4), "steps": steps}


def read_log(path):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_log(path, step):
    """Drop records after ``step``: a run resumed from ``step`` rewrites them (same values)."""
    records = [r for r in read_log(path) if r["step"] <= step]
    if path and os.path.exists(path):
        with open(path, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
    return records


class Log:
    """Appends JSON lines; a no-op on processes other than 0 or without a path."""

    def __init__(self, path, enabled=True):
        self.path = path if enabled else None
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

    def write(self, records):
        if not self.path or not records:
            return
        with open(self.path, "a") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")


def plot(records, path, title=None):
    """Loss and accuracy against step, train (per step) and test (per evaluation), to ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("split") == "train"]
    test = [r for r in records if r.get("split") == "test"]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], lw=0.8, label="train (batch)")
        ax_acc.plot([r["step"] for r in train], [r["accuracy"] for r in train], lw=0.8, alpha=0.6,
                    label="train (batch)")
    if test:
        ax_loss.plot([r["step"] for r in test], [r["loss"] for r in test], "o-", label="test")
        ax_acc.plot([r["step"] for r in test], [r["accuracy"] for r in test], "o-", label="test")
    ema = [r for r in test if "ema_loss" in r]
    if ema:
        ax_loss.plot([r["step"] for r in ema], [r["ema_loss"] for r in ema], "s--", label="test (EMA)")
        ax_acc.plot([r["step"] for r in ema], [r["ema_accuracy"] for r in ema], "s--", label="test (EMA)")
    ax_loss.set(xlabel="step", ylabel="cross-entropy", title="loss")
    ax_acc.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(0, 1.02))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
