"""tf_impl: archspec's resolved IR rendered as Keras 3 layers (NHWC), on the Keras backend of the
process: TensorFlow (``KERAS_BACKEND`` unset), JAX or PyTorch (``tf_impl._tf.BACKEND``).

``build(spec_or_name)`` returns a functional :class:`Network` (a ``keras.Model``) with ``.spec``;
each IR class has a Keras layer of the same name constructed from the IR object, and top-level
layers are named by canonical path. Keras (and TensorFlow on its backend) is imported on first use
of any of these names, and always through ``tf_impl._tf``. Importing this package imports triton (not TensorFlow) at once, so
that ``import tf_impl; import tensorflow; import torchvision`` cannot crash: see ``_tf``.
"""

import importlib
import importlib.abc
import importlib.util
import sys

if "tensorflow" not in sys.modules:  # triton after TensorFlow crashes; before, every order is safe
    try:
        import triton  # noqa: F401
    except ImportError:
        pass

_EXPORTS = {
    "build": "network", "Network": "network", "render": "network", "intermediates": "network",
    "RENDERERS": "network",
    "BatchNorm": "batchnorm",
    "ConvBNAct": "layers", "Pool": "layers", "GlobalPool": "layers", "Flatten": "layers", "Dense": "layers",
    "Dropout": "layers", "Activation": "layers", "Preprocess": "layers",
    "SqueezeExcite": "blocks", "DepthwiseSeparable": "blocks", "InvertedResidual": "blocks",
    "BasicBlock": "blocks", "Bottleneck": "blocks", "ShuffleUnit": "blocks", "channel_shuffle": "blocks",
    "drop_path": "blocks",
}

from archspec.stochastic import keep_masks  # noqa: E402  caller-supplied dropout / drop-path masks (no TF)

__all__ = list(_EXPORTS) + ["keep_masks"]


def _register_network():
    """Import ``network``, whose ``Network`` class registers itself with Keras (``crossframe>Network``),
    so that ``keras.models.load_model`` finds it; True once done. Skipped while ``_tf`` is importing
    Keras (that import registers it); False while TensorFlow is half imported (it imports Keras
    itself) or when Keras' backend is one tf_impl refuses (``_tf`` raises a ConfigError)."""
    if "network" in globals() or f"{__name__}.network" in sys.modules:
        return True
    tf_mod = sys.modules.get(f"{__name__}._tf")
    if tf_mod is not None and not hasattr(tf_mod, "ops"):
        return True
    try:
        importlib.import_module(".network", __name__)
        return True
    except Exception:
        return False


class _AfterKerasImport(importlib.abc.MetaPathFinder):
    """``import tf_impl`` must not import TensorFlow, yet a ``.keras`` file of ours must open with
    ``keras.models.load_model`` after ``import tf_impl``: register ``Network`` once Keras (or
    TensorFlow, which imports Keras half way through its own import) has finished loading."""

    _busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in ("keras", "tensorflow") or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy = False
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        real_exec = spec.loader.exec_module

        def exec_module(module):
            real_exec(module)
            if "keras" in sys.modules and _register_network() and self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register_network()
elif not any(isinstance(f, _AfterKerasImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKerasImport())


def __getattr__(name):
    if name in _EXPORTS:
        _register_network()
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tf_impl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
