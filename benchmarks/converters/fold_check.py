"""How each LiteRT file folded the batch norms: its convolution weights against an exact fold.

    .venv-converters/bin/python benchmarks/converters/fold_check.py DIR NAME [CONVERTER ...]

DIR is a ``--keep`` directory of benchmarks/converter_comparison.py (``NAME.pth`` and
``NAME.<converter>.tflite``; default converters: ours litert-torch nobuco onnx2tf). For every conv
followed by a BatchNorm2d (torch module order, which must be the CONV_2D/DEPTHWISE_CONV_2D order of
the file: true of the MobileNets and EfficientNet-B0, not of every file of resnet50, whose downsample
convolutions may come elsewhere) the folded weight ``w * gamma / sqrt(var + eps)`` is computed in
float64; reported per file: the mean signed error of its weights and biases in float32 ulps, positive
meaning larger in magnitude, and the fraction of its weights that are bit-equal to two float32
folds, ``w * (tf.math.rsqrt(var + eps) * gamma)`` (what TensorFlow's constant folding computes from
a Keras BN written as ``rsqrt(var + eps) * gamma``) and ``w * (gamma / sqrt(var + eps))`` (PyTorch's
order). Also the bias of ``tf.math.rsqrt`` and ``torch.rsqrt`` on 200,000 float32 values in [0.01, 4],
and the model run in PyTorch float32 with its BNs folded each of the two ways (same kernels, only the
fold differs): median relative error against float64 on 8 inputs. Stages in separate processes
(PyTorch, TensorFlow, LiteRT: importing TensorFlow next to the other two crashes this environment).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def stage_torch(directory, name, npz):
    import torch
    import torchvision

    model = getattr(torchvision.models, name)(weights=None)
    model.load_state_dict(torch.load(Path(directory) / f"{name}.pth", map_location="cpu"))
    mods, out, k = list(model.modules()), {}, 0
    for i, mod in enumerate(mods):
        if isinstance(mod, torch.nn.Conv2d):
            bn = mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.BatchNorm2d) else None
            if bn is not None:
                out.update({f"w{k}": mod.weight.detach().numpy(), f"g{k}": bn.weight.detach().numpy(),
                            f"b{k}": bn.bias.detach().numpy(), f"m{k}": bn.running_mean.numpy(),
                            f"v{k}": bn.running_var.numpy(), f"e{k}": np.float32(bn.eps),
                            f"dw{k}": np.array(mod.groups > 1)})
            k += 1
    v = np.random.default_rng(0).uniform(0.01, 4, 200_000).astype(np.float32)
    out["rsqrt_in"], out["torch_rsqrt"] = v, torch.rsqrt(torch.from_numpy(v)).numpy()
    np.savez(npz, **out)


def stage_tf(npz):
    import tensorflow as tf

    d = dict(np.load(npz))
    for key in [k for k in d if k.startswith("w")]:
        k = key[1:]
        inv = tf.math.rsqrt(d[f"v{k}"] + d[f"e{k}"]).numpy() * d[f"g{k}"]
        d[f"tf{k}"], d[f"tfb{k}"] = d[f"w{k}"] * inv[:, None, None, None], d[f"b{k}"] - d[f"m{k}"] * inv
    d["tf_rsqrt"] = tf.math.rsqrt(d["rsqrt_in"]).numpy()
    np.savez(npz, **d)


def stage_sim(directory, name, npz):
    """The torchvision model in PyTorch float32 with its BNs folded into the convolutions either way, on 8
    inputs (seed 1): the median relative error against the unfolded model in float64."""
    import torch
    import torchvision

    torch.set_num_threads(1)
    d = dict(np.load(npz))

    def model():
        m = getattr(torchvision.models, name)(weights=None)
        m.load_state_dict(torch.load(Path(directory) / f"{name}.pth", map_location="cpu"))
        return m.eval()

    def folded(style):
        m = model()
        mods = list(m.modules())
        k = 0
        for i, mod in enumerate(mods):
            if not isinstance(mod, torch.nn.Conv2d):
                continue
            if i + 1 < len(mods) and isinstance(mods[i + 1], torch.nn.BatchNorm2d):
                bn = mods[i + 1]
                with torch.no_grad():
                    if style == "tf_rsqrt":
                        w, b = torch.from_numpy(d[f"tf{k}"]), torch.from_numpy(d[f"tfb{k}"])
                    else:
                        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                        w, b = mod.weight * scale[:, None, None, None], bn.bias - bn.running_mean * scale
                    mod.weight.copy_(w)
                    mod.bias = torch.nn.Parameter(b.clone())
                mods[i + 1] = None
                parent_swap(m, bn)
            k += 1
        return m

    def parent_swap(root, bn):
        for parent in root.modules():
            for child_name, child in parent.named_children():
                if child is bn:
                    setattr(parent, child_name, torch.nn.Identity())

    xs = np.random.default_rng(1).standard_normal((8, 224, 224, 3)).astype(np.float32).transpose(0, 3, 1, 2)
    x = torch.from_numpy(np.ascontiguousarray(xs))
    out = {}
    with torch.no_grad():
        r64 = model().double()(x.double()).numpy()
        for style in ("torch", "tf_rsqrt"):
            y = folded(style)(x).numpy().astype(np.float64)
            out[style] = float(np.median([np.abs(y[i] - r64[i]).max() / np.abs(r64[i]).max() for i in range(8)]))
    d["sim"] = np.array(json.dumps(out))
    np.savez(npz, **d)


def ulps(got, exact):
    """Signed error of float32 ``got`` against float64 ``exact`` in ulps, + away from zero."""
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return (got.astype(np.float64) - exact) / spacing * np.sign(exact)


def stage_litert(npz, directory, name, converters):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    d = dict(np.load(npz))
    folds = {}
    for key in [k for k in d if k.startswith("w") and k[1:].isdigit()]:
        k = int(key[1:])
        w, g, b, m, v, e = (d[f"{p}{k}"].astype(np.float64) for p in "wgbmve")
        s = g / np.sqrt(v + e)
        exact_w, exact_b = w * s[:, None, None, None], b - m * s
        to_tfl = (lambda a: a.transpose(1, 2, 3, 0)) if d[f"dw{k}"] else (lambda a: a.transpose(0, 2, 3, 1))
        torch_w = d[f"w{k}"] * (d[f"g{k}"] / np.sqrt(d[f"v{k}"] + d[f"e{k}"]))[:, None, None, None]
        folds[k] = (to_tfl(exact_w), exact_b, to_tfl(d[f"tf{k}"]), to_tfl(torch_w))
    ex = 1 / np.sqrt(d["rsqrt_in"].astype(np.float64))
    report = {"rsqrt_bias_ulp": {n: round(float(ulps(d[n], ex).mean()), 3) for n in ("tf_rsqrt", "torch_rsqrt")},
              "rsqrt_max_ulp": {n: round(float(np.abs(ulps(d[n], ex)).max()), 2) for n in ("tf_rsqrt", "torch_rsqrt")},
              "torch_float32_folded_rel_f64": json.loads(str(d["sim"])), "files": {}}
    for conv in converters:
        it = Interpreter(model_path=str(Path(directory) / f"{name}.{conv}.tflite"),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
        ops = [o for o in it._get_ops_details() if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
        ew, eb, same_tf, same_torch, n = [], [], 0, 0, 0
        for k, (exact_w, exact_b, tf_w, torch_w) in folds.items():
            W, B = it.get_tensor(ops[k]["inputs"][1]), it.get_tensor(ops[k]["inputs"][2])
            if W.shape != exact_w.shape:
                raise SystemExit(f"fold_check: {conv}: its convolutions are not in torch module order "
                                 f"(conv {k}: {W.shape} against {exact_w.shape}); networks like resnet50 whose "
                                 "downsample branch comes later in the module order are not handled")
            ew.append(ulps(W, exact_w).ravel())
            eb.append(ulps(B, exact_b).ravel())
            n += W.size
            same_tf += int((W == tf_w).sum())
            same_torch += int((W == torch_w).sum())
        report["files"][conv] = {"convs": len(folds), "weight_bias_ulp": round(float(np.concatenate(ew).mean()), 3),
                                 "bias_bias_ulp": round(float(np.concatenate(eb).mean()), 3),
                                 "bit_equal_tf_rsqrt_fold": round(same_tf / n, 4),
                                 "bit_equal_torch_fold": round(same_torch / n, 4)}
    print(json.dumps(report, indent=1))


def main(argv):
    if argv[:1] == ["_torch"]:
        return stage_torch(argv[1], argv[2], argv[3])
    if argv[:1] == ["_tf"]:
        return stage_tf(argv[1])
    if argv[:1] == ["_sim"]:
        return stage_sim(argv[1], argv[2], argv[3])
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    directory, name = argv[0], argv[1]
    converters = argv[2:] or ["ours", "litert-torch", "nobuco", "onnx2tf"]
    npz = str(Path(directory) / f"{name}.fold_check.npz")
    for stage in (["_torch", directory, name, npz], ["_tf", npz], ["_sim", directory, name, npz]):
        subprocess.run([sys.executable, __file__, *stage], check=True, stderr=subprocess.DEVNULL)
    stage_litert(npz, directory, name, converters)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) or 0)
