"""Cross-framework parity: the metric, tolerance bands, calibrated weights, runners and the harness."""

from .harness import MODES, Record, check_network
from .metrics import TOLERANCES, rel_error, rel_error_dict, tolerance

__all__ = ["MODES", "Record", "check_network", "TOLERANCES", "rel_error", "rel_error_dict", "tolerance"]
