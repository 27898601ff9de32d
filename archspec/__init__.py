"""archspec: the framework-free core of crossframe.

One JSON spec per network family (``archspec/specs``), validated and resolved once into a frozen,
flat list of layers whose every integer is final (:mod:`archspec.ir`). Importing this package
imports no deep-learning framework.
"""

from . import blocks, ir
from .errors import ConfigError, CrossframeError, Interrupted, SpecError, SpecLimitError
from .ir import Spec
from .limits import Limits
from .resolve import from_config, list_variants, load

__all__ = ["CrossframeError", "ConfigError", "Interrupted", "SpecError", "SpecLimitError", "Limits", "Spec", "load", "from_config",
           "list_variants", "blocks", "ir"]
