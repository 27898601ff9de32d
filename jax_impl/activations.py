"""Activation functions by their IR name (``archspec.ir.ACTIVATIONS``), matching PyTorch's definitions.

``jax.nn`` versions are used where they exist: their gradients at the kinks (relu at 0, relu6 at 0
and 6) are 0 as in PyTorch, where ``jnp.maximum`` would give 0.5.
"""

import jax
from archspec import ir


def identity(x):
    return x


def hard_sigmoid(x):
    # relu6(x + 3) / 6: PyTorch's Hardsigmoid, not Keras 2's 0.2x + 0.5
    return jax.nn.relu6(x + 3.0) / 6.0


def hard_swish(x):
    return x * hard_sigmoid(x)


def swish(x):
    return x * jax.nn.sigmoid(x)


ACTIVATIONS = {
    None: identity,
    "relu": jax.nn.relu,
    "relu6": jax.nn.relu6,
    "swish": swish,
    "sigmoid": jax.nn.sigmoid,
    "hard_sigmoid": hard_sigmoid,
    "hard_swish": hard_swish,
    "selu": jax.nn.selu,  # alpha 1.6732632423543772, scale 1.0507009873554805, as torch.nn.SELU
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # exact (erf), as torch.nn.GELU(); flax's default is tanh
}

assert set(ACTIVATIONS) == set(ir.ACTIVATIONS), "jax_impl.activations is out of step with archspec.ir.ACTIVATIONS"


def get(name):
    """The function for IR activation ``name`` (``None`` is the identity)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        known = ", ".join(repr(k) for k in ACTIVATIONS)
        raise ValueError(f"activation {name!r}: expected one of {known}") from None
