"""Import the frameworks in the one order that never crashes, and say clearly when one is missing.

Importing this module imports no framework (as all of ``archspec``); its functions do, on call.
It sits at the bottom of the import graph so that every package takes frameworks from here.

With the CUDA build of PyTorch, ``triton``'s native library segfaults when it loads after
TensorFlow's (importing torchvision, timm or ``torch.compile`` after TensorFlow). Loading triton
first makes every later order safe, so every Keras (and so TensorFlow) import in this project goes
through :func:`load_keras`, which does that: ``tf_impl._tf`` takes Keras from it, and these helpers
are the harnesses' way in. Nothing here imports a package above ``archspec``.

A framework that is not installed (``pip install .[torch,jax]`` without TensorFlow, as on many
accelerator machines) raises :class:`FrameworkMissing`, a ``ConfigError``: the command line prints
which framework is missing, how to install it and what would run without it, and exits 2.
"""

from __future__ import annotations

import importlib.util

from archspec.errors import ConfigError

FRAMEWORKS = ("torch", "tf", "jax")
# the modules each framework needs, and the extra that installs them
MODULES = {"torch": ("torch",), "tf": ("tensorflow", "keras"), "jax": ("jax", "flax", "optax"),
           # parity only: tf_impl on Keras' JAX / PyTorch backend, in a worker process
           "keras-jax": ("keras", "jax"), "keras-torch": ("keras", "torch")}
NAMES = {"torch": "PyTorch", "tf": "TensorFlow/Keras", "jax": "JAX/Flax", "keras-jax": "Keras on JAX",
         "keras-torch": "Keras on PyTorch"}
EXTRAS = {"keras-jax": "tf,jax", "keras-torch": "tf,torch"}  # the pip extras of a framework not named as one


class FrameworkMissing(ConfigError):
    """A framework a command needs cannot be imported."""

    def __init__(self, framework, detail="", hint=""):
        self.framework = framework
        why = f" ({detail})" if detail else ""
        extra = EXTRAS.get(framework, framework)
        text = f"{NAMES[framework]} is not installed{why}: pip install 'crossframe[{extra}]' (or ./dev install)"
        super().__init__(text + (f"; {hint}" if hint else ""))


def installed(framework) -> bool:
    """Whether every module of ``framework`` can be found (without importing it)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in MODULES[framework])
    except (ImportError, ValueError):  # a parent package that fails, or a module set to None
        return False


def available(names=FRAMEWORKS):
    """The frameworks of ``names`` that are installed, in ``names``' order."""
    return [f for f in names if installed(f)]


def require(names, hint=None):
    """Raise :class:`FrameworkMissing` for the first framework of ``names`` that is not installed.

    ``hint(missing, present)`` may return what the user could run instead (e.g. another ``--frameworks``).
    """
    names = list(dict.fromkeys(names))
    missing = [f for f in names if not installed(f)]
    if missing:
        present = available()
        raise FrameworkMissing(missing[0], hint=hint(missing, present) if hint else
                               f"installed: {', '.join(present) or 'none'}")


def _imported(framework, load):
    try:
        return load()
    except ImportError as err:  # not installed, or a broken install: say which framework
        raise FrameworkMissing(framework, detail=f"{type(err).__name__}: {err}") from err


def import_torch():
    def load():
        try:
            import triton  # noqa: F401  (must precede TensorFlow; see module docstring)
        except ImportError:
            pass
        import torch

        return torch
    return _imported("torch", load)


def load_keras():
    """Keras, imported safely: triton first (unless TensorFlow is in already: importing triton then
    would itself crash), ``KERAS_BACKEND`` tensorflow when unset and Keras not yet imported, TensorFlow's
    C++ logging at warnings. Raises ImportError when Keras is missing (callers say which framework)."""
    import os
    import sys

    if "tensorflow" not in sys.modules:
        try:  # must come before TensorFlow: triton's native library crashes when loaded after TF's
            import triton  # noqa: F401
        except ImportError:
            pass
    if "keras" not in sys.modules:  # an imported Keras has its backend already
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def import_tf():
    """``(tf, keras)``: TensorFlow and Keras on its TensorFlow backend (a ConfigError on another one)."""
    def load():
        keras = load_keras()
        BACKEND = keras.backend.backend()
        if BACKEND != "tensorflow":
            raise ConfigError(f"this needs Keras on TensorFlow, but this process runs Keras on {BACKEND!r} "
                              f"(KERAS_BACKEND): unset it or set KERAS_BACKEND=tensorflow")
        import tensorflow as tf  # Keras imported it already

        return tf, keras
    return _imported("tf", load)


def import_keras():
    """Keras on the backend this process chose (``KERAS_BACKEND``: tensorflow when unset, jax or torch),
    its backend's framework imported torch side first."""
    def load():
        import os
        import sys

        backend = sys.modules["keras"].backend.backend() if "keras" in sys.modules else \
            os.environ.get("KERAS_BACKEND", "tensorflow")
        if backend == "torch":
            import_torch()
        elif backend == "jax":
            import jax  # noqa: F401  (not flax: Keras needs JAX alone)
        return load_keras()
    return _imported("tf", load)


def import_jax():
    def load():
        import flax  # noqa: F401
        import jax

        return jax
    return _imported("jax", load)


def import_in_order(names):
    """Import the named frameworks ('torch', 'tf', 'jax'), torch side first."""
    if "torch" in names:
        import_torch()
    if "jax" in names:
        import_jax()
    if "tf" in names:
        import_tf()
