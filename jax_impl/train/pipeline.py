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
keeps the next ``HOST_BUFFER`` host batches ready, and :meth:`Pipeline.next` places the batch after
the one it returns on the devices before returning (``jax.make_array_from_process_local_data``,
asynchronous): its transfer overlaps the step about to run. The placing happens on the calling
thread, in step order: placed from a background thread, the two processes of a multi-process run
dispatched their programs in different orders and deadlocked in the first evaluation.

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
HOST_BUFFER = 2  # host batches kept ready by a background thread
DEVICE_BUFFER = 1  # global batches placed on the devices ahead of the step that reads them


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

        if state is not None and not (isinstance(state, dict) and "grain" in state
                                      and type(state.get("origin_step")) is int and 0 <= state["origin_step"] <= start_step):
            raise ConfigError(f"the checkpoint's input state {state!r}: expected {{'origin_step': a step <= {start_step}, "
                              "'grain': grain's iterator state, ...}")
        origin = start_step if state is None else state["origin_step"]
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
        self._place, self._stop = place, stop_step
        self._iterator = iter(ThreadPrefetchIterDataset(ds, prefetch_buffer_size=HOST_BUFFER))
        self._ahead, self._state = None, None
        if state is not None:
            try:
                self._iterator.set_state(state["grain"])
            except Exception as e:  # grain's own exception types: a state from another pipeline
                self.close()
                raise ConfigError(f"the checkpoint's input state {state!r} does not fit this pipeline: {e}") from None

    def _pull(self):
        """The next batch placed on the devices, its step, and grain's state after it; None at the end."""
        try:
            x, y, step = next(self._iterator)
        except StopIteration:
            return None
        return (*self._place(x, y), step, self._iterator.get_state())

    def next(self, step):
        """The batch of ``step`` (the step after the previous call's, or ``start_step`` first)."""
        current = self._ahead if self._ahead is not None else self._pull()
        if current is None:
            raise ConfigError(f"the input pipeline ended before step {step}")
        x, y, got, state = current
        if got != step:
            raise ConfigError(f"the input pipeline read the batch of step {got} where step {step} was expected "
                              f"(a checkpoint's input state from another run?)")
        self._ahead = self._pull() if step + 1 < self._stop else None  # placed now, read by the next call
        self.expected, self._state = step + 1, state
        return x, y

    def state(self):
        """JSON-able: grain's iterator state after the last batch returned (not after the one placed
        ahead), and where the pipeline began."""
        state = self._state if self._state is not None else self._iterator.get_state()
        return {"origin_step": self.origin, "next_step": self.expected, "grain": state}

    def close(self):
        """Stop the reading threads (also on error: a pipeline left open would keep decoding)."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
