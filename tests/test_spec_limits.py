"""Size limits and number hygiene of archspec specs (issue 12, items 8 and 10).

Item 8: a small JSON file must not hang ``crossframe summary`` (variables that double at each
level) nor resolve a network of billions of parameters: the expanded spec and the resolved network
are bounded by :class:`archspec.Limits`, each refusal names its limit, value and how to raise it.

Item 10: NaN, Infinity, 1e400, 10**400, strings or booleans where numbers go, 10,000-deep nesting:
each is one :class:`archspec.SpecError` naming the file and JSON path, never an OverflowError,
TypeError or RecursionError, and never accepted. Every entry point: file, dict, overrides.

Cheap: ``archspec`` imports no framework.
"""

import copy
import json
import math
import time

import pytest

import archspec
from archspec import Limits, SpecError

BN = {"eps": 1e-5, "momentum": 0.1, "momentum_convention": "torch", "running_var": "unbiased"}


def _tiny():
    return {
        "family": "tiny",
        "base": {
            "input": {"size": 8, "channels": 3},
            "num_classes": 4,
            "conventions": {"padding": "symmetric", "batch_norm": dict(BN), "conv_bias": False,
                            "preprocessing": {"rescale": 1.0, "mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}},
            "vars": {"act": "relu"},
            "layers": [
                {"name": "stem", "type": "conv_bn_act", "out": 8, "kernel": 3, "stride": 2, "act": "$act"},
                {"name": "stages", "type": "stages", "stages": [
                    {"block": "inverted_residual", "out": 8, "expand_ratio": 2, "repeats": 2, "act": "$act",
                     "se": {"ratio": 0.25, "of": "in", "round": "floor", "act": "relu", "gate": "sigmoid"}}]},
                {"name": "pool", "type": "pool", "op": "max", "kernel": 2, "stride": 2},
                {"name": "flatten", "type": "flatten", "order": "chw"},
                {"name": "classifier", "type": "dense", "out": "num_classes"},
            ],
        },
        "variants": {"tiny": {}},
    }


def _write(tmp_path, doc, name="tiny.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _raises_at(load, json_path, *, within=2.0):
    """``load()`` raises one SpecError whose single-line message names ``json_path``, quickly."""
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        load()
    assert time.perf_counter() - start < within
    message = str(info.value)
    assert json_path in message, message
    assert "\n" not in message and len(message) < 1000, message
    return info.value


# -- item 8: limits ---------------------------------------------------------------------------

def test_doubling_variables_fail_fast(tmp_path):
    """40 variables, each a list of two of the previous: 2**40 nodes if expanded."""
    doc = _tiny()
    vars_ = {"v0": [1, 1]}
    for i in range(1, 40):
        vars_[f"v{i}"] = [f"$v{i - 1}", f"$v{i - 1}"]
    doc["base"]["vars"].update(vars_)
    doc["base"]["description"] = "$v39"  # any string field: expansion happens before validation
    err = _raises_at(lambda: archspec.load(_write(tmp_path, doc)), "$.", within=1.0)
    assert err.path.startswith(("$.vars.v", "$.description<$v39>")), err.path  # where the expansion is
    assert err.limit == "max_spec_nodes" and "CROSSFRAME_MAX_SPEC_NODES" in str(err)


def _big_dense(out=16384):
    doc = _tiny()
    doc["base"]["input"]["size"] = 224
    doc["base"]["layers"] = [{"name": "flatten", "type": "flatten", "order": "hwc"},
                             {"name": "fc", "type": "dense", "out": out}]
    doc["base"]["conventions"]["preprocessing"] = None
    return doc  # 224*224*3 x 16384: 2.47e9 parameters


def test_params_limit_names_itself_and_can_be_raised(tmp_path, monkeypatch):
    path = _write(tmp_path, _big_dense())
    err = _raises_at(lambda: archspec.load(path), "$.layers[1]")
    assert err.limit == "max_params" and err.value == Limits().max_params
    message = str(err)
    assert "max_params" in message and "2,000,000,000" in message
    assert "CROSSFRAME_MAX_PARAMS" in message and "limits=" in message
    spec = archspec.load(path, limits={"max_params": 3_000_000_000})
    assert spec.params == 224 * 224 * 3 * 16384 + 16384
    monkeypatch.setenv("CROSSFRAME_MAX_PARAMS", "3e9")
    assert archspec.load(path).params == spec.params
    monkeypatch.setenv("CROSSFRAME_MAX_PARAMS", "lots")
    with pytest.raises(archspec.ConfigError, match="CROSSFRAME_MAX_PARAMS"):
        archspec.load(path)


def test_fifty_billion_parameters_refused(tmp_path):
    """The issue's case: a handful of wide convolutions, 51e9 parameters."""
    doc = _tiny()
    doc["base"]["layers"][1]["stages"] = [{"block": "conv_bn_act", "out": 60000, "kernel": 7, "repeats": 20}]
    err = _raises_at(lambda: archspec.load(_write(tmp_path, doc)), "$.layers[1].stages[0]")
    assert err.limit == "max_params"


@pytest.mark.parametrize("mutate,json_path,limit", [
    (lambda d: d["base"]["input"].update(size=10**6), "$.input.size", "max_input_size"),
    (lambda d: d["base"]["input"].update(channels=10**6), "$.input.channels", "max_channels"),
    (lambda d: d["base"]["layers"][0].update(kernel=10**6), "$.layers[0].kernel", "max_kernel"),
    (lambda d: d["base"]["layers"][2].update(kernel=10**6), "$.layers[2].kernel", "max_kernel"),
    (lambda d: d["base"]["layers"][0].update(out=10**7), "$.layers[0].out", "max_channels"),
    (lambda d: d["base"]["layers"][1]["stages"][0].update(expand_ratio=1e9), "$.layers[1].stages[0]",
     "max_channels"),
    (lambda d: d["base"]["layers"][1]["stages"][0].update(repeats=10**9), "$.layers[1].stages[0].repeats",
     "max_repeats"),
    (lambda d: d["base"].update(scaling={"depth": 1e12}), "$.layers[1].stages[0].repeats", "max_repeats"),
    (lambda d: d["base"].update(scaling={"width": 1e12}), "$.layers[0].out", "max_channels"),
    (lambda d: d["base"]["layers"][1].update(stages=[{"block": "conv_bn_act", "out": 8, "repeats": 1000}] * 20),
     "$.layers[1].stages[", "max_layers"),
    (lambda d: (d["base"]["input"].update(size=8192), d["base"]["layers"][0].update(out=1024, stride=1)),
     "$.layers[0]", "max_activation_bytes"),
], ids=["input_size", "input_channels", "conv_kernel", "pool_kernel", "channels", "expand_ratio", "repeats",
        "depth", "width", "layers", "activations"])
def test_limits(tmp_path, mutate, json_path, limit):
    doc = _tiny()
    mutate(doc)
    path = _write(tmp_path, doc)
    err = _raises_at(lambda: archspec.load(path), json_path)
    assert err.limit == limit, str(err)
    assert limit in str(err) and f"CROSSFRAME_{limit.upper()}" in str(err)


def test_limits_reject_bad_values():
    with pytest.raises(archspec.ConfigError, match="max_parms"):
        archspec.load("resnet18", limits={"max_parms": 1})
    with pytest.raises(archspec.ConfigError, match="max_params"):
        Limits(max_params=-1)
    with pytest.raises(SpecError, match="max_params"):
        archspec.load("resnet18", limits=Limits(max_params=1_000_000))


def test_every_zoo_variant_fits_the_limits_with_margin():
    """All registered variants (ours and the library-named ones) within half of every limit."""
    limits = Limits()
    half = Limits(**{k: v // 2 for k, v in limits.as_dict().items() if k != "max_nesting"})
    names = archspec.list_variants()
    assert any(n.startswith("torchvision/") for n in names) and "efficientnet_b7" in names
    for name in names:
        spec = archspec.load(name, limits=half)
        assert spec.params <= limits.max_params / 10  # the biggest, Wide ResNet-101-2: 127M
    b7 = archspec.load("efficientnet_b7", limits=half)
    assert b7.input_shape[0] == 600 and 66e6 < b7.params < 67e6
    assert archspec.load("resnet152", limits=half).params > 60e6
    archspec.load("efficientnet_b7", input_size=1200, limits=half)  # B7 at twice its size


# -- item 10: numbers and nesting -------------------------------------------------------------

@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_tokens_refused_at_parse(tmp_path, token):
    text = json.dumps(_tiny()).replace('"eps": 1e-05', f'"eps": {token}')
    assert token in text
    err = _raises_at(lambda: archspec.load(_write(tmp_path, text)), "$")
    assert token in str(err) and "finite" in str(err)


def test_float_overflow_refused_at_parse(tmp_path):
    text = json.dumps(_tiny()).replace('"eps": 1e-05', '"eps": 1e400')
    err = _raises_at(lambda: archspec.load(_write(tmp_path, text)), "$")
    assert "1e400" in str(err) and "finite" in str(err)


def test_huge_integers_refused(tmp_path):
    text = json.dumps(_tiny()).replace('"size": 8', '"size": 1' + "0" * 400)
    _raises_at(lambda: archspec.load(_write(tmp_path, text)), "$.input.size")
    text = json.dumps(_tiny()).replace('"size": 8', '"size": 1' + "0" * 5000)  # beyond int()'s digit limit
    _raises_at(lambda: archspec.load(_write(tmp_path, text)), "$")
    text = json.dumps(_tiny()).replace('"num_classes": 4', '"num_classes": 1' + "0" * 400)
    _raises_at(lambda: archspec.load(_write(tmp_path, text)), "$.num_classes")


def test_deep_nesting_is_a_spec_error(tmp_path):
    text = json.dumps(_tiny()).replace('"description"', '"x"')
    deep = "[" * 10_000 + "]" * 10_000
    text = text.replace('"vars": {', '"vars": {"deep": ' + deep + ", ")
    _raises_at(lambda: archspec.load(_write(tmp_path, text)), "$")
    doc = _tiny()
    value = []
    for _ in range(10_000):
        value = [value]
    doc["base"]["vars"]["deep"] = value
    _raises_at(lambda: archspec.load(doc), "$.base.vars.deep")
    # Variables that nest each other: deep after expansion only.
    doc = _tiny()
    for i in range(30):
        doc["base"]["vars"][f"n{i}"] = [[[[[[[[[[f"$n{i - 1}" if i else 1]]]]]]]]]]
    doc["base"]["description"] = "$n29"
    err = _raises_at(lambda: archspec.load(doc), "$.")
    assert err.path.startswith(("$.vars.n", "$.description<$n29>")) and err.limit == "max_nesting", err.path


def _set(doc, path, value):
    *parents, last = path
    target = doc
    for p in parents:
        target = target[p]
    target[last] = value


BN_PATH = ("base", "conventions", "batch_norm")
STAGE = ("base", "layers", 1, "stages", 0)
PRE = ("base", "conventions", "preprocessing")

# (where in the family document, bad value, JSON path in the message)
BAD_NUMBERS = [
    (BN_PATH + ("eps",), math.inf, "$.conventions.batch_norm.eps"),
    (BN_PATH + ("eps",), math.nan, "$.conventions.batch_norm.eps"),
    (BN_PATH + ("eps",), 5.0, "$.conventions.batch_norm.eps"),
    (BN_PATH + ("momentum",), math.nan, "$.conventions.batch_norm.momentum"),
    (BN_PATH + ("momentum",), "0.1", "$.conventions.batch_norm.momentum"),
    (PRE + ("mean",), [math.nan, 0.5, 0.5], "$.conventions.preprocessing.mean[0]"),
    (PRE + ("mean",), ["a", 0.5, 0.5], "$.conventions.preprocessing.mean[0]"),
    (PRE + ("std",), [0.2, math.inf, 0.2], "$.conventions.preprocessing.std[1]"),
    (PRE + ("std",), [0.2, True, 0.2], "$.conventions.preprocessing.std[1]"),
    (PRE + ("rescale",), math.inf, "$.conventions.preprocessing.rescale"),
    (PRE + ("offset",), -math.inf, "$.conventions.preprocessing.offset"),
    (("base", "input", "size"), True, "$.input.size"),
    (("base", "input", "size"), 10**400, "$.input.size"),
    (("base", "input", "size"), 8.0, "$.input.size"),
    (("base", "num_classes"), 10**400, "$.num_classes"),
    (("base", "scaling"), {"width": math.inf}, "$.scaling.width"),
    (("base", "scaling"), {"width": 1e308}, "$.layers[0].out"),
    (("base", "scaling"), {"depth": 1e308}, "$.layers[1].stages[0].repeats"),
    (("base", "scaling"), {"depth": math.nan}, "$.scaling.depth"),
    (("base", "scaling"), {"round_limit": math.nan}, "$.scaling.round_limit"),
    (("base", "scaling"), {"round_limit": 7}, "$.scaling.round_limit"),
    (("base", "scaling"), {"drop_path_rate": math.nan}, "$.scaling.drop_path_rate"),
    (("base", "scaling"), {"divisor": 10**300}, "$.scaling.divisor"),
    (STAGE + ("expand_ratio",), math.inf, "$.layers[1].stages[0].expand_ratio"),
    (STAGE + ("expand_ratio",), 1e308, "$.layers[1].stages[0]"),
    (STAGE + ("se",), {"ratio": math.nan, "of": "in", "round": "floor", "act": "relu", "gate": "sigmoid"},
     "$.layers[1].stages[0].se.ratio"),
    (STAGE + ("se",), {"ratio": -1, "of": "in", "round": "floor", "act": "relu", "gate": "sigmoid"},
     "$.layers[1].stages[0].se.ratio"),
    (STAGE + ("se",), {"ratio": 1e308, "of": "in", "round": "make_divisible", "act": "relu", "gate": "sigmoid"},
     "$.layers[1].stages[0]"),
    (STAGE + ("act",), ["relu"], "$.layers[1].stages[0].act"),
    (STAGE + ("block",), ["inverted_residual"], "$.layers[1].stages[0].block"),
    (("base", "layers", 0, "type"), {"conv": 1}, "$.layers[0].type"),
    (("base", "layers", 0, "min_width"), math.inf, "$.layers[0].min_width"),
    (("base", "layers", 2, "padding"), 10**300, "$.layers[2].padding"),
    (("base", "layers", 2, "padding"), 5, "$.layers[2].padding"),
    (("base", "layers", 3, "size"), math.nan, "$.layers[3].size"),
    (("base", "vars", "act"), (1, 2), "$.base.vars.act"),
]


@pytest.mark.parametrize("where,value,json_path", BAD_NUMBERS,
                         ids=[f"{'.'.join(map(str, w[1:]))}={v!r}"[:60] for w, v, _ in BAD_NUMBERS])
def test_bad_values_from_a_dict(where, value, json_path):
    doc = _tiny()
    archspec.load(copy.deepcopy(doc))  # the unmutated spec is fine
    _set(doc, where, value)
    err = _raises_at(lambda: archspec.load(doc), json_path)
    assert err.file == "<dict>"


def test_stage_without_block_is_a_spec_error():
    doc = _tiny()
    del doc["base"]["layers"][1]["stages"][0]["block"]
    _raises_at(lambda: archspec.load(doc), "$.layers[1].stages[0].block")


@pytest.mark.parametrize("key,value,json_path", [
    ("input_size", 10**400, "$.input.size"),
    ("input_size", math.nan, "$.input.size"),
    ("input_size", True, "$.input.size"),
    ("input_size", 10**6, "$.input.size"),
    ("width", math.inf, "$.scaling.width"),
    ("width", 1e308, "$.layers[0].out"),
    ("width", "2", "$.scaling.width"),
    ("depth", 1e308, "$.layers[1].stages[0].repeats"),
    ("num_classes", 10**400, "$.num_classes"),
    ("bn_eps", math.inf, "$.conventions.batch_norm.eps"),
    ("bn_eps", math.nan, "$.conventions.batch_norm.eps"),
    ("drop_path_rate", math.nan, "$.scaling.drop_path_rate"),
], ids=lambda v: repr(v)[:20] if not isinstance(v, str) or not v.startswith("$") else "")
def test_bad_overrides(tmp_path, key, value, json_path):
    """What ``crossframe summary --input-size``/``--width`` and ``archspec.load(**overrides)`` pass."""
    path = _write(tmp_path, _tiny())
    err = _raises_at(lambda: archspec.load(path, **{key: value}), json_path)
    assert f"override {key}" in str(err)
    _raises_at(lambda: archspec.load("efficientnet_b0", **{key: value}), "")


def test_dict_and_file_entry_points_agree(tmp_path):
    doc = _tiny()
    from_dict, from_file = archspec.load(doc), archspec.load(_write(tmp_path, doc))
    assert from_dict.params == from_file.params and from_dict.spec_hash == from_file.spec_hash
    assert doc == _tiny()  # loading does not modify the caller's dict
    with pytest.raises(SpecError, match="<dict>: \\$.base.vars.act"):
        doc["base"]["vars"]["act"] = {1, 2}
        archspec.load(doc)
