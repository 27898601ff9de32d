"""Multi-process training for real (issue 15, item 6): ``crossframe train --processes 2`` on this
machine, two processes joined by ``jax.distributed`` (local coordinator, CPU collectives), each with 2
simulated devices. Interrupted at step 2 (``--max-steps``) and resumed by two new processes from the
checkpoint both wrote, the 2x2 run ends with the weights of one uninterrupted 1-process 4-device run.
Opt-in (``./dev test -m heavy tests/test_train_multiprocess.py``): about 70 s, over the default suite's
budget; the launcher's refusals stay in the default suite, with the guards against the hangs of
2026-12-02: the launcher kills a process that ignores SIGTERM, and the loop keeps at most two steps in
flight and fetches each evaluation batch (docs/TRAINING.md, *No more than two steps in flight*).
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from crossframe.export import canonical_weights
from weight_transfer.metrics import rel_error

COMMON = ["train", "dsconv_cnn", "--data", "digits", "--steps", "4", "--batch-size", "16", "--seed", "0",
          "--no-progress", "--save-every", "2", "--eval-every", "4"]


def _crossframe(args, devices=None):
    env = dict(os.environ)
    if devices:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    done = subprocess.run([sys.executable, "-m", "crossframe", *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout[done.stdout.index("{"):])


@pytest.mark.heavy  # opt-in: tests/conftest.py OPT_IN says why, at the end of every default run
def test_two_processes_resume_and_equal_one_process(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    first = _crossframe(COMMON + ["--workdir", str(two), "--processes", "2", "--process-devices", "2",
                                  "--max-steps", "2"])
    assert first["step"] == 2 and first["stopped_early"]
    resumed = _crossframe(COMMON + ["--workdir", str(two), "--processes", "2", "--process-devices", "2"])
    assert resumed["resumed_from"] == 2 and resumed["step"] == 4
    straight = _crossframe(COMMON + ["--workdir", str(one)], devices=4)
    assert straight["step"] == 4 and straight["resumed_from"] == 0

    _, got = canonical_weights(two / "checkpoints")
    _, want = canonical_weights(one / "checkpoints")
    assert sorted(got) == sorted(want)
    moved = max(rel_error(want[k], canonical_weights(two / "checkpoints", step=2)[1][k]) for k in want)
    assert moved > 1e-3  # steps 3 and 4 changed the weights: the comparison below is not of two copies
    worst = max(rel_error(want[k], got[k]) for k in want)
    assert worst <= 1e-5, worst
    logged = [json.loads(line) for line in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r and r.get("split", "train") == "train"][-1] == 4
    assert np.isfinite(resumed["test"]["loss"])
    assert abs(resumed["test"]["loss"] - straight["test"]["loss"]) <= 1e-5 * abs(straight["test"]["loss"])


def test_launcher_refuses_what_it_cannot_run(tmp_path):
    for extra, message in ((["--processes", "1"], "--processes 1: expected an integer >= 2"),
                           (["--processes", "2", "--distributed"], "--processes launches the processes")):
        done = subprocess.run([sys.executable, "-m", "crossframe", *COMMON, "--workdir", str(tmp_path / "w"), *extra],
                              capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not (tmp_path / "w").exists()


def _failing_child():
    return subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])


def _stuck_child():
    """A process stuck in a collective, as the launcher sees it: SIGTERM never reaches code that acts on it."""
    child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                              "signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"  # SIGTERM is ignored from here on
    return child


def _finishes(target, seconds=60):
    """Whether ``target()`` returns within ``seconds`` (a hang detector, not a speed check); an
    exception in ``target`` is raised here."""
    import threading

    done, raised = threading.Event(), []

    def run():
        try:
            target()
        except BaseException as e:  # noqa: BLE001 - handed to the test's thread
            raised.append(e)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if raised:
        raise raised[0]
    return done.is_set()


def test_launcher_kills_a_process_that_ignores_sigterm_after_another_failed(monkeypatch):
    from crossframe import launch

    monkeypatch.setattr(launch, "GRACE_S", 0.5)
    monkeypatch.setattr(launch, "KILL_AFTER_S", 1.0)
    children = [_failing_child(), _stuck_child()]
    try:
        codes = []
        assert _finishes(lambda: codes.append(launch._wait(children, [None, None]))), \
            "the launcher waits forever on a process that ignores SIGTERM"
        assert codes == [3] and children[1].returncode == -9
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()


def test_launcher_ctrl_c_kills_a_process_that_ignores_sigterm(monkeypatch):
    from crossframe import launch

    monkeypatch.setattr(launch, "KILL_AFTER_S", 1.0)
    children = [_stuck_child()]
    try:
        assert _finishes(lambda: launch._wait_or_kill(children, time.monotonic() + launch.KILL_AFTER_S))
        assert children[0].returncode == -9
    finally:
        if children[0].poll() is None:
            children[0].kill()


def test_dispatch_window_keeps_at_most_depth_steps_unfinished(monkeypatch):
    from jax_impl.train import loop

    waited = []
    monkeypatch.setattr(loop.jax, "block_until_ready", waited.append)
    window = loop.DispatchWindow(depth=2)
    for step in range(6):
        window.add(step)
        assert waited == list(range(max(0, step - 1))), (step, waited)


def test_training_keeps_two_steps_in_flight_and_fetches_each_evaluation_batch(monkeypatch):
    """The loop hands every step to its DispatchWindow, and the evaluation fetches every batch's sums
    before dispatching the next (the run-ahead that deadlocked, docs/TRAINING.md)."""
    import jax

    from jax_impl.train import loop
    from jax_impl.train.config import TrainConfig

    added, placed, fetched = [], [], []
    monkeypatch.setattr(loop.DispatchWindow, "add", lambda self, out: added.append(out))
    real_batch, real_get = loop.mesh_lib.global_batch, loop.jax.device_get

    def global_batch(mesh, *arrays):
        if len(arrays) == 3:  # (x, y, weight): an evaluation batch
            placed.append(len(fetched))
        return real_batch(mesh, *arrays)

    def device_get(tree):
        if isinstance(tree, dict) and "count" in tree:
            fetched.append(len(placed))
        return real_get(tree)

    monkeypatch.setattr(loop.mesh_lib, "global_batch", global_batch)
    monkeypatch.setattr(loop.jax, "device_get", device_get)
    cfg = TrainConfig(arch="dsconv_cnn", data="synthetic", data_size=160, init="he", steps=3, batch_size=16,
                      eval_every=3, seed=0)
    loop.train(cfg, devices=jax.devices()[:1], progress=False)
    assert len(added) == 3
    assert len(placed) >= 2 and placed == list(range(len(placed))) and fetched == list(range(1, len(placed) + 1)), \
        (placed, fetched)


@pytest.mark.heavy  # opt-in: it tests the script's patterns, not the loop (the default suite's test above does)
@pytest.mark.parametrize("mode", ["fetch", "window"])
def test_the_evaluation_pattern_does_not_deadlock_two_processes(mode):
    """scripts/dispatch_deadlock.py, the ways the loop dispatches now: two processes of two devices
    finish 100 evaluations of 24 batches (the old way, ``--mode async``, hung in 8 of 8 trials on 2026-12-02)."""
    done = subprocess.run([sys.executable, "scripts/dispatch_deadlock.py", "--mode", mode, "--trials", "1",
                           "--rounds", "100"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0 and "0 of 1 trials hung" in done.stdout, done.stdout + done.stderr[-2000:]
