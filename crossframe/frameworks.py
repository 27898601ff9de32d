"""Import the frameworks in the one order that never crashes.

With the CUDA build of PyTorch, ``triton``'s native library segfaults when it loads after
TensorFlow's (importing torchvision, timm or ``torch.compile`` after TensorFlow). Loading triton
first makes every later order safe, so every TensorFlow import in this project goes through
``tf_impl._tf``, which does that; these helpers are the harnesses' way in.
"""


def import_torch():
    try:
        import triton  # noqa: F401  (must precede TensorFlow; see module docstring)
    except ImportError:
        pass
    import torch

    return torch


def import_tf():
    from tf_impl._tf import keras, tf

    return tf, keras


def import_jax():
    import jax

    return jax


def import_in_order(names):
    """Import the named frameworks ('torch', 'tf', 'jax'), torch side first."""
    if "torch" in names:
        import_torch()
    if "jax" in names:
        import_jax()
    if "tf" in names:
        import_tf()
