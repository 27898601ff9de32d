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
import re
from pathlib import Path

from . import blocks, ir
from .errors import SpecError
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
    "preprocessing": ((dict, type(None)), False),
}
_BN_KEYS = {"eps": (_NUMBER, True), "momentum": (_NUMBER, True), "momentum_convention": (str, True),
            "running_var": (str, True)}
_PRE_KEYS = {"rescale": (_NUMBER, False), "offset": (_NUMBER, False), "mean": (list, False), "std": (list, False)}
_SCALING_KEYS = {"width": (_NUMBER, False), "depth": (_NUMBER, False), "divisor": (int, False),
                 "round_limit": (_NUMBER, False), "drop_path_rate": (_NUMBER, False)}
_SE_KEYS = {"ratio": (_NUMBER, True), "of": (str, True), "round": (str, True), "act": (str, True),
            "gate": (str, True)}

_COMMON_LAYER = {"type": (str, True), "name": (str, True)}
_LAYER_KEYS = {
    "conv_bn_act": {"out": (int, True), "kernel": (int, True), "stride": (int, False), "groups": (int, False),
                    "act": ((str, type(None)), False), "bn": (bool, False), "bias": (bool, False),
                    "scale_width": (bool, False), "min_width": (_NUMBER, False), "padding": (str, False)},
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
                 "out": (int, True), "kernel": (int, False), "act": ((str, type(None)), False),
                 "scale_depth": (bool, False)}
_STAGE_KEYS = {
    "inverted_residual": {"expand_ratio": (_NUMBER, False), "expanded": (int, False),
                          "se": ((dict, type(None)), False), "skip": (bool, False)},
    "depthwise_separable": {"pw_act": ((str, type(None)), False), "se": ((dict, type(None)), False),
                            "skip": (bool, False), "bn": (bool, False), "dw_bias": (bool, False),
                            "bias": (bool, False)},
    "basic_block": {},
    "bottleneck": {"mid": (int, True), "stride_on": (str, False)},
    "shuffle_unit": {},
    "conv_bn_act": {"groups": (int, False)},
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


def _substitute(obj, variables, file, path):
    if isinstance(obj, str) and obj.startswith("$"):
        name = obj[1:]
        if name not in variables:
            raise SpecError(file, path, obj, f"a variable defined in 'vars' (have {sorted(variables)})")
        if path.count("$") > 32:
            raise SpecError(file, path, obj, "variables that do not refer to themselves")
        return _substitute(copy.deepcopy(variables[name]), variables, file, f"{path}<{obj}>")
    if isinstance(obj, dict):
        return {k: _substitute(v, variables, file, f"{path}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v, variables, file, f"{path}[{i}]") for i, v in enumerate(obj)]
    return obj


class _Resolver:
    def __init__(self, name, family, file, config):
        self.name, self.family, self.file = name, family, str(file)
        self.config = config
        self._validate_config()
        conv = config["conventions"]
        bn = conv["batch_norm"]
        self.bn = blocks.batch_norm(bn["eps"], bn["momentum"], bn["momentum_convention"], bn["running_var"],
                                    where=(self.file, "$.conventions.batch_norm"))
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
        for key, value in (("width", self.width), ("depth", self.depth), ("divisor", self.divisor)):
            if value <= 0:
                raise SpecError(self.file, f"$.scaling.{key}", value, "a positive number")

    # -- validation ------------------------------------------------------------------------
    def _validate_config(self):
        f, c = self.file, self.config
        _check_keys(c, _CONFIG_KEYS, f, "$")
        _check_keys(c["input"], _INPUT_KEYS, f, "$.input")
        for key in ("size", "channels"):
            if c["input"][key] <= 0:
                raise SpecError(f, f"$.input.{key}", c["input"][key], "a positive integer")
        if c["num_classes"] <= 0:
            raise SpecError(f, "$.num_classes", c["num_classes"], "a positive integer")
        _check_keys(c["conventions"], _CONVENTION_KEYS, f, "$.conventions")
        _check_keys(c["conventions"]["batch_norm"], _BN_KEYS, f, "$.conventions.batch_norm")
        if c["conventions"].get("preprocessing") is not None:
            _check_keys(c["conventions"]["preprocessing"], _PRE_KEYS, f, "$.conventions.preprocessing")
        _check_keys(c.get("scaling", {}), _SCALING_KEYS, f, "$.scaling")
        rate = c.get("scaling", {}).get("drop_path_rate", 0.0)
        if not 0.0 <= rate < 1.0:
            raise SpecError(f, "$.scaling.drop_path_rate", rate, "a rate in [0, 1)")
        if not c["layers"]:
            raise SpecError(f, "$.layers", [], "at least one layer")

    def _scale(self, channels, where, scale=True, min_width=None):
        if isinstance(channels, bool) or not isinstance(channels, int) or channels <= 0:
            raise SpecError(where[0], where[1], channels, "a positive integer channel count")
        if not scale:
            return channels
        width = self.width if min_width is None else max(self.width, min_width)
        if width == 1.0:
            return channels
        return make_divisible(channels * width, self.divisor, round_limit=self.round_limit)

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
        names = set()
        for i, layer in enumerate(c["layers"]):
            jpath = f"$.layers[{i}]"
            if not isinstance(layer, dict):
                raise SpecError(self.file, jpath, layer, "an object")
            kind = layer.get("type")
            if kind in _BLOCK_LAYERS:
                new = self._single_block(layer, shape, jpath, names)
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
            layers.extend(new)
            shape = layers[-1].out_shape
        conventions = (("padding", self.padding), ("conv_bias", self.conv_bias), ("batch_norm", self.bn))
        digest = hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]
        return ir.Spec(name=self.name, family=self.family, source=self.file,
                       input_shape=(c["input"]["size"], c["input"]["size"], c["input"]["channels"]),
                       num_classes=c["num_classes"], layers=tuple(layers), conventions=conventions,
                       spec_hash=digest)

    def _layer_conv_bn_act(self, layer, shape, jpath):
        where = (self.file, jpath)
        out = self._scale(layer["out"], (self.file, f"{jpath}.out"), layer.get("scale_width", True),
                          layer.get("min_width"))
        groups = layer.get("groups", 1)
        return [blocks.conv_bn_act(layer["name"], shape, out, layer["kernel"], layer.get("stride", 1), groups,
                                   act=layer.get("act"), bn=self.bn if layer.get("bn", True) else None,
                                   bias=layer.get("bias", self.conv_bias), padding=layer.get("padding", self.padding),
                                   where=where)]

    def _layer_pool(self, layer, shape, jpath):
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
        block = stage["block"]
        if block not in _STAGE_KEYS:
            raise SpecError(self.file, f"{jpath}.block", block, f"one of {sorted(_STAGE_KEYS)}")
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
            if stage.get("scale_depth", True):
                repeats = round_depth(repeats, self.depth)
            base = {k: v for k, v in stage.items() if k not in ("repeats", "scale_depth")}
            out = []
            for j in range(repeats):
                cfg = dict(base, stride=stride if j == 0 else 1)
                out.append((cfg, jpath))
            return out
        if not stage["blocks"]:
            raise SpecError(self.file, f"{jpath}.blocks", [], "at least one block")
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
        resolved, index = [], 0
        for i, plan in enumerate(plans):
            for j, (cfg, bpath) in enumerate(plan):
                path = f"{layer['name']}.{i}.blocks.{j}"
                drop_path = self.drop_path_rate * index / total
                block = getattr(self, f"_block_{cfg['block']}")(path, shape, cfg, bpath, drop_path)
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
        return where, out, cfg.get("kernel", 3), cfg["stride"], cfg.get("act", "relu")

    def _block_inverted_residual(self, path, shape, cfg, bpath, drop_path):
        where, out, kernel, stride, act = self._common(cfg, bpath)
        in_ch = shape[2]
        if ("expand_ratio" in cfg) == ("expanded" in cfg):
            raise SpecError(self.file, bpath, sorted(cfg), "exactly one of 'expand_ratio' or 'expanded'")
        if "expanded" in cfg:
            expanded = self._scale(cfg["expanded"], (self.file, f"{bpath}.expanded"))
        else:
            ratio = cfg["expand_ratio"]
            if ratio <= 0:
                raise SpecError(self.file, f"{bpath}.expand_ratio", ratio, "a positive number")
            expanded = in_ch * ratio if float(ratio).is_integer() else make_divisible(in_ch * ratio, self.divisor)
            expanded = int(expanded)
        reduced, se_act, gate = self._se_reduced(cfg.get("se"), in_ch, expanded, where)
        return blocks.inverted_residual(path, shape, out, expanded, kernel, stride, act, reduced, se_act, gate,
                                        bn=self.bn, bias=self.conv_bias, skip=cfg.get("skip", True),
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
        return blocks.bottleneck(path, shape, mid, out, stride, cfg.get("stride_on", "conv2"), act, bn=self.bn,
                                 bias=self.conv_bias, padding=self.padding, where=where)

    def _block_shuffle_unit(self, path, shape, cfg, bpath, drop_path):
        where, out, kernel, stride, act = self._common(cfg, bpath)
        return blocks.shuffle_unit(path, shape, out, stride, kernel, act, bn=self.bn, bias=self.conv_bias,
                                   padding=self.padding, where=where)

    def _block_conv_bn_act(self, path, shape, cfg, bpath, drop_path):
        where, out, kernel, stride, act = self._common(cfg, bpath)
        return blocks.conv_bn_act(path, shape, out, kernel, stride, cfg.get("groups", 1), act, bn=self.bn,
                                  bias=self.conv_bias, padding=self.padding, where=where)


# -- files and registry ---------------------------------------------------------------------

def _read_json(file):
    try:
        text = Path(file).read_text()
    except OSError as err:
        raise SpecError(file, "$", f"unreadable file ({err.strerror})", "a readable JSON file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(file, f"$ (line {err.lineno}, column {err.colno})", err.msg, "valid JSON") from None


def read_family(file):
    """Read and check the outer structure of a family file; returns the parsed dict."""
    data = _read_json(file)
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


def config_for(name_or_path, variant=None, _depth=0):
    """The merged (unresolved) config of a variant, with its family name and file.

    A variant with ``"extends": NAME`` starts from registered variant NAME's merged config.
    """
    path = Path(name_or_path)
    if path.suffix == ".json" or path.is_file():
        file = path
        data = read_family(file)
        names = list(data["variants"])
        if variant is None:
            if len(names) != 1:
                raise SpecError(file, "$.variants", names, "a single variant, or variant=NAME to pick one")
            variant = names[0]
        if variant not in data["variants"]:
            raise SpecError(file, "$.variants", variant, f"one of {names}")
    else:
        reg = registry()
        if name_or_path not in reg:
            from difflib import get_close_matches
            close = get_close_matches(name_or_path, list(reg), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise SpecError(SPEC_DIR, "$.variants", name_or_path, f"a registered variant name{hint}; "
                            "see `crossframe list`")
        file = reg[name_or_path]
        data = read_family(file)
        variant = name_or_path
    over = data["variants"][variant]
    if "extends" in over:
        # A variant built on another registered variant (library conventions over our networks):
        # parent config, then this file's base, then this variant's own overrides.
        parent = over["extends"]
        if not isinstance(parent, str) or parent == variant or _depth >= 8:
            raise SpecError(file, f"$.variants.{variant}.extends", parent,
                            "the name of another registered variant (no cycles)")
        _, family, _, parent_config = config_for(parent, _depth=_depth + 1)
        rest = {k: v for k, v in over.items() if k != "extends"}
        return variant, family, file, _deep_merge(_deep_merge(parent_config, data["base"]), rest)
    merged = _deep_merge(data["base"], over)
    return variant, data["family"], file, merged


def load(name_or_path, variant=None, **overrides) -> ir.Spec:
    """Load a variant by name (``'mobilenet_v2_100'``) or a family JSON file, validate and resolve it.

    ``overrides``: ``input_size``, ``in_channels``, ``num_classes``, ``padding``, ``width``, ``depth``,
    ``drop_path_rate``, ``bn_eps``, ``conv_bias``.
    """
    name, family, file, config = config_for(name_or_path, variant)
    for key, value in overrides.items():
        if key not in _OVERRIDES:
            raise SpecError(file, f"<override {key}>", key, f"one of {sorted(_OVERRIDES)}")
        target = config
        *parents, last = _OVERRIDES[key]
        for p in parents:
            target = target.setdefault(p, {})
        target[last] = value
    variables = config.get("vars", {})
    if not isinstance(variables, dict):
        raise SpecError(file, "$.vars", variables, "an object mapping variable names to values")
    config = _substitute(config, variables, str(file), "$")
    return _Resolver(name, family, file, config).resolve()


def list_variants():
    return sorted(registry())
