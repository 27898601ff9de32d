"""Output paths of `crossframe convert` / write_canonical: what exists is replaced only with --overwrite,
a directory we did not write never; staged writes leave no temporary (errors, SIGTERM, a killed writer)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import archspec
import weight_transfer
from crossframe import cli
from weight_transfer import outputs
from weight_transfer.convert import convert, write_canonical
from weight_transfer.formats import _common as common

ROOT = Path(__file__).resolve().parents[1]
ARCH, SIZE = "mobilenet_v2_035", 32


@pytest.fixture(scope="module")
def spec():
    return archspec.load(ARCH, input_size=SIZE)


@pytest.fixture(scope="module")
def src(spec, tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "w.safetensors"
    write_canonical(weight_transfer.random_weights(spec, seed=5), path, "canonical", spec)
    return path


def tree(directory):
    """``{relative path: bytes}`` of everything under ``directory`` (directories as None)."""
    directory = Path(directory)
    return {p.relative_to(directory).as_posix(): (None if p.is_dir() else p.read_bytes())
            for p in sorted(directory.rglob("*"))}


def temporaries(directory):
    return sorted(p.name for p in Path(directory).iterdir() if p.name.startswith(common.TMP_PREFIX))


def cli_convert(capsys, src, dst, to, *extra):
    capsys.readouterr()
    status = cli.main(["convert", ARCH, str(src), str(dst), "--from", "canonical", "--to", to,
                       "--input-size", str(SIZE), *map(str, extra)])
    return status, capsys.readouterr().err


def one_line(status, err):
    assert status == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("crossframe: error: ") and "Traceback" not in err, err
    return err


# -- item 1: claim before any work ----------------------------------------------------------------

@pytest.mark.parametrize("overwrite", [False, True])
def test_a_user_directory_given_as_flax_dst_is_never_modified(src, tmp_path, capsys, overwrite):
    user = tmp_path / "photos"
    (user / "2019").mkdir(parents=True)
    (user / "2019" / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
    (user / "notes.txt").write_text("keep me")
    before = tree(user)
    status, err = cli_convert(capsys, src, user, "flax", *(["--overwrite"] if overwrite else []))
    assert "non-empty directory that crossframe did not write" in one_line(status, err)
    assert tree(user) == before
    assert temporaries(tmp_path) == []


def test_an_existing_file_is_replaced_only_with_overwrite(spec, src, tmp_path, capsys):
    dst = tmp_path / "w.pt"
    dst.write_bytes(b"someone's file")
    status, err = cli_convert(capsys, src, dst, "torch")
    assert "exists; pass --overwrite" in one_line(status, err)
    assert dst.read_bytes() == b"someone's file" and not common.sidecar(dst).exists()
    with pytest.raises(outputs.OutputError, match="overwrite"):
        convert(spec, src, dst, "canonical", "torch")
    assert cli_convert(capsys, src, dst, "torch", "--overwrite")[0] == 0
    assert weight_transfer.read_canonical(dst, "torch", spec).keys() == set(t.name for t in spec.tensors())


def test_an_existing_sidecar_is_replaced_only_with_overwrite(spec, src, tmp_path):
    dst = tmp_path / "w.msgpack"
    common.sidecar(dst).write_text('{"mine": 1}')
    with pytest.raises(outputs.OutputError, match="sidecar"):
        convert(spec, src, dst, "canonical", "flax")
    assert not dst.exists() and common.sidecar(dst).read_text() == '{"mine": 1}'
    convert(spec, src, dst, "canonical", "flax", overwrite=True)
    assert "spec_name" in common.read_json(common.sidecar(dst))


def test_a_checkpoint_directory_is_replaced_only_with_overwrite(spec, src, tmp_path, capsys):
    dst = tmp_path / "ckpt"
    convert(spec, src, dst, "canonical", "flax")
    first = tree(dst)
    status, err = cli_convert(capsys, src, dst, "flax")
    assert "holds a checkpoint; pass --overwrite" in one_line(status, err)
    assert tree(dst) == first
    assert cli_convert(capsys, src, dst, "flax", "--overwrite")[0] == 0
    assert (dst / "crossframe_metadata.json").is_file() and temporaries(tmp_path) == []


def test_an_orbax_checkpoint_of_someone_else_counts_as_a_checkpoint(spec, src, tmp_path):
    import orbax.checkpoint as ocp

    dst = tmp_path / "theirs"
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(dst.resolve(), {"x": np.ones(3, np.float32)})
        ckptr.wait_until_finished()
    assert not (dst / "crossframe_metadata.json").exists()
    with pytest.raises(outputs.OutputError, match="holds a checkpoint"):
        write_canonical(weight_transfer.random_weights(spec), dst, "flax", spec)
    write_canonical(weight_transfer.random_weights(spec), dst, "flax", spec, overwrite=True)
    assert (dst / "crossframe_metadata.json").is_file()


def test_an_empty_directory_is_written_into(spec, src, tmp_path):
    (tmp_path / "empty").mkdir()
    convert(spec, src, tmp_path / "empty", "canonical", "flax")
    assert (tmp_path / "empty" / "crossframe_metadata.json").is_file()


def test_a_symlink_destination_is_refused(spec, src, tmp_path):
    target = tmp_path / "target.pt"
    target.write_bytes(b"x")
    (tmp_path / "link.pt").symlink_to(target)
    with pytest.raises(outputs.OutputError, match="symbolic link"):
        convert(spec, src, tmp_path / "link.pt", "canonical", "torch", overwrite=True)
    assert target.read_bytes() == b"x"


# -- item 4: temporaries and the commit ----------------------------------------------------------

def test_temporary_names_carry_the_pid_and_keep_the_suffixes(tmp_path):
    name = common.temp_name(tmp_path / "w.weights.h5").name
    assert name.startswith(f"{common.TMP_PREFIX}{os.getpid()}-") and name.endswith("-w.weights.h5")
    assert common._owned_re(common.TMP_PREFIX).match(name)


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_dead_writers_are_swept_and_nothing_else(spec, src, tmp_path):
    dead, tag = _dead_pid(), common._HOST_TAG
    stale_file = tmp_path / f"{common.TMP_PREFIX}{dead}-{tag}0badc0de-w.pt"
    stale_dir = tmp_path / f"{common.TMP_PREFIX}{dead}-{tag}0badc0de-ckpt"
    live = tmp_path / f"{common.TMP_PREFIX}{os.getppid()}-{tag}12345678-w.pt"
    other_host = tmp_path / f"{common.TMP_PREFIX}{dead}-{'0000' if tag != '0000' else '1111'}12345678-w.pt"
    users = [tmp_path / ".crossframe-tmp-notes.txt", tmp_path / f".crossframe-tmp-{dead}-x-w.pt",
             tmp_path / "w.pt.tmp"]
    stale_file.write_bytes(b"half")
    (stale_dir / "d").mkdir(parents=True)
    for p in (live, other_host, *users):
        p.write_bytes(b"keep")
    convert(spec, src, tmp_path / "w.pt", "canonical", "torch")
    assert not stale_file.exists() and not stale_dir.exists()
    assert all(p.read_bytes() == b"keep" for p in (live, other_host, *users))


def test_commit_renames_the_sidecar_first_then_dst(tmp_path, monkeypatch):
    order = []
    real = os.replace
    monkeypatch.setattr(common.os, "replace", lambda a, b: (order.append(Path(b).name), real(a, b)))
    with common.Staged(tmp_path / "w.pt", sidecar=True) as staged:
        staged.path.write_bytes(b"data")
        staged.sidecar.write_text("{}")
        staged.commit()
    assert order == ["w.pt.json", "w.pt"]


def test_a_signal_during_the_renames_waits_until_both_are_done(tmp_path, monkeypatch):
    from archspec.errors import Interrupted

    def raise_interrupted(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    real = os.replace

    renames = []

    def replace_then_signal(a, b):
        real(a, b)
        renames.append(b)
        if len(renames) == 1:  # between the first rename and the second
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler would run here, between bytecodes
    monkeypatch.setattr(common.os, "replace", replace_then_signal)
    try:
        with pytest.raises(Interrupted):
            with common.Staged(tmp_path / "w.pt", sidecar=True) as staged:
                staged.path.write_bytes(b"data")
                staged.sidecar.write_text("{}")
                staged.commit()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert (tmp_path / "w.pt").read_bytes() == b"data" and (tmp_path / "w.pt.json").read_text() == "{}"
    assert temporaries(tmp_path) == []


def test_a_directory_replaces_the_old_one_in_one_step(tmp_path):
    dst, new = tmp_path / "ckpt", tmp_path / "new"
    (dst / "old").mkdir(parents=True)
    (new / "fresh").mkdir(parents=True)
    common.replace(new, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"] and (dst / "fresh").is_dir()


@pytest.mark.parametrize("to,name", [("torch", "w.pt"), ("flax", "ckpt")])
def test_sigterm_removes_the_temporaries_and_exits_143(src, tmp_path, to, name):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{common.HOLD_ENV: "60"})
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "crossframe", "convert", ARCH, str(src), str(out / name),
                             "--from", "canonical", "--to", to, "--input-size", str(SIZE)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240

    def staged():  # written completely, now holding before the commit
        names = temporaries(out)
        if to == "torch":
            return len(names) == 2  # the sidecar is written after the state_dict
        return len(names) == 1 and (out / names[0] / "crossframe_metadata.json").is_file()
    while not staged():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the conversion never staged its output"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted (SIGTERM)" in err
    assert list(out.iterdir()) == []


def test_atomic_write_uses_the_staged_names_and_cleans_up(tmp_path):
    from weight_transfer.files import atomic_write

    seen = []

    def fail(tmp):
        seen.append(Path(tmp).name)
        Path(tmp).write_bytes(b"half")
        Path(tmp + ".weights.h5").write_bytes(b"half")  # a writer's own temporary beside ours
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "w.weights.h5", fail)
    assert common._owned_re(common.TMP_PREFIX).match(seen[0]) and list(tmp_path.iterdir()) == []
