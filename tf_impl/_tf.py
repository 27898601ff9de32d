"""The one place crossframe imports TensorFlow and Keras.

Import order matters in this environment: loading TensorFlow's native libraries before triton's
(which torchvision and timm import) segfaults the process, while importing triton first makes
every later order safe. So triton, when installed, is imported here before TensorFlow, and every
other module of the package takes ``tf`` and ``keras`` from this one.
"""

import os
import sys

if "tensorflow" not in sys.modules:  # once TF is in, importing triton would itself crash: leave it
    try:  # must come before TensorFlow: triton's native library crashes when loaded after TF's
        import triton  # noqa: F401
    except ImportError:
        pass

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import keras  # noqa: E402
from keras import ops  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(f"tf_impl needs Keras on the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()!r}")

__all__ = ["tf", "keras", "ops"]
