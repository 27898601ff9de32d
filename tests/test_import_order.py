"""No entry point of ours segfaults, whatever order our packages (and the libraries) are imported in.

TensorFlow loaded before triton (pulled in by torchvision, timm or torch.compile with the CUDA
build of torch) crashes the process; tf_impl loads triton first. Each order runs in a fresh
subprocess, since a crash would take pytest down with it.
"""

import itertools
import subprocess
import sys

import pytest

OURS = ["archspec", "torch_impl", "tf_impl", "jax_impl", "weight_transfer", "crossframe"]
THEIRS = ["torchvision", "timm"]


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)


ORDERS = [list(p) for p in itertools.permutations(["tf_impl", "torch_impl", "jax_impl"])]


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
def test_our_packages_in_any_order_then_torchvision_and_timm(order):
    code = "\n".join(f"import {m}" for m in order + THEIRS) + "\nprint('ok')"
    proc = _run(code)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (proc.returncode, proc.stderr[-2000:])


def test_keras_adapter_then_torchvision():
    proc = _run("from weight_transfer import keras_adapter\nimport torchvision, timm\nprint('ok')")
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


def test_tf_impl_build_then_torch_impl_build_and_timm():
    proc = _run("import tf_impl; m = tf_impl.build('dsconv_cnn')\n"
                "import torch_impl; t = torch_impl.build('dsconv_cnn')\nimport timm\nprint('ok')")
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])


def test_cli_entry_points_start():
    for args in (["list"], ["summary", "dsconv_cnn"], ["parity", "dsconv_cnn", "--no-floor"]):
        proc = subprocess.run([sys.executable, "-m", "crossframe", *args], capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, (args, proc.returncode, proc.stderr[-2000:])
