"""Each framework's native name and layout for every canonical tensor: written here once, read by the
adapters (``torch_adapter``, ``keras_adapter``), the file formats (``formats.torch``,
``formats.keras``) and the library importers (``importers._state_dict``, ``importers.keras_applications``).

A canonical tensor ``<owner>.<leaf>`` has a *holder kind*, the kind of layer that owns it
(:func:`holder_kind`): ``conv`` (a convolution), ``depthwise`` (a depthwise one, which Keras stores
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


def native(framework, kind, leaf):
    """``(native attribute, layout)`` of canonical ``leaf`` held by a layer of ``kind``; None if it has none."""
    return NATIVE[framework][kind].get(leaf)


def holder_kind(spec):
    """``{owner path: kind}`` of every weight-holding owner of ``spec``: a conv's ``<path>.conv``
    (``conv`` or ``depthwise``), the ``<path>.bn`` / ``<path>.ln`` of a conv or a norm layer (``norm``),
    an SE's ``reduce``/``expand`` (``conv``), a dense layer's path (``dense``), and the path of any other
    layer that holds a tensor itself (``free``: ConvNeXt's ``<block>.layer_scale``)."""
    out = {}
    for layer in spec.walk():
        if getattr(layer, "bn", None) is not None:  # ConvBNAct, NormAct: bn or ln by the norm's role
            out[f"{layer.path}.{layer.bn.role}"] = "norm"
        if not isinstance(layer, ir.Dense) and any(t.name.rsplit(".", 1)[0] == layer.path for t in layer.tensors()):
            out[layer.path] = "free"
        if isinstance(layer, ir.ConvBNAct):
            out[f"{layer.path}.conv"] = "depthwise" if layer.is_depthwise else "conv"
        elif isinstance(layer, ir.SqueezeExcite):
            out[f"{layer.path}.reduce"] = out[f"{layer.path}.expand"] = "conv"
        elif isinstance(layer, ir.Dense):
            out[layer.path] = "dense"
    return out


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
