"""Format ``keras``: Keras 3 weights of a ``tf_impl`` model, written and read with h5py alone.

``DST.weights.h5`` loads with plain ``tf_impl.build(spec).load_weights(DST)``; so does a whole
``DST.keras`` archive (``metadata.json``, ``config.json``, ``model.weights.h5``, as ``model.save``
writes it). Neither is read through Keras: a ``.keras`` file's config is never deserialised (that is
where Keras files can carry code), only its ``model.weights.h5`` member is read, as data.

Keras 3 (``saving_lib``) files variables by object path, not by layer name: ``layers/<class>[_n]``
for the model's layers in order (the class name in snake case, numbered per class from the second
one on), then the attribute name of every sub-layer (``conv``, ``bn``, the block roles), then
``vars/<i>`` in the order the layer created its variables. ``layout(spec)`` derives that path for
every canonical tensor from the spec, so no TensorFlow is imported and no model is built:

    Conv2D           vars/0 kernel (kh, kw, in/g, out) = canonical     vars/1 bias
    DepthwiseConv2D  vars/0 kernel (kh, kw, in, 1) <-> canonical (kh, kw, 1, in)   vars/1 bias
    BatchNorm        vars/0..3 gamma, beta, moving_mean, moving_variance = bn.scale, bias, mean, var
    LayerNorm        vars/0..1 gamma, beta = ln.scale, bias
    a block's own    vars/i (ConvNeXt's layer_scale), before its sub-layers' groups
    Dense            vars/0 kernel (in, out)   vars/1 bias

Metadata: root attributes ``crossframe.<key>`` of the HDF5 file (Keras ignores them); a ``.keras``
archive also has them under ``"crossframe"`` in its ``metadata.json``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from archspec import ir

from ..native_names import NATIVE, native, native_shape
from . import _common as common
from ._errors import FormatError

NAME = "keras"
FRAMEWORK = "tf"
SUFFIXES = (".weights.h5", ".keras")
ATTR_PREFIX = "crossframe."
WEIGHTS_MEMBER = "model.weights.h5"
_BN_VARS = tuple(NATIVE["keras"]["norm"])  # scale, bias, mean, var: gamma, beta, moving_mean, moving_variance


def snake_case(name):
    """Keras' ``naming.to_snake_case``: ``ConvBNAct`` -> ``conv_bn_act``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def layout(spec):
    """``(groups, datasets)`` of ``tf_impl.build(spec).save_weights``, from the spec alone.

    groups: ``[(group path, layer name)]`` (each has a ``vars`` subgroup with a ``name`` attribute);
    datasets: ``[(dataset path, canonical name, kind, keras shape)]``, kind ``same`` or ``depthwise``.
    """
    groups, datasets = [("", spec.name)], []

    def conv(layer, g):
        c = layer
        _, kind = native("keras", "depthwise" if c.is_depthwise else "conv", "kernel")
        shape = native_shape(kind, (c.kernel, c.kernel, c.in_channels // c.groups, c.out_channels))
        groups.append((f"{g}/conv", "conv"))
        datasets.append((f"{g}/conv/vars/0", f"{c.path}.conv.kernel", kind, shape))
        if c.bias:
            datasets.append((f"{g}/conv/vars/1", f"{c.path}.conv.bias", "same", (c.out_channels,)))
        if c.bn is not None:
            norm(c, g, c.norm_channels)

    def norm(layer, g, channels):
        role = layer.bn.role  # bn: gamma, beta, moving_mean, moving_variance; ln: gamma, beta
        groups.append((f"{g}/{role}", role))
        leaves = [t.name.rsplit(".", 1)[1] for t in layer.bn.tensors(role, channels)]
        for i, leaf in enumerate(_BN_VARS[:len(leaves)]):
            datasets.append((f"{g}/{role}/vars/{i}", f"{layer.path}.{role}.{leaf}", "same", (channels,)))

    def visit(layer, g):
        if isinstance(layer, ir.ConvBNAct):
            conv(layer, g)
        elif isinstance(layer, ir.NormAct):
            norm(layer, g, layer.channels)
        elif isinstance(layer, ir.SqueezeExcite):
            for role, (cin, cout) in (("reduce", (layer.channels, layer.reduced)),
                                      ("expand", (layer.reduced, layer.channels))):
                groups.append((f"{g}/{role}", role))
                datasets.append((f"{g}/{role}/vars/0", f"{layer.path}.{role}.kernel", "same", (1, 1, cin, cout)))
                datasets.append((f"{g}/{role}/vars/1", f"{layer.path}.{role}.bias", "same", (cout,)))
        elif isinstance(layer, ir.Dense):
            datasets.append((f"{g}/vars/0", f"{layer.path}.kernel", "same", (layer.in_features, layer.out_features)))
            if layer.bias:
                datasets.append((f"{g}/vars/1", f"{layer.path}.bias", "same", (layer.out_features,)))
        else:
            own = [t for t in layer.tensors() if t.name.rsplit(".", 1)[0] == layer.path]  # ConvNeXt's layer_scale
            for i, t in enumerate(own):  # a layer's own variables come before its sub-layers'
                datasets.append((f"{g}/vars/{i}", t.name, "same", tuple(t.shape)))
            for role, child in layer.children():
                groups.append((f"{g}/{role}", role))
                visit(child, f"{g}/{role}")

    used = {}

    def unique(base):  # saving_lib._get_unique_name
        if base in used:
            used[base] += 1
            return f"{base}_{used[base]}"
        used[base] = 0
        return base

    groups.append((f"layers/{unique('input_layer')}", "input"))
    for layer in spec.layers:
        g = f"layers/{unique(snake_case(type(layer).__name__))}"
        groups.append((g, layer.path))
        visit(layer, g)
    return groups, datasets


# -- HDF5 ----------------------------------------------------------------------------------------

def _read_dataset(ds):
    a = ds[()]
    if _is_bfloat16(ds):  # Keras stores bfloat16 as opaque 2-byte values
        a = np.asarray(a).view(common.bfloat16())
    return np.asarray(a)


def _is_bfloat16(ds):
    return ds.dtype.itemsize == 2 and ds.attrs.get("dtype") in ("bfloat16", b"bfloat16")


def declared_dtype(ds):
    """The dtype name a dataset declares (read from its header, not its data)."""
    return "bfloat16" if _is_bfloat16(ds) else ds.dtype.name


def _weights_datasets(f):
    """``{path: dataset}`` under ``layers/`` and the model's own ``vars`` (other top-level groups,
    an optimizer's for instance, hold no weights of the network and are ignored)."""
    import h5py

    out = {}
    for top in ("layers", "vars"):
        if top in f:
            def collect(name, obj, top=top):
                if isinstance(obj, h5py.Dataset):
                    out[f"{top}/{name}"] = obj
            f[top].visititems(collect)
    return out


# Without a spec to say what a file should hold, a compressed dataset may still not declare more than
# this many times the size of the file it came from (Keras writes no compressed datasets at all).
MAX_COMPRESSION = 16
MAX_OBJECTS = 1 << 20


def check_h5_safe(f, where):
    """Refuse an HDF5 file whose reading would leave it: soft and external links, virtual datasets
    and external storage (each can make a reader copy another file's bytes into its output).

    Walks every link of the file without following any but hard links (each object once).
    """
    import h5py

    bad, seen, count = [], set(), 0

    def walk(group, prefix):
        nonlocal count
        for name in group:
            count += 1
            if count > MAX_OBJECTS:
                raise FormatError(where, f"an HDF5 file with more than {MAX_OBJECTS} objects")
            full = f"{prefix}/{name}"
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                bad.append(f"{full} is a soft link (to {link.path}); links are not followed")
                continue
            if isinstance(link, h5py.ExternalLink):
                bad.append(f"{full} is an external link (to {link.filename}:{link.path}); links are not followed")
                continue
            if not isinstance(link, h5py.HardLink):
                bad.append(f"{full} is a link of unknown kind ({type(link).__name__})")
                continue
            obj = group[name]
            if obj.id in seen:
                continue
            seen.add(obj.id)
            if isinstance(obj, h5py.Group):
                walk(obj, full)
            elif isinstance(obj, h5py.Dataset):
                problem = _external_storage(obj)
                if problem:
                    bad.append(f"dataset {full} {problem}")

    walk(f, "")
    if bad:
        raise FormatError(where, "refused: it refers to data outside itself", *bad[:8],
                          *([f"and {len(bad) - 8} more"] if len(bad) > 8 else []))


def _external_storage(ds):
    if ds.is_virtual:
        return "is a virtual dataset (its data lives in other files)"
    if ds.id.get_create_plist().get_external_count() > 0:
        return "has external storage (its data lives in another file)"
    return None


def check_dataset_storage(ds, key, where, file_size):
    """Refuse a dataset whose declared size its stored bytes cannot back: an uncompressed one that
    stores fewer bytes than it declares (the rest would be a fill value, allocated in full), a
    compressed one declaring more than :data:`MAX_COMPRESSION` times its file."""
    problem = _external_storage(ds)
    if problem:
        raise FormatError(where, f"dataset {key} {problem}")
    nbytes = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize if ds.shape is not None else 0
    if ds.id.get_create_plist().get_nfilters() == 0:
        stored = ds.id.get_storage_size()
        if stored < nbytes:
            raise FormatError(where, f"dataset {key} declares {nbytes} bytes ({ds.shape} {ds.dtype.name}) "
                                     f"but stores {stored}")
    elif nbytes > (1 << 20) + MAX_COMPRESSION * file_size:
        raise FormatError(where, f"dataset {key} declares {nbytes} bytes ({ds.shape} {ds.dtype.name}) in a "
                                 f"file of {file_size} bytes")


# A .keras archive's weights member may not hold more than this when no spec bounds it.
MAX_MEMBER_BYTES = 1 << 30


def h5_source(path, cap=None):
    """A path or a file object h5py opens: a ``.keras`` archive gives its weights member's bytes,
    read with a cap (``cap`` bytes; by default 64 MiB + 16 x the archive) that the member's own
    header cannot raise."""
    path = Path(path)
    if path.name.endswith(".keras") or zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if WEIGHTS_MEMBER not in names:
                sharded = [n for n in names if n.endswith(".weights.json")]
                what = "sharded weights are not supported" if sharded else f"no {WEIGHTS_MEMBER} inside"
                raise FormatError(str(path), f"a zip archive with {what} (members: {', '.join(names[:6])})")
            info = archive.getinfo(WEIGHTS_MEMBER)
            if cap is None:
                cap = min(MAX_MEMBER_BYTES, (64 << 20) + MAX_COMPRESSION * path.stat().st_size)
            if info.file_size > cap:
                raise FormatError(str(path), f"its {WEIGHTS_MEMBER} declares {info.file_size} bytes, more than "
                                             f"{cap} (what the weights can need)")
            with archive.open(info) as member:
                return io.BytesIO(common.read_capped(member, cap, str(path), WEIGHTS_MEMBER))
    return str(path)


def open_h5(path, cap=None):
    """``h5py.File`` of a ``.weights.h5``/``.h5`` file or of a ``.keras`` archive's weights, read-only,
    after refusing anything but a regular file and any HDF5 link or storage outside the file."""
    import h5py

    common.check_readable(path, "file")
    try:
        f = h5py.File(h5_source(path, cap), "r")
    except FormatError:
        raise
    except Exception as err:  # OSError (truncated, not HDF5), zipfile.BadZipFile, zlib.error ...
        raise FormatError(str(path), f"not a readable Keras weights file ({type(err).__name__}: "
                                     f"{' '.join(str(err).split())[:300]})") from None
    try:
        check_h5_safe(f, str(path))
    except FormatError:
        f.close()
        raise
    except Exception as err:
        f.close()
        raise FormatError(str(path), f"not a readable Keras weights file ({type(err).__name__}: "
                                     f"{' '.join(str(err).split())[:300]})") from None
    return f


def _open(path, cap=None):
    return open_h5(path, cap)


def read_foreign(path, spec=None):
    """``{dataset path: numpy array}`` of every weight the file holds (dtypes kept).

    With ``spec``, the datasets' declared shapes and dtypes are checked against the spec's layout
    before any data is read (a few-KB file can declare a compressed dataset of terabytes).
    """
    path = Path(path)
    where = str(path)
    cap = None if spec is None else common.expected_nbytes(spec) + (64 << 20)
    with _open(path, cap) as f:
        try:
            datasets = _weights_datasets(f)
            if spec is not None:
                _, layout_ = layout(spec)
                common.check_declared(where, {k: (tuple(ds.shape or ()), declared_dtype(ds))
                                              for k, ds in datasets.items()},
                                      {p: shape for p, _, _, shape in layout_}, {p: n for p, n, _, _ in layout_})
            size = path.stat().st_size
            for k, ds in datasets.items():
                check_dataset_storage(ds, k, where, size)
            return {k: _read_dataset(ds) for k, ds in datasets.items()}
        except (FormatError, common.WeightError):
            raise
        except Exception as err:
            raise FormatError(where, f"not a readable Keras weights file ({type(err).__name__}: "
                                     f"{' '.join(str(err).split())[:300]})") from None


def to_canonical(found, spec, where):
    _, datasets = layout(spec)
    expected = {p: shape for p, _, _, shape in datasets}
    names = {p: name for p, name, _, _ in datasets}
    common.check_layout(where, {k: np.shape(v) for k, v in found.items()}, expected, names)
    common.check_floating(where, {k: found[k] for k in expected})
    out = {}
    for p, name, kind, _ in datasets:
        a = found.pop(p)
        if kind == "depthwise":  # (kh, kw, in, 1) -> (kh, kw, 1, in): the same bytes
            a = np.ascontiguousarray(a.transpose(0, 1, 3, 2))
        out[name] = a
    return dict(sorted(out.items(), key=lambda kv: _order(spec)[kv[0]]))


def _order(spec):
    return {t.name: i for i, t in enumerate(spec.tensors())}


def read(path, spec):
    found = read_foreign(path, spec)
    return to_canonical(found, spec, where=str(path))


def _write_h5(target, weights, spec, metadata):
    import h5py

    from h5py import h5a, h5d, h5g, h5s, h5t

    groups, datasets = layout(spec)
    with h5py.File(target, "w") as f:
        for k, v in common.flat_metadata(metadata).items():
            f.attrs[ATTR_PREFIX + k] = v
        # h5py's low-level calls, each group made once: with ResNet-152's 777 datasets in ~1000
        # groups, the high-level API's per-call checks cost more than writing the 240 MB.
        ids = {"": f.id}

        def group(path):
            gid = ids.get(path)
            if gid is None:
                parent, _, leaf = path.rpartition("/")
                gid = ids[path] = h5g.create(group(parent), leaf.encode())
            return gid

        # Keras gives each variables' group a ``name`` attribute (the layer's; it reads by path, not by it)
        str_type = h5py.string_dtype()
        str_tid, scalar = h5t.py_create(str_type, logical=True), h5s.create(h5s.SCALAR)
        for g, name in groups:
            h5a.create(group(f"{g}/vars" if g else "vars"), b"name", str_tid, scalar).write(
                np.array(name, dtype=str_type))
        types = {}
        for p, name, kind, shape in datasets:
            a = np.asarray(weights[name])
            if kind == "depthwise":
                a = a.transpose(0, 1, 3, 2)
            a = np.ascontiguousarray(a)
            parent, _, key = p.rpartition("/")
            tid = types.get(a.dtype) or types.setdefault(a.dtype, h5t.py_create(a.dtype, logical=True))
            space = h5s.create_simple(a.shape) if a.ndim else h5s.create(h5s.SCALAR)
            ds = h5d.create(group(parent), key.encode(), tid, space)
            ds.write(h5s.ALL, h5s.ALL, a)
            if common.dtype_name(a) == "bfloat16":  # as Keras writes it (opaque 2-byte values + this attribute)
                h5py.Dataset(ds).attrs["dtype"] = "bfloat16"


def _keras_config(spec):
    """``config.json`` as ``model.save`` writes it for a ``tf_impl.Network`` (``Network.get_config``:
    the spec, which ``keras.models.load_model`` rebuilds the model from; read by no code of ours)."""
    return {"module": "tf_impl.network", "class_name": "Network",
            "config": {"name": spec.name.replace("/", "_"), "trainable": True,
                       "dtype": {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
                                 "registered_name": None},
                       "spec": spec.to_config()},
            "registered_name": "crossframe>Network", "build_config": {"input_shape": None}, "compile_config": {}}


def _keras_metadata(metadata):
    try:
        from importlib.metadata import version
        keras_version = version("keras")
    except Exception:
        keras_version = "3"
    return {"keras_version": keras_version, "crossframe": common.flat_metadata(metadata)}


def _write_archive(path, h5_bytes, config, metadata_json):
    with zipfile.ZipFile(path, "w") as zf:  # stored, as Keras writes it
        zf.writestr("metadata.json", json.dumps(metadata_json))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr(WEIGHTS_MEMBER, h5_bytes)


def check_suffix(path):
    if not Path(path).name.endswith(SUFFIXES):
        raise FormatError(str(path), "Keras weights are named *.weights.h5 (or a whole model *.keras): "
                                     "Keras' load_weights looks at the suffix")


def has_sidecar(path):
    return False


def write(weights, path, spec, metadata, sidecar_path=None):
    check_suffix(path)
    if Path(path).name.endswith(".keras"):
        buf = io.BytesIO()
        _write_h5(buf, weights, spec, metadata)
        _write_archive(path, buf.getbuffer(), _keras_config(spec), _keras_metadata(metadata))
    else:
        _write_h5(str(path), weights, spec, metadata)


def read_metadata(path):
    with _open(path) as f:
        meta = {k[len(ATTR_PREFIX):]: (v.decode() if isinstance(v, bytes) else str(v))
                for k, v in f.attrs.items() if k.startswith(ATTR_PREFIX)}
    return meta


def update_metadata(path, metadata, sidecar_path=None):
    import h5py

    def set_attrs(f):
        for k in [k for k in f.attrs if k.startswith(ATTR_PREFIX)]:
            del f.attrs[k]
        for k, v in common.flat_metadata(metadata).items():
            f.attrs[ATTR_PREFIX + k] = v

    if not Path(path).name.endswith(".keras"):
        with h5py.File(str(path), "a") as f:
            set_attrs(f)
        return
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    buf = io.BytesIO(members.pop(WEIGHTS_MEMBER))
    with h5py.File(buf, "a") as f:
        set_attrs(f)
    meta_json = json.loads(members.get("metadata.json", b"{}"))
    meta_json["crossframe"] = common.flat_metadata(metadata)
    _write_archive(path, buf.getbuffer(), json.loads(members["config.json"]), meta_json)


def runner(path, spec):
    """``f(x_nhwc) -> logits`` of ``tf_impl.build(spec)`` after plain ``model.load_weights(path)``."""
    import tf_impl

    model = tf_impl.build(spec)
    model.load_weights(str(path))

    def run(x):
        return np.asarray(model(x, training=False), dtype=np.float64)
    return run
