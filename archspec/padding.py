"""Explicit paddings, resolved statically from the input size.

Every convolution and pooling in every framework is rendered as explicit zero (or -inf for max
pooling) padding followed by a VALID window, so the three frameworks cannot disagree.
"""

MODES = ("symmetric", "tf_same", "tf_same_even", "valid")


def explicit_padding(mode, size, kernel, stride):
    """Return ``(before, after)`` padding of one spatial axis of length ``size``.

    ``symmetric``: PyTorch's ``padding=(k-1)//2`` on both sides. ``tf_same``: TensorFlow's SAME,
    ``out = ceil(size / stride)``, the odd extra row/column at the bottom/right. ``valid``: none.
    """
    if mode == "symmetric":
        p = (kernel - 1) // 2
        return (p, p)
    if mode == "tf_same":
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return (total // 2, total - total // 2)
    if mode == "tf_same_even":
        total = max(kernel - stride, 0)
        return (total // 2, total - total // 2)
    if mode == "valid":
        return (0, 0)
    raise ValueError(f"padding mode {mode!r}, expected one of {MODES}")


def output_size(size, kernel, stride, pad):
    return (size + pad[0] + pad[1] - kernel) // stride + 1
