"""Canonical weights <-> Flax variables of a ``jax_impl.Network``.

The Flax variable tree already is the canonical naming: ``'.'.join`` of a leaf's key path inside
``params`` or ``batch_stats`` is its canonical name (top-level children are named by their dotted
canonical paths) and the layouts are canonical (conv HWIO, dense (in, out)). So ``from_flax`` merges
and flattens the two collections, and ``to_flax`` fills the tree ``jax_impl.init`` would return.
"""

import numpy as np

from .canonical import check, validate
from .errors import WeightError

COLLECTIONS = ("params", "batch_stats")


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if hasattr(value, "items"):
            yield from _flatten(value, name + ".")
        else:
            yield name, value


def _merged(variables):
    """``params`` and ``batch_stats`` as one nested dict, so a BN's mean/var follow its scale/bias."""
    def merge(into, tree):
        for key, value in tree.items():
            if hasattr(value, "items"):
                merge(into.setdefault(key, {}), value)
            else:
                into[key] = value
        return into

    missing = [c for c in COLLECTIONS if c not in variables]
    if missing:
        raise WeightError("flax variables", other=[f"no {c!r} collection (found {sorted(variables)})"
                                                   for c in missing])
    merged = {}
    for collection in COLLECTIONS:
        merge(merged, variables[collection])
    return merged


def from_flax(variables, spec=None, dtype=np.float32):
    """``{canonical name: numpy array}`` from Flax ``variables`` (``params`` + ``batch_stats``).

    ``dtype``: of the arrays; float32 is the canonical dtype, float64 keeps float64 variables exact.

    Arrays are host copies (sharded arrays are gathered). With ``spec``, names and shapes are checked
    against ``spec.tensors()`` and returned in its order.
    """
    import jax

    out = {name: np.array(jax.device_get(value), dtype=dtype, order="C", copy=True)
           for name, value in _flatten(_merged(variables))}
    if spec is not None:
        check(spec, out, where="flax variables")
        out = {t.name: out[t.name] for t in spec.tensors()}
    return out


def to_flax(module, weights, where="weights", allow_nonfinite=False):
    """New Flax variables ``{'params', 'batch_stats'}`` for ``module`` holding canonical ``weights``.

    Names and shapes are checked against ``module.spec`` first (one ``WeightError`` listing every
    problem), then dtypes (floating) and, unless ``allow_nonfinite``, NaN/Inf; the tree's structure and dtypes are those of ``jax_impl.init(module, ...)`` (found with
    ``jax_impl.shapes``: traced once, nothing computed). Values are copied: neither ``weights`` nor anything else
    is mutated.
    """
    import jax.numpy as jnp

    import jax_impl

    spec = getattr(module, "spec", None)
    if spec is None:
        raise TypeError(f"expected a jax_impl.Network (a module with an archspec .spec), got {type(module).__name__}")
    validate(spec, weights, where=where, allow_nonfinite=allow_nonfinite)
    abstract = jax_impl.shapes(module)

    wrong, seen = [], set()

    def fill(tree, prefix=""):
        out = {}
        for key, leaf in tree.items():
            name = f"{prefix}{key}"
            if hasattr(leaf, "items"):
                out[key] = fill(leaf, name + ".")
                continue
            seen.add(name)
            if name not in weights:  # the module's variables disagree with its own spec
                wrong.append(f"{name}: a variable of the flax module with no canonical tensor in the spec")
                continue
            value = np.asarray(weights[name])
            if value.shape != tuple(leaf.shape):
                wrong.append(f"{name}: found {value.shape}, the flax module holds {tuple(leaf.shape)}")
                continue
            out[key] = jnp.array(value, dtype=leaf.dtype, copy=True)
        return out

    variables = {c: fill(abstract[c]) for c in COLLECTIONS}
    wrong += [f"{name}: in the spec but not among the flax module's variables" for name in weights
              if name not in seen]
    if wrong:
        raise WeightError(f"{where} (layout in the flax module)", other=wrong)
    return variables
