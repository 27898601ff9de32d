"""Deployment export: one network, from any checkpoint format, to ONNX, LiteRT (TFLite), SavedModel,
StableHLO or a torch.export program, each artifact verified by its own runtime against the source.

    from crossframe import export_model
    report = export_model("mobilenet_v2_100", "mnv2.pth", "torchvision", "tflite", "mnv2.tflite")

Each target comes from the renderer whose layout its runtime wants (DESIGN.md, "Deploy from the
native rendering"): ONNX and ``.pt2`` from ``torch_impl`` (NCHW input), LiteRT and SavedModel from
``tf_impl`` (NHWC), StableHLO from ``jax_impl`` (NHWC). The batch dimension is dynamic unless
``batch`` fixes it. Verification (on by default) runs the staged artifact in a fresh process
(``python -m crossframe.deploy.verify``) and compares its logits with the source framework's model
on seeded random inputs; the artifact is renamed into place only when the error is inside the band,
so a failed export leaves no file. See docs/EXPORT.md. Importing this package imports no framework.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archspec.errors import ConfigError, CrossframeError

from .targets import TARGETS

QUANTIZATIONS = ("none", "float16", "dynamic-int8", "int8")
DTYPES = ("float32", "bfloat16", "float16")  # the compute dtype (--dtype): savedmodel, stablehlo, torch-export
TOLERANCE = 1e-5        # float32 targets: rel <= max(TOLERANCE, FLOOR_FACTOR x float32-vs-float64 floor)
# Quantized targets: (rel band, least top-1 agreement with the float32 source on TOP1_INPUTS inputs).
# Measured on calibrated random weights (docs/EXPORT.md has the numbers and the command).
QUANTIZED_BANDS = {"float16": (1e-2, 0.9), "dynamic-int8": (0.1, 0.75), "int8": (0.15, 0.75)}
# A network computing in bfloat16/float16 (--dtype): the parity bands of crossframe.parity.metrics for
# that dtype (measured in docs/PARITY.md) and the least top-1 agreement with the float32 source.
LOW_PRECISION_AGREEMENT = {"bfloat16": 0.75, "float16": 0.9}
SEED = 0
VERIFY_BATCHES = (3, 1)  # two batch sizes, neither the traced example's (2): the batch really is dynamic
TOP1_INPUTS = 16
CALIBRATION = 32

__all__ = ["export_model", "TARGETS", "QUANTIZATIONS", "DTYPES", "ExportError", "VerificationError", "read_metadata"]


class ExportError(ConfigError):
    """Bad export input: an unknown target, a quantization the target lacks, a batch size..."""


class VerificationError(CrossframeError):
    """The exported artifact does not reproduce its source within the band; nothing was written."""


def read_metadata(target, path):
    """The provenance recorded in (or beside) an exported artifact: rel error, band, source SHA-256..."""
    from .targets import read_metadata as read

    return read(target, path)


def _check_args(target, quantize, batch, calibration, calibration_data=None, dtype="float32"):
    if target not in TARGETS:
        raise ExportError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    if dtype not in DTYPES:
        raise ExportError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    if dtype not in TARGETS[target].dtypes:
        hint = " (for float16 weights: --quantize float16)" if "float16" in TARGETS[target].quantize else ""
        raise ExportError(f"target {target} computes in {', '.join(TARGETS[target].dtypes)} only, not {dtype}; "
                          f"--dtype {dtype} is offered by "
                          f"{', '.join(n for n, t in TARGETS.items() if dtype in t.dtypes)}{hint}")
    if quantize not in QUANTIZATIONS:
        raise ExportError(f"unknown quantization {quantize!r}; expected one of {', '.join(QUANTIZATIONS)}")
    if quantize not in TARGETS[target].quantize:
        raise ExportError(f"target {target} offers no {quantize} quantization; it offers "
                          f"{', '.join(TARGETS[target].quantize)}")
    if batch in (None, "dynamic"):
        batch = None
    else:
        try:
            batch = int(batch)
        except (TypeError, ValueError):
            raise ExportError(f"batch {batch!r}: expected a positive integer or 'dynamic'") from None
        if batch < 1:
            raise ExportError(f"batch {batch}: expected a positive integer or 'dynamic'")
    if not isinstance(calibration, int) or calibration < 1:
        raise ExportError(f"calibration {calibration!r}: expected a positive number of inputs")
    if calibration_data is not None and quantize != "int8":
        raise ExportError(f"calibration data {calibration_data}: only --quantize int8 is calibrated "
                          f"(this export is {quantize})")
    return batch


def _images(spec, folder, calibration, seed):
    """``(calibration images, verification images, description)`` from the ImageFolder ``folder``
    (its ``train`` split when it has one), each (N, H, W, C) float32 as the network expects it
    (the eval transform: resize, center crop, ImageNet normalisation or raw 0..255 values for a spec
    that preprocesses in the model). Files are drawn in a seeded order: the first ``calibration`` go
    to calibration, the next ``TOP1_INPUTS`` to the top-1 check (held out while the folder has
    enough; else the check reuses images, and the description says so)."""
    import numpy as np

    from jax_impl.train import images  # Pillow and numpy only (jax_impl's package imports Flax)

    if not Path(folder).is_dir():
        raise ExportError(f"calibration data {folder}: not a directory (expected an ImageFolder: "
                          "DIR/<class>/<image>.png|jpg)")
    splits = images.splits(str(folder))
    root = splits["train"] if splits else str(folder)
    files = images.list_folder(root)[0]
    order = np.random.default_rng([seed, 11]).permutation(len(files))
    calib = order[:calibration]
    held = order[calibration:calibration + TOP1_INPUTS]
    reused = len(held) < TOP1_INPUTS
    if reused:
        held = order[:TOP1_INPUTS]
    mean, std = images.normalization(spec)

    def load(idx):
        return np.stack([images.eval_transform(files[i], spec.input_shape, mean, std) for i in idx])

    what = (f"{len(calib)} images of {root} ({len(files)} files); top-1 check on "
            + (f"{len(held)} of the same images (the folder has too few to hold any out)" if reused
               else f"{len(held)} held-out images"))
    return load(calib), load(held), what


def _claim(target, out, overwrite):
    from weight_transfer import outputs
    from weight_transfer.formats import _common as common

    from .targets import savedmodel_is_ours

    t = TARGETS[target]
    kind = outputs.DIRECTORY if t.directory else outputs.FILE
    path = outputs.claim(out, overwrite=overwrite, kind=kind, ours=savedmodel_is_ours if t.directory else None,
                         what="OUT", flag="--overwrite (overwrite=True)")
    if t.sidecar:
        outputs.claim(common.sidecar(path), overwrite=overwrite, what="OUT's metadata sidecar",
                      flag="--overwrite (overwrite=True)")
    return path


def _spec(arch, input_size, overrides=None):
    import archspec
    from archspec import ir

    if isinstance(arch, ir.Spec):
        if overrides:
            raise ExportError("spec overrides need a spec name, not a resolved spec")
        return arch
    kwargs = {**({"input_size": input_size} if input_size else {}), **(overrides or {})}
    return archspec.load(arch, **kwargs)


def _rel(ref, out):
    """The project's one metric (``weight_transfer.metrics``): NaN or Inf in either side is ``inf``."""
    import numpy as np

    from weight_transfer.metrics import rel_error

    if np.shape(ref) != np.shape(out):
        raise VerificationError(f"the artifact returned logits of shape {np.shape(out)}, expected {np.shape(ref)}")
    return rel_error(out, ref)


def _run_artifact(target, path, xs, timeout=900):
    """Logits and op counts of the artifact at ``path``, run by its own runtime in a fresh process."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="crossframe-verify-") as tmp:
        inputs, result = Path(tmp, "inputs.npz"), Path(tmp, "result.npz")
        np.savez(inputs, **{f"x{i}": x for i, x in enumerate(xs)})
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        proc = subprocess.run([sys.executable, "-m", "crossframe.deploy.verify", target, str(path), str(inputs),
                               str(result)], capture_output=True, text=True, env=env, timeout=timeout)
        if proc.returncode != 0 or not result.exists():
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])[-400:]
            raise VerificationError(f"the {target} artifact did not run in its runtime (exit {proc.returncode}): "
                                    f"{tail}; nothing written")
        with np.load(result) as data:
            ys = [data[f"y{i}"] for i in range(len(xs))]
            ops = json.loads(str(data["ops"]))
    return ys, ops


_FLOORS = {}


def _floor(spec, weights, x):
    """PyTorch float32 against float64 on ``x``: the network's own rounding floor (NaN without torch).

    Remembered per (spec, weights, input) in the process: exporting one network to several targets
    measures it once."""
    from archspec.frameworks import installed

    if not installed("torch"):
        return float("nan")
    import hashlib

    import numpy as np
    import torch

    digest = hashlib.sha256(spec.spec_hash.encode())
    for name in sorted(weights):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    digest.update(x.tobytes())
    key = digest.hexdigest()
    if key in _FLOORS:
        return _FLOORS[key]

    from .targets import build_model

    model, run32 = build_model("torch", spec, weights)
    model64 = model.double()
    with torch.no_grad():
        y64 = model64(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).double()).numpy()
    model.float()
    _FLOORS[key] = _rel(y64, run32(x))
    return _FLOORS[key]


def _to_layout(layout, x):
    import numpy as np

    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "NCHW" else np.ascontiguousarray(x)


def export_model(arch, weights=None, fmt=None, target="onnx", out=None, *, batch="dynamic", quantize="none",
                 calibration=CALIBRATION, calibration_data=None, verify=True, overwrite=False, input_size=None,
                 overrides=None, seed=SEED, onnx_exporter="dynamo", dtype="float32", _export_overrides=None,
                 _target_options=None):
    """Export network ``arch`` with the checkpoint ``weights`` (format ``fmt``) to ``target`` at ``out``.

    ``arch``: a variant name, a registered library name or an ``archspec.ir.Spec``; ``weights`` and
    ``fmt`` as ``crossframe convert`` reads them (``weights=None``: seeded random weights with
    BN statistics calibrated on a random batch, ``crossframe.parity.calibrate``). ``input_size``,
    ``overrides``: resolve ``arch`` with these archspec overrides (``{"depth": 0.5}``). ``target``: one
    of :data:`TARGETS`. ``batch``: ``"dynamic"`` or a fixed size. ``quantize``: ``none``,
    ``float16``, ``dynamic-int8`` or ``int8`` where the target offers it; ``dtype``: ``float32``, or a
    network that computes in ``bfloat16`` or ``float16`` with float32 input and output (savedmodel,
    stablehlo, torch-export; verified like a quantization: the band of its dtype and top-1 agreement) (``calibration`` inputs
    for int8: seeded random inputs, or up to that many images of the ImageFolder ``calibration_data``,
    whose other images then feed the top-1 check). ``verify`` (default): run the artifact in a fresh process with its own runtime and
    refuse it (no file) outside the band. ``_export_overrides``: tests only, archspec overrides for
    the exported model alone (a planted fault the verification must catch); ``_target_options``:
    tests only, writer options (``{"freeze": False}``: a LiteRT graph with its variables unfrozen).

    Returns a report: ``rel``, ``band``, ``floor``, ``top1_agreement``, ``ops``, ``bytes``, paths...
    """
    started = time.perf_counter()
    batch = _check_args(target, quantize, batch, calibration, calibration_data, dtype)
    low_precision = quantize != "none" or dtype != "float32"
    if out is None:
        raise ExportError("no output path given")
    if weights is not None and fmt is None:
        raise ExportError("the weights' format is needed (fmt=, --format)")
    t = TARGETS[target]
    if target == "torch-export" and not str(out).endswith(".pt2"):
        raise ExportError(f"OUT {out}: a torch.export program must be named *.pt2 (torch.export.save refuses "
                          "other names)")
    out = _claim(target, out, overwrite)
    spec = _spec(arch, input_size, overrides)
    export_spec = _spec(arch, input_size, {**(overrides or {}), **_export_overrides}) if _export_overrides else spec

    # the images first: a bad folder is one line before any framework loads
    images = None if calibration_data is None else _images(spec, calibration_data, calibration, seed)

    from archspec.frameworks import import_in_order, installed

    needed = {t.framework} | ({"torch"} if installed("torch") and verify and not low_precision else set())
    import_in_order(needed)
    import numpy as np

    from weight_transfer.formats import _common as common

    if weights is None:
        from crossframe.parity.calibrate import calibrated_weights

        canonical = calibrated_weights(spec, seed=seed)
        source = {"source": f"random weights, seed {seed}, BN calibrated", "source_sha256": None}
    else:
        from weight_transfer.convert import read_canonical

        canonical = read_canonical(weights, fmt, spec)
        source = {"source": str(Path(weights).name), "source_format": fmt,
                  "source_sha256": common.sha256_path(weights)}
    if export_spec is not spec:
        from weight_transfer.canonical import check

        check(export_spec, canonical, where="weights for the exported model")

    h, w, c = spec.input_shape
    rng = np.random.default_rng(seed)
    if not low_precision:
        sizes = (batch,) if batch else VERIFY_BATCHES
    else:
        per = batch or TOP1_INPUTS
        sizes = (per,) * math.ceil(TOP1_INPUTS / per)
    xs = [rng.standard_normal((n, h, w, c)).astype(np.float32) for n in sizes]
    calib = np.random.default_rng(seed + 7).standard_normal((calibration, h, w, c)).astype(np.float32)
    calibrated_on = f"{calibration} seeded random inputs" if quantize == "int8" else None
    if calibration_data is not None:
        calib, held, calibrated_on = images
        per = batch or len(held)  # a fixed batch: whole batches, the last one filled from the start again
        cycled = held[np.arange(math.ceil(len(held) / per) * per) % len(held)]
        xs = [cycled[i:i + per] for i in range(0, len(cycled), per)]

    timings = {}
    with common.Staged(out, sidecar=t.sidecar) as staged:
        tick = time.perf_counter()
        if t.directory:
            staged.path.mkdir()
        options = {"onnx_exporter": onnx_exporter, "dtype": dtype, **(_target_options or {})}
        from .targets import WRITERS

        written_spec, written_weights, folded = export_spec, canonical, 0
        if t.folds_bn:
            from .fold import fold_batchnorm, foldable

            folded = sum(map(foldable, export_spec.walk()))
            written_spec, written_weights = fold_batchnorm(export_spec, canonical)
        exported_run = WRITERS[target](written_spec, written_weights, staged.path, batch, quantize, calib, options)
        timings["export"] = time.perf_counter() - tick
        report = {"target": target, "out": str(out), "arch": spec.name, "spec_hash": spec.spec_hash,
                  "input_layout": t.layout, "framework": t.framework,
                  "input_shape": [batch or "batch", *((c, h, w) if t.layout == "NCHW" else (h, w, c))],
                  "batch": batch or "dynamic", "quantize": quantize, "dtype": dtype, "verified": False, "rel": None,
                  "band": None, "floor": None, "top1_agreement": None, "ops": None, "calibration": calibrated_on,
                  "folded_batchnorms": folded,
                  **source}
        if target == "onnx":
            report["onnx_exporter"] = "torch.onnx.export(dynamo=True)" if onnx_exporter == "dynamo" \
                else "torch.onnx.export(dynamo=False) (TorchScript)"
        if verify:
            tick = time.perf_counter()
            from .targets import build_model

            # the source: the model the writer exported, unless its BNs were folded, it computes in a
            # lower precision or a test planted a fault in it; then the network as given, in float32
            source_run = exported_run if written_spec is spec and dtype == "float32" \
                else build_model(t.framework, spec, canonical)[1]
            refs = [source_run(x) for x in xs]
            ys, ops = _run_artifact(target, staged.path, [_to_layout(t.layout, x) for x in xs])
            rel = max(_rel(r, y) for r, y in zip(refs, ys))
            if not low_precision:
                from crossframe.parity.harness import band as parity_band

                floor = _floor(spec, canonical, xs[0]) if installed("torch") else float("nan")
                band, agreement, need = parity_band(TOLERANCE, floor), None, None
            else:
                floor = None
                if dtype != "float32":
                    from crossframe.parity.metrics import tolerance

                    band, need = tolerance(dtype, "strict", "eval"), LOW_PRECISION_AGREEMENT[dtype]
                else:
                    band, need = QUANTIZED_BANDS[quantize]
                agreement = float(np.mean(np.concatenate([r.argmax(-1) == y.argmax(-1) for r, y in zip(refs, ys)])))
            timings["verify"] = time.perf_counter() - tick
            report.update(rel=rel, band=band, floor=floor, top1_agreement=agreement, ops=ops)
            failed = not rel <= band or (need is not None and agreement < need)
            if failed:
                what = f"rel {rel:.2e} > band {band:.1e}" if not rel <= band else \
                    f"top-1 agreement {agreement:.2f} < {need:.2f}"
                raise VerificationError(
                    f"{target} export of {spec.name} failed verification: {what} against the {t.framework} "
                    f"source ({quantize if dtype == 'float32' else dtype}); nothing written to {out}")
            report["verified"] = True
        metadata = {"crossframe_version": common.crossframe_version(), "crossframe_export": target,
                    **{k: report[k] for k in ("arch", "spec_hash", "input_layout", "input_shape", "batch",
                                              "quantize", "dtype", "verified", "rel", "band", "floor", "top1_agreement",
                                              "calibration",
                                              "source", "source_sha256")},
                    **({"source_format": fmt} if fmt else {})}
        from .targets import stamp

        where = stamp(target, staged.path, metadata, options)
        if where is None:
            Path(staged.sidecar).write_text(json.dumps(metadata, indent=1, sort_keys=True) + "\n")
        written = staged.commit()
    report["written"] = [str(p) for p in written]
    report["metadata_in"] = "sidecar " + str(common.sidecar(out)) if where is None else \
        {"onnx": "ONNX metadata_props['crossframe']", "tflite": "TFLite metadata buffer 'crossframe'",
         "savedmodel": "assets/crossframe_export.json",
         "torch-export": "extra file crossframe.json (torch.export.load(extra_files=...))"}[target]
    report["bytes"] = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file()) if t.directory \
        else Path(out).stat().st_size
    timings["total"] = time.perf_counter() - started
    report["seconds"] = timings
    return report
