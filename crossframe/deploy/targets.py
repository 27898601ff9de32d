"""The five export targets: each renders the network in the framework whose layout its runtime wants
(DESIGN.md, "Deploy from the native rendering") and writes one artifact, then stamps metadata into it.

``write(spec, weights, path, batch, quantize, calibration, options)`` writes the artifact at ``path``
(a staged temporary name); ``stamp(path, metadata)`` records the provenance after verification (in
the artifact where the format has a place, else ``None`` is returned and the caller writes a
sidecar). ``batch`` is an int or ``None`` (dynamic). Frameworks are imported by the caller first
(torch before TensorFlow), through ``archspec.frameworks``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

METADATA_KEY = "crossframe"


@dataclass(frozen=True)
class Target:
    name: str
    framework: str            # the renderer the artifact comes from: torch, tf or jax
    layout: str               # the input layout the artifact expects
    quantize: tuple           # the quantizations it offers
    directory: bool = False   # writes a directory (SavedModel)
    sidecar: bool = False     # metadata goes to OUT.json (no place in the format)
    suffix: str = ""          # the conventional file suffix (documented, not enforced)
    folds_bn: bool = False    # inference-only runtime: BNs folded into their convs in float64 first (fold.py)
    dtypes: tuple = ("float32",)  # the compute dtypes it offers (--dtype; float32 input and output always)


TARGETS = {
    "onnx": Target("onnx", "torch", "NCHW", ("none", "float16"), suffix=".onnx", folds_bn=True),
    "tflite": Target("tflite", "tf", "NHWC", ("none", "float16", "dynamic-int8", "int8"), suffix=".tflite",
                     folds_bn=True),
    "savedmodel": Target("savedmodel", "tf", "NHWC", ("none",), directory=True,
                         dtypes=("float32", "bfloat16", "float16")),
    "stablehlo": Target("stablehlo", "jax", "NHWC", ("none",), sidecar=True, suffix=".stablehlo",
                        dtypes=("float32", "bfloat16", "float16")),
    "torch-export": Target("torch-export", "torch", "NCHW", ("none",), suffix=".pt2",
                           dtypes=("float32", "bfloat16", "float16")),
}


def build_model(framework, spec, weights, dtype="float32"):
    """The model of ``spec`` in ``framework`` holding canonical ``weights``, ready for inference:
    ``(model, f(x_nhwc) -> logits float32)``. Each writer returns that ``f`` of the model it exported.

    ``dtype``: the network computes in ``bfloat16`` or ``float16``, its input cast on the way in and
    its logits cast back to float32 (torch: the whole module in ``dtype``, as ``model.half()``; tf: the
    Keras ``mixed_<dtype>`` policy, variables kept in float32; jax: the parameters cast and the BN
    statistics kept in float32, as the mixed-precision training step does, :mod:`jax_impl.casting`)."""
    if framework == "torch":
        import torch

        import torch_impl
        from weight_transfer import torch_adapter

        model = torch_impl.build(spec).eval()
        torch_adapter.to_torch(model, weights)
        if dtype != "float32":
            model = _cast_module(model, getattr(torch, dtype))

        def run(x):
            with torch.no_grad():
                return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
        return model, run
    if framework == "tf":
        import tf_impl
        from weight_transfer import keras_adapter

        model = tf_impl.build(spec, dtype=None if dtype == "float32" else f"mixed_{dtype}")
        keras_adapter.to_keras(model, weights)
        return model, lambda x: np.asarray(model(x, training=False), dtype=np.float32)
    import jax

    import jax_impl
    from weight_transfer import flax_adapter

    module = jax_impl.build(spec)
    variables = flax_adapter.to_flax(module, weights)
    if dtype == "float32":
        apply = jax.jit(lambda x: module.apply(variables, x, train=False))
    else:
        import jax.numpy as jnp

        from jax_impl.casting import cast_floating

        low = jnp.dtype(dtype)
        variables = {**variables, "params": cast_floating(variables["params"], low)}
        apply = jax.jit(lambda x: module.apply(variables, x.astype(low), train=False).astype(jnp.float32))
    return apply, lambda x: np.asarray(apply(x))


def _cast_module(model, dtype):
    """``model`` converted to torch ``dtype``, with float32 input and output (the export's interface)."""
    import torch

    class Cast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model.to(dtype)

        def forward(self, x):
            return self.model(x.to(dtype)).float()

    return Cast().eval()


# -- onnx ----------------------------------------------------------------------------------------

def _onnx(spec, weights, path, batch, quantize, calibration, options):
    import torch

    model, run = build_model("torch", spec, weights)
    h, w, c = spec.input_shape
    example = torch.zeros((batch or 2, c, h, w))
    exporter = options.get("onnx_exporter", "dynamo")
    if exporter == "dynamo":
        dynamic = None if batch else ({0: torch.export.Dim("batch", min=1, max=65536)},)
        torch.onnx.export(model, (example,), str(path), dynamo=True, input_names=["input"],
                          output_names=["logits"], dynamic_shapes=dynamic, optimize=True, verbose=False,
                          external_data=False)
    else:
        torch.onnx.export(model, (example,), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], do_constant_folding=True,
                          dynamic_axes=None if batch else {"input": {0: "batch"}, "logits": {0: "batch"}})
    if quantize == "float16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        m = convert_float_to_float16(onnx.load(str(path)), keep_io_types=True)
        onnx.save(m, str(path))
    return run


def _onnx_stamp(path, metadata):
    import onnx

    m = onnx.load(str(path))
    kept = [p for p in m.metadata_props if p.key != METADATA_KEY]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    entry = m.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
    onnx.save(m, str(path))
    return str(path)


# -- tflite --------------------------------------------------------------------------------------

def _keras_function(spec, weights, batch, dtype="float32"):
    from tf_impl._tf import tf

    model, run = build_model("tf", spec, weights, dtype)
    h, w, c = spec.input_shape
    signature = tf.TensorSpec([batch, h, w, c], tf.float32, name="images")
    return model, signature, run


def _tflite(spec, weights, path, batch, quantize, calibration, options):
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from tf_impl import activations
    from tf_impl._tf import tf

    # int8: activations in the forms LiteRT's XNNPACK delegate runs in int8 (hard swish, see there)
    with activations.int8_forms() if quantize == "int8" and options.get("int8_forms", True) \
            else contextlib.nullcontext():
        model, signature, run = _keras_function(spec, weights, batch)
    fn = tf.function(lambda images: {"logits": model(images, training=False)})
    # Variables frozen to constants: the converter then folds each BN into its convolution and the
    # kernel layout changes at conversion time (no TRANSPOSE or READ_VARIABLE in the graph).
    concrete = fn.get_concrete_function(signature)
    if options.get("freeze", True):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([convert_variables_to_constants_v2(concrete)])
    else:  # tests only: the graph quality check must see what an unfrozen conversion leaves
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        samples = [x[None] for x in calibration]
        converter.representative_dataset = lambda: ([s] for s in samples)
    Path(path).write_bytes(converter.convert())
    return run


def _tflite_stamp(path, metadata):
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_KEY, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_KEY.encode()] + [entry]
    Path(path).write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))
    return str(path)


def tflite_metadata(path):
    """The crossframe metadata of a ``.tflite`` file (``{}`` where it has none)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    for m in model.metadata or []:
        if m.name in (METADATA_KEY, METADATA_KEY.encode()):
            return json.loads(bytes(model.buffers[m.buffer].data).decode())
    return {}


# -- savedmodel ----------------------------------------------------------------------------------

def _savedmodel(spec, weights, path, batch, quantize, calibration, options):
    import keras

    model, signature, run = _keras_function(spec, weights, batch, options.get("dtype", "float32"))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default",
                         lambda images: {"logits": keras.ops.cast(model(images, training=False), "float32")},
                         input_signature=[signature])
    archive.write_out(str(path), verbose=False)
    return run


def _savedmodel_stamp(path, metadata):
    target = Path(path) / "assets" / "crossframe_export.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
    return str(target)


def savedmodel_is_ours(path):
    return (Path(path) / "assets" / "crossframe_export.json").is_file()


# -- stablehlo -----------------------------------------------------------------------------------

def _stablehlo(spec, weights, path, batch, quantize, calibration, options):
    import jax

    apply, run = build_model("jax", spec, weights, options.get("dtype", "float32"))
    h, w, c = spec.input_shape
    n = batch if batch else jax.export.symbolic_shape("batch")[0]
    exported = jax.export.export(apply, platforms=("cpu", "cuda", "tpu"))(
        jax.ShapeDtypeStruct((n, h, w, c), np.float32))
    Path(path).write_bytes(bytes(exported.serialize()))
    return run


# -- torch-export --------------------------------------------------------------------------------

def _torch_program(spec, weights, batch, dtype="float32"):
    import torch

    model, run = build_model("torch", spec, weights, dtype)
    h, w, c = spec.input_shape
    dynamic = None if batch else ({0: torch.export.Dim("batch", min=1, max=65536)},)
    return torch.export.export(model, (torch.zeros((batch or 2, c, h, w)),), dynamic_shapes=dynamic), run


def _torch_export(spec, weights, path, batch, quantize, calibration, options):
    import torch

    program, run = _torch_program(spec, weights, batch, options.get("dtype", "float32"))
    options["_program"] = program  # kept for the stamp: re-saved with the metadata as an extra file
    torch.export.save(program, str(path))
    return run


def _torch_export_stamp(path, metadata, options):
    import torch

    torch.export.save(options["_program"], str(path),
                      extra_files={"crossframe.json": json.dumps(metadata, sort_keys=True)})
    return str(path)


def torch_export_metadata(path):
    import torch

    extra = {"crossframe.json": ""}
    torch.export.load(str(path), extra_files=extra)
    return json.loads(extra["crossframe.json"] or "{}")


WRITERS = {"onnx": _onnx, "tflite": _tflite, "savedmodel": _savedmodel, "stablehlo": _stablehlo,
           "torch-export": _torch_export}


def stamp(target, path, metadata, options):
    """Record ``metadata`` in the artifact; the path that holds it, or None (the caller's sidecar)."""
    if target == "onnx":
        return _onnx_stamp(path, metadata)
    if target == "tflite":
        return _tflite_stamp(path, metadata)
    if target == "savedmodel":
        return _savedmodel_stamp(path, metadata)
    if target == "torch-export":
        return _torch_export_stamp(path, metadata, options)
    return None


def read_metadata(target, path):
    """The crossframe metadata recorded in (or beside) an exported artifact."""
    path = Path(path)
    if target == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props.get(METADATA_KEY, "{}"))
    if target == "tflite":
        return tflite_metadata(path)
    if target == "savedmodel":
        return json.loads((path / "assets" / "crossframe_export.json").read_text())
    if target == "torch-export":
        return torch_export_metadata(path)
    return json.loads(Path(f"{path}.json").read_text())
