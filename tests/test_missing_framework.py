"""A framework that is not installed: every command that can run without it does, the others say
which framework is missing, how to install it and what would run instead, and exit 2 (issue 12, item 19).

Each case runs ``crossframe`` in a fresh process where the framework's modules are made
unimportable (``sys.modules[name] = None``: ``import`` raises ImportError and ``find_spec`` finds
nothing, as on a machine where ``pip install .[torch,jax]`` left TensorFlow out).
"""

import subprocess
import sys
import textwrap

import pytest

from archspec.frameworks import MODULES

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
HIDDEN = {"torch": MODULES["torch"] + ("torchvision", "timm", "triton"), "tf": MODULES["tf"], "jax": MODULES["jax"]}


def crossframe_without(framework, *argv, cwd=None):
    code = textwrap.dedent(f"""
        import sys
        for name in {HIDDEN[framework]!r}:
            sys.modules[name] = None
        from crossframe.cli import main
        sys.exit(main({list(argv)!r}))
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          cwd=cwd or ROOT, env={**__import__("os").environ, "CROSSFRAME_PROGRESS": "0"})


def _one_clear_line(proc, framework):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("crossframe: error:")]
    assert len(lines) == 1, proc.stderr
    assert f"pip install 'crossframe[{framework}]'" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("framework", ["torch", "tf", "jax"])
def test_commands_that_need_no_framework_run(framework):
    for argv in (["list"], ["summary", "resnet18"], ["--help"], ["convert", "--help"], ["diff", "--help"]):
        proc = crossframe_without(framework, *argv)
        assert proc.returncode == 0, (argv, proc.stderr[-2000:])


@pytest.mark.parametrize("framework", ["torch", "tf", "jax"])
def test_parity_names_the_missing_framework(framework):
    line = _one_clear_line(crossframe_without(framework, "parity", "dsconv_cnn"), framework)
    if framework == "torch":
        assert "PyTorch" in line and "calibrates" in line, line
    else:
        others = ",".join(f for f in ("torch", "tf", "jax") if f != framework)
        assert f"--frameworks {others}" in line, line


def test_parity_runs_with_the_frameworks_that_are_installed():
    proc = crossframe_without("tf", "parity", "dsconv_cnn", "--frameworks", "torch,jax", "--no-floor")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch-jax" in proc.stdout and "1 comparisons within tolerance" in proc.stdout, proc.stdout


def test_train_without_jax_and_diff_without_tf(tmp_path):
    _one_clear_line(crossframe_without("jax", "train", "dsconv_cnn", "--workdir", str(tmp_path / "run")), "jax")
    assert not (tmp_path / "run").exists()
    _one_clear_line(crossframe_without("tf", "diff", "dsconv_cnn", "--a", "tf", "--b", "torch"), "tf")


def test_convert_without_tf_refuses_keras_and_writes_nothing(tmp_path):
    import weight_transfer
    import archspec

    spec = archspec.load("dsconv_cnn")
    src = tmp_path / "w.safetensors"
    weight_transfer.save(weight_transfer.random_weights(spec, seed=0), src, spec=spec)
    dst = tmp_path / "w.keras"
    proc = crossframe_without("tf", "convert", "dsconv_cnn", str(src), str(dst), "--from", "canonical",
                              "--to", "keras", "--verify")
    _one_clear_line(proc, "tf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]
