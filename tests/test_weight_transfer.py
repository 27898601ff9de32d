"""Canonical weights: identical names from all three builders, exact round trips, strict refusal."""

import numpy as np
import pytest

import archspec
import weight_transfer
from crossframe.frameworks import import_in_order
from weight_transfer import WeightError

import_in_order(["torch", "jax", "tf"])

import tf_impl  # noqa: E402
import torch_impl  # noqa: E402
import jax_impl  # noqa: E402
import jax  # noqa: E402
import torch  # noqa: E402

from parity_cases import ALL, variants  # noqa: E402


def small(name):
    spec = archspec.load(name)
    return spec if spec.input_shape[0] <= 32 else archspec.load(name, input_size=32)


def _names_shapes(w):
    return {k: tuple(np.shape(v)) for k, v in w.items()}


@pytest.mark.parametrize("name", variants(ALL))  # the others under -m heavy; eval parity moves every variant's weights
def test_same_canonical_names_and_shapes_from_all_three(name):
    spec = small(name)
    expected = {t.name: tuple(t.shape) for t in spec.tensors()}
    from_torch = weight_transfer.from_torch(torch_impl.build(spec))
    from_keras = weight_transfer.from_keras(tf_impl.build(spec))
    module = jax_impl.build(spec)
    from_flax = weight_transfer.from_flax(jax_impl.init(module, jax.random.PRNGKey(0)))
    assert _names_shapes(from_torch) == expected
    assert _names_shapes(from_keras) == expected
    assert _names_shapes(from_flax) == expected
    assert {v.dtype for w in (from_torch, from_keras, from_flax) for v in w.values()} == {np.dtype(np.float32)}


@pytest.mark.parametrize("name", ["mobilenet_v3_small_100", "shufflenet_v2_x0_5", "resnet50_v1", "dsconv_cnn",
                                  "efficientnet_b0", "mnasnet_050"])
def test_round_trip_torch_keras_flax_torch_is_bit_identical(name):
    spec = small(name)
    start = weight_transfer.random_weights(spec, seed=7)
    tm = torch_impl.build(spec)
    weight_transfer.to_torch(tm, start)
    km = tf_impl.build(spec)
    weight_transfer.to_keras(km, weight_transfer.from_torch(tm))
    module = jax_impl.build(spec)
    variables = weight_transfer.to_flax(module, weight_transfer.from_keras(km))
    tm2 = torch_impl.build(spec)
    weight_transfer.to_torch(tm2, weight_transfer.from_flax(variables))
    end = weight_transfer.from_torch(tm2)
    assert set(end) == set(start)
    for k in start:
        assert np.array_equal(end[k], start[k]), k


def _broken(spec):
    w = weight_transfer.random_weights(spec, seed=1)
    names = list(w)
    missing, misshaped = names[0], names[-1]
    del w[missing]
    w[misshaped] = np.zeros(tuple(np.shape(w[misshaped])) + (2,), np.float32)
    w["stages.99.blocks.0.dw.conv.kernel"] = np.zeros((3, 3, 1, 8), np.float32)
    return w, missing, misshaped


def _assert_names_all_three(err, missing, misshaped):
    text = str(err)
    assert missing in text and misshaped in text and "stages.99.blocks.0.dw.conv.kernel" in text
    assert err.missing == [missing]
    assert err.unexpected == ["stages.99.blocks.0.dw.conv.kernel"]
    assert [m[0] for m in err.mismatched] == [misshaped]


@pytest.mark.parametrize("framework", ["torch", "tf", "jax"])
def test_bad_checkpoint_is_refused_with_every_problem_named_and_model_unchanged(framework):
    spec = small("mobilenet_v2_035")
    good = weight_transfer.random_weights(spec, seed=2)
    bad, missing, misshaped = _broken(spec)
    if framework == "torch":
        model = torch_impl.build(spec)
        weight_transfer.to_torch(model, good)
        with pytest.raises(WeightError) as info:
            weight_transfer.to_torch(model, bad)
        after = weight_transfer.from_torch(model)
    elif framework == "tf":
        model = tf_impl.build(spec)
        weight_transfer.to_keras(model, good)
        with pytest.raises(WeightError) as info:
            weight_transfer.to_keras(model, bad)
        after = weight_transfer.from_keras(model)
    else:
        module = jax_impl.build(spec)
        variables = weight_transfer.to_flax(module, good)
        with pytest.raises(WeightError) as info:
            weight_transfer.to_flax(module, bad)
        after = weight_transfer.from_flax(variables)
    _assert_names_all_three(info.value, missing, misshaped)
    for k in good:
        assert np.array_equal(after[k], good[k]), k


def test_safetensors_save_load_with_metadata(tmp_path):
    spec = small("mnasnet_050")
    w = weight_transfer.random_weights(spec, seed=3)
    path = tmp_path / "w.safetensors"
    weight_transfer.save(w, path, spec=spec)
    meta = weight_transfer.read_metadata(path)
    assert meta["spec_name"] == spec.name and meta["spec_hash"] == spec.spec_hash
    back = weight_transfer.load(path, spec=spec)
    assert all(np.array_equal(back[k], w[k]) for k in w)
    other = small("mnasnet_075")
    with pytest.raises(WeightError, match="made for spec"):
        weight_transfer.load(path, spec=other)


def test_save_refuses_bad_weights_and_writes_nothing(tmp_path):
    spec = small("mnasnet_050")
    bad, missing, _ = _broken(spec)
    path = tmp_path / "w.safetensors"
    with pytest.raises(WeightError, match=missing):
        weight_transfer.save(bad, path, spec=spec)
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_is_refused(tmp_path):
    spec = small("mnasnet_050")
    path = tmp_path / "w.safetensors"
    weight_transfer.save(weight_transfer.random_weights(spec), path, spec=spec)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightError, match="not a readable safetensors file"):
        weight_transfer.load(path, spec=spec)


# -- a refused load leaves the model bit-identical; NaN/Inf only with allow_nonfinite ---------------

def _planted(spec, kind):
    """Good weights with one bad value in the LAST tensor: a non-floating dtype, or a NaN."""
    w = weight_transfer.random_weights(spec, seed=4)
    last = list(w)[-1]
    if kind == "object":
        w[last] = np.full(w[last].shape, None, dtype=object)
    elif kind == "int":
        w[last] = np.ones(w[last].shape, np.int64)
    else:
        w[last] = w[last].copy()
        w[last].flat[-1] = {"nan": np.nan, "inf": np.inf}[kind]
    return w, last


def _bits(arrays):
    return {k: np.asarray(v).tobytes() for k, v in arrays.items()}


@pytest.mark.parametrize("kind", ["object", "int", "nan", "inf"])
@pytest.mark.parametrize("framework", ["torch", "tf", "jax"])
def test_a_bad_last_tensor_is_refused_before_anything_is_touched(framework, kind):
    spec = small("mobilenet_v2_035")
    good = weight_transfer.random_weights(spec, seed=2)
    bad, last = _planted(spec, kind)
    if framework == "torch":
        model = weight_transfer.to_torch(torch_impl.build(spec), good)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(WeightError, match=last.replace(".", r"\.")):
            weight_transfer.to_torch(model, bad)
        after = model.state_dict()
        assert all(torch.equal(after[k], v) for k, v in before.items())
    elif framework == "tf":
        model = weight_transfer.to_keras(tf_impl.build(spec), good)
        before = [np.array(v.numpy()) for v in model.weights]
        with pytest.raises(WeightError, match=last.replace(".", r"\.")):
            weight_transfer.to_keras(model, bad)
        assert _bits(dict(enumerate(before))) == _bits({i: v.numpy() for i, v in enumerate(model.weights)})
    else:
        module = jax_impl.build(spec)
        variables = weight_transfer.to_flax(module, good)
        before = _bits(weight_transfer.from_flax(variables))
        with pytest.raises(WeightError, match=last.replace(".", r"\.")):
            weight_transfer.to_flax(module, bad)
        assert _bits(weight_transfer.from_flax(variables)) == before


@pytest.mark.parametrize("framework", ["torch", "tf", "jax"])
def test_adapters_take_nonfinite_weights_only_when_allowed(framework):
    spec = small("mnasnet_050")
    bad, last = _planted(spec, "nan")
    if framework == "torch":
        load, model = weight_transfer.to_torch, torch_impl.build(spec)
        read = weight_transfer.from_torch
    elif framework == "tf":
        load, model = weight_transfer.to_keras, tf_impl.build(spec)
        read = weight_transfer.from_keras
    else:
        load, model = weight_transfer.to_flax, jax_impl.build(spec)
        read = weight_transfer.from_flax
    with pytest.raises(WeightError, match="allow_nonfinite=True"):
        load(model, bad)
    out = load(model, bad, allow_nonfinite=True)
    assert np.isnan(read(out)[last]).sum() == 1


def test_save_and_load_refuse_nonfinite_unless_allowed(tmp_path):
    spec = small("mnasnet_050")
    bad, last = _planted(spec, "inf")
    path = tmp_path / "w.safetensors"
    with pytest.raises(WeightError, match=f"{last}.*1 Inf"):
        weight_transfer.save(bad, path, spec=spec)
    assert list(tmp_path.iterdir()) == []
    weight_transfer.save(bad, path, spec=spec, allow_nonfinite=True)
    with pytest.raises(WeightError, match="allow_nonfinite=True"):
        weight_transfer.load(path, spec=spec)
    assert np.isinf(weight_transfer.load(path, spec=spec, allow_nonfinite=True)[last]).sum() == 1


def test_save_refuses_non_floating_weights(tmp_path):
    spec = small("mnasnet_050")
    bad, last = _planted(spec, "int")
    with pytest.raises(WeightError, match="expected a floating dtype"):
        weight_transfer.save(bad, tmp_path / "w.safetensors", spec=spec)
    assert list(tmp_path.iterdir()) == []
