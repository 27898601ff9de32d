"""The one place crossframe imports Keras (and TensorFlow, when Keras runs on it).

tf_impl runs on the Keras backend of the process: ``KERAS_BACKEND`` (tensorflow when unset, or
whatever backend Keras was imported with before us), one of tensorflow, jax and torch. Every
module of the package takes ``keras`` and ``ops`` from this one; ``tf`` is TensorFlow on the
tensorflow backend and None on the others (``BACKEND`` says which).

Import order matters in this environment: loading TensorFlow's native libraries before triton's
(which torchvision and timm import) segfaults the process, while importing triton first makes
every later order safe. So Keras comes from ``archspec.frameworks.load_keras``, which imports triton
first, when installed.
"""

import os

from archspec.errors import ConfigError
from archspec.frameworks import load_keras

keras = load_keras()  # triton first, KERAS_BACKEND tensorflow when unset: archspec/frameworks.py
from keras import ops  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
BACKEND = keras.backend.backend()
if BACKEND not in BACKENDS:
    raise ConfigError(f"tf_impl runs on Keras' {', '.join(BACKENDS)} backends; this process has Keras on "
                      f"{BACKEND!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '')!r})")

if BACKEND == "tensorflow":
    import tensorflow as tf  # noqa: E402  (Keras imported it already)
else:
    tf = None
if BACKEND == "torch":  # layers named by canonical paths ('features.1') must build there too
    from ._torch_backend import install as _install

    _install()

__all__ = ["tf", "keras", "ops", "BACKEND", "BACKENDS"]
