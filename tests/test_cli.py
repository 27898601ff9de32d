"""The crossframe command line: `list`, `summary`, errors as one line, lazy imports."""

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import archspec
from crossframe import cli, commands

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("torch", "tensorflow", "jax", "flax", "keras")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("CROSSFRAME_TRACEBACK", None)
    return env


def crossframe(*args):
    return subprocess.run([sys.executable, "-m", "crossframe", *map(str, args)], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=300)


def _assert_one_line_error(out):
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("crossframe: error: ")
    return lines[0]


# -- summary ---------------------------------------------------------------------------------

def test_summary_json():
    out = crossframe("summary", "efficientnet_b0", "--json")
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    spec = archspec.load("efficientnet_b0")
    assert s["name"] == "efficientnet_b0"
    assert (s["total_params"], s["total_macs"]) == (spec.params, spec.macs)
    assert s["input_shape"] == [224, 224, 3] and s["output_shape"] == [1000]
    assert sum(r["params"] for r in s["layers"] if r["depth"] == 0) == spec.params
    assert any(r["path"] == "stages.0.blocks.0.dw" and r["depth"] == 1 for r in s["layers"])


def test_summary_table_and_input_size():
    out = crossframe("summary", "efficientnet_b2", "--input-size", 288, "--max-depth", 0)
    assert out.returncode == 0, out.stderr
    spec = archspec.load("efficientnet_b2", input_size=288)
    assert f"{spec.params:,}" in out.stdout and f"{spec.macs:,}" in out.stdout
    assert "input 288x288x3" in out.stdout
    assert "stages.0.blocks.0.dw" not in out.stdout


def test_summary_of_a_spec_file(tmp_path):
    family = json.loads((archspec.resolve.SPEC_DIR / "dsconv_cnn.json").read_text())
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(family))
    out = crossframe("summary", path, "--variant", "dsconv_cnn_selu", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["total_params"] == archspec.load("dsconv_cnn").params


def test_summary_bad_name_is_one_line():
    line = _assert_one_line_error(crossframe("summary", "efficientnet_b9"))
    assert "efficientnet_b9" in line and "$.variants" in line


def test_summary_bad_input_size_is_one_line():
    line = _assert_one_line_error(crossframe("summary", "resnet18", "--input-size", 0))
    assert "$.input.size" in line


def test_summary_bad_spec_file_is_one_line(tmp_path):
    family = json.loads((archspec.resolve.SPEC_DIR / "dsconv_cnn.json").read_text())
    family["base"]["layers"][0]["stride"] = 0
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(family))
    line = _assert_one_line_error(crossframe("summary", path, "--variant", "dsconv_cnn"))
    assert str(path) in line and "$.layers[0].stride" in line


def test_usage_errors_exit_2():
    assert crossframe("summary").returncode == 2  # argparse: NAME missing
    assert crossframe("no-such-command").returncode == 2
    out = crossframe("summary", "resnet18", "--variant", "x")
    _assert_one_line_error(out)


# -- list ------------------------------------------------------------------------------------

def test_list_all_variants():
    out = crossframe("list")
    assert out.returncode == 0, out.stderr
    first_words = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert first_words == archspec.list_variants()
    line = next(line for line in out.stdout.splitlines() if line.startswith("efficientnet_b0 "))
    assert "efficientnet" in line and "5,288,548" in line and "224x224x3" in line


def test_list_json():
    out = crossframe("list", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert [v["name"] for v in data["variants"]] == archspec.list_variants()
    v = {v["name"]: v for v in data["variants"]}["mobilenet_v1_cifar"]
    assert (v["family"], v["params"], v["input_shape"]) == ("mobilenet_v1", archspec.load("mobilenet_v1_cifar").params,
                                                            [32, 32, 3])


def test_list_family():
    out = crossframe("list", "--family", "resnet", "--json")
    variants = json.loads(out.stdout)["variants"]
    assert variants and all(v["family"] == "resnet" for v in variants)
    assert "resnet50" in [v["name"] for v in variants]
    _assert_one_line_error(crossframe("list", "--family", "vgg"))


def test_help_lists_every_command_without_importing_it():
    out = crossframe("--help")
    assert out.returncode == 0
    for name in commands.names():
        assert name in out.stdout


# -- the dispatcher: lazy imports, generic error handling ---------------------------------------

@pytest.mark.parametrize("statement", [
    "import crossframe",
    "import crossframe.cli",
    "from crossframe.cli import main; main(['list']); main(['summary', 'mobilenet_v3_small_100'])",
    "from crossframe.cli import build_parser; build_parser()",
])
def test_no_framework_imported(statement):
    code = (f"{statement}\nimport sys\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_only_the_selected_command_is_imported():
    code = ("import sys\nfrom crossframe.cli import main\nmain(['list'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('crossframe.commands.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "['crossframe.commands.list']"


def test_every_registered_command_has_help():
    for name in commands.names():
        assert commands.help_of(name), f"crossframe/commands/{name}.py: HELP must be a string literal"


@pytest.fixture
def fake_command(monkeypatch):
    """Register `crossframe _fake`, whose run() raises what the test puts in `module.error`."""
    module = types.ModuleType("crossframe.commands._fake")
    module.NAME, module.HELP, module.error = "_fake", "a test command", None
    module.add_arguments = lambda parser: None

    def run(args):
        raise module.error

    module.run = run
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(commands, "COMMANDS", [*commands.COMMANDS, "_fake"])
    return module


def test_weight_error_is_one_line(fake_command, capsys):
    from weight_transfer import WeightError

    fake_command.error = WeightError("model.safetensors", missing=["stem.conv.kernel"],
                                     mismatched=[("classifier.bias", (10,), (1000,))])
    assert cli.main(["_fake"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crossframe: error: model.safetensors")
    assert "1 missing" in err


def test_spec_error_and_command_error_are_one_line(fake_command, capsys):
    fake_command.error = archspec.SpecError("f.json", "$.layers[0]", 1, "an object")
    assert cli.main(["_fake"]) == 2
    fake_command.error = commands.CommandError("--frameworks: expected two or more\nof torch, tf, jax")
    assert cli.main(["_fake"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == ["crossframe: error: f.json: $.layers[0]: found 1, expected an object",
                   "crossframe: error: --frameworks: expected two or more; of torch, tf, jax"]


def test_only_the_project_error_class_is_bad_input(fake_command, capsys):
    """What a user can cause is ``CrossframeError`` (any subclass); a plain ValueError, even one
    raised inside our packages, is a bug and keeps its traceback (the CLI no longer guesses from
    traceback file names)."""
    from archspec import padding
    from archspec.errors import ConfigError, CrossframeError

    fake_command.error = ConfigError("--batch 0: expected a positive integer")
    assert cli.main(["_fake"]) == 2
    assert capsys.readouterr().err == "crossframe: error: --batch 0: expected a positive integer\n"
    plain = _raised(lambda: padding.explicit_padding("same", 8, 3, 1))
    assert type(plain) is ValueError and not isinstance(plain, CrossframeError) and not cli._ours(plain)
    fake_command.error = plain
    with pytest.raises(ValueError, match="padding mode"):
        cli.main(["_fake"])


def test_sigterm_exits_143_and_ctrl_c_130(fake_command, capsys):
    from archspec.errors import Interrupted

    fake_command.error = Interrupted(15)
    assert cli.main(["_fake"]) == 143
    fake_command.error = KeyboardInterrupt()
    assert cli.main(["_fake"]) == 130
    assert capsys.readouterr().err.splitlines() == ["crossframe: interrupted (SIGTERM)", "crossframe: interrupted (SIGINT)"]


def test_library_errors_keep_their_traceback(fake_command):
    fake_command.error = _raised(lambda: json.loads("{"))  # a ValueError raised inside a library: a bug
    with pytest.raises(json.JSONDecodeError):
        cli.main(["_fake"])
    fake_command.error = KeyError("x")
    with pytest.raises(KeyError):
        cli.main(["_fake"])


def test_traceback_flag(fake_command):
    fake_command.error = archspec.SpecError("f.json", "$", 1, "an object")
    with pytest.raises(archspec.SpecError):
        cli.main(["--traceback", "_fake"])


def test_missing_file_is_one_line(fake_command, capsys):
    fake_command.error = _raised(lambda: open("/nonexistent/weights.safetensors"))
    assert cli.main(["_fake"]) == 2
    assert "/nonexistent/weights.safetensors" in capsys.readouterr().err


def _raised(fn):
    try:
        fn()
    except BaseException as err:  # noqa: BLE001
        return err
    raise AssertionError("expected an exception")
