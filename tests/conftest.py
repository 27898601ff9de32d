"""Shared test setup: frameworks imported torch side first (TensorFlow before triton segfaults)."""

import os

os.environ.setdefault("CROSSFRAME_PROGRESS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

try:  # the order matters: see crossframe/frameworks.py
    import triton  # noqa: F401
except ImportError:
    pass

import pytest  # noqa: E402

_PARITY_RECORDS = []


@pytest.fixture
def parity_report():
    """Append parity records here; the session ends with their table (rel error beside the f64 floor)."""
    return _PARITY_RECORDS


def pytest_terminal_summary(terminalreporter):
    if not _PARITY_RECORDS:
        return
    from crossframe.parity.table import format_table

    terminalreporter.section("parity (rel = max|a-b|/max|ref|; floor = torch float32 vs float64)")
    for line in format_table(_PARITY_RECORDS).splitlines()[:-2]:
        terminalreporter.write_line(line)
