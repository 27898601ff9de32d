"""The training input pipeline on grain: read, decode and augment on threads, batch, prefetch to the
devices, and an iterator state that the checkpoint keeps.

    inputs = Pipeline(batches, start_step, stop_step, place=lambda x, y: mesh.global_batch(mesh, x, y))
    x, y = inputs.next(step)          # the batch of ``step``, already on the devices
    meta["input"] = inputs.state()    # saved with the checkpoint; Pipeline(..., state=...) resumes it

Lazily decoded image sets (``imagefolder:``, ``tfrecord:``, ``arrayrecord:``) are a
``grain.MapDataset`` of single images: element ``e`` (from ``start_step * per``) is image
``j = e % per`` of this process's slice of global batch ``e // per`` (:meth:`data.Batches.local_indices`),
decoded with the train transform of its epoch by ``grain.ReadOptions(num_threads=W)`` threads
(``CROSSFRAME_DATA_WORKERS``, default the CPU count; Pillow releases the GIL), ``2 * per`` images
ahead, then batched. In-memory arrays (``digits``, ``synthetic``) are one element per step (a
fancy index, no threads). Either way a background thread (``grain.experimental.ThreadPrefetchIterDataset``)
assembles the next two global batches on the devices while the current step runs.

Every element is a pure function of ``(seed, step)``, so the order never depends on thread timing.
The saved state is grain's iterator state plus the step the pipeline started at; a resumed run
rebuilds the same pipeline, restores the state, and checks that the batch it reads first is the
checkpoint's step (a ``ConfigError`` otherwise): it reads exactly the batches of the uninterrupted
run, mid-epoch included.
"""

from __future__ import annotations

import os

import numpy as np

from archspec.errors import ConfigError

WORKERS_ENV = "CROSSFRAME_DATA_WORKERS"
DEVICE_BUFFER = 2  # global batches placed on the devices ahead of the step that reads them


def workers():
    """Decoding threads: ``CROSSFRAME_DATA_WORKERS``, default the CPU count."""
    raw = os.environ.get(WORKERS_ENV) or "0"
    try:
        count = int(raw)
    except ValueError:
        raise ConfigError(f"{WORKERS_ENV}={raw!r}: expected a whole number of threads") from None
    if count < 0:
        raise ConfigError(f"{WORKERS_ENV}={raw!r}: expected a number of threads >= 0 (0: the CPU count)")
    return count or os.cpu_count() or 1


def _stack(elements):
    """``(x, y, step)`` of a batch from its ``(x, y, step)`` elements."""
    xs, ys, steps = zip(*elements)
    return np.stack(xs), np.asarray(ys), steps[0]


class Pipeline:
    """This process's batches of steps ``start_step .. stop_step - 1`` of ``batches``, in order.

    ``place(x, y)`` turns a host batch into what the step takes (default: the numpy arrays);
    ``state``: a :meth:`state` saved by an earlier run of the same pipeline, to resume it.
    """

    def __init__(self, batches, start_step, stop_step, place=None, state=None):
        import grain
        from grain.experimental import ThreadPrefetchIterDataset

        origin = start_step if state is None else int(state["origin_step"])
        self.origin, self.expected = origin, start_step
        per = batches.per_process
        place = place or (lambda x, y: (x, y))
        if batches.lazy:
            x, y = batches.x, batches.y

            def element(e):
                step, j = divmod(int(e), per)
                i = batches.local_indices(step)[j]
                return x.train_one(i, batches.epoch_of(step)), y[i], step

            ds = grain.MapDataset.range(origin * per, max(stop_step, origin) * per).map(element)
            ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=workers(), prefetch_buffer_size=2 * per))
            ds = ds.batch(per, drop_remainder=True, batch_fn=_stack)
        else:
            ds = grain.MapDataset.range(origin, max(stop_step, origin)).map(
                lambda step: (*batches.local(int(step)), int(step)))
            ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
        ds = ThreadPrefetchIterDataset(ds.map(lambda b: (*place(b[0], b[1]), b[2])),
                                       prefetch_buffer_size=DEVICE_BUFFER)
        self._iterator = iter(ds)
        if state is not None:
            try:
                self._iterator.set_state(state["grain"])
            except Exception as e:  # grain's own exception types: a state from another pipeline
                self.close()
                raise ConfigError(f"the checkpoint's input state {state!r} does not fit this pipeline: {e}") from None

    def next(self, step):
        """The batch of ``step`` (the step after the previous call's, or ``start_step`` first)."""
        try:
            x, y, got = next(self._iterator)
        except StopIteration:
            raise ConfigError(f"the input pipeline ended before step {step}") from None
        if got != step:
            raise ConfigError(f"the input pipeline read the batch of step {got} where step {step} was expected "
                              f"(a checkpoint's input state from another run?)")
        self.expected = step + 1
        return x, y

    def state(self):
        """JSON-able: grain's iterator state after the last batch read, and where the pipeline began."""
        return {"origin_step": self.origin, "next_step": self.expected, "grain": self._iterator.get_state()}

    def close(self):
        """Stop the reading threads (also on error: a pipeline left open would keep decoding)."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
