"""Each framework's native name and layout for every canonical tensor: written here once, read by the
adapters (``torch_adapter``, ``keras_adapter``), the file formats (``formats.torch``,
``formats.keras``) and the library importers (``importers._state_dict``, ``importers.keras_applications``).

A canonical tensor ``<owner>.<leaf>`` has a *kind* (``archspec.ir.Tensor.kind``, set by the IR layer that
holds it; :func:`holder_kind` maps owners to it): ``conv`` (a convolution), ``depthwise`` (a depthwise one, which Keras stores
as ``(kh, kw, in, 1)``), ``dense``, ``norm`` (a batch norm; a layer norm has its scale and bias
only) or ``free`` (a block's own parameter: ConvNeXt's ``layer_scale``). ``NATIVE[framework][kind][leaf]`` is
``(native attribute, layout)``; the layout says how the array changes between canonical and native:

    same       no change
    conv       canonical HWIO (kh, kw, in/groups, out)  <-> PyTorch OIHW
    dense      canonical (in, out)                      <-> PyTorch (out, in)
    depthwise  canonical (kh, kw, 1, C)                 <-> Keras (kh, kw, C, 1)
"""

from archspec import ir

NATIVE = {
    "torch": {
        "conv": {"kernel": ("weight", "conv"), "bias": ("bias", "same")},
        "depthwise": {"kernel": ("weight", "conv"), "bias": ("bias", "same")},
        "dense": {"kernel": ("weight", "dense"), "bias": ("bias", "same")},
        "norm": {"scale": ("weight", "same"), "bias": ("bias", "same"), "mean": ("running_mean", "same"),
                 "var": ("running_var", "same")},
        "free": {"layer_scale": ("layer_scale", "same")},
    },
    "keras": {
        "conv": {"kernel": ("kernel", "same"), "bias": ("bias", "same")},
        "depthwise": {"kernel": ("kernel", "depthwise"), "bias": ("bias", "same")},
        "dense": {"kernel": ("kernel", "same"), "bias": ("bias", "same")},
        "norm": {"scale": ("gamma", "same"), "bias": ("beta", "same"), "mean": ("moving_mean", "same"),
                 "var": ("moving_variance", "same")},  # in this order: the variables of a Keras BatchNormalization
        "free": {"layer_scale": ("layer_scale", "same")},
    },
}


assert all(set(table) == set(ir.TENSOR_KINDS) for table in NATIVE.values()), "NATIVE lacks a tensor kind"

# Where a library's own models name a tensor otherwise than our renderers do: Keras Applications'
# ConvNeXt keeps the layer scale in a LayerScale layer, as its attribute ``gamma``.
LIBRARY_NATIVE = {"keras-applications": {"free": {"layer_scale": ("gamma", "same")}}}


def native(framework, kind, leaf):
    """``(native attribute, layout)`` of canonical ``leaf`` held by a layer of ``kind``; None if it has none."""
    return NATIVE[framework][kind].get(leaf)


def holder_kind(spec):
    """``{owner path: kind}`` of every weight-holding owner of ``spec`` (``<owner>.<leaf>`` is a canonical
    tensor): the kind the IR gives its tensors (``archspec.ir.Tensor.kind``): a conv's ``<path>.conv``
    (``conv`` or ``depthwise``), a norm's ``<path>.bn`` / ``<path>.ln`` (``norm``), an SE's
    ``reduce``/``expand`` (``conv``), a dense layer's path (``dense``), a block holding a tensor itself
    (``free``: ConvNeXt's ``<block>.layer_scale``)."""
    return {t.name.rsplit(".", 1)[0]: t.kind for t in spec.tensors()}


def native_shape(layout, shape):
    """The native shape of a canonical ``shape`` under ``layout`` (see the module docstring)."""
    shape = tuple(shape)
    if layout == "conv":  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if layout == "dense":  # (in, out) -> (out, in)
        return (shape[1], shape[0])
    if layout == "depthwise":  # (kh, kw, 1, C) -> (kh, kw, C, 1)
        return (shape[0], shape[1], shape[3], shape[2])
    return shape
