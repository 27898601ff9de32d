"""Generate ``archspec/schema.json`` (JSON Schema, draft-07) from the resolver's own field tables.

The schema is for editors (completion, hover text, red squiggles) and for CI. It is *derived* from
the ``_*_KEYS`` tables in :mod:`archspec.resolve`, so a field added to the resolver appears in the
schema after one command::

    python -m archspec.schema            # rewrite archspec/schema.json
    python -m archspec.schema --check    # exit 1 if schema.json is stale (the tests do the same)

What the schema checks: field names, required fields, types, enumerations and simple ranges, per
layer ``type`` and per stage ``block``. What only the resolver checks: anything that needs the
merged config or arithmetic (``groups`` dividing the channel counts, a flatten's ``size``, a
``$var`` that is defined, exactly one of ``expand_ratio``/``expanded`` after per-block overrides).

Two rules shape the schema:

- Any value inside a config may be a ``"$name"`` string (resolved from ``vars`` before validation),
  so every field accepts ``{"$ref": "#/definitions/variable"}`` besides its own type.
- A variant is a *partial* config deep-merged onto ``base``: objects are merged key by key
  (``input``, ``conventions``, ``batch_norm``, ``scaling``, ``vars``), lists are replaced whole.
  So a variant's objects have no required fields, but a ``layers`` list in a variant must hold
  complete layers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import ir, resolve
from .padding import MODES

SCHEMA_PATH = Path(__file__).parent / "schema.json"

_VAR = {"$ref": "#/definitions/variable"}


def _enum(values):
    return {"type": "string", "enum": list(values)}


_ACTS = [a for a in ir.ACTIVATIONS if a is not None]
_POSITIVE_INT = {"type": "integer", "minimum": 1}
_POSITIVE_NUMBER = {"type": "number", "exclusiveMinimum": 0}
_RATE = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}

# Value constraints beyond the Python type, by field name; (context, field) entries take precedence.
_VALUES = {
    "out": _POSITIVE_INT, "kernel": _POSITIVE_INT, "stride": _POSITIVE_INT, "groups": _POSITIVE_INT,
    "repeats": _POSITIVE_INT, "mid": _POSITIVE_INT, "expanded": _POSITIVE_INT, "divisor": _POSITIVE_INT,
    "in": _POSITIVE_INT, "size": _POSITIVE_INT, "channels": _POSITIVE_INT, "num_classes": _POSITIVE_INT,
    "expand_ratio": _POSITIVE_NUMBER, "width": _POSITIVE_NUMBER, "depth": _POSITIVE_NUMBER,
    "min_width": _POSITIVE_NUMBER, "ratio": _POSITIVE_NUMBER,
    "eps": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
    "round_limit": {"type": "number", "minimum": 0, "maximum": 1},
    "rate": _RATE, "drop_path_rate": _RATE,
    "momentum": {"type": "number", "minimum": 0, "maximum": 1},
    "momentum_convention": _enum(["torch", "keras"]),
    "running_var": _enum(["unbiased", "biased"]),
    "order": _enum(["chw", "hwc"]),
    "stride_on": _enum(["conv1", "conv2"]),
    "of": _enum(["in", "expanded"]),
    "round": _enum(["floor", "make_divisible"]),
    "gate": _enum(_ACTS),
    "block": _enum(sorted(resolve._STAGE_KEYS)),
    "name": {"type": "string", "pattern": resolve.NAME_PATTERN},
    "mean": {"type": "array", "items": {"type": "number"}, "minItems": 1},
    "std": {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 1},
    ("conventions", "padding"): _enum(list(resolve.CONVENTION_PADDINGS)),
    ("conv_bn_act", "padding"): _enum(list(MODES)),
    "layer_order": _enum(list(ir.ORDERS)),
    "growth": _POSITIVE_INT, "bn_size": _POSITIVE_INT, "pool_kernel": _POSITIVE_INT, "mlp_ratio": _POSITIVE_INT,
    "layer_scale": _POSITIVE_NUMBER, "norm": _enum(list(resolve.NORM_CHOICES)),
    "start_kernel": {"type": "integer", "minimum": 0}, "mid_kernel": {"type": "integer", "minimum": 0},
    ("pool", "padding"): {"anyOf": [{"type": "integer", "minimum": 0}, _enum(list(MODES))]},
    ("pool", "op"): _enum(["max", "avg"]),
    ("global_pool", "op"): _enum(["avg"]),
    ("dense", "out"): {"anyOf": [_POSITIVE_INT, {"const": "num_classes"}]},
}

_DOCS = {
    "input": "Input image: square side 'size' and 'channels' (channels-last H, W, C).",
    "size": "Side of the square input image, in pixels.",
    "channels": "Input channels (3 for RGB).",
    "num_classes": "Outputs of the classifier; a dense layer with \"out\": \"num_classes\" uses it.",
    "conventions": "Numerical conventions that differ between libraries; never taken from a framework default.",
    "padding": "'symmetric' (PyTorch: (k-1)//2 each side), 'tf_same' (TensorFlow SAME: extra row/column "
               "bottom/right), 'tf_same_even' (TF SAME as for a size divisible by the stride, whatever the "
               "size: Keras MobileNet's fixed ((0, 1), (0, 1)) before stride-2 3x3 convs), 'valid' (none).",
    "batch_norm": "Batch-norm eps and momentum, with the convention the momentum number is written in.",
    "eps": "Added to the variance before the square root.",
    "momentum": "Running-statistics momentum, in the convention named by 'momentum_convention'.",
    "momentum_convention": "'torch': running = (1-m)*running + m*batch; 'keras': m is the decay "
                           "(running = m*running + (1-m)*batch).",
    "running_var": "Batch variance fed to the running variance in training: 'unbiased' (PyTorch, n/(n-1)) "
                   "or 'biased' (Keras, Flax).",
    "conv_bias": "Default for convolution biases (a layer's 'bias' overrides it).",
    "preprocessing": "In-model input preprocessing y = ((x*rescale + offset) - mean) / std, or null.",
    "scaling": "Compound-scaling multipliers and rounding.",
    "width": "Channel multiplier; scaled channels are rounded with make_divisible(divisor, round_limit).",
    "depth": "Repeat multiplier: repeats become ceil(repeats * depth).",
    "divisor": "Scaled channel counts are rounded to a multiple of this.",
    "round_limit": "make_divisible never rounds below round_limit * value.",
    "drop_path_rate": "Stochastic depth: block k of n (over all stages) gets rate * k / n.",
    "drop_path_to_last": "Stochastic depth reaches the full rate at the last block: rate * k / (n - 1) (ConvNeXt).",
    "norm": "The layer's norm: 'batch_norm' (the convention's), 'layer_norm' (conventions.layer_norm) or 'none'.",
    "layer_norm": "The layer norm ('norm': 'layer_norm'): over each position's channels, eps (default 1e-6).",
    "mlp_ratio": "A ConvNeXt block's hidden width: mlp_ratio * out channels.",
    "layer_scale": "Initial value of a ConvNeXt block's per-channel layer scale.",
    "start_kernel": "A UIB's depthwise conv before the expansion (linear; 0, the default: none).",
    "mid_kernel": "A UIB's depthwise conv after the expansion (with act, strided; default 3, 0: none).",
    "vars": "Variables: any value \"$name\" in this config is replaced by vars.name (variants override them).",
    "layers": "Top-level layers in execution order; each 'name' is the first segment of its canonical path.",
    "type": "Layer type.",
    "name": "Layer name: the first segment of the canonical path of its weights.",
    "out": "Output channels (before width scaling) or features.",
    "kernel": "Square kernel size.",
    "stride": "Stride (for a stage: of its first block only).",
    "groups": "Convolution groups (must divide input and output channels).",
    "act": "Activation (null: none). hard_sigmoid is relu6(x+3)/6.",
    "pw_act": "Activation after the pointwise conv (defaults to 'act').",
    "bn": "Batch norm after the convolution.",
    "layer_order": "'conv_norm_act' (default) or 'norm_act_conv' (pre-activation: the norm sees the conv's input).",
    "growth": "Channels a dense layer adds (before width scaling): its output is its input plus these.",
    "bn_size": "A dense layer's 1x1 conv widens to bn_size * growth channels (DenseNet: 4).",
    "pool_kernel": "A transition's average pool: kernel and stride (default 2).",
    "bias": "Convolution bias (defaults to conventions.conv_bias).",
    "dw_bias": "Bias of the depthwise conv (defaults to 'bias').",
    "scale_width": "Apply scaling.width to 'out'.",
    "min_width": "Scale 'out' by max(scaling.width, min_width).",
    "stages": "Stages of blocks; blocks are numbered per stage: <name>.<stage>.blocks.<block>.",
    "block": "Block type of every block of the stage.",
    "repeats": "Number of identical blocks (scaled by scaling.depth unless scale_depth is false).",
    "blocks": "Per-block overrides of the stage fields, one object per block (not depth-scaled).",
    "scale_depth": "Apply scaling.depth to 'repeats'.",
    "expand_ratio": "Expanded channels = input channels * ratio (make_divisible if fractional).",
    "expanded": "Expanded channels, as an integer (before width scaling).",
    "se": "Squeeze-and-excitation, or null for none.",
    "skip": "Identity residual when stride is 1 and channels are unchanged.",
    "mid": "Bottleneck width (before width scaling).",
    "stride_on": "Which conv of a bottleneck strides: 'conv2' (ResNet v1.5, torchvision) or 'conv1' (v1, Keras).",
    "ratio": "Reduced channels = ratio * the channels named by 'of'.",
    "of": "SE channels are a ratio of the block's input ('in', EfficientNet) or expanded ('expanded', "
          "MobileNetV3) channels.",
    "round": "'floor': int(x) (torchvision EfficientNet), 'make_divisible': rounded to scaling.divisor.",
    "gate": "Gate activation of the SE (sigmoid or hard_sigmoid).",
    "op": "Pooling operation.",
    "order": "Flatten order: 'chw' (PyTorch's) or 'hwc' (Keras').",
    "in": "Expected input features (checked).",
    "rate": "Dropout rate in [0, 1).",
    "rescale": "Multiplier applied to the raw input first.",
    "offset": "Added after rescaling.",
    "mean": "Per-channel mean subtracted after rescale/offset.",
    "std": "Per-channel divisor applied last.",
    "family": "Family name (e.g. 'efficientnet').",
    "description": "Free text.",
    "reference": "Where the architecture comes from (library and function, paper).",
    "base": "The full config every variant starts from (or {} when every variant 'extends' another).",
    "extends": "Name of a registered variant this one starts from (library conventions over our networks).",
    "variants": "Variant name -> partial config deep-merged onto base (objects merge, lists replace).",
}

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object", list: "array",
               type(None): "null"}


def _types(types):
    types = types if isinstance(types, tuple) else (types,)
    names = []
    for t in types:
        name = _JSON_TYPES[t]
        if name not in names:
            names.append(name)
    if "integer" in names and "number" in names:
        names.remove("integer")
    return names


def _with_var(schema):
    return {"anyOf": [schema, _VAR]}


def _value(context, key, types, refs):
    """The schema of one field: a $ref for nested objects, else type plus value constraints."""
    if key in refs:
        schema = refs[key]
    else:
        names = _types(types)
        constraint = _VALUES.get((context, key), _VALUES.get(key))
        if key in ("act", "pw_act"):
            schema = {"type": ["string", "null"] if "null" in names else "string",
                      "enum": _ACTS + ([None] if "null" in names else [])}
        elif constraint is None:
            schema = {"type": names[0] if len(names) == 1 else names}
        elif "null" in names:
            schema = {"anyOf": [constraint, {"type": "null"}]}
        else:
            schema = dict(constraint)
    schema = _with_var(schema)
    if key in _DOCS:
        schema = {"description": _DOCS[key], **schema}
    return schema


def _object(context, keys, refs=None, partial=False, description=None, extra=None):
    refs = refs or {}
    out = {"type": "object"}
    if description:
        out["description"] = description
    out["properties"] = {k: _value(context, k, t, refs) for k, (t, _) in keys.items()}
    required = [k for k, (_, req) in keys.items() if req]
    if required and not partial:
        out["required"] = required
    out["additionalProperties"] = False
    if extra:
        out.update(extra)
    return out


def _ref(name):
    return {"$ref": f"#/definitions/{name}"}


def _array_of(name, min_items=1):
    return {"type": "array", "items": _with_var(_ref(name)), "minItems": min_items}


def _inverted_residual_rules(repeats_only):
    """Exactly one of expand_ratio/expanded (after per-block overrides, which the schema cannot see)."""
    both = {"not": {"required": ["expand_ratio", "expanded"]}}
    one = {"anyOf": [{"required": ["expand_ratio"]}, {"required": ["expanded"]}]}
    if repeats_only:
        return {"allOf": [both, {"if": {"required": ["repeats"]}, "then": one}]}
    return {"allOf": [both, one]}


def build() -> dict:
    """The schema as a dict (what ``schema.json`` holds)."""
    R = resolve
    defs = {
        "variable": {"type": "string", "pattern": "^\\$.+",
                     "description": "\"$name\": replaced by the value of vars.name before validation."},
        "input": _object("input", R._INPUT_KEYS, description=_DOCS["input"]),
        "input_partial": _object("input", R._INPUT_KEYS, partial=True, description=_DOCS["input"]),
        "batch_norm": _object("batch_norm", R._BN_KEYS, description=_DOCS["batch_norm"]),
        "batch_norm_partial": _object("batch_norm", R._BN_KEYS, partial=True, description=_DOCS["batch_norm"]),
        "layer_norm": _object("layer_norm", R._LN_KEYS, description=_DOCS["layer_norm"]),
        "layer_norm_partial": _object("layer_norm", R._LN_KEYS, partial=True, description=_DOCS["layer_norm"]),
        "preprocessing": _object("preprocessing", R._PRE_KEYS, description=_DOCS["preprocessing"]),
        "scaling": _object("scaling", R._SCALING_KEYS, description=_DOCS["scaling"]),
        "se": _object("se", R._SE_KEYS, description="Squeeze-and-excitation: pooled features -> 1x1 conv to "
                      "'reduced' channels (+act) -> 1x1 conv back (+gate) -> rescale."),
    }
    pre = {"anyOf": [_ref("preprocessing"), {"type": "null"}]}
    for partial in (False, True):
        suffix = "_partial" if partial else ""
        defs["conventions" + suffix] = _object(
            "conventions", R._CONVENTION_KEYS, partial=partial, description=_DOCS["conventions"],
            refs={"batch_norm": _ref("batch_norm" + suffix), "layer_norm": _ref("layer_norm" + suffix),
                  "preprocessing": pre})

    se_ref = {"anyOf": [_ref("se"), {"type": "null"}]}
    layer_types = []
    for kind, keys in R._LAYER_KEYS.items():
        refs = {"se": se_ref, "stages": _array_of("stage")}
        d = _object(kind, {**R._COMMON_LAYER, **keys}, refs=refs)
        d["properties"]["type"] = {"description": _DOCS["type"], "const": kind}
        defs[f"layer.{kind}"] = d
        layer_types.append(kind)
    stage_types = []
    for kind, keys in R._STAGE_KEYS.items():
        stage_keys = {**R._STAGE_COMMON, **keys}
        override_keys = {k: (t, False) for k, (t, _) in stage_keys.items() if k not in ("blocks", "repeats")}
        extra = _inverted_residual_rules(True) if kind == "inverted_residual" else {}
        extra = {**extra, "oneOf": [{"required": ["repeats"]}, {"required": ["blocks"]}]}
        refs = {"se": se_ref,
                "blocks": {"type": "array", "items": _with_var(_ref(f"block_override.{kind}")), "minItems": 1}}
        d = _object(kind, stage_keys, refs=refs, extra=extra,
                    description=f"A stage of '{kind}' blocks: exactly one of 'repeats' or 'blocks'.")
        d["properties"]["block"] = {"description": _DOCS["block"], "const": kind}
        defs[f"stage.{kind}"] = d
        o = _object(kind, override_keys, refs={"se": se_ref},
                    description=f"Overrides of the stage's fields for one '{kind}' block.")
        o["properties"]["block"] = {"const": kind}
        defs[f"block_override.{kind}"] = o
        stage_types.append(kind)
        if kind in R._BLOCK_LAYERS:
            single = {k: v for k, v in R._STAGE_COMMON.items() if k not in ("block", "repeats", "blocks", "scale_depth")}
            extra = _inverted_residual_rules(False) if kind == "inverted_residual" else None
            d = _object(kind, {**R._COMMON_LAYER, **single, **keys}, refs={"se": se_ref}, extra=extra,
                        description=f"One '{kind}' block used as a top-level layer.")
            d["properties"]["type"] = {"description": _DOCS["type"], "const": kind}
            defs[f"layer.{kind}"] = d
            layer_types.append(kind)

    def union(discriminator, names, prefix, description):
        return {
            "description": description,
            "type": "object",
            "required": [discriminator],
            # The discriminator must be literal (no "$var"): editors need it to pick the fields.
            "properties": {discriminator: _enum(names)},
            "allOf": [{"if": {"properties": {discriminator: {"const": n}}, "required": [discriminator]},
                       "then": _ref(f"{prefix}.{n}")} for n in names],
        }

    defs["layer"] = union("type", layer_types, "layer", "A top-level layer, by 'type'.")
    defs["stage"] = union("block", stage_types, "stage", "A stage: 'block' type, 'out', and 'repeats' or 'blocks'.")
    config_refs = {"input": _ref("input"), "conventions": _ref("conventions"), "scaling": _ref("scaling"),
                   "vars": {"type": "object"}, "layers": _array_of("layer")}
    partial_refs = {**config_refs, "input": _ref("input_partial"), "conventions": _ref("conventions_partial")}
    defs["config"] = _object("config", R._CONFIG_KEYS, refs=config_refs,
                             description="A full network config (a family's 'base').")
    defs["config_partial"] = _object("config", {**R._CONFIG_KEYS, **R._VARIANT_KEYS}, refs=partial_refs,
                                     partial=True,
                                     description="A variant: a partial config deep-merged onto 'base' (or, "
                                                 "with 'extends', onto another registered variant).")
    family_keys = R._FAMILY_KEYS
    top = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://github.com/crossframe/crossframe/archspec/schema.json",
        "title": "crossframe archspec family file",
        "description": "One network family: a full 'base' config and named variants (partial configs "
                       "deep-merged onto base). Generated by `python -m archspec.schema` from "
                       "archspec/resolve.py; see docs/SPEC.md.",
        "type": "object",
        "properties": {
            "$schema": {"type": "string", "description": "Path or URL of this schema, for editors."},
            "family": {"type": "string", "description": _DOCS["family"]},
            "description": {"type": "string", "description": _DOCS["description"]},
            "reference": {"type": "string", "description": _DOCS["reference"]},
            "base": {"description": _DOCS["base"],
                     "anyOf": [_ref("config"), {"type": "object", "maxProperties": 0}]},
            "variants": {"type": "object", "description": _DOCS["variants"],
                         "additionalProperties": _ref("config_partial")},
        },
        "required": [k for k, (_, req) in family_keys.items() if req],
        "additionalProperties": False,
        "definitions": defs,
    }
    assert set(top["properties"]) == set(family_keys)
    return top


def dumps(schema=None) -> str:
    return json.dumps(build() if schema is None else schema, indent=2, sort_keys=False) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m archspec.schema", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if schema.json differs from the generated one")
    args = parser.parse_args(argv)
    text = dumps()
    if args.check:
        current = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else ""
        if current != text:
            print(f"{SCHEMA_PATH} is stale: run `python -m archspec.schema`", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
