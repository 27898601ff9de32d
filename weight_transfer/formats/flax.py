"""Format ``flax``: the variables ``{'params', 'batch_stats'}`` of a ``jax_impl`` model.

Two containers, chosen by the destination's name:

- ``DST.msgpack`` (any name not a directory when reading): ``flax.serialization`` msgpack, loadable
  with ``flax.serialization.from_bytes(jax_impl.init(module, key), data)``. Written and read with
  ``msgpack`` directly, in flax's encoding (an ndarray is ext type 1 holding ``(shape, dtype name,
  bytes)``; arrays over 1 GiB are chunked as flax chunks them), so neither JAX nor flax is imported.
  The metadata goes to the sidecar ``DST.msgpack.json``.
- any other ``DST``: an Orbax checkpoint directory (``orbax.checkpoint.StandardCheckpointer``),
  restored with ``StandardCheckpointer().restore(DST)``; the metadata is ``DST/crossframe_metadata.json``.
  Reading also takes ``jax_impl.train`` checkpoints: a step directory (``<dir>/<step>`` with ``state``)
  or the manager's root (its latest step); their ``params`` and ``batch_stats`` are used.

Layout: the canonical names nest as ``jax_impl`` nests its variables: the top-level layer's path
(dots and all) is one key, then the sub-layer roles, ``conv``/``bn``, and the leaf; trainable tensors
go to ``params``, BN statistics (``mean``, ``var``) to ``batch_stats``. Layouts are canonical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import _common as common
from ._errors import FormatError

NAME = "flax"
FRAMEWORK = "jax"
COLLECTIONS = ("params", "batch_stats")
ORBAX_METADATA = "crossframe_metadata.json"
MAX_CHUNK_SIZE = 2 ** 30  # flax.serialization.MAX_CHUNK_SIZE
_EXT_NDARRAY, _EXT_COMPLEX, _EXT_NPSCALAR = 1, 2, 3
_DTYPES = ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
           "uint32", "uint64", "bool")


def layout(spec):
    """``[(key path tuple, canonical name, shape)]`` in spec order; key paths start with the collection."""
    out = []
    for layer in spec.layers:
        for t in layer.tensors():
            rest = t.name[len(layer.path) + 1:].split(".")
            out.append(((COLLECTIONS[0] if t.trainable else COLLECTIONS[1], layer.path, *rest), t.name,
                        tuple(t.shape)))
    return out


def nest(weights, spec):
    """``{'params': ..., 'batch_stats': ...}`` nested as ``jax_impl.init`` returns them (numpy leaves)."""
    tree = {c: {} for c in COLLECTIONS}
    for keys, name, _ in layout(spec):
        node = tree
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = weights[name]
    return tree


def _leaves(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def _label(keys):
    return "/".join(map(str, keys))


def to_canonical(tree, spec, where):
    if not isinstance(tree, dict):
        raise FormatError(where, f"holds a {type(tree).__name__}, expected a dict with 'params' and 'batch_stats'")
    entries = layout(spec)
    found = {}
    for keys, value in _leaves(tree):
        found[_label(keys)] = value
    bad = [f"{k}: a {type(v).__name__}, expected an array" for k, v in found.items()
           if not hasattr(v, "shape") or not hasattr(v, "dtype")]
    if bad:
        raise FormatError(where, *bad[:5])
    expected = {_label(keys): shape for keys, _, shape in entries}
    names = {_label(keys): name for keys, name, _ in entries}
    common.check_layout(where, {k: tuple(np.shape(v)) for k, v in found.items()}, expected, names)
    common.check_floating(where, {k: found[k] for k in expected})
    return {name: np.asarray(found[_label(keys)]) for keys, name, _ in entries}


# -- msgpack, in flax.serialization's encoding -----------------------------------------------------

def _dtype(name):
    name = name.decode() if isinstance(name, bytes) else str(name)
    if name not in _DTYPES:
        raise ValueError(f"array dtype {name!r} is not a weight dtype")
    return common.as_dtype(name) if name == "bfloat16" else np.dtype(name)


def _ext_hook(code, data):
    import msgpack

    if code in (_EXT_NDARRAY, _EXT_NPSCALAR):
        shape, dtype, buffer = msgpack.unpackb(data, raw=True)
        a = np.frombuffer(buffer, dtype=_dtype(dtype)).reshape(shape)
        return a[()] if code == _EXT_NPSCALAR else a
    raise ValueError(f"msgpack extension type {code} holds no array")


def _unchunk(tree):
    """flax's chunked arrays (``__msgpack_chunked_array__``) back into arrays, recursively."""
    if not isinstance(tree, dict):
        return tree
    if tree.get("__msgpack_chunked_array__") is True:
        shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
        chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
        return np.concatenate(chunks).reshape(shape)
    return {k: _unchunk(v) for k, v in tree.items()}


def read_msgpack(path):
    import msgpack

    path = Path(path)
    common.check_readable(path, "file")
    try:
        data = path.read_bytes()
        tree = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        return _unchunk(tree)
    except Exception as err:  # truncated (ValueError/OutOfData), extra data, wrong types ...
        raise FormatError(str(path), f"not a readable flax msgpack file ({type(err).__name__}: "
                                     f"{' '.join(str(err).split())})") from None


def _pack_array(packer, a):
    import msgpack

    a = np.ascontiguousarray(a)
    if a.nbytes > MAX_CHUNK_SIZE:  # as flax._chunk
        flat = a.reshape(-1)
        step = max(1, MAX_CHUNK_SIZE // a.dtype.itemsize)
        chunks = [flat[i:i + step] for i in range(0, flat.size, step)]
        return {"__msgpack_chunked_array__": True, "shape": {str(i): d for i, d in enumerate(a.shape)},
                "chunks": {str(i): c for i, c in enumerate(chunks)}}
    payload = msgpack.packb((a.shape, common.dtype_name(a), memoryview(a.reshape(-1).view(np.uint8))),
                            use_bin_type=True)
    return msgpack.ExtType(_EXT_NDARRAY, payload)


def write_msgpack(tree, path):
    """Stream ``tree`` to ``path`` tensor by tensor (bytes identical to ``flax.serialization.to_bytes``)."""
    import msgpack

    packer = msgpack.Packer(use_bin_type=True)

    def emit(f, node):
        if isinstance(node, dict):
            f.write(packer.pack_map_header(len(node)))
            for k, v in node.items():
                f.write(packer.pack(k))
                emit(f, v)
        else:
            packed = _pack_array(packer, node)
            if isinstance(packed, dict):
                emit(f, packed)
            else:
                f.write(packer.pack(packed))

    with open(path, "wb") as f:
        emit(f, tree)


# -- Orbax ---------------------------------------------------------------------------------------

def _orbax_item(path):
    """The directory that holds the variables' pytree: ``path``, ``path/state`` or the latest step's."""
    path = Path(path)
    if (path / "state").is_dir():
        return path / "state", True
    steps = sorted((int(p.name), p) for p in path.iterdir() if p.is_dir() and p.name.isdigit())
    if steps and (steps[-1][1] / "state").is_dir():
        return steps[-1][1] / "state", True
    return path, False


def read_orbax(path):
    path = Path(path)
    common.check_readable(path, "directory")
    item, training = _orbax_item(path)
    try:
        import orbax.checkpoint as ocp

        with ocp.StandardCheckpointer() as ckptr:
            tree = ckptr.restore(item.resolve())
    except Exception as err:
        raise FormatError(str(path), f"not a readable Orbax checkpoint ({type(err).__name__}: "
                                     f"{' '.join(str(err).split())[:300]})") from None
    tree = _to_numpy(tree)
    if training and isinstance(tree, dict):  # a TrainState: step, params, batch_stats, opt_state
        tree = {c: tree.get(c) or {} for c in COLLECTIONS}
    return tree


def _to_numpy(tree):
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        return np.asarray(tree)
    return tree


def write_orbax(tree, path):
    import orbax.checkpoint as ocp

    tree = {c: v for c, v in tree.items()}
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(Path(path).resolve(), tree)
        ckptr.wait_until_finished()


# -- the format interface ------------------------------------------------------------------------

def is_orbax(path, for_writing=False):
    path = Path(path)
    if for_writing:
        return not path.name.endswith(".msgpack")
    return path.is_dir()


def has_sidecar(path):
    return Path(path).name.endswith(".msgpack")


# Files that mark a directory as a checkpoint we may replace (with --overwrite): our own metadata, or
# the file Orbax writes into every checkpoint it finalises. A training run's root (step directories
# under it) is no checkpoint itself, and a directory of anything else is never replaced.
CHECKPOINT_MARKERS = (ORBAX_METADATA, "_CHECKPOINT_METADATA")


def owns_directory(path):
    """Whether directory ``path`` is a crossframe or Orbax checkpoint (``outputs.claim``'s ``ours``)."""
    path = Path(path)
    return any((path / marker).is_file() for marker in CHECKPOINT_MARKERS)


def writes_directory(path):
    return is_orbax(path, for_writing=True)


def check_suffix(path):
    pass  # any name: *.msgpack is msgpack, anything else an Orbax directory


def read(path, spec):
    path = Path(path)
    common.check_readable(path, "any")
    tree = read_orbax(path) if is_orbax(path) else read_msgpack(path)
    return to_canonical(tree, spec, where=str(path))


def write(weights, path, spec, metadata, sidecar_path=None):
    tree = nest(weights, spec)
    if is_orbax(path, for_writing=True):
        write_orbax(tree, path)
        common.write_json(Path(path) / ORBAX_METADATA, common.flat_metadata(metadata))
    else:
        write_msgpack(tree, path)
        common.write_json(sidecar_path, common.flat_metadata(metadata))


def read_metadata(path):
    path = Path(path)
    if path.is_dir():
        item, _ = _orbax_item(path)
        for candidate in (path / ORBAX_METADATA, item / ORBAX_METADATA):
            if candidate.is_file():
                return common.read_json(candidate)
        return {}
    return common.read_json(common.sidecar(path))


def update_metadata(path, metadata, sidecar_path=None):
    if Path(path).is_dir():
        common.write_json(Path(path) / ORBAX_METADATA, common.flat_metadata(metadata))
    else:
        common.write_json(sidecar_path, common.flat_metadata(metadata))


def runner(path, spec):
    """``f(x_nhwc) -> logits`` of ``jax_impl.build(spec)`` with the variables as the plain API restores
    them: ``flax.serialization.from_bytes(jax_impl.init(...), data)`` or Orbax's ``restore``."""
    import jax
    import jax_impl

    module = jax_impl.build(spec)
    path = Path(path)
    if path.is_dir():
        import orbax.checkpoint as ocp

        item, training = _orbax_item(path)
        with ocp.StandardCheckpointer() as ckptr:
            variables = ckptr.restore(item.resolve())
        if training:
            variables = {c: variables.get(c) or {} for c in COLLECTIONS}
    else:
        from flax.serialization import from_bytes

        # The target only gives the structure: its abstract form (no init compiled or run) will do.
        target = jax.eval_shape(lambda key: jax_impl.init(module, key), jax.random.PRNGKey(0))
        variables = from_bytes(target, path.read_bytes())
    apply = jax.jit(lambda v, x: module.apply(v, x, train=False))

    def run(x):
        return np.asarray(apply(variables, x), dtype=np.float64)
    return run
