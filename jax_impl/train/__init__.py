"""Training for the Flax renderer: optax, jax.sharding data parallelism, Orbax checkpoints.

Modules, one job each: ``config`` (TrainConfig), ``data`` (sources, split, resumable order), ``images`` (image folders,
Pillow decoding on a thread pool, the ImageNet train/eval transforms),
``optim`` (SGD-momentum / AdamW, warmup + cosine), ``losses`` (label-smoothed cross-entropy),
``state`` (TrainState), ``step`` (the pure train / eval steps), ``portable`` (the steps lowered for
TPU/CUDA), ``mesh`` (Mesh, NamedSharding, jit with explicit shardings, jax.distributed), ``checkpoint`` (Orbax), ``metrics`` (JSON-lines log,
plot), ``loop`` (the loop). Imports no other framework and not ``weight_transfer``; exporting to
PyTorch / Keras files is ``crossframe.export``.
"""

from .config import TrainConfig
from .loop import TrainResult, build_spec, evaluate, train
from .state import TrainState

__all__ = ["TrainConfig", "TrainResult", "TrainState", "build_spec", "evaluate", "train"]
