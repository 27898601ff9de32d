"""The one precision policy of the project.

``strict``: float32 means float32 everywhere: PyTorch cuDNN and matmul TF32 off, TensorFlow
``enable_tensor_float_32_execution(False)``, JAX ``default_matmul_precision('highest')`` (TPUs and
H100s otherwise run float32 matmuls and convolutions in bf16/TF32 passes). Parity runs use it.
``fast``: each framework's defaults, for training and benchmarks.
"""

import contextlib
from archspec.errors import ConfigError

MODES = ("strict", "fast")


def _check(mode):
    if mode not in MODES:
        raise ConfigError(f"precision mode {mode!r}, expected one of {MODES}")


def configure_torch(mode):
    _check(mode)
    import torch

    strict = mode == "strict"
    torch.backends.cudnn.allow_tf32 = not strict
    torch.backends.cuda.matmul.allow_tf32 = not strict
    torch.set_float32_matmul_precision("highest" if strict else "high")


def configure_tf(mode):
    _check(mode)
    from tf_impl._tf import tf

    tf.config.experimental.enable_tensor_float_32_execution(mode != "strict")


@contextlib.contextmanager
def jax_precision(mode):
    """Context for JAX code: ``highest`` matmul/conv precision in strict mode, defaults otherwise."""
    _check(mode)
    if mode == "strict":
        import jax

        with jax.default_matmul_precision("highest"):
            yield
    else:
        yield
