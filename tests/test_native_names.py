"""Each framework's native name and layout for a canonical tensor is written once
(``weight_transfer/native_names.py``, issue 16): the adapters, the file formats and the importers
read it there. These tests hold the rule to that one place and check it against the frameworks."""

import ast
import pathlib

import archspec
import pytest

from weight_transfer.native_names import NATIVE, holder_kind, native, native_shape

ROOT = pathlib.Path(__file__).resolve().parents[1]
# native names that only a leaf-to-native table has reason to spell out
NATIVE_ONLY = {"running_mean", "running_var", "moving_mean", "moving_variance", "gamma", "beta"}


def _string_literals(path):
    """``(line, text)`` of every string constant of a module but its docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and ast.get_docstring(node, clean=False) is not None}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_other_module_of_weight_transfer_maps_leaf_names():
    found = [f"{path.relative_to(ROOT)}:{line}: {text!r}"
             for path in sorted((ROOT / "weight_transfer").rglob("*.py")) if path.name != "native_names.py"
             for line, text in _string_literals(path) if any(name in text for name in NATIVE_ONLY)]
    assert not found, "leaf names mapped outside weight_transfer/native_names.py:\n" + "\n".join(found)


def test_the_scan_sees_a_planted_mapping(tmp_path):
    planted = tmp_path / "adapter.py"
    planted.write_text('"""Mentions moving_mean in a docstring: allowed."""\nLEAVES = {"mean": "moving_mean"}\n')
    assert [text for _, text in _string_literals(planted) if text in NATIVE_ONLY] == ["moving_mean"]


@pytest.mark.parametrize("name", ["mobilenet_v2_035", "resnet18", "mobilenet_v3_small_100", "dsconv_cnn"])
def test_the_table_names_every_tensor_as_the_frameworks_do(name):
    """Every canonical tensor resolves to an attribute its PyTorch and Keras layer has, in the shape it has."""
    from crossframe.frameworks import import_in_order

    import_in_order(["torch", "tf"])
    import tf_impl
    import torch_impl
    from weight_transfer.keras_adapter import _locate as keras_locate, _paths

    spec = archspec.load(name, input_size=32) if archspec.load(name).input_shape[0] > 32 else archspec.load(name)
    holders = holder_kind(spec)
    state = torch_impl.build(spec).state_dict()
    keras_paths = _paths(tf_impl.build(spec))
    for t in spec.tensors():
        owner, leaf = t.name.rsplit(".", 1)
        attr, layout = native("torch", holders[owner], leaf)
        assert tuple(state[f"{owner}.{attr}"].shape) == native_shape(layout, t.shape), t.name
        variable, layout = keras_locate(keras_paths, t.name)
        assert (variable.name, layout) == native("keras", holders[owner], leaf), t.name
        assert tuple(variable.shape) == native_shape(layout, t.shape), t.name
    assert {kind for kind in holders.values()} <= set(NATIVE["torch"]) == set(NATIVE["keras"])


def test_every_tensor_of_the_zoo_has_a_kind_each_framework_names():
    """The IR gives every canonical tensor a kind (archspec.ir.Tensor.kind); NATIVE names its leaf in
    every framework; a conv kernel is 'depthwise' exactly when its layer is a depthwise conv."""
    from archspec import ir

    for variant in archspec.list_variants():
        spec = archspec.load(variant)
        depthwise = {f"{layer.path}.conv" for layer in spec.walk()
                     if isinstance(layer, ir.ConvBNAct) and layer.is_depthwise}
        for t in spec.tensors():
            owner, leaf = t.name.rsplit(".", 1)
            assert t.kind in ir.TENSOR_KINDS, (variant, t)
            assert (t.kind == "depthwise") == (owner in depthwise), (variant, t)
            for framework in NATIVE:
                assert native(framework, t.kind, leaf) is not None, (variant, framework, t)
