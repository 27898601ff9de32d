"""Output paths of ``bench`` and ``diff`` (issue 12, item 1): an existing user file is refused before
any work unless ``--overwrite``; ``bench --report`` touches nothing of a file without its markers.

Each refusal is checked for exit 2, one line on stderr, and the user's file byte for byte as it was.
"""

import os

import pytest

from crossframe import cli


def _refused(capsys, argv, *paths):
    before = {p: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in paths}
    status = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.startswith("crossframe: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for p, (data, mtime) in before.items():
        assert p.read_bytes() == data and os.stat(p).st_mtime_ns == mtime, p
    return lines[0]


@pytest.mark.parametrize("flag", ["--json", "--plot"])
def test_bench_refuses_an_existing_file_before_running(tmp_path, capsys, flag):
    mine = tmp_path / "mine.out"
    mine.write_text("my notes\n")
    line = _refused(capsys, ["bench", "--quick", "--suites", "torch", flag, mine], mine)
    assert "--overwrite" in line and str(mine) in line, line
    assert sorted(os.listdir(tmp_path)) == ["mine.out"]


def test_bench_report_needs_the_markers(tmp_path, capsys):
    doc = tmp_path / "NOTES.md"
    doc.write_text("# my notes, no markers\n")
    line = _refused(capsys, ["bench", "--quick", "--suites", "torch", "--report", doc], doc)
    assert "markers" in line, line
    missing = tmp_path / "absent.md"
    _refused(capsys, ["bench", "--quick", "--suites", "torch", "--report", missing])
    assert not missing.exists()


def test_bench_refuses_a_directory_or_a_link_as_json(tmp_path, capsys):
    d = tmp_path / "results"
    d.mkdir()
    (d / "keep.txt").write_text("x")
    _refused(capsys, ["bench", "--quick", "--suites", "torch", "--json", d, "--overwrite"], d / "keep.txt")
    target = tmp_path / "target.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    _refused(capsys, ["bench", "--quick", "--suites", "torch", "--json", link, "--overwrite"], target)


def test_diff_plot_refuses_an_existing_file(tmp_path, capsys):
    png = tmp_path / "holiday.png"
    png.write_bytes(b"\x89PNG not ours")
    line = _refused(capsys, ["diff", "dsconv_cnn", "--a", "torch", "--b", "jax", "--plot", png], png)
    assert "--overwrite" in line, line


def test_report_cli_refuses_before_writing(tmp_path):
    from archspec.errors import CrossframeError
    from benchmarks import report

    png = tmp_path / "plot.png"
    png.write_bytes(b"mine")
    with pytest.raises(CrossframeError, match="--overwrite"):
        report.main([str(tmp_path / "none.json"), "--plot", str(png)])
    assert png.read_bytes() == b"mine"
