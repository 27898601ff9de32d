"""What defines a training run: a plain dataclass, saved as JSON with every checkpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional
from archspec.errors import ConfigError


@dataclass
class TrainConfig:
    arch: str = "dsconv_cnn"
    overrides: dict = field(default_factory=dict)  # archspec.load overrides: input_size, num_classes, width...
    deterministic: bool = False                    # zero every dropout / drop-path rate (spec.deterministic())
    data: str = "digits"                           # 'digits' or 'synthetic'
    data_size: int = 512                           # examples of the synthetic source
    test_fraction: float = 0.2
    seed: int = 0                                  # init, split, data order, dropout keys
    init: str = "network"                          # 'network' (jax_impl.init) or 'he' (fan-in He; see init.py)
    epochs: int = 10
    steps: Optional[int] = None                    # total optimizer steps; default epochs x steps per epoch
    batch_size: int = 64                           # global batch (all devices, all hosts)
    accum_steps: int = 1                           # micro-batches per step (gradient accumulation)
    optimizer: str = "adamw"                       # 'sgd' (momentum) or 'adamw'
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    decay: str = "kernels"                         # which parameters decay: 'kernels' or 'all'
    schedule: str = "cosine"                       # 'cosine' (after warmup) or 'constant'
    warmup_steps: int = 0
    final_lr_fraction: float = 0.0
    grad_clip: Optional[float] = None
    label_smoothing: float = 0.0
    dtype: str = "float32"                         # compute dtype: 'float32' or 'bfloat16' (params stay float32)
    precision: str = "default"                     # 'default' or 'highest' (jax.default_matmul_precision)
    eval_every: Optional[int] = None               # steps; default once per epoch
    log_every: int = 10                            # steps between metric fetches / log writes
    save_every: Optional[int] = None               # steps between checkpoints; default once per epoch
    max_to_keep: int = 3

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"training config: unknown keys {unknown}")
        return cls(**d)

    def resolved_overrides(self):
        """Overrides actually used: the digits need 10 classes, so they imply ``num_classes=10``."""
        out = dict(self.overrides)
        if self.data == "digits":
            out.setdefault("num_classes", 10)
        return out
