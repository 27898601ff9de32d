"""A big network's check keeps its gradients and weight changes on disk (crossframe/parity/memory.py).

The spill must not change a verdict (the same records, number for number), must leave nothing
behind however the check ends, and a NaN in a spilled result must still fail.
"""

import math
import os
import tempfile

import numpy as np
import pytest

from archspec import blocks, ir
from crossframe.parity import harness, memory
from crossframe.parity.calibrate import calibrated_weights
from crossframe.parity.harness import check_network

MODES = ("train", "grad", "step")
FRAMEWORKS = ("torch", "tf")  # no XLA compile: seconds, not tens of seconds (the spill is the same for all)


def tiny_spec():
    """One inverted-residual block, pooled and classified: three frameworks in seconds."""
    mb = blocks.inverted_residual("stages.0.blocks.0", (5, 5, 4), 4, expanded=8, act="swish")
    pool = blocks.global_pool("pool", mb.out_shape)
    cls = blocks.dense("classifier", pool.out_shape, 3)
    return ir.Spec(name="tiny_memory", family="test", source="<test>", input_shape=(5, 5, 4), num_classes=3,
                   layers=(mb, pool, cls))


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    """tempfile's folder, for this test only: the spill folder is made (and must be removed) here."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def _spilled_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.glob("crossframe-parity-*/*.npy"))


def _spill_folders(root):
    return list(root.glob("crossframe-parity-*"))  # (other libraries keep caches in tempfile's folder too)


def test_spilled_results_give_the_same_records_and_leave_nothing(temp_root, monkeypatch):
    trims = []
    monkeypatch.setattr(harness, "return_freed_memory", lambda: trims.append(1))
    kept = check_network(tiny_spec(), FRAMEWORKS, modes=MODES, seed=3, batch=4)
    assert not _spill_folders(temp_root), "a tiny network's results stay in memory"
    assert not trims, "a small check skips the 0.3-s garbage collection"

    seen = []
    monkeypatch.setattr(memory, "SPILL_BYTES", 0)  # every named set of arrays goes to disk
    spilled = check_network(tiny_spec(), FRAMEWORKS, modes=MODES, seed=3, batch=4,
                            progress=lambda name, mode, fw: seen.append(len(_spilled_files(temp_root))))
    assert seen[-1] > 0 and seen == sorted(seen), f"spill files over the runs: {seen}"
    assert [r.as_dict() for r in spilled] == [r.as_dict() for r in kept]
    assert len(trims) == 4, "freed memory returned after each runner: two frameworks, float32 and float64"
    assert all(r.passed for r in spilled)
    assert not _spill_folders(temp_root), f"left behind: {list(temp_root.rglob('*.npy'))}"


def test_the_spill_folder_goes_when_the_check_stops_midway(temp_root, monkeypatch):
    monkeypatch.setattr(memory, "SPILL_BYTES", 0)

    def interrupt(name, mode, fw):
        if _spilled_files(temp_root):
            raise KeyboardInterrupt  # Ctrl-C (the CLI turns SIGTERM into an exception too)

    with pytest.raises(KeyboardInterrupt):
        check_network(tiny_spec(), FRAMEWORKS, modes=MODES, seed=3, batch=4, progress=interrupt)
    assert not _spill_folders(temp_root), f"left behind: {list(temp_root.rglob('*.npy'))}"


def test_a_killed_checks_folder_is_swept_by_the_next_spill_and_nothing_else(temp_root):
    """SIGKILL (or a SIGTERM nobody turned into an exception, as under plain pytest) skips the ``with``:
    the next check that spills removes the folder of a process that is gone, and only such a folder."""
    import subprocess
    import sys
    import textwrap

    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, tempfile
        import numpy as np
        from crossframe.parity import memory
        tempfile.tempdir = {str(temp_root)!r}
        spill = memory.SpillFolder(limit=0).__enter__()
        spill.keep({{"grads": {{"w": np.ones(8)}}}})
        os.kill(os.getpid(), signal.SIGKILL)
        """)], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    (left,) = _spill_folders(temp_root)  # what a killed check leaves
    users = [temp_root / "crossframe-parity-notes", temp_root / f"crossframe-parity-{os.getppid()}-x"]
    for folder in users:
        folder.mkdir()
    live = temp_root / left.name.replace(left.name.split("-")[2], str(os.getppid()), 1)  # a running process's
    live.mkdir()
    with memory.SpillFolder(limit=0) as spill:
        spill.keep({"grads": {"w": np.ones(8)}})
        assert not left.exists(), "the killed check's folder is still there"
        mine = spill.path
        assert all(f.is_dir() for f in users + [live]) and os.path.isdir(mine)
    assert not os.path.exists(mine) and all(f.is_dir() for f in users + [live])


def test_a_full_temporary_folder_is_one_clear_error_and_leaves_nothing(temp_root, monkeypatch):
    import errno

    from archspec.errors import CrossframeError

    monkeypatch.setattr(memory, "SPILL_BYTES", 0)
    saved, real_save = [], np.save

    def full_disk(path, array):
        if saved:
            raise OSError(errno.ENOSPC, "No space left on device")
        saved.append(real_save(path, array))

    monkeypatch.setattr(memory.np, "save", full_disk)
    with pytest.raises(CrossframeError, match="No space left on device.*TMPDIR"):
        check_network(tiny_spec(), FRAMEWORKS, modes=MODES, seed=3, batch=4)
    assert saved and not _spill_folders(temp_root), f"left behind: {list(temp_root.rglob('*.npy'))}"


def test_a_nan_in_a_spilled_gradient_fails(temp_root, monkeypatch):
    monkeypatch.setattr(memory, "SPILL_BYTES", 0)
    real = harness.run_mode

    def nan_in_tf_gradients(runner, mode, *args, **kwargs):
        out = real(runner, mode, *args, **kwargs)
        if mode == "grad" and type(runner).__name__.startswith("Keras"):
            name = sorted(out["grads"])[0]
            out["grads"][name] = np.full_like(out["grads"][name], np.nan)
        return out

    monkeypatch.setattr(harness, "run_mode", nan_in_tf_gradients)
    (record,) = check_network(tiny_spec(), FRAMEWORKS, modes=("grad",), seed=3, batch=4)
    assert not record.passed and math.isinf(record.rel), record.as_dict()


def test_keep_spills_only_named_sets_above_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    small = {"a": np.arange(4.0)}
    big = {"w": np.arange(64.0).reshape(8, 8), "b": np.ones(3, np.float32)}
    with memory.SpillFolder(limit=100) as spill:
        kept = spill.keep({"output": np.zeros(1000), "small": small, "big": big})
        assert kept["small"] is small and isinstance(kept["output"], np.ndarray)  # arrays alone stay
        assert isinstance(kept["big"], memory.OnDisk) and sorted(kept["big"]) == ["b", "w"]
        assert kept["big"]["b"].dtype == np.float32 and np.array_equal(kept["big"]["w"], big["w"])
        assert len(_spilled_files(tmp_path)) == 2
    assert not _spill_folders(tmp_path)


def test_float64_references_with_big_dense_kernels_run_op_by_op(monkeypatch):
    """XLA:CPU holds every grouped conv's kernel dense in a float64 program: past the budget, op by op."""
    import archspec
    from crossframe.parity import runners

    over = {name: runners.dense_grouped_kernel_bytes(archspec.load(name)) > runners.FLOAT64_JIT_MAX_DENSE_BYTES
            for name in ("mobilenet_v2_100", "efficientnet_b1", "convnext_tiny", "efficientnet_b2", "convnext_large",
                         "resnext101_32x8d", "resnet50")}
    assert over == {"mobilenet_v2_100": False, "efficientnet_b1": False, "convnext_tiny": False,
                    "efficientnet_b2": True, "convnext_large": True, "resnext101_32x8d": True, "resnet50": False}
    spec = tiny_spec()
    weights = calibrated_weights(spec)
    assert not runners.make_runner("jax", spec, weights, dtype="float64")._float64_op_by_op()
    monkeypatch.setattr(runners, "FLOAT64_JIT_MAX_DENSE_BYTES", 0)
    assert runners.make_runner("jax", spec, weights, dtype="float64")._float64_op_by_op()
    assert not runners.make_runner("jax", spec, weights, dtype="float32")._float64_op_by_op()


def test_no_two_results_are_compared_twice(monkeypatch):
    """A spilled result is read back from disk on every comparison: each pair of results is compared once
    (each framework's own float32 error serves every pair it is in, and PyTorch's is the floor too)."""
    calls, real = [], harness.compare
    monkeypatch.setattr(harness, "compare", lambda a, ref: calls.append((a, ref)) or real(a, ref))
    records = check_network(tiny_spec(), FRAMEWORKS, modes=MODES, seed=3, batch=4)
    pairs = [(id(a), id(ref)) for a, ref in calls]  # (calls keeps every result alive: ids are not reused)
    assert len(pairs) == len(set(pairs)), "a pair of results compared twice"
    # per mode: the pair, the float64 pair, and the two own errors (PyTorch's is also the floor)
    assert len(calls) == 4 * len(MODES) and records and all(r.passed for r in records)
