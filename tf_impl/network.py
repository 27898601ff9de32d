"""``build(spec)``: a functional ``keras.Model`` with one layer per top-level IR layer, named by path."""

import archspec
from archspec import ConfigError, ir

from ._tf import keras
from .blocks import (BasicBlock, Bottleneck, ConvNeXtBlock, DenseLayer, DepthwiseSeparable, FusedInvertedResidual,
                     InvertedResidual, ShuffleUnit, SqueezeExcite, Transition, UniversalInvertedResidual)
from .layers import Activation, ConvBNAct, Dense, Dropout, Flatten, GlobalPool, NormAct, Pool, Preprocess

# IR class -> Keras class of the same name.
RENDERERS = {
    ir.ConvBNAct: ConvBNAct, ir.SqueezeExcite: SqueezeExcite, ir.DepthwiseSeparable: DepthwiseSeparable,
    ir.InvertedResidual: InvertedResidual, ir.BasicBlock: BasicBlock, ir.Bottleneck: Bottleneck,
    ir.ShuffleUnit: ShuffleUnit, ir.Pool: Pool, ir.GlobalPool: GlobalPool, ir.Flatten: Flatten,
    ir.Dense: Dense, ir.Dropout: Dropout, ir.Activation: Activation, ir.Preprocess: Preprocess,
    ir.FusedInvertedResidual: FusedInvertedResidual, ir.UniversalInvertedResidual: UniversalInvertedResidual,
    ir.NormAct: NormAct, ir.DenseLayer: DenseLayer, ir.Transition: Transition, ir.ConvNeXtBlock: ConvNeXtBlock,
}
assert set(RENDERERS) == set(ir.BLOCK_TYPES), "tf_impl.RENDERERS is out of step with archspec.ir.BLOCK_TYPES"
assert all(cls.__name__ == k.__name__ for k, cls in RENDERERS.items())


def render(layer, dtype=None, **options):
    """The Keras layer for one IR layer, named by its canonical path (``dtype``: a Keras dtype policy;
    ``options``: the layer class's own, e.g. a :class:`Pool`'s ``nonnegative_input``)."""
    try:
        cls = RENDERERS[type(layer)]
    except KeyError:
        raise TypeError(f"{getattr(layer, 'path', layer)}: no Keras renderer for IR type "
                        f"{type(layer).__name__}") from None
    return cls(layer, dtype=dtype, **options)


@keras.saving.register_keras_serializable(package="crossframe", name="Network")
class Network(keras.Model):
    """Functional model of a resolved spec: NHWC float input of ``spec.input_shape``, or of any other size
    at which ``spec.size_mismatch(H, W)`` is None (symmetric padding, no flatten; refused otherwise).

    ``model.spec`` is the ``ir.Spec``; ``model.get_layer(path)`` is the layer of a top-level path;
    ``model.intermediates(x)`` returns ``{path: output}`` of every top-level layer.
    ``dtype``: a Keras dtype policy for every layer (``None``: Keras' global one, float32 by
    default); ``'bfloat16'`` keeps variables and computation in bfloat16, like ``torch_model.to(bf16)``.
    """

    def __init__(self, spec, dtype=None):
        policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
        # Spatial dimensions left open unless a flatten fixes them: the model then runs at every size
        # where spec.size_mismatch is None (checked in call), as the PyTorch and Flax renderings do.
        shape = tuple(spec.input_shape)
        if len(shape) == 3 and not any(layer.kind == "flatten" for layer in spec.layers):
            shape = (None, None, shape[2])
        inputs = keras.Input(shape=shape, name="input", dtype=policy.compute_dtype)
        x = inputs
        previous = None
        for layer in spec.layers:
            options = {"nonnegative_input": True} if isinstance(layer, ir.Pool) and previous is not None \
                and ir.nonnegative_output(previous) else {}
            x = render(layer, dtype=policy, **options)(x)
            previous = layer
        # Keras names cannot hold '/', which library variants' names do ('keras/EfficientNetB0').
        super().__init__(inputs=inputs, outputs=x, name=spec.name.replace("/", "_"))
        self.spec = spec
        object.__setattr__(self, "_layers_dtype", policy)  # what every layer was built with (get_config)
        object.__setattr__(self, "_intermediates_model", None)  # untracked: not a sub-layer of the model

    def call(self, inputs, training=None, mask=None, **kwargs):
        self._check_input(inputs)
        return super().call(inputs, training=training, mask=mask, **kwargs)

    def _check_input(self, x):
        """Refuse (ConfigError) a static spatial size this network cannot run at (archspec.sizes)."""
        shape = tuple(x.shape)
        if len(self.spec.input_shape) != 3:
            return  # a flat input (N, F): Keras' own check of the functional input
        h, w, c = self.spec.input_shape
        if len(shape) != 4 or shape[3] not in (c, None):
            raise ConfigError(f"{self.spec.name}: input of shape {shape}, expected (N, {h}, {w}, {c}) (N, H, W, C)"
                              + ("; the input looks channels-first (NCHW): Keras models here take NHWC"
                                 if len(shape) == 4 and shape[1] == c else ""))
        if None not in shape[1:3] and tuple(shape[1:3]) != (h, w):
            reason = self.spec.size_mismatch(shape[1], shape[2])
            if reason is not None:
                raise ConfigError(f"input of shape {shape}: {reason}")

    def get_config(self):
        """The spec (``Spec.to_config()``) and dtype policy: ``from_config`` rebuilds every layer from it,
        so ``keras.models.load_model`` (safe mode), ``clone_model`` and ``model.save`` work."""
        return {"name": self.name, "trainable": self.trainable,
                "dtype": keras.saving.serialize_keras_object(self._layers_dtype),
                "spec": self.spec.to_config()}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        spec = archspec.from_config(config["spec"])
        dtype = config.get("dtype")
        if isinstance(dtype, dict):
            dtype = keras.saving.deserialize_keras_object(dtype)
        model = cls(spec, dtype=dtype)
        model.trainable = config.get("trainable", True)
        return model

    def intermediates(self, x, training=False):
        """``{path: output}`` of every top-level layer, in execution order (NHWC, or (N, C) once flat)."""
        if self._intermediates_model is None:
            outputs = {layer.path: self.get_layer(layer.path).output for layer in self.spec.layers}
            object.__setattr__(self, "_intermediates_model",
                               keras.Model(self.input, outputs, name=f"{self.name}_intermediates"))
        out = self._intermediates_model(x, training=training)
        return {layer.path: out[layer.path] for layer in self.spec.layers}


def build(spec_or_name, dtype=None):
    """A :class:`Network` for an ``ir.Spec`` or a variant name (passed to ``archspec.load``).

    ``dtype``: a Keras dtype policy name ('float32', 'bfloat16', 'float64', 'mixed_bfloat16', ...).
    """
    spec = archspec.load(spec_or_name) if isinstance(spec_or_name, str) else spec_or_name
    if not isinstance(spec, ir.Spec):
        raise TypeError(f"build() takes an archspec.ir.Spec or a variant name, got {type(spec_or_name).__name__}")
    return Network(spec, dtype=dtype)


def intermediates(model, x, training=False):
    """``{path: output}`` of every top-level layer of a model from :func:`build`."""
    return model.intermediates(x, training=training)
