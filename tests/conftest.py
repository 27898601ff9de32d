"""Shared test setup: frameworks imported torch side first (TensorFlow before triton segfaults)."""

import os

os.environ.setdefault("CROSSFRAME_PROGRESS", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker: the suite runs one worker per core, and oversubscribed framework
    # thread pools made small convolutions ~10x slower on 2 cores.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:  # the order matters: see crossframe/frameworks.py
    import triton  # noqa: F401
except ImportError:
    pass

import contextlib  # noqa: E402
import fcntl  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded_randomness(request):
    """Every test starts from its own fixed seed, whatever ran before it in the worker.

    Unseeded initialisers (Keras layers, torch modules, flax `init` with a test's own key aside)
    otherwise draw from where the previous test left the global generators, so a test's weights
    depended on which tests pytest-xdist happened to give its worker first. Frameworks are seeded
    only when the test module already imported them: importing TensorFlow here would break the
    torch-before-TensorFlow order.
    """
    seed = zlib.crc32(request.node.nodeid.encode())
    random.seed(seed)
    try:
        import numpy

        numpy.random.seed(seed)
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)
    if "keras" in sys.modules:
        sys.modules["keras"].utils.set_random_seed(seed)


class _Report(list):
    """Parity records of one test, kept on the test's report (so they survive pytest-xdist workers)."""

    def __init__(self, node):
        super().__init__()
        self._node = node

    def append(self, record):
        super().append(record)
        self._node.user_properties.append(("parity", record.as_dict()))

    def extend(self, records):
        for r in records:
            self.append(r)


@pytest.fixture(scope="module")
def module_tmp_path(request, tmp_path_factory):
    """A directory that one test module's tests share (checkpoints written once), removed after them.

    Per-test directories go when their test passes (`tmp_path_retention_policy = "failed"` in
    pyproject.toml); these would otherwise stay until the session ends, and the torchvision and timm
    checkpoints alone are about 0.8 GB per worker.
    """
    path = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def parity_report(request):
    """Append parity records here; the session ends with their table (rel error beside the f64 floor)."""
    return _Report(request.node)


# Heavy tests an issue asked for in the default suite, and why each is opt-in: printed at the end of
# every run that leaves the heavy tests out (the default).
OPT_IN = {
    "tests/test_train_multiprocess.py::test_two_processes_resume_and_equal_one_process":
        "three launches of 2 JAX processes (about 70 s of one worker) would take the default suite over its "
        "20 minutes on 2 cores; run it with ./dev test -m heavy tests/test_train_multiprocess.py",
}


def pytest_terminal_summary(terminalreporter):
    from crossframe.parity import Record
    from crossframe.parity.table import format_table

    if "not heavy" in (terminalreporter.config.option.markexpr or ""):
        terminalreporter.section("opt-in (-m heavy), not run")
        for nodeid, why in OPT_IN.items():
            terminalreporter.write_line(f"{nodeid}: {why}")
    records = []
    for key in ("passed", "failed"):
        for report in terminalreporter.stats.get(key, []):
            for name, value in getattr(report, "user_properties", []):
                if name == "parity" and getattr(report, "when", "call") == "call":
                    # as_dict() writes an unmeasured float as None: back to NaN
                    records.append(Record(**{k: float("nan") if v is None else float(v) if v in ("inf", "-inf") else v
                                             for k, v in value.items()}))
    if not records:
        return
    terminalreporter.section("parity (rel = max|a-b|/max|ref|; floor = torch float32 vs float64)")
    for line in format_table(records).splitlines()[:-2]:
        terminalreporter.write_line(line)


# -- the heavy suite within 24 GiB (issue 12, item 20) ---------------------------------------------
# The largest cases (train/grad/step parity and native-resolution checks of EfficientNet-B4..B7 and
# ResNet-101/152, Keras Applications EfficientNetB4..B7) each hold several GB in three frameworks.
# Each runs in a fresh Python process of its own, so what a framework keeps after a case (allocator
# pools, caches that outlive ``clear_caches``) ends with it: a worker that ran them in-process grew
# to 20 GB and was killed. And they run one at a time across the xdist workers, under a file lock
# that the workers of one run share: an ``xdist_group`` mark cannot do it, because pytest-xdist
# 3.8 forms groups by rewriting ``item._nodeid``, which pytest 9 no longer reads (``--dist
# loadgroup`` puts marked tests on any worker). Every other heavy test frees the frameworks'
# compiled programs and models when it ends.
# matched in the test id case-blind: Keras Applications' ResNet152 at native size is one of them (run
# in-process beside an isolated EfficientNetB6 it took the heavy run to 23.5 GB)
BIG_MEMORY_NETWORKS = ("efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnetb4",
                       "efficientnetb5", "efficientnetb6", "efficientnetb7", "resnet101", "resnet152",
                       "resnext101", "wide_resnet", "convnext_base", "convnext_large", "convnextbase", "convnextlarge",
                       "efficientnet_v2_m", "efficientnet_v2_l", "efficientnetv2_m", "efficientnetv2_l",
                       "efficientnetv2m", "efficientnetv2l")  # ResNeXt-101: 83-89M parameters; Wide ResNet: 69M, 127M
# the checks that hold a big network in three frameworks at once, with gradients or at native size
# (test_deploy's member exports: ConvNeXt-B to LiteRT took 10.7 GiB alone at 64 px, and beside the other
# worker the export shard peaked at 18.8 GiB)
BIG_MEMORY_CHECKS = ("test_train_grad_step_parity_all", "test_train_parity_native_resolution",
                     "test_eval_parity_full_resolution", "test_parity_and_round_trip_heavy",
                     "test_import_parity_native_resolution", "test_heavy_every_other_member_to_a_target")
# set in the process that runs one big-memory case on its own
ISOLATED = "CROSSFRAME_TEST_ISOLATED"


def is_big_memory(item):
    return bool(item.get_closest_marker("heavy") and getattr(item, "originalname", None) in BIG_MEMORY_CHECKS
                and any(name in item.name.lower() for name in BIG_MEMORY_NETWORKS))


def pytest_itemcollected(item):
    if is_big_memory(item):
        # before -m selects: -m "heavy and not big_memory" runs the heavy suite without the chain,
        # -m big_memory the chain alone (scripts/heavy_chain.py measures it case by case)
        item.add_marker("big_memory")
        if not os.environ.get(ISOLATED):
            item.runtest = functools.partial(run_in_own_process, item)


# -- scheduling: one worker runs the big-memory cases, from the start -------------------------------
# The big-memory cases are a serial chain (the lock above): about two hours of the heavy run on 2
# cores. Collected first and scheduled as one work unit, they run one after another on one worker
# while the other worker takes everything else, instead of starting after most of the other tests.
# The controller sees test ids only, so the unit is found from the id (the same rule as
# is_big_memory; only heavy runs collect such ids). The module-wide xdist groups that pytest 9 lost
# (see above) are restored the same way.
XDIST_GROUPS = {"tests/test_keras_backends.py": "keras-backends"}  # one worker starts the two backend workers


def scheduling_unit(nodeid):
    """The xdist work unit of the test ``nodeid``: 'big-memory', a module's group, or the test alone."""
    if nodeid.rfind("@") > nodeid.rfind("]"):
        return nodeid.rsplit("@", 1)[-1]  # xdist's own group suffix, should a pytest read it again
    path, _, name = nodeid.partition("::")
    if name.split("[", 1)[0] in BIG_MEMORY_CHECKS and any(n in name.lower() for n in BIG_MEMORY_NETWORKS):
        return "big-memory"
    return XDIST_GROUPS.get(path, nodeid)


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: not is_big_memory(item))  # stable: the big-memory cases first, in order


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: no error where it is not loaded
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class Scheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid):
            return scheduling_unit(nodeid)

    return Scheduling(config, log)


@contextlib.contextmanager
def _run_lock(config, name, exclusive=True):
    """Hold the lock file ``name`` that the xdist workers of this run share (in the parent of their
    basetemps): exclusively, or shared with other holders."""
    path = config._tmp_path_factory.getbasetemp().parent / name
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _one_at_a_time(item):
    return _run_lock(item.config, "crossframe-big-memory.lock")


# -- the largest cases hold the whole machine ----------------------------------------------------------
# A chain case whose peak, recorded by scripts/heavy_chain.py in docs/heavy_chain.json, is more than half
# this machine's memory (ConvNeXt-L's train/grad/step check: 16.4 GiB) runs with nothing beside it: it takes
# a second lock exclusively, and every other heavy test holds that lock shared while it runs. (flock does
# not queue writers first: the exclusive case gets the lock in the gap between two of the other worker's
# tests, when the kernel wakes it before the next test asks.)
RECORDED_PEAKS = Path(__file__).resolve().parents[1] / "docs" / "heavy_chain.json"


@functools.lru_cache(maxsize=None)
def recorded_peaks(path=RECORDED_PEAKS):
    """{nodeid: peak GiB} of the cases ``path`` records; {} if it is missing or not readable."""
    try:
        cases = json.loads(Path(path).read_text())["cases"]
        return {nodeid: float(case["peak_gib"]) for nodeid, case in cases.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def machine_gib():
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) / 2**20


def needs_whole_machine(nodeid, peaks=None, memory_gib=None):
    peak = (recorded_peaks() if peaks is None else peaks).get(nodeid, 0.0)
    return peak > (machine_gib() if memory_gib is None else memory_gib) / 2


def whole_machine_lock(config, exclusive):
    """The run's machine lock (beside the big-memory lock): exclusive for a case that needs the whole
    machine, shared for any other heavy test."""
    return _run_lock(config, "crossframe-whole-machine.lock", exclusive)


@pytest.fixture(autouse=True)
def _share_the_machine(request):
    """A heavy test beside the chain holds the machine lock shared, so a whole-machine case waits for it."""
    if (not request.node.get_closest_marker("heavy") or request.node.get_closest_marker("big_memory")
            or os.environ.get(ISOLATED)):
        yield
        return
    with whole_machine_lock(request.config, exclusive=False):
        yield


def run_in_own_process(item):
    """Run one test as ``pytest -n 0 NODEID`` in a fresh interpreter; its verdict is this test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env[ISOLATED] = "1"
    cmd = [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-m", "heavy", "-rs",
           "--durations=0", "--no-header", "-q", item.nodeid]
    with _one_at_a_time(item), contextlib.ExitStack() as stack:
        if needs_whole_machine(item.nodeid):
            stack.enter_context(whole_machine_lock(item.config, exclusive=True))
        done = subprocess.run(cmd, cwd=item.config.rootpath, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    print(done.stdout[-20000:])  # shown with the failure, or with -s
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode == 0 and " passed" in last and "skipped" not in last:
        return
    if done.returncode == 0 and "skipped" in last:
        reasons = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
        pytest.skip(f"in its own process: {reasons[-1] if reasons else last}")
    pytest.fail(f"in its own process ({' '.join(cmd[2:])}): exit status {done.returncode}, {last}",
                pytrace=False)


@pytest.fixture(autouse=True)
def _free_framework_memory(request):
    """After a heavy test: drop JAX's compiled programs, Keras' graph state and unreachable models."""
    yield
    if not request.node.get_closest_marker("heavy"):
        return
    import gc

    if "jax" in sys.modules:
        sys.modules["jax"].clear_caches()
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session(free_memory=True)
    gc.collect()
