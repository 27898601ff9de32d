"""Load, validate and resolve a JSON spec into an :class:`ir.Spec`, once.

A family file holds ``base`` (a full config) and ``variants`` (partial configs deep-merged onto
``base``). Strings ``"$name"`` anywhere in a config are replaced by ``vars.name``. Resolution
applies width and depth multipliers, ``make_divisible`` rounding, SE channel rules, per-block
stochastic depth and explicit paddings for the given input size, and gives every layer its
canonical path. See ``archspec/schema.json`` for the fields and ``docs/SPEC.md`` for prose.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from dataclasses import replace
from pathlib import Path

from . import blocks, ir
from .errors import SpecError, SpecLimitError, _short
from .limits import UNITS, Limits
from .rounding import make_divisible, round_depth

SPEC_DIR = Path(__file__).parent / "specs"

_NUMBER = (int, float)

# Allowed keys per object kind: key -> (python types, required). archspec/schema.py derives
# schema.json from these tables: after changing one, run `python -m archspec.schema`.
_FAMILY_KEYS = {"$schema": (str, False), "family": (str, True), "description": (str, False),
                "reference": (str, False), "base": (dict, True), "variants": (dict, True)}
_CONFIG_KEYS = {
    "input": (dict, True), "num_classes": (int, True), "conventions": (dict, True), "scaling": (dict, False),
    "vars": (dict, False), "layers": (list, True), "description": (str, False), "reference": (str, False),
}
_VARIANT_KEYS = {"extends": (str, False)}
_INPUT_KEYS = {"size": (int, True), "channels": (int, True)}
_CONVENTION_KEYS = {
    "padding": (str, True), "batch_norm": (dict, True), "conv_bias": (bool, True),
    "preprocessing": ((dict, type(None)), False), "layer_norm": (dict, False),
}
_LN_KEYS = {"eps": (_NUMBER, True)}
# A layer's "norm": the convention's batch norm or layer norm, or none.
NORM_CHOICES = ("batch_norm", "layer_norm", "none")
_BN_KEYS = {"eps": (_NUMBER, True), "momentum": (_NUMBER, True), "momentum_convention": (str, True),
            "running_var": (str, True)}
_PRE_KEYS = {"rescale": (_NUMBER, False), "offset": (_NUMBER, False), "mean": (list, False), "std": (list, False)}
_SCALING_KEYS = {"width": (_NUMBER, False), "depth": (_NUMBER, False), "divisor": (int, False),
                 "round_limit": (_NUMBER, False), "drop_path_rate": (_NUMBER, False),
                 "drop_path_to_last": (bool, False)}
_SE_KEYS = {"ratio": (_NUMBER, True), "of": (str, True), "round": (str, True), "act": (str, True),
            "gate": (str, True)}

_COMMON_LAYER = {"type": (str, True), "name": (str, True)}
_LAYER_KEYS = {
    "conv_bn_act": {"out": (int, True), "kernel": (int, True), "stride": (int, False), "groups": (int, False),
                    "act": ((str, type(None)), False), "bn": (bool, False), "bias": (bool, False),
                    "scale_width": (bool, False), "min_width": (_NUMBER, False), "padding": (str, False),
                    "layer_order": (str, False), "norm": (str, False)},
    "norm_act": {"act": ((str, type(None)), False), "norm": (str, False)},
    "stages": {"stages": (list, True)},
    "pool": {"op": (str, True), "kernel": (int, True), "stride": (int, True), "padding": ((int, str), False)},
    "global_pool": {"op": (str, False)},
    "flatten": {"order": (str, True), "size": (int, False)},
    "dense": {"out": ((int, str), True), "act": ((str, type(None)), False), "bias": (bool, False),
              "scale_width": (bool, False), "in": (int, False)},
    "dropout": {"rate": (_NUMBER, True)},
    "activation": {"act": (str, True)},
}
_STAGE_COMMON = {"block": (str, True), "repeats": (int, False), "blocks": (list, False), "stride": (int, False),
                 "kernel": (int, False), "act": ((str, type(None)), False),
                 "scale_depth": (bool, False)}
_OUT = {"out": (int, True)}  # output channels: every block type but the dense layer, which adds 'growth'
_STAGE_KEYS = {
    "inverted_residual": {**_OUT, "expand_ratio": (_NUMBER, False), "expanded": (int, False),
                          "se": ((dict, type(None)), False), "skip": (bool, False)},
    "depthwise_separable": {**_OUT, "pw_act": ((str, type(None)), False), "se": ((dict, type(None)), False),
                            "skip": (bool, False), "bn": (bool, False), "dw_bias": (bool, False),
                            "bias": (bool, False)},
    "fused_inverted_residual": {**_OUT, "expand_ratio": (_NUMBER, True), "skip": (bool, False)},
    "universal_inverted_residual": {**_OUT, "expand_ratio": (_NUMBER, True), "start_kernel": (int, False),
                                    "mid_kernel": (int, False), "skip": (bool, False)},
    "basic_block": {**_OUT},
    "bottleneck": {**_OUT, "mid": (int, True), "stride_on": (str, False), "groups": (int, False),
                   "se": ((dict, type(None)), False)},
    "shuffle_unit": {**_OUT},
    "dense_layer": {"growth": (int, True), "bn_size": (int, False)},
    "transition": {**_OUT, "pool_kernel": (int, False)},
    "convnext_block": {**_OUT, "mlp_ratio": (int, False), "layer_scale": (_NUMBER, False)},
    "conv_bn_act": {**_OUT, "groups": (int, False)},
}

# Padding modes a spec may use as its convention (a conv layer may also say 'valid').
CONVENTION_PADDINGS = ("symmetric", "tf_same", "tf_same_even")

_BLOCK_LAYERS = tuple(k for k in _STAGE_KEYS if k != "conv_bn_act")

# Layer names become canonical path segments ('stages.0.blocks.1.dw'): no dots, valid attribute names.
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _check_name(name, file, path):
    if not re.match(NAME_PATTERN, name):
        raise SpecError(file, path, name, "a name made of letters, digits and '_' (not starting with a digit)")


def _type_name(types):
    types = types if isinstance(types, tuple) else (types,)
    names = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object", list: "array",
             type(None): "null"}
    return " or ".join(names[t] for t in types)


def _check_keys(obj, keys, file, path, extra_ok=()):
    if not isinstance(obj, dict):
        raise SpecError(file, path, obj, "an object")
    for key in obj:
        if key not in keys and key not in extra_ok:
            raise SpecError(file, f"{path}.{key}", key, f"one of the fields {sorted(keys)}")
    for key, (types, required) in keys.items():
        if key not in obj:
            if required:
                raise SpecError(file, f"{path}.{key}", "missing", f"a field '{key}' ({_type_name(types)})")
            continue
        value = obj[key]
        types_t = types if isinstance(types, tuple) else (types,)
        bad_bool = isinstance(value, bool) and bool not in types_t
        if bad_bool or not isinstance(value, types_t):
            raise SpecError(file, f"{path}.{key}", value, _type_name(types))


def _deep_merge(base, over):
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# JSON numbers a spec may hold: finite floats, and integers exact in a float (so that no field's
# arithmetic overflows a float or turns into an OverflowError deep in the resolver).
MAX_INT = 2**53
_MAX_VAR_CHAIN = 32  # "$a" -> "$b" -> ... : deeper chains are cycles in all but name


def _limit_error(file, path, found, limits, name):
    value = getattr(limits, name)
    return SpecLimitError(file, path, found, f"at most {value:,} {UNITS[name]} ({limits.how_to_raise(name)})",
                          limit=name, value=value)


def _substitute(obj, variables, file, path, limits):
    """``obj`` with every ``"$name"`` replaced by ``vars.name``, recursively.

    Counts the values it produces and refuses beyond ``limits.max_spec_nodes`` (variables that
    double at each level would otherwise expand to 2**n values) and nesting beyond
    ``limits.max_nesting``, before building them. JSON paths are formatted only for an error.
    """
    count = [0]

    def fmt(trail):
        parts = []
        while trail is not None:
            trail, segment = trail
            parts.append(segment)
        return path + "".join(reversed(parts))

    def sub(obj, trail, depth, chain):
        count[0] += 1
        if count[0] > limits.max_spec_nodes:
            raise _limit_error(file, fmt(trail), f"more than {limits.max_spec_nodes:,} values", limits,
                               "max_spec_nodes")
        if depth > limits.max_nesting:
            raise _limit_error(file, fmt(trail), f"{depth} levels", limits, "max_nesting")
        if isinstance(obj, str) and obj.startswith("$"):
            name = obj[1:]
            if name not in variables:
                raise SpecError(file, fmt(trail), obj, f"a variable defined in 'vars' (have {sorted(variables)[:50]})")
            if name in chain or len(chain) >= _MAX_VAR_CHAIN:
                raise SpecError(file, fmt(trail), obj, "variables that do not refer to themselves (and chains of at "
                                f"most {_MAX_VAR_CHAIN} references)")
            count[0] -= 1  # the reference is replaced, not added
            return sub(variables[name], (trail, f"<{obj}>"), depth, chain + (name,))
        if isinstance(obj, dict):
            return {k: sub(v, (trail, f".{k}"), depth + 1, ()) for k, v in obj.items()}
        if isinstance(obj, list):
            return [sub(v, (trail, f"[{i}]"), depth + 1, ()) for i, v in enumerate(obj)]
        return obj

    _check_expansion(obj, variables, file, path, limits, fmt)
    return sub(obj, None, 0, ())


def _check_expansion(obj, variables, file, path, limits, fmt):
    """Refuse an expansion beyond the limits before building it, in time linear in the raw spec:
    the size and depth of each variable's expansion are computed once (memoised), so 40 variables
    that each double cost 40 steps, not 2**40."""
    memo = {}  # variable name -> (values, nesting) of its expansion

    def measure(obj, trail, depth, chain):
        """(values, nesting) of ``obj``'s expansion; ``depth`` is where it sits, for the limit."""
        if depth > limits.max_nesting:
            raise _limit_error(file, fmt(trail), f"{depth} levels", limits, "max_nesting")
        if isinstance(obj, str) and obj.startswith("$"):
            name = obj[1:]
            if name not in variables or name in chain or len(chain) >= _MAX_VAR_CHAIN:
                return 1, 0  # the substitution itself reports these, with their path
            if name not in memo:
                memo[name] = measure(variables[name], (trail, f"<{obj}>"), depth, chain + (name,))
            size, nest = memo[name]
            if depth + nest > limits.max_nesting:
                raise _limit_error(file, fmt((trail, f"<{obj}>")), f"{depth + nest} levels", limits, "max_nesting")
            return size, nest
        if isinstance(obj, (dict, list)):
            items = obj.items() if isinstance(obj, dict) else enumerate(obj)
            size, nest = 1, 0
            for k, v in items:
                n, d = measure(v, (trail, f".{k}" if isinstance(obj, dict) else f"[{k}]"), depth + 1, ())
                size, nest = size + n, max(nest, d + 1)
                if size > limits.max_spec_nodes:
                    raise _limit_error(file, fmt((trail, f".{k}" if isinstance(obj, dict) else f"[{k}]")),
                                       f"more than {limits.max_spec_nodes:,} values", limits, "max_spec_nodes")
            return size, nest
        return 1, 0

    measure(obj, None, 0, ())


def _check_json(doc, file, limits, numbers=True):
    """Walk ``doc`` without recursion: JSON types only, nesting within ``limits.max_nesting`` and,
    with ``numbers``, every number finite and every integer within +-2**53."""
    stack = [(doc, "$", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limits.max_nesting:
            raise _limit_error(file, path, f"{depth} levels", limits, "max_nesting")
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise SpecError(file, f"{path}.{_short(k, 40)}", k, "a string key")
                stack.append((v, f"{path}.{k}", depth + 1))
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, int):
            if numbers and abs(value) > MAX_INT:
                raise SpecError(file, path, value, f"an integer of magnitude at most 2**53 ({MAX_INT})")
        elif isinstance(value, float):
            if numbers and not math.isfinite(value):
                raise SpecError(file, path, value, "a finite number")
        else:
            raise SpecError(file, path, value, "a JSON value (object, array, string, number, boolean or null)")


def _walk(layer):
    yield layer
    for _, child in layer.children():
        yield from _walk(child)


class _Resolver:
    def __init__(self, name, family, file, config, limits):
        self.name, self.family, self.file = name, family, str(file)
        self.config = config
        self.limits = limits
        self._planned_blocks = 0
        self._layer_count = self._param_count = self._activation_bytes = 0
        self._validate_config()
        conv = config["conventions"]
        bn = conv["batch_norm"]
        self.bn = blocks.batch_norm(bn["eps"], bn["momentum"], bn["momentum_convention"], bn["running_var"],
                                    where=(self.file, "$.conventions.batch_norm"))
        self.ln = blocks.layer_norm(conv.get("layer_norm", {}).get("eps", 1e-6),
                                    where=(self.file, "$.conventions.layer_norm.eps"))
        self.padding = conv["padding"]
        if self.padding not in CONVENTION_PADDINGS:
            raise SpecError(self.file, "$.conventions.padding", self.padding,
                            " or ".join(repr(m) for m in CONVENTION_PADDINGS))
        self.conv_bias = conv["conv_bias"]
        scaling = config.get("scaling", {})
        self.width = scaling.get("width", 1.0)
        self.depth = scaling.get("depth", 1.0)
        self.divisor = scaling.get("divisor", 8)
        self.round_limit = scaling.get("round_limit", 0.9)
        self.drop_path_rate = scaling.get("drop_path_rate", 0.0)
        # block k of n gets rate * k / n, or rate * k / (n - 1) (the last block the full rate: ConvNeXt)
        self.drop_path_to_last = scaling.get("drop_path_to_last", False)
        for key, value in (("width", self.width), ("depth", self.depth), ("divisor", self.divisor)):
            if value <= 0:
                raise SpecError(self.file, f"$.scaling.{key}", value, "a positive number")
        if self.divisor > limits.max_channels:
            raise _limit_error(self.file, "$.scaling.divisor", self.divisor, limits, "max_channels")
        if not 0.0 <= self.round_limit <= 1.0:
            raise SpecError(self.file, "$.scaling.round_limit", self.round_limit, "a fraction in [0, 1]")

    # -- validation ------------------------------------------------------------------------
    def _validate_config(self):
        f, c = self.file, self.config
        _check_keys(c, _CONFIG_KEYS, f, "$")
        _check_keys(c["input"], _INPUT_KEYS, f, "$.input")
        for key, limit in (("size", "max_input_size"), ("channels", "max_channels")):
            if c["input"][key] <= 0:
                raise SpecError(f, f"$.input.{key}", c["input"][key], "a positive integer")
            if c["input"][key] > getattr(self.limits, limit):
                raise _limit_error(f, f"$.input.{key}", c["input"][key], self.limits, limit)
        if c["num_classes"] < 0:
            raise SpecError(f, "$.num_classes", c["num_classes"],
                            "a positive integer, or 0 for no classifier (pooled features)")
        _check_keys(c["conventions"], _CONVENTION_KEYS, f, "$.conventions")
        _check_keys(c["conventions"]["batch_norm"], _BN_KEYS, f, "$.conventions.batch_norm")
        if "layer_norm" in c["conventions"]:
            _check_keys(c["conventions"]["layer_norm"], _LN_KEYS, f, "$.conventions.layer_norm")
        eps = c["conventions"]["batch_norm"]["eps"]
        if not 0.0 < eps <= 1.0:
            raise SpecError(f, "$.conventions.batch_norm.eps", eps, "eps in (0, 1]")
        momentum = c["conventions"]["batch_norm"]["momentum"]
        if not 0.0 <= momentum <= 1.0:
            raise SpecError(f, "$.conventions.batch_norm.momentum", momentum, "a momentum in [0, 1]")
        pre = c["conventions"].get("preprocessing")
        if pre is not None:
            _check_keys(pre, _PRE_KEYS, f, "$.conventions.preprocessing")
            for key in ("mean", "std"):
                for i, v in enumerate(pre.get(key, ())):
                    if isinstance(v, bool) or not isinstance(v, _NUMBER) or (key == "std" and not v > 0):
                        raise SpecError(f, f"$.conventions.preprocessing.{key}[{i}]", v,
                                        "a number" if key == "mean" else "a positive number")
        _check_keys(c.get("scaling", {}), _SCALING_KEYS, f, "$.scaling")
        rate = c.get("scaling", {}).get("drop_path_rate", 0.0)
        if not 0.0 <= rate < 1.0:
            raise SpecError(f, "$.scaling.drop_path_rate", rate, "a rate in [0, 1)")
        if not c["layers"]:
            raise SpecError(f, "$.layers", [], "at least one layer")

    def _channels(self, value, where):
        """``value`` (a channel count about to become an integer) within ``max_channels``."""
        if not value <= self.limits.max_channels:  # also NaN
            found = value if isinstance(value, int) or not math.isfinite(value) else round(value, 3)
            raise _limit_error(where[0], where[1], found, self.limits, "max_channels")
        return value

    def _scale(self, channels, where, scale=True, min_width=None):
        if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
            raise SpecError(where[0], where[1], channels, "a positive integer channel count")
        self._channels(channels, where)
        if not scale:
            return channels
        width = self.width if min_width is None else max(self.width, min_width)
        if width == 1.0:
            return channels
        self._channels(channels * width, where)
        return self._channels(make_divisible(channels * width, self.divisor, round_limit=self.round_limit), where)

    def _kernel(self, kernel, where):
        if isinstance(kernel, int) and not isinstance(kernel, bool) and kernel > self.limits.max_kernel:
            raise _limit_error(where[0], where[1], kernel, self.limits, "max_kernel")
        return kernel

    def _account(self, layer, jpath):
        """Add a resolved layer (or block) to the network's totals; refuse beyond the limits."""
        lim, f = self.limits, self.file
        for sub in _walk(layer):
            self._layer_count += 1
            if isinstance(sub, ir.ConvBNAct):
                self._kernel(sub.kernel, (f, jpath))
                self._channels(sub.out_channels, (f, jpath))
            elif isinstance(sub, ir.SqueezeExcite):
                self._channels(sub.reduced, (f, jpath))
            elif isinstance(sub, ir.Pool):
                self._kernel(sub.kernel, (f, jpath))
            if not sub.children():
                self._activation_bytes += 4 * math.prod(sub.out_shape)
        self._param_count += layer.params
        for name, total in (("max_layers", self._layer_count), ("max_params", self._param_count),
                            ("max_activation_bytes", self._activation_bytes)):
            if total > getattr(lim, name):
                raise _limit_error(f, jpath, total, lim, name)

    # -- layers ----------------------------------------------------------------------------
    def resolve(self):
        c = self.config
        shape = (c["input"]["size"], c["input"]["size"], c["input"]["channels"])
        layers = []
        pre = c["conventions"].get("preprocessing")
        if pre:
            layers.append(blocks.preprocess("preprocess", shape, pre.get("rescale", 1.0), pre.get("offset", 0.0),
                                            pre.get("mean"), pre.get("std"),
                                            where=(self.file, "$.conventions.preprocessing")))
            self._account(layers[-1], "$.conventions.preprocessing")
        names = set()
        for i, layer in enumerate(c["layers"]):
            jpath = f"$.layers[{i}]"
            if not isinstance(layer, dict):
                raise SpecError(self.file, jpath, layer, "an object")
            kind = layer.get("type")
            if not isinstance(kind, str):
                raise SpecError(self.file, f"{jpath}.type", "missing" if kind is None else kind,
                                f"one of {sorted(set(_LAYER_KEYS) | set(_BLOCK_LAYERS))}")
            if kind in _BLOCK_LAYERS:
                new = self._single_block(layer, shape, jpath, names)
                self._account(new, jpath)
                layers.append(new)
                shape = new.out_shape
                continue
            if kind not in _LAYER_KEYS:
                raise SpecError(self.file, f"{jpath}.type", kind,
                                f"one of {sorted(set(_LAYER_KEYS) | set(_BLOCK_LAYERS))}")
            _check_keys(layer, {**_COMMON_LAYER, **_LAYER_KEYS[kind]}, self.file, jpath)
            _check_name(layer["name"], self.file, f"{jpath}.name")
            if layer["name"] in names:
                raise SpecError(self.file, f"{jpath}.name", layer["name"], "a name not used by an earlier layer")
            names.add(layer["name"])
            new = getattr(self, f"_layer_{kind}")(layer, shape, jpath)
            if kind != "stages":  # a stages layer accounts for each block as it resolves it
                for one in new:
                    self._account(one, jpath)
            layers.extend(new)
            shape = layers[-1].out_shape
        if c["num_classes"] == 0:  # headless: the classifier was skipped; so is the dropout feeding it
            while layers and isinstance(layers[-1], ir.Dropout):
                layers.pop()
        conventions = (("padding", self.padding), ("conv_bias", self.conv_bias), ("batch_norm", self.bn),
                       ("layer_norm", self.ln))
        config_json = json.dumps(c, sort_keys=True)
        digest = hashlib.sha256(config_json.encode()).hexdigest()[:16]
        return ir.Spec(name=self.name, family=self.family, source=self.file,
                       input_shape=(c["input"]["size"], c["input"]["size"], c["input"]["channels"]),
                       num_classes=c["num_classes"], layers=tuple(layers), conventions=conventions,
                       spec_hash=digest, config_json=config_json)

    def _layer_conv_bn_act(self, layer, shape, jpath):
        where = (self.file, jpath)
        if "min_width" in layer and not layer["min_width"] > 0:
            raise SpecError(self.file, f"{jpath}.min_width", layer["min_width"], "a positive number")
        out = self._scale(layer["out"], (self.file, f"{jpath}.out"), layer.get("scale_width", True),
                          layer.get("min_width"))
        groups = layer.get("groups", 1)
        self._kernel(layer["kernel"], (self.file, f"{jpath}.kernel"))
        if layer.get("layer_order", "conv_norm_act") not in ir.ORDERS:
            raise SpecError(self.file, f"{jpath}.layer_order", layer["layer_order"], f"one of {ir.ORDERS}")
        return [blocks.conv_bn_act(layer["name"], shape, out, layer["kernel"], layer.get("stride", 1), groups,
                                   act=layer.get("act"), bn=self._norm(layer, jpath),
                                   bias=layer.get("bias", self.conv_bias), padding=layer.get("padding", self.padding),
                                   order=layer.get("layer_order", "conv_norm_act"), where=where)]

    def _layer_norm_act(self, layer, shape, jpath):
        norm = self._norm(layer, jpath)
        if norm is None:
            raise SpecError(self.file, f"{jpath}.norm", "none", "'batch_norm' or 'layer_norm' (a norm layer needs one)")
        return [blocks.norm_act(layer["name"], shape, layer.get("act"), bn=norm, where=(self.file, jpath))]

    def _norm(self, layer, jpath):
        """The layer's norm: its ``norm`` (batch_norm, layer_norm, none), else the batch norm unless ``bn`` is false."""
        if "norm" in layer:
            if layer["norm"] not in NORM_CHOICES:
                raise SpecError(self.file, f"{jpath}.norm", layer["norm"], f"one of {NORM_CHOICES}")
            if "bn" in layer:
                raise SpecError(self.file, f"{jpath}.bn", layer["bn"], "no 'bn' beside 'norm' (say it once)")
            return {"batch_norm": self.bn, "layer_norm": self.ln, "none": None}[layer["norm"]]
        return self.bn if layer.get("bn", True) else None

    def _layer_pool(self, layer, shape, jpath):
        self._kernel(layer["kernel"], (self.file, f"{jpath}.kernel"))
        return [blocks.pool(layer["name"], shape, layer["op"], layer["kernel"], layer["stride"],
                            layer.get("padding", 0), where=(self.file, jpath))]

    def _layer_global_pool(self, layer, shape, jpath):
        return [blocks.global_pool(layer["name"], shape, layer.get("op", "avg"), where=(self.file, jpath))]

    def _layer_flatten(self, layer, shape, jpath):
        out = blocks.flatten(layer["name"], shape, layer["order"], where=(self.file, jpath))
        if "size" in layer and layer["size"] != out.out_shape[0]:
            raise SpecError(self.file, f"{jpath}.size", layer["size"],
                            f"{out.out_shape[0]} = {'x'.join(map(str, shape))}, the flattened input")
        return [out]

    def _layer_dense(self, layer, shape, jpath):
        out = layer["out"]
        if out == "num_classes":
            out = self.config["num_classes"]
            if out == 0:
                return []
        elif isinstance(out, str):
            raise SpecError(self.file, f"{jpath}.out", out, "an integer or 'num_classes'")
        else:
            out = self._scale(out, (self.file, f"{jpath}.out"), layer.get("scale_width", False))
        return [blocks.dense(layer["name"], shape, out, layer.get("act"), layer.get("bias", True),
                             expect_in=layer.get("in"), where=(self.file, jpath))]

    def _layer_dropout(self, layer, shape, jpath):
        return [blocks.dropout(layer["name"], shape, layer["rate"], where=(self.file, jpath))]

    def _layer_activation(self, layer, shape, jpath):
        return [blocks.activation(layer["name"], shape, layer["act"], where=(self.file, jpath))]

    def _single_block(self, layer, shape, jpath, names):
        """A block type used as a top-level layer: the stage fields of one block, with a name."""
        kind = layer["type"]
        keys = {**_COMMON_LAYER, **{k: v for k, v in _STAGE_COMMON.items()
                                    if k not in ("block", "repeats", "blocks", "scale_depth")},
                **_STAGE_KEYS[kind]}
        _check_keys(layer, keys, self.file, jpath)
        _check_name(layer["name"], self.file, f"{jpath}.name")
        if layer["name"] in names:
            raise SpecError(self.file, f"{jpath}.name", layer["name"], "a name not used by an earlier layer")
        names.add(layer["name"])
        cfg = {k: v for k, v in layer.items() if k not in ("type", "name")}
        cfg.setdefault("stride", 1)
        if cfg["stride"] <= 0:
            raise SpecError(self.file, f"{jpath}.stride", cfg["stride"], "a positive integer")
        return getattr(self, f"_block_{kind}")(layer["name"], shape, cfg, jpath, 0.0)

    # -- stages ----------------------------------------------------------------------------
    def _stage_blocks(self, stage, jpath):
        """Expand a stage into per-block configs (stride on the first block only)."""
        block = stage.get("block")
        if not isinstance(block, str) or block not in _STAGE_KEYS:
            raise SpecError(self.file, f"{jpath}.block", "missing" if block is None else block,
                            f"one of {sorted(_STAGE_KEYS)}")
        keys = {**_STAGE_COMMON, **_STAGE_KEYS[block]}
        _check_keys(stage, keys, self.file, jpath)
        if ("repeats" in stage) == ("blocks" in stage):
            raise SpecError(self.file, jpath, sorted(stage), "exactly one of 'repeats' or 'blocks'")
        stride = stage.get("stride", 1)
        if stride <= 0:
            raise SpecError(self.file, f"{jpath}.stride", stride, "a positive integer")
        if "repeats" in stage:
            repeats = stage["repeats"]
            if repeats <= 0:
                raise SpecError(self.file, f"{jpath}.repeats", repeats, "a positive integer")
            if repeats > self.limits.max_repeats:
                raise _limit_error(self.file, f"{jpath}.repeats", repeats, self.limits, "max_repeats")
            if stage.get("scale_depth", True):
                if not repeats * self.depth <= self.limits.max_repeats:
                    found = f"{repeats} x depth {self.depth:g} = {repeats * self.depth:g}"
                    raise _limit_error(self.file, f"{jpath}.repeats", found, self.limits, "max_repeats")
                repeats = round_depth(repeats, self.depth)
            self._plan(repeats, jpath)
            base = {k: v for k, v in stage.items() if k not in ("repeats", "scale_depth")}
            out = []
            for j in range(repeats):
                cfg = dict(base, stride=stride if j == 0 else 1)
                out.append((cfg, jpath))
            return out
        if not stage["blocks"]:
            raise SpecError(self.file, f"{jpath}.blocks", [], "at least one block")
        if len(stage["blocks"]) > self.limits.max_repeats:
            raise _limit_error(self.file, f"{jpath}.blocks", f"{len(stage['blocks'])} blocks", self.limits,
                               "max_repeats")
        self._plan(len(stage["blocks"]), jpath)
        out = []
        for j, override in enumerate(stage["blocks"]):
            bpath = f"{jpath}.blocks[{j}]"
            if not isinstance(override, dict):
                raise SpecError(self.file, bpath, override, "an object")
            _check_keys(override, {k: (t, False) for k, (t, _) in keys.items() if k not in ("blocks", "repeats")},
                        self.file, bpath)
            cfg = {k: v for k, v in stage.items() if k not in ("blocks", "scale_depth")}
            cfg.update(override)
            cfg.setdefault("stride", stride if j == 0 else 1)
            if j > 0 and "stride" not in override:
                cfg["stride"] = 1
            out.append((cfg, bpath))
        return out

    def _plan(self, n, jpath):
        """Count the blocks about to be planned: refuse before building more than ``max_layers``."""
        self._planned_blocks += n
        if self._layer_count + self._planned_blocks > self.limits.max_layers:
            raise _limit_error(self.file, jpath, f"more than {self.limits.max_layers:,} blocks", self.limits,
                               "max_layers")

    def _layer_stages(self, layer, shape, jpath):
        if not layer["stages"]:
            raise SpecError(self.file, f"{jpath}.stages", [], "at least one stage")
        plans = []
        for i, stage in enumerate(layer["stages"]):
            spath = f"{jpath}.stages[{i}]"
            if not isinstance(stage, dict):
                raise SpecError(self.file, spath, stage, "an object")
            plans.append(self._stage_blocks(stage, spath))
        total = sum(len(p) for p in plans)
        denominator = max(total - 1, 1) if self.drop_path_to_last else total
        resolved, index = [], 0
        for i, plan in enumerate(plans):
            for j, (cfg, bpath) in enumerate(plan):
                path = f"{layer['name']}.{i}.blocks.{j}"
                drop_path = self.drop_path_rate * index / denominator
                block = replace(getattr(self, f"_block_{cfg['block']}")(path, shape, cfg, bpath, drop_path),
                                stage=i, block=j)
                self._planned_blocks -= 1
                self._account(block, bpath)
                resolved.append(block)
                shape = block.out_shape
                index += 1
        return resolved

    def _se_reduced(self, se, in_ch, expanded, where):
        if not se:
            return None, "relu", "sigmoid"
        _check_keys(se, _SE_KEYS, where[0], f"{where[1]}.se")
        if se["of"] not in ("in", "expanded"):
            raise SpecError(where[0], f"{where[1]}.se.of", se["of"], "'in' or 'expanded'")
        base = in_ch if se["of"] == "in" else expanded
        if not se["ratio"] > 0:
            raise SpecError(where[0], f"{where[1]}.se.ratio", se["ratio"], "a positive number")
        self._channels(base * se["ratio"], (where[0], f"{where[1]}.se.ratio"))
        if se["round"] == "floor":
            reduced = max(1, int(base * se["ratio"]))
        elif se["round"] == "make_divisible":
            reduced = make_divisible(base * se["ratio"], self.divisor, round_limit=self.round_limit)
        else:
            raise SpecError(where[0], f"{where[1]}.se.round", se["round"], "'floor' or 'make_divisible'")
        return reduced, se["act"], se["gate"]

    def _common(self, cfg, bpath):
        where = (self.file, bpath)
        out = self._scale(cfg["out"], (self.file, f"{bpath}.out"))
        kernel = self._kernel(cfg.get("kernel", 3), (self.file, f"{bpath}.kernel"))
        return where, out, kernel, cfg["stride"], cfg.get("act", "relu")

    def _expanded(self, in_ch, ratio, bpath):
        """Expanded channels of an (fused) inverted residual: ``in * ratio``, ``make_divisible`` if fractional."""
        if ratio <= 0:
            raise SpecError(self.file, f"{bpath}.expand_ratio", ratio, "a positive number")
        self._channels(in_ch * ratio, (self.file, f"{bpath}.expand_ratio"))
        return int(in_ch * ratio if float(ratio).is_integer() else make_divisible(in_ch * ratio, self.divisor))

    def _block_inverted_residual(self, path, shape, cfg, bpath, drop_path):
        where, out, kernel, stride, act = self._common(cfg, bpath)
        in_ch = shape[2]
        if ("expand_ratio" in cfg) == ("expanded" in cfg):
            raise SpecError(self.file, bpath, sorted(cfg), "exactly one of 'expand_ratio' or 'expanded'")
        if "expanded" in cfg:
            expanded = self._scale(cfg["expanded"], (self.file, f"{bpath}.expanded"))
        else:
            expanded = self._expanded(in_ch, cfg["expand_ratio"], bpath)
        reduced, se_act, gate = self._se_reduced(cfg.get("se"), in_ch, expanded, where)
        return blocks.inverted_residual(path, shape, out, expanded, kernel, stride, act, reduced, se_act, gate,
                                        bn=self.bn, bias=self.conv_bias, skip=cfg.get("skip", True),
                                        drop_path=drop_path, padding=self.padding, where=where)

    def _block_fused_inverted_residual(self, path, shape, cfg, bpath, drop_path):
        where, out, kernel, stride, act = self._common(cfg, bpath)
        expanded = self._expanded(shape[2], cfg["expand_ratio"], bpath)
        return blocks.fused_inverted_residual(path, shape, out, expanded, kernel, stride, act, bn=self.bn,
                                              bias=self.conv_bias, skip=cfg.get("skip", True), drop_path=drop_path,
                                              padding=self.padding, where=where)

    def _block_universal_inverted_residual(self, path, shape, cfg, bpath, drop_path):
        if "kernel" in cfg:
            raise SpecError(self.file, f"{bpath}.kernel", cfg["kernel"],
                            "no 'kernel' on a universal_inverted_residual: 'start_kernel' and 'mid_kernel' (0: none)")
        where, out, _, stride, act = self._common(cfg, bpath)
        kernels = [self._kernel(cfg.get(k, d), (self.file, f"{bpath}.{k}")) for k, d in
                   (("start_kernel", 0), ("mid_kernel", 3))]
        expanded = self._expanded(shape[2], cfg["expand_ratio"], bpath)
        return blocks.universal_inverted_residual(path, shape, out, expanded, *kernels, stride, act, bn=self.bn,
                                                  bias=self.conv_bias, skip=cfg.get("skip", True),
                                                  drop_path=drop_path, padding=self.padding, where=where)

    def _block_depthwise_separable(self, path, shape, cfg, bpath, drop_path):
        where, out, kernel, stride, act = self._common(cfg, bpath)
        reduced, se_act, gate = self._se_reduced(cfg.get("se"), shape[2], shape[2], where)
        bias = cfg.get("bias", self.conv_bias)
        return blocks.depthwise_separable(path, shape, out, kernel, stride, act, cfg.get("pw_act", act), reduced,
                                          se_act, gate, bn=self.bn if cfg.get("bn", True) else None, bias=bias,
                                          dw_bias=cfg.get("dw_bias"), skip=cfg.get("skip", False),
                                          drop_path=drop_path, padding=self.padding, where=where)

    def _block_basic_block(self, path, shape, cfg, bpath, drop_path):
        where, out, _, stride, act = self._common(cfg, bpath)
        return blocks.basic_block(path, shape, out, stride, act, bn=self.bn, bias=self.conv_bias,
                                  padding=self.padding, where=where)

    def _block_bottleneck(self, path, shape, cfg, bpath, drop_path):
        where, out, _, stride, act = self._common(cfg, bpath)
        mid = self._scale(cfg["mid"], (self.file, f"{bpath}.mid"))
        reduced, se_act, gate = self._se_reduced(cfg.get("se"), shape[2], mid, where)
        return blocks.bottleneck(path, shape, mid, out, stride, cfg.get("stride_on", "conv2"), act, bn=self.bn,
                                 bias=self.conv_bias, padding=self.padding, groups=cfg.get("groups", 1),
                                 se_reduced=reduced, se_act=se_act, se_gate=gate, where=where)

    def _block_shuffle_unit(self, path, shape, cfg, bpath, drop_path):
        where, out, kernel, stride, act = self._common(cfg, bpath)
        return blocks.shuffle_unit(path, shape, out, stride, kernel, act, bn=self.bn, bias=self.conv_bias,
                                   padding=self.padding, where=where)

    def _stride_one(self, cfg, bpath, why):
        if cfg["stride"] != 1:
            raise SpecError(self.file, f"{bpath}.stride", cfg["stride"], f"1 ({why})")

    def _block_dense_layer(self, path, shape, cfg, bpath, drop_path):
        where = (self.file, bpath)
        self._stride_one(cfg, bpath, "a dense layer keeps its input's size")
        growth = self._scale(cfg["growth"], (self.file, f"{bpath}.growth"))
        return blocks.dense_layer(path, shape, growth, cfg.get("bn_size", 4), cfg.get("act", "relu"), bn=self.bn,
                                  bias=self.conv_bias, padding=self.padding, where=where)

    def _block_transition(self, path, shape, cfg, bpath, drop_path):
        where, out, _, _, act = self._common(cfg, bpath)
        self._stride_one(cfg, bpath, "a transition downsamples by its average pool, 'pool_kernel'")
        pool_kernel = cfg.get("pool_kernel", 2)
        self._kernel(pool_kernel, (self.file, f"{bpath}.pool_kernel"))
        return blocks.transition(path, shape, out, act, bn=self.bn, bias=self.conv_bias, padding=self.padding,
                                 pool_kernel=pool_kernel, where=where)

    def _block_convnext_block(self, path, shape, cfg, bpath, drop_path):
        where, out, _, stride, act = self._common(cfg, bpath)
        kernel = self._kernel(cfg.get("kernel", 7), (self.file, f"{bpath}.kernel"))
        return blocks.convnext_block(path, shape, out, stride, kernel, cfg.get("mlp_ratio", 4),
                                     cfg.get("layer_scale", 1e-6), cfg.get("act", "gelu"), norm=self.ln,
                                     drop_path=drop_path, padding=self.padding, where=where)

    def _block_conv_bn_act(self, path, shape, cfg, bpath, drop_path):
        where, out, kernel, stride, act = self._common(cfg, bpath)
        return blocks.conv_bn_act(path, shape, out, kernel, stride, cfg.get("groups", 1), act, bn=self.bn,
                                  bias=self.conv_bias, padding=self.padding, where=where)


# -- files and registry ---------------------------------------------------------------------

DICT_FILE = "<dict>"  # the file name errors give for a family passed as a Python dict


def _read_json(file, limits=None):
    """Parse a spec file. JSON's grammar has no NaN or Infinity (Python's parser accepts them), a
    number too large for a float is not a number, and nesting too deep for the parser is an error
    of the file: each is a SpecError, not a value or a traceback."""
    limits = Limits.coerce(limits)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(file, "$", f"unreadable file ({err.strerror})", "a readable JSON file") from None
    except UnicodeDecodeError as err:
        raise SpecError(file, "$", f"bytes that are not UTF-8 ({err.reason} at byte {err.start})",
                        "a UTF-8 JSON file") from None

    def constant(token):
        raise SpecError(file, "$", token, "a finite JSON number (NaN and Infinity are not JSON)")

    def number(token):
        value = float(token)
        if not math.isfinite(value):
            raise SpecError(file, "$", token, "a finite number (at most about 1.8e308)")
        return value

    def integer(token):
        try:
            return int(token)  # checked against 2**53 with its JSON path, after parsing
        except ValueError:  # more digits than int() converts (4300)
            raise SpecError(file, "$", token, f"an integer of magnitude at most 2**53 ({MAX_INT})") from None

    try:
        data = json.loads(text, parse_constant=constant, parse_float=number, parse_int=integer)
    except json.JSONDecodeError as err:
        raise SpecError(file, f"$ (line {err.lineno}, column {err.colno})", err.msg, "valid JSON") from None
    except SpecError:
        raise
    except RecursionError:
        raise SpecError(file, "$", "JSON nested too deep to parse",
                        f"at most {limits.max_nesting} levels of nesting") from None
    except ValueError as err:
        raise SpecError(file, "$", str(err), "valid JSON") from None
    _check_json(data, str(file), limits, numbers=False)
    return data


def read_family(file, limits=None):
    """Read and check the outer structure of a family file (or dict); returns the parsed dict."""
    limits = Limits.coerce(limits)
    if isinstance(file, dict):
        data, file = file, DICT_FILE
        _check_json(data, file, limits, numbers=False)
    else:
        data = _read_json(file, limits)
    _check_keys(data, _FAMILY_KEYS, str(file), "$")
    for name, over in data["variants"].items():
        if not isinstance(over, dict):
            raise SpecError(file, f"$.variants.{name}", over, "an object of overrides")
    return data


def registry():
    """Map every registered variant name to its family file."""
    out = {}
    for file in sorted(SPEC_DIR.glob("*.json")):
        for name in read_family(file)["variants"]:
            if name in out:
                raise SpecError(file, f"$.variants.{name}", name, f"a name not already defined in {out[name].name}")
            out[name] = file
    return out


_OVERRIDES = {
    "input_size": ("input", "size"), "in_channels": ("input", "channels"), "num_classes": ("num_classes",),
    "padding": ("conventions", "padding"), "width": ("scaling", "width"), "depth": ("scaling", "depth"),
    "drop_path_rate": ("scaling", "drop_path_rate"), "bn_eps": ("conventions", "batch_norm", "eps"),
    "conv_bias": ("conventions", "conv_bias"),
}


def _pick_variant(data, file, variant):
    """The variant of family ``data`` to load: ``variant``, or the family's only one."""
    names = list(data["variants"])
    if variant is None:
        if len(names) != 1:
            raise SpecError(file, "$.variants", names, "a single variant, or variant=NAME to pick one")
        variant = names[0]
    if variant not in data["variants"]:
        raise SpecError(file, "$.variants", variant, f"one of {names}")
    return variant


def config_for(name_or_path, variant=None, _depth=0, limits=None):
    """The merged (unresolved) config of a variant, with its family name and file.

    ``name_or_path``: a registered variant name, a family file's path, or a family as a dict.
    A variant with ``"extends": NAME`` starts from registered variant NAME's merged config.
    """
    if isinstance(name_or_path, dict) or not isinstance(name_or_path, (str, os.PathLike)):
        if not isinstance(name_or_path, dict):
            raise SpecError(DICT_FILE, "$", name_or_path, "a variant name, a family file's path or a family dict")
        data = read_family(name_or_path, limits)
        file = DICT_FILE
        variant = _pick_variant(data, file, variant)
        return _merge_variant(data, file, variant, _depth, limits)
    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_file():
        file = path
        data = read_family(file, limits)
        variant = _pick_variant(data, file, variant)
    else:
        reg = registry()
        if name_or_path not in reg:
            from difflib import get_close_matches
            close = get_close_matches(name_or_path, list(reg), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SpecError(SPEC_DIR, "$.variants", name_or_path, f"a registered variant name{hint}; "
                            "see `crossframe list`")
        file = reg[name_or_path]
        data = read_family(file, limits)
        variant = name_or_path
    return _merge_variant(data, file, variant, _depth, limits)


def _merge_variant(data, file, variant, _depth, limits):
    over = data["variants"][variant]
    if "extends" in over:
        # A variant built on another registered variant (library conventions over our networks):
        # parent config, then this file's base, then this variant's own overrides.
        parent = over["extends"]
        if not isinstance(parent, str) or parent == variant or _depth >= 8:
            raise SpecError(file, f"$.variants.{variant}.extends", parent,
                            "the name of another registered variant (no cycles)")
        _, family, _, parent_config = config_for(parent, _depth=_depth + 1, limits=limits)
        rest = {k: v for k, v in over.items() if k != "extends"}
        return variant, family, file, _deep_merge(_deep_merge(parent_config, data["base"]), rest)
    merged = _deep_merge(data["base"], over)
    return variant, data["family"], file, merged


def load(name_or_path, variant=None, *, limits=None, **overrides) -> ir.Spec:
    """Load a variant by name (``'mobilenet_v2_100'``), a family JSON file or a family dict; validate
    and resolve it.

    ``overrides``: ``input_size``, ``in_channels``, ``num_classes``, ``padding``, ``width``, ``depth``,
    ``drop_path_rate``, ``bn_eps``, ``conv_bias``. ``limits``: an :class:`archspec.Limits`, or a dict
    of some of its fields over the defaults and ``CROSSFRAME_MAX_*`` environment variables.
    """
    limits = Limits.coerce(limits)
    name, family, file, config = config_for(name_or_path, variant, limits=limits)
    for key, value in overrides.items():
        if key not in _OVERRIDES:
            raise SpecError(file, f"<override {key}>", key, f"one of {sorted(_OVERRIDES)}")
        target = config
        *parents, last = _OVERRIDES[key]
        for p in parents:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise SpecError(file, f"$.{p}", target, "an object")
        target[last] = value
    try:
        variables = config.get("vars", {})
        if not isinstance(variables, dict):
            raise SpecError(file, "$.vars", variables, "an object mapping variable names to values")
        config = _substitute(config, variables, str(file), "$", limits)
        _check_json(config, str(file), limits)
        return _Resolver(name, family, file, config, limits).resolve()
    except SpecError as err:
        if overrides:
            _blame_overrides(err, overrides)
        raise


def _blame_overrides(err, overrides):
    """Say which override set the value an error is about (``crossframe summary --input-size``)."""
    for key in overrides:
        target = "$." + ".".join(_OVERRIDES[key])
        if err.path == target:
            err._update(path=f"{err.path} (override {key})")
            return
    given = ", ".join(f"{k}={_short(v, 40)}" for k, v in overrides.items())
    err._update(expected=f"{err.expected} (with override {given})")


def from_config(config, *, limits=None) -> ir.Spec:
    """The spec of ``Spec.to_config()`` (a Keras model's config carries it): resolved again from the
    merged config, and refused unless it gives the same ``spec_hash``."""
    where = "<spec config>"
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise SpecError(where, "$", _short(config, 60), "a dict from Spec.to_config() with a 'config' object")
    for key in ("name", "family"):
        if not isinstance(config.get(key), str):
            raise SpecError(where, f"$.{key}", config.get(key), "a string")
    family = {"family": config["family"], "base": config["config"], "variants": {config["name"]: {}}}
    spec = load(family, limits=limits)
    want = config.get("spec_hash")
    if want is not None and spec.spec_hash != want:
        raise SpecError(where, "$.spec_hash", want, f"the hash of its config ({spec.spec_hash})")
    if config.get("deterministic", False) not in (True, False):
        raise SpecError(where, "$.deterministic", config["deterministic"], "true or false")
    return spec.deterministic() if config.get("deterministic") else spec


def list_variants():
    return sorted(registry())
