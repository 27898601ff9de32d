"""scripts/heavy_chain.py, which measures the heavy suite's big-memory chain case by case: it finds the
chain's cases, measures a case's outcome, time and memory, resumes where it stopped, and refuses a
results file that is not its own."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

import conftest
from conftest import scheduling_unit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # the script imports peak_memory beside it
spec = importlib.util.spec_from_file_location("heavy_chain", ROOT / "scripts" / "heavy_chain.py")
chain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chain)


def test_the_marker_splits_the_heavy_suite_into_the_chain_and_the_rest():
    ids = chain.collect(["tests/test_parity_networks.py"])
    assert len(ids) >= 10 and all(scheduling_unit(n) == "big-memory" for n in ids), ids
    rest = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-m",
                           "heavy and not big_memory", "tests/test_parity_networks.py"], cwd=ROOT,
                          stdout=subprocess.PIPE, text=True, check=True).stdout
    rest = [line for line in rest.splitlines() if "::" in line]
    assert rest and not set(rest) & set(ids)
    assert all(scheduling_unit(n) != "big-memory" for n in rest)


def test_a_case_is_measured_in_its_own_process(tmp_path):
    (tmp_path / "test_cases.py").write_text(
        "import pytest\n"
        "@pytest.mark.heavy\n"
        "def test_holds_memory():\n"
        "    import time\n"
        "    block = bytearray(400 * 2**20)\n"
        "    time.sleep(2.5)\n"
        "@pytest.mark.heavy\n"
        "def test_fails():\n"
        "    assert 1 + 1 == 3, 'planted: the sum'\n"
        "@pytest.mark.heavy\n"
        "def test_skips():\n"
        "    pytest.skip('not here')\n")
    held = chain.measure_case("test_cases.py::test_holds_memory", cwd=tmp_path, interval=0.2)
    assert held["outcome"] == "passed" and held["wall_s"] >= 2.5 and held["peak_gib"] >= 400 / 1024, held
    assert "failure" not in held
    failed = chain.measure_case("test_cases.py::test_fails", cwd=tmp_path)
    assert failed["outcome"] == "failed" and any("planted: the sum" in line for line in failed["failure"]), failed
    assert chain.measure_case("test_cases.py::test_skips", cwd=tmp_path)["outcome"] == "skipped"


def test_a_kill_of_the_measuring_script_stops_the_command_it_runs(tmp_path):
    """``kill`` (SIGTERM) of heavy_chain.py or peak_memory.py: the case it runs is stopped too, not left
    running on, unmeasured, beside the next one."""
    import os
    import signal
    import time

    pid_file = tmp_path / "pid"
    command = (f"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); "
               "time.sleep(120)")
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'scripts')!r})\n"
              "from peak_memory import run_measured\n"
              "try:\n"
              f"    run_measured([sys.executable, '-c', {command!r}], interval=0.1)\n"
              "except KeyboardInterrupt:\n"
              "    sys.exit(130)\n")
    outer = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    inner = int(pid_file.read_text())
    outer.send_signal(signal.SIGTERM)
    try:
        assert outer.wait(timeout=60) == 130
        assert not os.path.exists(f"/proc/{inner}"), "the measured command still runs"
    finally:
        if os.path.exists(f"/proc/{inner}"):
            os.kill(inner, signal.SIGKILL)


def test_a_stopped_run_goes_on_where_it_left_off(tmp_path, monkeypatch, capsys):
    results = tmp_path / "chain.json"
    ran = []

    def measure(nodeid):
        ran.append(nodeid)
        if nodeid.endswith("[b]") and len(ran) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second case of the first run
        if nodeid.endswith("[c]"):
            return {"outcome": "failed", "summary": "", "wall_s": 60.0, "peak_gib": 7.0,
                    "failure": ["E   AssertionError: x step jax-tf: rel 2.0e-01", "E   more"]}
        return {"outcome": "passed", "summary": "", "wall_s": 60.0, "peak_gib": 2.5 if nodeid.endswith("[a]") else 7.0}

    monkeypatch.setattr(chain, "collect", lambda files=(), keyword=None: ["t.py::x[a]", "t.py::x[b]", "t.py::x[c]"])
    monkeypatch.setattr(chain, "measure_case", measure)
    assert chain.main(["--results", str(results)]) == 130
    assert list(json.loads(results.read_text())["cases"]) == ["t.py::x[a]"]
    assert chain.main(["--results", str(results)]) == 1  # the third case failed
    assert ran == ["t.py::x[a]", "t.py::x[b]", "t.py::x[b]", "t.py::x[c]"]
    table = capsys.readouterr().out
    assert "| `t.py::x[c]` | failed | 1.0 min | 7.0 GiB |" in table
    assert "3 of 3 cases measured, 2 passed; 3.0 min in all (0.05 h), the largest peak 7.0 GiB" in table
    assert "- `t.py::x[c]`: E   AssertionError: x step jax-tf: rel 2.0e-01" in table  # why, under the table
    assert chain.main(["--results", str(results)]) == 1 and ran[-1] == "t.py::x[c]"  # only the failed one again
    assert not list(tmp_path.glob(".chain.json.*"))  # no temporary left beside it


def test_a_selection_runs_its_cases_and_the_table_counts_the_whole_chain(tmp_path, monkeypatch, capsys):
    whole = ["t.py::x[a]", "t.py::x[b]", "t.py::x[c]"]
    monkeypatch.setattr(chain, "collect", lambda files=(), keyword=None: whole[1:2] if keyword else whole)
    monkeypatch.setattr(chain, "measure_case", lambda nodeid: {"outcome": "passed", "summary": "", "wall_s": 90.0,
                                                               "peak_gib": 3.0})
    assert chain.main(["--results", str(tmp_path / "r.json"), "-k", "b"]) == 0
    table = capsys.readouterr().out
    assert "| `t.py::x[a]` | not measured yet | | |" in table and "| `t.py::x[b]` | passed | 1.5 min | 3.0 GiB |" in table
    assert "1 of 3 cases measured, 1 passed" in table
    assert chain.main(["--results", str(tmp_path / "r.json"), "--render"]) == 0
    assert capsys.readouterr().out.strip() == table.strip()


def test_again_measures_passed_cases_anew_and_each_case_records_its_commit(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(chain, "collect", lambda files=(), keyword=None: ["t.py::x[a]", "t.py::x[b]"])
    monkeypatch.setattr(chain, "measure_case", lambda nodeid: ran.append(nodeid) or {
        "outcome": "passed", "summary": "", "wall_s": 60.0, "peak_gib": 1.0 + len(ran)})
    results = tmp_path / "r.json"
    assert chain.main(["--results", str(results)]) == 0
    assert chain.main(["--results", str(results)]) == 0 and len(ran) == 2  # passed: not again
    assert chain.main(["--results", str(results), "--again"]) == 0 and len(ran) == 4
    cases = json.loads(results.read_text())["cases"]
    assert [c["peak_gib"] for c in cases.values()] == [4.0, 5.0]  # the new figures replace the old
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=chain.ROOT, capture_output=True,
                          text=True).stdout.strip()
    assert all((c["commit"] or "").split("+")[0] == head for c in cases.values()), cases  # None outside git
    assert all(c["machine"][fw] for c in cases.values() for fw in ("torch", "tensorflow", "jax")), cases


def test_the_commit_ignores_the_results_file_it_rewrites_but_not_other_changes(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)
    (tmp_path / "results.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    monkeypatch.setattr(chain, "ROOT", tmp_path)
    assert "+" not in chain.commit(tmp_path / "results.json")
    (tmp_path / "results.json").write_text('{"cases": {}}')  # the script's own rewrite
    assert "+" not in chain.commit(tmp_path / "results.json")
    assert chain.commit().endswith("+changes")
    (tmp_path / "code.py").write_text("x = 2\n")  # a change to what is measured
    assert chain.commit(tmp_path / "results.json").endswith("+changes")


@pytest.mark.parametrize("content", ["not json", '{"cases": {}}', "[1, 2]"])
def test_a_file_that_is_not_its_own_is_refused_untouched(tmp_path, content, capsys):
    results = tmp_path / "mine.json"
    results.write_text(content)
    assert chain.main(["--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"heavy_chain: error: {results}: not a results file"), err
    assert results.read_text() == content


def test_bad_arguments_are_one_line(tmp_path, capsys):
    for argv in (["--results", str(tmp_path), "--render"], ["--results", str(tmp_path / "no" / "x.json")],
                 ["--results", str(tmp_path / "x.json"), "--stop-after", "-1"],
                 ["--results", str(tmp_path / "x.json"), "tests/test_nothing_here.py"]):
        assert chain.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("heavy_chain: error:"), err
    assert list(tmp_path.iterdir()) == []


def test_a_case_above_half_the_machine_is_the_only_one_running(tmp_path):
    """Its recorded peak decides; it takes the machine lock exclusively, every other heavy test shared."""
    import fcntl
    import threading
    import types

    results = tmp_path / "chain.json"
    results.write_text(json.dumps({"format": chain.FORMAT, "cases": {"t.py::x[big]": {"peak_gib": 17.3},
                                                                      "t.py::x[mid]": {"peak_gib": 10.7}}}))
    peaks = conftest.recorded_peaks(results)
    assert peaks == {"t.py::x[big]": 17.3, "t.py::x[mid]": 10.7}
    assert [conftest.needs_whole_machine(n, peaks, memory_gib=23.5) for n in ("t.py::x[big]", "t.py::x[mid]", "t.py::x[new]")] \
        == [True, False, False]
    assert not conftest.needs_whole_machine("t.py::x[big]", peaks, memory_gib=64)  # a bigger machine shares it
    assert conftest.recorded_peaks(tmp_path / "missing.json") == {}

    config = types.SimpleNamespace(_tmp_path_factory=types.SimpleNamespace(getbasetemp=lambda: tmp_path / "gw0"))
    got = threading.Event()

    def whole_machine_case():
        with conftest.whole_machine_lock(config, exclusive=True):
            got.set()

    with conftest.whole_machine_lock(config, exclusive=False):  # a test on the other worker
        with conftest.whole_machine_lock(config, exclusive=False):  # shared with another: no wait
            pass
        waiting = threading.Thread(target=whole_machine_case)
        waiting.start()
        assert not got.wait(0.5), "the whole-machine case started beside a running test"
    waiting.join(30)
    assert got.is_set()
    with open(tmp_path / "crossframe-whole-machine.lock") as f:  # and it let go
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_check_memory_refuses_an_unknown_network_in_one_line(capsys):
    spec_ = importlib.util.spec_from_file_location("check_memory", ROOT / "scripts" / "check_memory.py")
    check_memory = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(check_memory)
    assert check_memory.main(["no_such_network"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("check_memory: error:") and "no_such_network" in err and "\n" not in err, err
