"""PyTorch state_dicts <-> canonical weights, through one name table per library.

A table maps archspec families to rules. Each rule maps a canonical *unit* (a canonical name
without its leaf: ``stages.1.blocks.0.expand.conv``, ``stages.1.blocks.0.se.reduce``,
``classifier``) to the foreign module prefix that holds its tensors (``features.2.conv.0.0``).
The mapping is driven by the spec: every canonical tensor of ``spec.tensors()`` gets its foreign
key from the first rule that matches its unit, so nothing depends on the order of a state_dict.

Pattern syntax (matched against the whole unit): ``.`` is a literal dot, ``{name}`` matches digits,
``{name:a|b}`` one of the alternatives. Template syntax: ``{field}``, ``{field+N}``, ``{field-N}``, ``{M*field+N}`` (ConvNeXt's ``features.{2*i+1}``),
where a field is a pattern group or one of the fields computed from the spec for the block the
unit belongs to:

    i  stage index        j  block index in its stage      g  block index over all stages
    k  index of the unit's role among the block's children (IR order: expand, dw, se, project)
    c  the same index with the SE left out (timm numbers its BNs bn1, bn2, bn3 this way)
    S  number of stages   B  number of blocks

A rule may carry ``when="<role>"`` / ``"no_<role>"`` (the block has / lacks that child: ``expand``,
``project``, ``fused``),
``layout="conv1x1"`` (a canonical dense layer stored as a 1x1 ``nn.Conv2d``, timm MobileNetV3's
``conv_head``), ``layout="c11"`` (a free per-channel parameter stored as (C, 1, 1), torchvision ConvNeXt's
``layer_scale``) and ``first=True`` (the library's module registers this unit before the block's
other units, torchvision RegNet's ``proj``: written first, so a state_dict keeps the library's order). Leaves and layouts follow the unit's kind:

    conv   kernel -> weight (HWIO <-> OIHW)        bias -> bias
    dense  kernel -> weight ((in, out) <-> (out, in), or (out, in, 1, 1) with conv1x1)   bias -> bias
    bn     scale -> weight   bias -> bias   mean -> running_mean   var -> running_var
           (+ num_batches_tracked: optional on import, dropped; written back as int64 0)
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..canonical import check
from ..errors import WeightError
from ..files import atomic_write
from ..native_names import holder_kind, native, native_shape

NUM_BATCHES_TRACKED = "num_batches_tracked"


# Checkpoint dicts that wrap the state_dict (training scripts, timm's train.py).
_WRAPPER_KEYS = ("state_dict", "model")


@dataclass(frozen=True)
class Rule:
    pattern: str
    template: str
    when: Optional[str] = None  # "<role>" / "no_<role>": the block has / lacks that child
    layout: Optional[str] = None  # "conv1x1": canonical dense stored as a 1x1 conv
    first: bool = False  # the unit comes first among its block's in the library's state_dict

    def regex(self):
        return _compile(self.pattern)


@dataclass(frozen=True)
class Entry:
    """One canonical tensor and its foreign counterpart."""

    canonical: str
    foreign: str
    layout: str  # "conv", "dense", "conv1x1", "same"
    canonical_shape: tuple
    foreign_shape: tuple


_PATTERN_CACHE = {}


def _compile(pattern):
    if pattern not in _PATTERN_CACHE:
        out, pos = [], 0
        for m in re.finditer(r"\{(\w+)(?::([^}]*))?\}", pattern):
            out.append(re.escape(pattern[pos:m.start()]))
            name, alts = m.group(1), m.group(2)
            body = "|".join(re.escape(a) for a in alts.split("|")) if alts else r"\d+"
            out.append(f"(?P<{name}>{body})")
            pos = m.end()
        out.append(re.escape(pattern[pos:]))
        _PATTERN_CACHE[pattern] = re.compile("".join(out))
    return _PATTERN_CACHE[pattern]


def _fill(template, fields, where):
    def sub(m):
        times, name, sign, num = m.group(1), m.group(2), m.group(3), m.group(4)
        if name not in fields:
            raise KeyError(f"{where}: template {template!r} uses field {name!r}, which this unit lacks")
        value = fields[name]
        if times:
            value = int(times) * int(value)
        if sign:
            value = int(value) + (int(num) if sign == "+" else -int(num))
        return str(value)

    return re.sub(r"\{(?:(\d+)\*)?(\w+)(?:([+-])(\d+))?\}", sub, template)


def _block_fields(spec):
    """``{block path: fields}`` for every block inside a ``stages`` layer (path ``<name>.<i>.blocks.<j>``)."""
    blocks = [(layer, layer.stage, layer.block) for layer in spec.layers if layer.stage is not None]
    stages = 1 + max((i for _, i, _ in blocks), default=-1)
    out = {}
    for g, (layer, i, j) in enumerate(blocks):
        roles = [role for role, _ in layer.children()]
        out[layer.path] = {"i": i, "j": j, "g": g, "S": stages, "B": len(blocks), "roles": roles,
                           "expand": "expand" in roles}
    return out, {"S": stages, "B": len(blocks)}


def _foreign_shape(shape, layout):
    if layout == "conv1x1":  # a library's 1x1 conv that is our dense layer
        return (shape[1], shape[0], 1, 1)
    if layout == "c11":  # a per-channel parameter kept as (C, 1, 1) to broadcast over NCHW
        return (*shape, 1, 1)
    return native_shape(layout, shape)


def name_table(spec, table, library):
    """``(entries, bn_prefixes)``: an :class:`Entry` for every canonical tensor of ``spec``, in spec
    order (a ``first`` rule's units moved to the front of their block), and ``{foreign BN prefix: canonical unit}`` (each has a ``num_batches_tracked`` too)."""
    rules = table.get(spec.family)
    if rules is None:
        raise WeightError(f"{library} names for {spec.name}", other=[
            f"no {library} name table for archspec family {spec.family!r} (tables: {', '.join(sorted(table))})"])
    shapes = {t.name: tuple(t.shape) for t in spec.tensors()}
    kinds = holder_kind(spec)
    block_fields, global_fields = _block_fields(spec)
    units = {}
    for name in shapes:
        units.setdefault(name.rsplit(".", 1)[0], []).append(name)
    entries, bn_prefixes, unmapped = [], {}, []
    order, groups = [], {}  # per entry: (its block's position, or its own unit's; 0 for a rule's first)
    for unit, names in units.items():
        fields = dict(global_fields)
        block = next((p for p in block_fields if unit.startswith(p + ".")), None)
        if block is not None:
            bf = block_fields[block]
            fields.update({k: bf[k] for k in ("i", "j", "g", "S", "B")})
            role = unit[len(block) + 1:].split(".", 1)[0]
            if role in bf["roles"]:
                fields["k"] = bf["roles"].index(role)
                if role != "se":
                    fields["c"] = [r for r in bf["roles"] if r != "se"].index(role)
        roles_here = block_fields[block]["roles"] if block is not None else []
        rule, match = None, None
        for candidate in rules:
            m = candidate.regex().fullmatch(unit)
            if m is None:
                continue
            if candidate.when is not None:
                negated = candidate.when.startswith("no_")
                if (candidate.when.removeprefix("no_") in roles_here) == negated:
                    continue
            rule, match = candidate, m
            break
        if rule is None:
            unmapped.append(unit)
            continue
        fields.update(match.groupdict())
        try:
            prefix = _fill(rule.template, fields, unit)
        except KeyError as err:  # a rule of the table asks for a field this unit does not have
            unmapped.append(f"{unit} ({err.args[0]})")
            continue
        kind = kinds[unit]
        for name in names:
            leaf = name.rsplit(".", 1)[1]
            found = native("torch", kind, leaf)
            if found is None:
                unmapped.append(name)
                continue
            foreign_leaf = found[0]
            if leaf == "kernel":
                layout = rule.layout or found[1]
            elif kind == "free":
                layout = rule.layout or "same"
            else:
                layout = "same"
            entries.append(Entry(name, f"{prefix}.{foreign_leaf}", layout, shapes[name],
                                 _foreign_shape(shapes[name], layout)))
            order.append((groups.setdefault(block or unit, len(groups)), 0 if rule.first else 1))
        if kind == "norm" and unit.endswith(".bn"):  # a batch norm: torch adds num_batches_tracked
            bn_prefixes[prefix] = unit
    if unmapped:
        raise WeightError(f"{library} names for {spec.name}", other=[
            f"no {library} name for canonical {u} (family {spec.family!r})" for u in unmapped])
    counts = Counter(e.foreign for e in entries)
    if len(counts) != len(entries):
        dup = sorted(f for f, n in counts.items() if n > 1)
        raise WeightError(f"{library} names for {spec.name}", other=[f"two canonical tensors map to {d}" for d in dup])
    if any(rule.first for rule in rules):
        entries = [e for _, e in sorted(zip(order, entries), key=lambda pair: pair[0])]  # stable
    return entries, bn_prefixes


def _to_canonical_layout(array, layout):
    if layout == "conv":  # OIHW -> HWIO
        return np.transpose(array, (2, 3, 1, 0))
    if layout == "dense":
        return np.transpose(array)
    if layout == "conv1x1":  # (out, in, 1, 1) -> (in, out)
        return np.transpose(array[:, :, 0, 0])
    if layout == "c11":  # (C, 1, 1) -> (C,)
        return array.reshape(array.shape[0])
    return array


def _from_canonical_layout(array, layout):
    if layout == "conv":  # HWIO -> OIHW
        return np.transpose(array, (3, 2, 0, 1))
    if layout == "dense":
        return np.transpose(array)
    if layout == "conv1x1":
        return np.transpose(array)[:, :, None, None]
    if layout == "c11":
        return array[:, None, None]
    return array


def to_canonical(foreign, spec, table, library, where=None):
    """Foreign ``{key: array}`` -> canonical float32 weights; one WeightError lists every problem."""
    where = where or f"{library} state_dict"
    entries, bn_prefixes = name_table(spec, table, library)
    optional = {f"{p}.{NUM_BATCHES_TRACKED}" for p in bn_prefixes}
    _check_names({k: tuple(np.shape(v)) for k, v in foreign.items()}, entries, optional, spec, where)
    from ..formats import _common as common

    common.check_floating(f"{where} for {spec.name}", {e.foreign: np.asarray(foreign[e.foreign]) for e in entries})
    out = {}
    for e in entries:
        array = _to_canonical_layout(np.asarray(foreign[e.foreign]), e.layout)
        out[e.canonical] = np.ascontiguousarray(array, dtype=np.float32)
    return out


def _check_names(shapes, entries, optional, spec, where):
    """One WeightError listing every missing, unexpected and mis-shaped key of ``{key: shape}``."""
    expected = {e.foreign: e for e in entries}
    missing = [f"{e.foreign} (canonical {e.canonical})" for e in entries if e.foreign not in shapes]
    unexpected = [k for k in shapes if k not in expected and k not in optional]
    mismatched = [(f"{k} (canonical {expected[k].canonical})", tuple(v), expected[k].foreign_shape)
                  for k, v in shapes.items() if k in expected and tuple(v) != expected[k].foreign_shape]
    mismatched += [(k, tuple(v), ()) for k, v in shapes.items() if k in optional and int(np.prod(v)) != 1]
    if missing or unexpected or mismatched:
        raise WeightError(f"{where} for {spec.name}", missing, unexpected, mismatched)


def from_canonical(canonical, spec, table, library):
    """Canonical weights -> ``{foreign key: array}`` in the library's names and layouts, with an int64
    ``num_batches_tracked`` of 0 after every BN (what ``model.state_dict()`` holds)."""
    check(spec, canonical, where=f"canonical weights for {spec.name}")
    entries, bn_prefixes = name_table(spec, table, library)
    last_leaf = {e.foreign.rsplit(".", 1)[0]: e.foreign for e in entries}  # BN: running_var comes last
    out = {}
    for e in entries:
        out[e.foreign] = np.array(_from_canonical_layout(np.asarray(canonical[e.canonical]), e.layout), order="C")
        prefix = e.foreign.rsplit(".", 1)[0]
        if prefix in bn_prefixes and last_leaf[prefix] == e.foreign:
            out[f"{prefix}.{NUM_BATCHES_TRACKED}"] = np.array(0, dtype=np.int64)
    return out


# -- files -----------------------------------------------------------------------------------------

def expect_names(spec, table, library, where):
    """``expect`` for ``formats.torch.read_state_dict``: what a file declares (``{key: (shape, dtype)}``)
    against the library's names, shapes and dtypes, checked before any tensor data is read."""
    from ..formats import _common as common
    from ..formats._errors import FormatError

    def check_declared(declared):
        entries, bn_prefixes = name_table(spec, table, library)
        optional = {f"{p}.{NUM_BATCHES_TRACKED}" for p in bn_prefixes}
        _check_names({k: shape for k, (shape, _) in declared.items()}, entries, optional, spec, where)
        bad = [f"tensor {e.foreign} has dtype {declared[e.foreign][1]}, expected a floating dtype of "
               f"{'/'.join(common.FLOAT_DTYPES)}" for e in entries if declared[e.foreign][1] not in common.FLOAT_DTYPES]
        if bad:
            raise FormatError(where, *bad[:8], *([f"and {len(bad) - 8} more"] if len(bad) > 8 else []))
    return check_declared


def read_state_dict(path, spec=None, table=None, library=None):
    """``{key: numpy array}`` from a PyTorch checkpoint (``.pth``/``.pt``/``.bin``: torch.load with
    ``weights_only=True``, which refuses any pickled code) or a ``.safetensors`` file.

    The one state_dict reader, ``weight_transfer.formats.torch.read_state_dict`` (what ``crossframe
    convert`` runs); with ``spec``, what the file declares is checked against the library's names
    before any tensor data is read.
    """
    from ..formats import torch as torch_format

    expect = None if spec is None else expect_names(spec, table, library, str(path))
    return torch_format.read_state_dict(path, expect=expect)


def module_versions(build):
    """``state_dict()._metadata`` (each module's ``_version``) of the model ``build()`` makes on the meta
    device: torch.save keeps it with a state_dict, and some modules refuse a state_dict without it
    (torchvision's MNASNet raises "version should be set to 1 or 2")."""
    import torch

    try:
        with torch.device("meta"):
            model = build()
    except NotImplementedError:  # torchvision's RegNet computes its widths with tensors: not on meta
        model = build()
    return getattr(model.state_dict(), "_metadata", None)


def write_state_dict(foreign, path, metadata=None, versions=None):
    """Write ``{key: array}`` atomically: ``.safetensors`` (with string ``metadata``) or a ``torch.save``
    state_dict (``.pth``/``.pt``) carrying the module ``versions`` as ``model.state_dict()`` does (a
    state_dict has no place for other metadata, so ``metadata`` is not stored there)."""
    import torch

    # np.array keeps 0-d arrays 0-d (np.ascontiguousarray would make num_batches_tracked shape (1,))
    tensors = {k: torch.from_numpy(np.array(v, order="C", copy=True)) for k, v in foreign.items()}
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    else:
        from collections import OrderedDict

        state = OrderedDict(tensors)
        if versions is not None:
            state._metadata = OrderedDict((k, dict(v)) for k, v in versions.items())
        atomic_write(path, lambda tmp: torch.save(state, tmp))


class StateDictLibrary:
    """The importer interface (``weight_transfer.importers``) of one library that saves state_dicts.

    A library module gives its name, its ``TABLE``, the model names it supports, how to build its
    own model (``build(model_name)``) and the module versions a family needs when the spec names no
    model of the library; it then exports the bound methods as its module-level functions.
    """

    def __init__(self, library, table, models, build, family_versions=None):
        self.library, self.table, self.models = library, table, tuple(models)
        self._build, self._family_versions = build, dict(family_versions or {})

    def architectures(self):
        """Every supported model, as its registered archspec variant name (``'<library>/<model>'``)."""
        return [f"{self.library}/{name}" for name in self.models]

    def model_name(self, arch):
        """``'<library>/<model>'`` -> ``'<model>'``, the name the library's own factory takes."""
        prefix, _, name = str(arch).partition("/")
        if prefix != self.library or name not in self.models:
            raise ValueError(f"{arch!r} is no supported {self.library} model: expected one of "
                             f"{', '.join(self.architectures())}")
        return name

    def build_reference(self, arch, input_size=None, num_classes=None):
        """The library's own model with random weights, in eval mode (``num_classes``: the library's
        argument; 0 gives the pooled features).

        Both libraries pool adaptively (and timm pads its ``tf_*`` models dynamically), so the model
        takes any ``input_size``; the argument exists for the common interface.
        """
        name = self.model_name(arch)
        model = self._build(name) if num_classes is None else self._build(name, num_classes=num_classes)
        return model.eval()

    def name_table(self, spec):
        """``[(canonical name, library key)]`` for every canonical tensor of ``spec``."""
        entries, _ = name_table(spec, self.table, self.library)
        return [(e.canonical, e.foreign) for e in entries]

    def to_canonical(self, foreign, spec, where=None):
        """Library ``{key: array}`` -> canonical float32 weights (``num_batches_tracked`` dropped)."""
        return to_canonical(foreign, spec, self.table, self.library, where=where)

    def from_canonical(self, canonical, spec):
        """Canonical weights -> library ``{key: array}``, with ``num_batches_tracked`` = 0 (int64)."""
        return from_canonical(canonical, spec, self.table, self.library)

    def read(self, path, spec):
        """Canonical weights from the library's checkpoint: a ``.pth``/``.pt``/``.bin`` state_dict (read
        with ``torch.load(weights_only=True)``; a training checkpoint's ``'state_dict'`` is used) or a
        ``.safetensors`` file."""
        return self.to_canonical(self.read_state_dict(path, spec), spec, where=str(path))

    def read_state_dict(self, path, spec):
        """The file's ``{key: array}`` (``formats.torch.read_state_dict``, the reader ``convert`` runs),
        its declared names, shapes and dtypes checked against ``spec`` before any data is read."""
        return read_state_dict(path, spec, self.table, self.library)

    def write(self, canonical, path, spec, metadata=None):
        """A state_dict file, atomically: ``torch.save`` of the state_dict (with the module versions
        ``model.state_dict()`` carries), or ``.safetensors`` by suffix, with string ``metadata``."""
        versions = None if str(path).endswith(".safetensors") else self.module_versions(spec)
        write_state_dict(self.from_canonical(canonical, spec), path, metadata, versions=versions)

    def module_versions(self, spec):
        """The ``_metadata`` (module versions) ``model.state_dict()`` carries for ``spec``'s model, to save
        with a state_dict: ``torch.save`` keeps it, and torchvision's MNASNet refuses a state_dict
        without it. Built on the meta device when ``spec`` names a model of this library; otherwise
        what the family needs, or None."""
        if spec.name in self.architectures():
            return module_versions(lambda: self.build_reference(spec.name))
        return self._family_versions.get(spec.family)
