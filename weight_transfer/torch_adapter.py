"""Canonical weights <-> a ``torch_impl.Network``, by one rule driven by ``model.spec.tensors()``.

A canonical name ``<owner>.<leaf>`` names the module at ``<owner>`` (found with
``get_submodule``, since the module tree mirrors canonical paths) and one of its tensors:

    kernel  conv weight OIHW <-> HWIO (kh, kw, in/groups, out);  Linear weight (out, in) <-> (in, out)
    bias    bias            scale  BN weight       mean  BN running_mean       var  BN running_var

BN's ``num_batches_tracked`` has no canonical counterpart and is left alone.
"""

import numpy as np
import torch
from torch import nn

from archspec import ir

from .canonical import validate
from .errors import WeightError
from .native_names import native


def _network(model):
    """The ``torch_impl.Network`` inside ``torch.compile`` / (Distributed)DataParallel wrappers.

    The canonical paths are those of the Network's own module tree, not of the wrapper's.
    """
    while True:
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            break
    if not isinstance(getattr(model, "spec", None), ir.Spec):
        raise TypeError(f"expected a torch_impl.Network (a module with an archspec .spec), "
                        f"got {type(model).__name__}")
    return model


def _locate(model, name):
    """``(tensor, kind)`` in ``model`` for canonical ``name``; kind says how the layout changes."""
    owner, leaf = name.rsplit(".", 1)
    try:
        module = model.get_submodule(owner)
    except AttributeError:
        raise WeightError("torch model", other=[f"{name}: no module at path {owner!r}"]) from None
    holder = ("conv" if isinstance(module, nn.Conv2d) else "dense" if isinstance(module, nn.Linear)
              else "norm" if isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm))
              else "free")  # free: a module's own parameter (ConvNeXt's layer_scale)
    attr, kind = (holder and native("torch", holder, leaf)) or (None, None)
    tensor = getattr(module, attr, None) if attr else None
    if tensor is None:
        raise WeightError("torch model", other=[f"{name}: {type(module).__name__} at {owner!r} has no "
                                                f"tensor for {leaf!r}"])
    return tensor, kind


def _to_canonical(t, kind):
    if kind == "conv":  # OIHW -> HWIO
        return t.permute(2, 3, 1, 0)
    if kind == "dense":  # (out, in) -> (in, out)
        return t.t()
    return t


def _from_canonical(a, kind):
    if kind == "conv":  # HWIO -> OIHW
        return a.permute(3, 2, 0, 1)
    if kind == "dense":
        return a.t()
    return a


def _readable(value):
    """A numpy view of ``value`` torch can wrap: read-only arrays (safetensors, JAX) are copied, and
    bfloat16 (ml_dtypes, which torch cannot wrap) goes through float32 (exact)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    array = np.asarray(value)
    if array.dtype.name == "bfloat16":
        return array.astype(np.float32)
    return array if array.flags.writeable else array.copy()


def from_torch(model, dtype=np.float32):
    """``{canonical name: numpy array}`` for every tensor of ``model.spec.tensors()``, in order.

    ``dtype``: of the arrays; float32 is the canonical dtype, float64 keeps a float64 model exact.
    """
    model = _network(model)
    out = {}
    tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[np.dtype(dtype)]
    for t in model.spec.tensors():
        tensor, kind = _locate(model, t.name)
        array = _to_canonical(tensor.detach(), kind).to("cpu", tdtype).numpy()
        array = np.array(array, dtype=dtype, order="C", copy=True)
        if array.shape != tuple(t.shape):
            raise WeightError("torch model", mismatched=[(t.name, array.shape, tuple(t.shape))])
        out[t.name] = array
    return out


def to_torch(model, weights, where="weights", allow_nonfinite=False):
    """Copy canonical ``weights`` into ``model`` in place and return it.

    Everything is checked first (names and shapes: one ``WeightError`` listing all problems; then
    floating dtypes and, unless ``allow_nonfinite``, NaN/Inf) and every value is converted to its
    target's dtype and device before the first copy, so a refused dict leaves the model bit-identical.
    """
    network = _network(model)
    validate(network.spec, weights, where=where, allow_nonfinite=allow_nonfinite)
    pairs, wrong = [], []
    for t in network.spec.tensors():
        tensor, kind = _locate(network, t.name)
        value = _readable(weights[t.name])
        source = _from_canonical(value if isinstance(value, torch.Tensor) else torch.from_numpy(value), kind)
        if source.shape != tensor.shape:  # the model's modules disagree with its own spec
            wrong.append((t.name, tuple(source.shape), tuple(tensor.shape)))
        pairs.append((tensor, source))
    if wrong:
        raise WeightError(f"{where} (layout in the torch model)", mismatched=wrong)
    ready = [(tensor, source.to(device=tensor.device, dtype=tensor.dtype)) for tensor, source in pairs]
    with torch.no_grad():
        for tensor, source in ready:
            tensor.copy_(source)
    return model
