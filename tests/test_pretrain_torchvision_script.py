"""scripts/pretrain_torchvision.py: trains plain torchvision on a folder, writes a state_dict that plain
torchvision loads, evaluates a file with torchvision's own transforms, and refuses bad input (exit 2)."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("pretrain_torchvision", ROOT / "scripts" / "pretrain_torchvision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trains_saves_a_plain_torchvision_state_dict_and_evaluates_it(tmp_path, capsys):
    import torch
    import torchvision

    from crossframe.commands.data import make_digits

    make_digits(tmp_path / "digits", size=16, seed=0, limit=120, classes="0-2")
    script, out = _script(), tmp_path / "r18.pt"
    args = [str(tmp_path / "digits"), str(out), "--size", "16", "--epochs", "1", "--batch-size", "16"]
    assert script.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["num_classes"] == 3 and summary["classes"] == ["0", "1", "2"] and 0 <= summary["top1"] <= 1
    model = torchvision.models.resnet18(num_classes=3)
    model.load_state_dict(torch.load(out, weights_only=True))  # plain torchvision, strict
    assert script.main([str(tmp_path / "digits"), str(out), "--size", "16", "--evaluate-only"]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip())
    assert evaluated["top1"] == summary["top1"] and evaluated["val_images"] == summary["val_images"]

    before = out.read_bytes()
    (tmp_path / "plain").mkdir()
    cases = {"exists": (args, "exists; pass --overwrite"),
             "no val": ([str(tmp_path / "plain"), str(tmp_path / "x.pt")], "expected train/ and val/"),
             "arch": (args[:2] + ["--arch", "resnet_nine", "--overwrite"], "not a torchvision.models"),
             "epochs": (args[:2] + ["--epochs", "0", "--overwrite"], "--epochs 0"),
             "eval classes": ([str(tmp_path / "digits"), str(out), "--evaluate-only", "--arch", "resnet18"], None)}
    for name, (argv, message) in cases.items():
        if name == "eval classes":  # a 3-class file against a 2-class folder
            make_digits(tmp_path / "two", size=16, seed=0, limit=120, classes="0-1")
            argv = [str(tmp_path / "two"), str(out), "--size", "16", "--evaluate-only"]
            message = "its classifier has 3 classes, FOLDER has 2"
        assert script.main(argv) == 2, name
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (name, err)
    assert out.read_bytes() == before and not (tmp_path / "x.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits", "plain", "r18.pt", "two"]


@pytest.mark.parametrize("content", [b"not a pickle", None])
def test_evaluate_only_refuses_a_file_that_is_no_state_dict(tmp_path, capsys, content):
    import torch

    from crossframe.commands.data import make_digits

    make_digits(tmp_path / "digits", size=16, seed=0, limit=60, classes="0-1")
    bad = tmp_path / "bad.pt"
    if content is None:
        torch.save([1, 2, 3], bad)
    else:
        bad.write_bytes(content)
    assert _script().main([str(tmp_path / "digits"), str(bad), "--size", "16", "--evaluate-only"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
