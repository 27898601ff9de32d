"""Channel and depth rounding: the only place in the project where these numbers are computed."""

import math


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``round_limit * value``.

    The rule shared by torchvision (``_make_divisible``), timm (``make_divisible``), Keras
    Applications and MnasNet's ``_round_to_multiple_of``.
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def round_depth(repeats, depth_multiplier):
    """EfficientNet's depth rule: ``ceil(repeats * depth_multiplier)``."""
    return int(math.ceil(repeats * depth_multiplier))
