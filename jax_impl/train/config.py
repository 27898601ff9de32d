"""What defines a training run: a plain dataclass, saved as JSON with every checkpoint."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional

from archspec.errors import ConfigError

from .data import check_source

CHOICES = {"init": ("network", "he"), "optimizer": ("sgd", "adamw"),
           "decay": ("kernels", "all"), "schedule": ("cosine", "constant"), "dtype": ("float32", "bfloat16"),
           "precision": ("default", "highest")}
FREEZE = (None, "backbone")


@dataclass
class TrainConfig:
    arch: str = "dsconv_cnn"
    overrides: dict = field(default_factory=dict)  # archspec.load overrides: input_size, num_classes, width...
    deterministic: bool = False                    # zero every dropout / drop-path rate (spec.deterministic())
    data: str = "digits"                           # 'digits', 'synthetic' or 'imagefolder:PATH'
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
    freeze: Optional[str] = None                   # 'backbone': only the classifier trains (see step.py)
    ema: Optional[float] = None                    # decay of an exponential moving average of the weights

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise one :class:`ConfigError` naming every bad value (``--lr nan``, ``--batch-size 0``...)."""
        problems = []

        def number(name, low, *, above=False, below=None, integer=False, optional=False):
            v = getattr(self, name)
            if v is None and optional:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
                problems.append(f"{name}={v!r}: expected {'an integer' if integer else 'a number'}")
            elif not math.isfinite(v) or v < low or (above and v == low) or (below is not None and v >= below):
                kind = "an integer" if integer else "a finite number"
                bound = f"> {low}" if above else f">= {low}"
                if below is not None:
                    bound += f" and < {below}"
                problems.append(f"{name}={v!r}: expected {kind} {bound}")

        for name in ("epochs", "batch_size", "accum_steps", "data_size", "log_every", "max_to_keep"):
            number(name, 1, integer=True)
        for name in ("steps", "eval_every", "save_every"):
            number(name, 1, integer=True, optional=True)
        number("seed", 0, integer=True)
        number("warmup_steps", 0, integer=True)
        for name in ("lr", "weight_decay", "final_lr_fraction"):
            number(name, 0)
        number("momentum", 0, below=1)
        number("label_smoothing", 0, below=1)
        number("test_fraction", 0, above=True, below=1)
        number("grad_clip", 0, above=True, optional=True)
        if self.ema is not None and (isinstance(self.ema, bool) or not isinstance(self.ema, (int, float))
                                     or not math.isfinite(self.ema) or not 0 < self.ema < 1):
            problems.append(f"ema={self.ema!r}: expected a decay > 0 and < 1 (e.g. 0.999)")
        if self.freeze not in FREEZE:
            problems.append(f"freeze={self.freeze!r}: expected one of {', '.join(map(str, FREEZE))}")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                problems.append(f"{name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        try:
            check_source(self.data)
        except ConfigError as err:
            problems.append(f"data: {err}")
        if not isinstance(self.overrides, dict):
            problems.append(f"overrides={self.overrides!r}: expected a dict")
        if problems:
            raise ConfigError("training config: " + "; ".join(problems))

    def to_dict(self):
        return dataclasses.asdict(self)

    def same_run(self, saved):
        """Whether ``saved`` (a checkpoint's config dict) describes this run; keys a config saved before
        a field existed lacks count as that field's default."""
        try:
            return TrainConfig.from_dict(saved).to_dict() == self.to_dict()
        except (ConfigError, TypeError):
            return False

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
