"""Classifier heads of checkpoints: the size read from the file, another size on the loaded backbone.

A fine-tuned checkpoint (torchvision's MobileNetV2 with ``num_classes=5``, a Keras Applications
``include_top=False`` file) differs from the spec's default only in its classifier. :func:`read`
reads a file strictly with the spec and, when every problem is the classifier (mis-shaped: its size
differs; missing: the file has none), reads it again with the size the file declares: the readers
check what a file declares before reading any data, so the first try costs little.
:func:`adapt` then gives the weights for the head asked for, as timm's ``pretrained=True,
num_classes=N``: the same (nothing to do), ``0`` (pooled features: the classifier and the dropout
before it are gone) or another size (a fresh classifier, reported with :class:`HeadReplaced`).
"""

from __future__ import annotations

import re
import warnings

from .errors import WeightError

CLASSIFIER = "classifier"  # the canonical name of every spec's classifier (archspec/specs: 'out': 'num_classes')


class HeadReplaced(UserWarning):
    """The checkpoint's classifier was not used: a fresh one of another size was initialised."""


def with_classes(spec, num_classes):
    """``spec`` resolved again with another ``num_classes`` (0: no classifier); the same object when equal."""
    import archspec

    if num_classes == spec.num_classes:
        return spec
    config = spec.to_config()
    if config["config"] is None:
        raise WeightError(spec.name, other=["this spec carries no config (not from archspec.load): "
                                            "cannot change its num_classes"])
    config["config"]["num_classes"] = num_classes
    config.pop("spec_hash")
    return archspec.from_config(config)


def _canonical_of(label):
    """A WeightError entry is ``file key (canonical name)`` (importers: ``(canonical name)``), or the
    name alone where they coincide."""
    m = re.search(r"\((?:canonical )?([^()]+)\)$", str(label))
    return m.group(1) if m else str(label)


def _is_classifier(label):
    return re.split(r"[./]", _canonical_of(label))[0] == CLASSIFIER


def classes_from_error(err):
    """The classifier size a file has when ``err`` (a strict read's) is about the classifier alone,
    else ``None``; ``0`` when the file has no classifier (every problem: a missing classifier tensor)."""
    if type(err) is not WeightError or err.other or err.unexpected:
        return None
    if err.missing and not err.mismatched:
        return 0 if all(_is_classifier(m) for m in err.missing) else None
    if err.missing or not all(_is_classifier(m[0]) for m in err.mismatched):
        return None
    sizes = set()
    for _, found, expected in err.mismatched:
        found, expected = tuple(found), tuple(expected)
        diff = [f for f, e in zip(found, expected) if f != e]
        if len(found) != len(expected) or len(diff) != 1:
            return None
        sizes.add(diff[0])
    return sizes.pop() if len(sizes) == 1 else None


def read(path, fmt, spec, allow_nonfinite=False):
    """``(file_spec, canonical weights)``: ``spec`` with the classifier size of the file at ``path``."""
    from .convert import read_canonical

    try:
        return spec, read_canonical(path, fmt, spec, allow_nonfinite=allow_nonfinite)
    except WeightError as err:
        classes = classes_from_error(err)
        if classes is None or classes == spec.num_classes:
            raise
    file_spec = with_classes(spec, classes)
    return file_spec, read_canonical(path, fmt, file_spec, allow_nonfinite=allow_nonfinite)


def adapt(weights, file_spec, num_classes, where, stacklevel=2):
    """``(spec, weights, note)`` for a model with ``num_classes`` (``None``: the checkpoint's).

    ``weights`` has every tensor of ``spec``: the backbone's from the file; a fresh classifier's as
    ``None`` (the caller initialises it). ``note`` says what changed (``None``: nothing); a fresh
    head is also warned (:class:`HeadReplaced`).
    """
    if num_classes is None or num_classes == file_spec.num_classes:
        return file_spec, weights, None
    spec = with_classes(file_spec, num_classes)
    out = {}
    for t in spec.tensors():
        if t.name in weights and tuple(weights[t.name].shape) == tuple(t.shape):
            out[t.name] = weights[t.name]
        elif t.name.split(".")[0] == CLASSIFIER:
            out[t.name] = None
        else:
            raise WeightError(where, other=[f"{t.name}: no tensor of shape {tuple(t.shape)} in the checkpoint"])
    if num_classes == 0:
        note = f"{where}: classifier ({file_spec.num_classes} classes) dropped: the model gives pooled features"
    elif file_spec.num_classes == 0:
        note = f"{where}: has no classifier; a fresh one with {num_classes} classes was initialised"
    else:
        note = (f"{where}: classifier has {file_spec.num_classes} classes; a fresh one with {num_classes} "
                "classes was initialised on the loaded backbone")
    if num_classes != 0:
        warnings.warn(note, HeadReplaced, stacklevel=stacklevel + 1)
    return spec, out, note


def fill_fresh(weights, spec, seed=0):
    """``weights`` with every ``None`` (a fresh classifier) drawn as ``random_weights`` draws it."""
    if all(v is not None for v in weights.values()):
        return weights
    from .canonical import random_weights

    fresh = random_weights(spec, seed=seed)
    return {k: fresh[k] if v is None else v for k, v in weights.items()}
