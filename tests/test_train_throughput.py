"""Throughput in the metrics log (issue 15, item 7): images/s, step time and the fraction of each
window spent waiting for the input, measured by the loop, summed up without the compilation window,
and printed by ``crossframe train``. A stall planted in the input pipeline shows as waiting."""

import time

import jax  # noqa: F401  (required, never skipped)


def test_throughput_sums_windows_without_the_first():
    from jax_impl.train.metrics import throughput, throughput_fields

    records = [{"step": 2, "split": "train", **throughput_fields(10.0, 2, 8, 0.0)},  # compiles: left out
               {"step": 3, "split": "test", "loss": 1.0},
               {"step": 4, "split": "train", **throughput_fields(1.0, 2, 8, 0.5)},
               {"step": 8, "split": "train", **throughput_fields(3.0, 4, 8, 0.0)}]
    got = throughput(records)
    assert got == {"images_per_s": 12.0, "step_seconds": 0.66667, "input_wait": 0.125, "steps": 6}
    assert throughput(records, after_step=4) is None  # one window after step 4: the compiling one
    assert throughput_fields(2.0, 4, 16, 3.0)["input_wait"] == 1.0  # never over the whole window


def _run(tmp_path, stall_s=0.0, monkeypatch=None):
    from jax_impl.train import TrainConfig, data, train

    if stall_s:
        local = data.Batches.local

        def slow(self, step):
            time.sleep(stall_s)
            return local(self, step)

        monkeypatch.setattr(data.Batches, "local", slow)
    cfg = TrainConfig(arch="dsconv_cnn", data="synthetic", data_size=32, init="he", steps=8, batch_size=8,
                      log_every=2, eval_every=8, save_every=8)
    return train(cfg, tmp_path, progress=False)


def test_input_wait_is_measured(tmp_path, monkeypatch):
    from jax_impl.train.metrics import throughput

    speeds = {}
    for stall_s in (0.0, 0.25):
        result = _run(tmp_path / str(stall_s), stall_s, monkeypatch)
        windows = [r for r in result.records if "window_steps" in r]
        assert [r["step"] for r in windows] == [2, 4, 6, 8] and all(r["window_steps"] == 2 for r in windows)
        speeds[stall_s] = speed = throughput(result.records)
        assert speed["steps"] == 6 and speed["images_per_s"] > 0
        assert abs(speed["images_per_s"] * speed["step_seconds"] - 8) < 0.01  # global batch 8 per step
    # a quarter second per batch on steps of milliseconds: the input is the bottleneck, and it shows.
    # The pipeline reads ahead while the first window compiles: HOST_BUFFER batches queued, one in the
    # reader's hand and DEVICE_BUFFER placed, so the 6 measured steps wait for the rest of the stalls.
    from jax_impl.train.pipeline import DEVICE_BUFFER, HOST_BUFFER

    stalled, free = speeds[0.25], speeds[0.0]
    waited_for = 6 - (HOST_BUFFER + 1 + DEVICE_BUFFER)
    assert stalled["input_wait"] > 0.5 and stalled["step_seconds"] >= 0.25 * waited_for / 6, speeds
    assert stalled["input_wait"] > free["input_wait"] + 0.2, speeds
