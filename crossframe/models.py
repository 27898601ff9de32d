"""``create_model``: one call from a network name (and a checkpoint of any format) to a native model.

::

    model = crossframe.create_model("torchvision/mobilenet_v2", "torch", weights="ft5.pth")
    model = crossframe.create_model("keras/MobileNetV2", "keras", weights="notop.weights.h5")
    module, variables = crossframe.create_model("resnet18", "flax", weights="r18.safetensors",
                                                num_classes=37)

Weights are read with ``weight_transfer.read_canonical`` (every format ``crossframe convert`` reads),
strictly: every missing, unexpected and mis-shaped tensor is an error, except the classifier, whose
size is read from the file (:func:`read_checkpoint`, ``weight_transfer.heads``). The head follows timm's ``pretrained=True,
num_classes=N``: ``num_classes`` omitted means the checkpoint's; another number gives a freshly
initialised classifier on the loaded backbone (with a ``weight_transfer.heads.HeadReplaced`` warning); ``0`` gives
the pooled features (no classifier, and no dropout before it).
"""

from __future__ import annotations

from pathlib import Path

import archspec
from archspec.errors import ConfigError

FRAMEWORKS = {"torch": "torch", "pytorch": "torch", "keras": "tf", "tf": "tf", "tensorflow": "tf",
              "flax": "jax", "jax": "jax"}
# Formats a file may be in, by its name; several candidates are told apart by reading (strictly)
# what the file declares: their names never coincide.
_CANDIDATES = (
    (".safetensors", ("torch", "canonical", "torchvision", "timm")),
    (".weights.h5", ("keras", "keras-applications")),
    (".keras", ("keras", "keras-applications")),
    (".h5", ("keras-applications",)),
    (".msgpack", ("flax",)),
    (".pth", ("torch", "torchvision", "timm")),
    (".pt", ("torch", "torchvision", "timm")),
    (".bin", ("torch", "torchvision", "timm")),
)
_LIBRARY_PREFIX = {"torchvision": "torchvision/", "timm": "timm/", "keras-applications": "keras/"}


def _framework(framework):
    key = str(framework).lower()
    if key not in FRAMEWORKS:
        raise ConfigError(f"framework {framework!r}: expected one of torch, keras, flax")
    return FRAMEWORKS[key]


def _check_num_classes(num_classes):
    if num_classes is None:
        return
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ConfigError(f"num_classes={num_classes!r}: expected a non-negative integer "
                          "(0: pooled features, no classifier)")


def candidate_formats(path, name):
    """The formats a file named ``path`` can be in for network ``name`` (library formats only for a
    network of that library)."""
    p = Path(path)
    if p.is_dir():
        found = ("flax",)
    else:
        found = next((fmts for suffix, fmts in _CANDIDATES if p.name.endswith(suffix)), ())
    return tuple(f for f in found if f not in _LIBRARY_PREFIX or str(name).startswith(_LIBRARY_PREFIX[f]))


def read_checkpoint(path, name, weights_format=None, **overrides):
    """``(format, spec, canonical weights)`` of a checkpoint for network ``name``.

    ``spec`` is ``archspec.load(name, **overrides)`` with the classifier size of the file
    (``num_classes`` 0 when it has none: ``weight_transfer.heads.read``). ``weights_format``
    (``crossframe convert``'s names) is inferred when omitted: the formats the file's name allows
    are each tried (strictly; what a file declares is checked before any data is read, and the
    layouts of two formats never coincide); several matching, or none, is a ``ConfigError`` that
    asks for it.
    """
    from weight_transfer import WeightError, heads

    spec = archspec.load(name, **overrides)
    path = Path(path)
    if weights_format is not None:
        return (weights_format, *heads.read(path, weights_format, spec))
    candidates = candidate_formats(path, name)
    if not candidates:
        raise ConfigError(f"{path}: cannot tell the checkpoint format from its name; give weights_format= "
                          "(crossframe convert's --from: torch, keras, flax, canonical, torchvision, timm, "
                          "keras-applications)")
    matches, errors = [], []
    for fmt in candidates:
        try:
            matches.append((fmt, *heads.read(path, fmt, spec)))
        except WeightError as err:
            errors.append((fmt, err))
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ConfigError(f"{path}: reads as any of {', '.join(m[0] for m in matches)}; give weights_format=")
    if len(errors) == 1:
        raise errors[0][1]
    tried = "; ".join(f"as {fmt}: {err.one_line()}" for fmt, err in errors)
    raise ConfigError(f"{path}: not a checkpoint of {name} in any format its name allows ({tried}); "
                      "give weights_format= to see that format's whole error")


def _build(fw, spec, seed):
    if fw == "torch":
        from archspec.frameworks import import_torch
        import_torch()
        import torch_impl
        return torch_impl.build(spec)
    if fw == "tf":
        from archspec.frameworks import import_keras
        import_keras()  # Keras on the process' backend: KERAS_BACKEND=jax or torch works too
        import tf_impl
        return tf_impl.build(spec)
    from archspec.frameworks import import_jax
    jax = import_jax()
    import jax_impl
    module = jax_impl.build(spec)
    return module, jax_impl.init(module, jax.random.PRNGKey(seed))


def _load(fw, model, weights):
    """Load canonical ``weights`` (``None`` values: keep the model's own init) strictly."""
    import weight_transfer as wt

    if any(v is None for v in weights.values()):
        own = {"torch": lambda: wt.from_torch(model), "tf": lambda: wt.from_keras(model),
               "jax": lambda: wt.from_flax(model[1])}[fw]()
        weights = {k: own[k] if v is None else v for k, v in weights.items()}
    if fw == "torch":
        wt.to_torch(model, weights)
        return model
    if fw == "tf":
        wt.to_keras(model, weights)
        return model
    module, _ = model
    return module, wt.to_flax(module, weights)


def create_model(name, framework="torch", weights=None, weights_format=None, num_classes=None,
                 features_only=False, out_indices=None, seed=0, **spec_overrides):
    """The network ``name`` (a variant or library name, ``crossframe list``) as a native model.

    ``framework``: ``"torch"`` (an ``nn.Module``), ``"keras"`` (a ``keras.Model``) or ``"flax"``
    (``(module, variables)``). ``weights``: a checkpoint path of any format ``crossframe convert``
    reads (``weights_format``: its ``--from`` name, inferred when the file tells). ``num_classes``:
    ``None`` = the checkpoint's (or the spec's, without weights); another = a fresh classifier
    (warned: ``weight_transfer.heads.HeadReplaced``); ``0`` = pooled features. ``features_only=True``: a backbone
    returning the feature maps at the stage boundaries (reductions 2 to 32; ``out_indices`` picks
    some), with ``.feature_info`` (:mod:`crossframe.features`). ``spec_overrides`` go to
    ``archspec.load`` (``input_size``, ``drop_path_rate``, ...). ``seed``: of the random init
    (Flax; torch and Keras use their global generators).
    """
    fw = _framework(framework)
    _check_num_classes(num_classes)
    if "num_classes" in spec_overrides:
        raise ConfigError("give num_classes= once")
    features = features_only or out_indices is not None
    if features and num_classes is not None:
        raise ConfigError("num_classes has no meaning with features_only=True (no classifier is built)")
    from archspec.frameworks import import_in_order, import_keras, require
    require([fw])
    if fw == "tf":
        import_keras()  # Keras on the process' backend: KERAS_BACKEND=jax or torch works too
    else:
        import_in_order([fw])
    if features:
        from . import features as feats

        if weights is None:
            spec, canonical = archspec.load(name, **spec_overrides), None
        else:
            _, spec, canonical = read_checkpoint(weights, name, weights_format, **spec_overrides)
        return feats.build(fw, spec, feats.feature_info(spec, out_indices), canonical, seed=seed)
    if weights is None:
        spec = archspec.load(name, **spec_overrides,
                             **({} if num_classes is None else {"num_classes": num_classes}))
        return _build(fw, spec, seed)
    from weight_transfer import heads

    fmt, file_spec, canonical = read_checkpoint(weights, name, weights_format, **spec_overrides)
    spec, loaded, _ = heads.adapt(canonical, file_spec, num_classes, str(weights), stacklevel=2)
    return _load(fw, _build(fw, spec, seed), loaded)
