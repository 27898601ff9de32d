"""Record files of encoded images: TFRecord and ArrayRecord shards of ``tf.train.Example`` protos.

No TensorFlow: the ``tf.train.Example`` protobuf wire format is encoded and decoded here
(``Example{1: Features}``, ``Features{1: map<string, Feature>}``, a map entry ``{1: key, 2: Feature}``,
``Feature{1: BytesList{1: bytes*}, 2: FloatList{1: float*}, 3: Int64List{1: int64*}}``, packed or
unpacked numbers; unknown fields are skipped by their wire type), and the TFRecord framing is read
and written here: per record ``uint64 length`` (little endian), ``uint32 masked crc32c(length bytes)``,
the data, ``uint32 masked crc32c(data)``, with ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8``
(mod 2^32). ArrayRecord files go through the ``array_record`` package, one serialized Example per record.

Keys: the image is ``image/encoded`` (the ImageNet converters' layout) or ``image`` (TFDS), the label
``image/class/label`` or ``label`` (int64), used as stored. :func:`pack` (``crossframe data pack``) writes
``image/encoded``, ``image/class/label``, ``image/format`` and ``image/filename``.

Integrity: a TFRecord shard is indexed by walking its record headers (each length's crc is checked);
record ``i`` is read with ``os.pread`` (thread-safe) and its data crc checked. Every corruption,
truncation, missing key or label outside ``[0, num_classes)`` is a ``ConfigError`` of one line naming
the file, the record, what was found and what was expected.
"""

from __future__ import annotations

import glob as globlib
import json
import os
import struct
import threading

import numpy as np
from archspec.errors import ConfigError

from . import images

TFRECORD, ARRAYRECORD = "tfrecord", "arrayrecord"
FORMATS = (TFRECORD, ARRAYRECORD)
EXTENSIONS = {TFRECORD: ".tfrecord", ARRAYRECORD: ".arrayrecord"}
IMAGE_KEYS = ("image/encoded", "image")
LABEL_KEYS = ("image/class/label", "label")
CLASSES_FILE = "classes.json"
SIDE_FORMAT = "crossframe-records"
ARRAYRECORD_WRITER_OPTIONS = "group_size:1"  # one record per chunk: reading record i decodes only it
ARRAYRECORD_READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"  # random access
LABEL_PROBE = 512  # bytes of a TFRecord record read to find its label (more only when the label is further)


class Malformed(ValueError):
    """A protobuf that does not parse (the caller names the file and record)."""


# ----------------------------------------------------------------------------- protobuf wire format

def _put_varint(out, value):
    value &= (1 << 64) - 1  # negative int64: two's complement, ten bytes
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _put_len(out, field, payload):
    _put_varint(out, (field << 3) | 2)
    _put_varint(out, len(payload))
    out += payload


def encode_feature(value):
    """A ``Feature`` message: bytes/str (or a list of them) -> BytesList, ints -> Int64List (packed),
    floats -> FloatList (packed)."""
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    inner = bytearray()
    if all(isinstance(v, (bytes, bytearray, str)) for v in values):
        for v in values:
            _put_len(inner, 1, v.encode() if isinstance(v, str) else bytes(v))
        field = 1
    elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        packed = bytearray()
        for v in values:
            _put_varint(packed, int(v))
        if values:
            _put_len(inner, 1, packed)
        field = 3
    elif all(isinstance(v, (float, np.floating, int, np.integer)) for v in values):
        if values:
            _put_len(inner, 1, np.asarray(values, "<f4").tobytes())
        field = 2
    else:
        raise TypeError(f"feature values {values[:3]!r}: expected bytes, ints or floats")
    out = bytearray()
    _put_len(out, field, inner)
    return bytes(out)


def encode_example(features):
    """A serialized ``tf.train.Example`` of ``{key: value}`` (values as :func:`encode_feature`), keys in
    the order given."""
    entries = bytearray()
    for key, value in features.items():
        entry = bytearray()
        _put_len(entry, 1, key.encode())
        _put_len(entry, 2, encode_feature(value))
        _put_len(entries, 1, entry)
    out = bytearray()
    _put_len(out, 1, entries)
    return bytes(out)


class _Buffer:
    """The bytes of a whole message in memory."""

    def __init__(self, data):
        self.data, self.size = memoryview(data), len(data)

    def get(self, offset, n):
        return self.data[offset:offset + n]


class _FileRegion:
    """The ``size`` bytes of a message at ``base`` in file ``fd``, read with ``os.pread`` in windows as
    the parser asks for them (only the headers, and the fields that are wanted, are read)."""

    def __init__(self, fd, base, size, window=LABEL_PROBE):
        self.fd, self.base, self.size, self.window = fd, base, size, window
        self.start, self.data = 0, b""

    def get(self, offset, n):
        if not (self.start <= offset and offset + n <= self.start + len(self.data)):
            want = min(max(n, self.window), self.size - offset)
            self.start, self.data = offset, os.pread(self.fd, want, self.base + offset)
        return memoryview(self.data)[offset - self.start:offset - self.start + n]


def _varint(src, pos, end):
    chunk = src.get(pos, min(10, end - pos))
    value = shift = 0
    for i, byte in enumerate(chunk):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise Malformed(f"a varint runs past its message (byte {pos})")


def _fields(src, start, end):
    """``(field, wire type, value or offset, length)`` of each field of the message at ``[start, end)``."""
    pos = start
    while pos < end:
        key, pos = _varint(src, pos, end)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(src, pos, end)
            yield field, wire, value, 0
            continue
        if wire == 2:
            n, pos = _varint(src, pos, end)
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
        else:
            raise Malformed(f"wire type {wire} of field {field} (byte {pos})")
        if pos + n > end:
            raise Malformed(f"field {field} of {n} bytes runs past its message (byte {pos})")
        yield field, wire, pos, n
        pos += n


def _int64(value):
    return value - (1 << 64) if value >= 1 << 63 else value


def _feature(src, start, end):
    """``(kind, values)`` of a ``Feature`` message: kind ``'bytes'``, ``'float'``, ``'int64'`` or None."""
    kind, values = None, []
    for field, wire, off, n in _fields(src, start, end):
        if wire != 2 or field not in (1, 2, 3):
            continue
        kind = {1: "bytes", 2: "float", 3: "int64"}[field]
        for f, w, o, m in _fields(src, off, off + n):
            if f != 1:
                continue
            if field == 1 and w == 2:
                values.append(bytes(src.get(o, m)))
            elif field == 2 and w == 2:
                if m % 4:
                    raise Malformed(f"a packed float list of {m} bytes")
                values += np.frombuffer(bytes(src.get(o, m)), "<f4").tolist()
            elif field == 2 and w == 5:
                values.append(struct.unpack("<f", src.get(o, 4))[0])
            elif field == 3 and w == 2:
                pos = o
                while pos < o + m:
                    v, pos = _varint(src, pos, o + m)
                    values.append(_int64(v))
            elif field == 3 and w == 0:
                values.append(_int64(o))
    return kind, values


def _entries(src):
    """``(key, start, end)`` of each ``Feature`` of an ``Example`` (the later of repeated keys wins)."""
    for field, wire, off, n in _fields(src, 0, src.size):
        if field != 1 or wire != 2:
            continue
        for f, w, o, m in _fields(src, off, off + n):
            if f != 1 or w != 2:
                continue
            key, feature = "", (0, 0)
            for f3, w3, o3, m3 in _fields(src, o, o + m):
                if f3 == 1 and w3 == 2:
                    key = bytes(src.get(o3, m3)).decode("utf-8", "replace")
                elif f3 == 2 and w3 == 2:
                    feature = (o3, o3 + m3)
            yield key, feature[0], feature[1]


def decode_example(data, keys=None):
    """``{key: (kind, values)}`` of a serialized ``tf.train.Example`` (only ``keys`` when given)."""
    return _decode(_Buffer(data), keys)


def _decode(src, keys=None):
    out = {}
    for key, start, end in _entries(src):
        if keys is None or key in keys:
            out[key] = _feature(src, start, end)
    return out


def _pick(features, choices, kind, where):
    """The values of the first of ``choices`` present in ``features``, which must be of ``kind``."""
    for key in choices:
        if key in features:
            found, values = features[key]
            if found != kind or len(values) != 1:
                raise ConfigError(f"{where}: feature {key!r} holds {len(values)} {found or 'empty'} value(s); "
                                  f"expected one {kind} value")
            return values[0]
    raise ConfigError(f"{where}: no {' or '.join(repr(k) for k in choices)} feature (found "
                      f"{', '.join(repr(k) for k in features) or 'none'}); expected a tf.train.Example with "
                      f"{choices[0]!r} and {LABEL_KEYS[0]!r} (or TFDS's 'image' and 'label')")


def image_and_label(data, where):
    """``(encoded image bytes, label)`` of a serialized Example; ``where`` names it in errors."""
    try:
        features = decode_example(data, IMAGE_KEYS + LABEL_KEYS)
    except Malformed as err:
        raise ConfigError(f"{where}: not a tf.train.Example ({err})") from None
    return _pick(features, IMAGE_KEYS, "bytes", where), _pick(features, LABEL_KEYS, "int64", where)


# ----------------------------------------------------------------------------- TFRecord framing

MASK_DELTA = 0xA282EAD8


def masked_crc(data):
    import google_crc32c

    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + MASK_DELTA) & 0xFFFFFFFF


class TFRecordWriter:
    """Writes records with the TFRecord framing (``with TFRecordWriter(path) as w: w.write(data)``)."""

    def __init__(self, path):
        self.path, self.count = path, 0
        self.file = open(path, "wb")

    def write(self, data):
        header = struct.pack("<Q", len(data))
        self.file.write(header + struct.pack("<I", masked_crc(header)) + bytes(data)
                        + struct.pack("<I", masked_crc(data)))
        self.count += 1

    def close(self):
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TFRecordFile:
    """A TFRecord shard: indexed on opening (the record headers, each length's crc checked), record ``i``
    read with ``os.pread`` and its data crc checked."""

    format = TFRECORD

    def __init__(self, path):
        self.path = path
        try:
            self.fd = os.open(path, os.O_RDONLY)
        except OSError as err:
            raise ConfigError(f"{path}: cannot open ({err.strerror})") from None
        size = os.fstat(self.fd).st_size
        offsets, lengths = [], []
        pos = 0
        while pos < size:  # one 12-byte pread per record: the data is not read
            k = len(offsets)
            head = os.pread(self.fd, 12, pos)
            if len(head) < 12:
                raise ConfigError(f"{path}: record {k}: truncated: {len(head)} bytes left at byte {pos}; "
                                  "expected a 12-byte record header")
            (length,), (crc,) = struct.unpack("<Q", head[:8]), struct.unpack("<I", head[8:])
            if masked_crc(head[:8]) != crc:
                raise ConfigError(f"{path}: record {k}: length crc {crc:#010x} stored at byte {pos + 8}, "
                                  f"{masked_crc(head[:8]):#010x} computed; expected equal (corrupt file, or not a "
                                  "TFRecord file)")
            if pos + 12 + length + 4 > size:
                raise ConfigError(f"{path}: record {k}: truncated: {length} data bytes + 4 crc bytes at byte "
                                  f"{pos + 12}, the file ends at byte {size}")
            offsets.append(pos + 12)
            lengths.append(length)
            pos += 12 + length + 4
        self.offsets = np.asarray(offsets, np.int64)
        self.lengths = np.asarray(lengths, np.int64)

    def __len__(self):
        return len(self.offsets)

    def read(self, i):
        """The data of record ``i``, its crc checked."""
        off, n = int(self.offsets[i]), int(self.lengths[i])
        blob = os.pread(self.fd, n + 4, off)
        if len(blob) != n + 4:
            raise ConfigError(f"{self.path}: record {i}: truncated: read {len(blob)} bytes at byte {off}; "
                              f"expected {n + 4} (the file changed since it was indexed)")
        (crc,) = struct.unpack("<I", blob[n:])
        if masked_crc(blob[:n]) != crc:
            raise ConfigError(f"{self.path}: record {i}: data crc {crc:#010x} stored, {masked_crc(blob[:n]):#010x} "
                              "computed from the data; expected equal (corrupt record)")
        return blob[:n]

    def label(self, i):
        """The label of record ``i``, reading only the headers of its Example up to the label (the data
        crc is checked when the record is read for its image)."""
        where = f"{self.path}: record {i}"
        try:
            features = _decode(_FileRegion(self.fd, int(self.offsets[i]), int(self.lengths[i])), LABEL_KEYS)
        except Malformed as err:
            raise ConfigError(f"{where}: not a tf.train.Example ({err})") from None
        return _pick(features, LABEL_KEYS, "int64", where)

    def close(self):
        os.close(self.fd)

    def __getstate__(self):  # picklable (worker processes): the index travels, the file is opened again
        return {"path": self.path, "offsets": self.offsets, "lengths": self.lengths}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.fd = os.open(self.path, os.O_RDONLY)


class ArrayRecordFile:
    """An ArrayRecord shard (random access; one reader shared by the decoding threads)."""

    format = ARRAYRECORD

    def __init__(self, path):
        from array_record.python.array_record_module import ArrayRecordReader

        self.path = path
        if not os.path.isfile(path):
            raise ConfigError(f"{path}: no such file")
        try:
            self.reader = ArrayRecordReader(path, ARRAYRECORD_READER_OPTIONS)
            ok = self.reader.ok()
            self.count = int(self.reader.num_records()) if ok else 0
        except (RuntimeError, ValueError, OSError) as err:
            raise ConfigError(f"{path}: not a readable ArrayRecord file ({_first_line(err)})") from None
        if not ok:
            raise ConfigError(f"{path}: not a readable ArrayRecord file ({os.path.getsize(path)} bytes; its footer "
                              "and record index do not parse: truncated, or not an ArrayRecord file); expected a "
                              "whole file as ArrayRecordWriter closes it")

    def __len__(self):
        return self.count

    def read(self, i):
        try:
            return self.reader.read([int(i)])[0]
        except (RuntimeError, ValueError, OSError, IndexError) as err:
            raise ConfigError(f"{self.path}: record {i}: cannot read ({_first_line(err)})") from None

    def __getstate__(self):  # picklable (worker processes): the file is opened again
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def labels(self):
        """The labels of all records (a sequential pass over the shard)."""
        from array_record.python.array_record_module import ArrayRecordReader

        out = []
        try:
            reader = ArrayRecordReader(self.path)  # default options: read ahead, sequential
            try:
                for start in range(0, self.count, 256):
                    stop = min(start + 256, self.count)
                    try:
                        batch = reader.read(start, stop)
                    except (RuntimeError, ValueError, OSError):
                        batch = [self.read(i) for i in range(start, stop)]  # the record that fails, by number
                    for k, data in enumerate(batch):
                        where = f"{self.path}: record {start + k}"
                        try:
                            features = decode_example(data, LABEL_KEYS)
                        except Malformed as err:
                            raise ConfigError(f"{where}: not a tf.train.Example ({err})") from None
                        out.append(_pick(features, LABEL_KEYS, "int64", where))
            finally:
                reader.close()
        except ConfigError:
            raise
        except (RuntimeError, ValueError, OSError) as err:
            raise ConfigError(f"{self.path}: cannot read ({_first_line(err)})") from None
        return out


def _first_line(err):
    text = str(err).strip().splitlines()
    return f"{err.__class__.__name__}: {text[0] if text else ''}"


# ----------------------------------------------------------------------------- shards, labels, image sets

_CACHE = {}
_CACHE_LOCK = threading.Lock()


def open_shard(path, fmt):
    """The (cached) reader of shard ``path`` with its labels: ``(shard, labels int64 array)``."""
    st = os.stat(path)
    key = (fmt, os.path.abspath(path), st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    shard = TFRecordFile(path) if fmt == TFRECORD else ArrayRecordFile(path)
    if fmt == TFRECORD:
        labels = [shard.label(i) for i in range(len(shard))]
    else:
        labels = shard.labels()
    result = (shard, np.asarray(labels, np.int64))
    with _CACHE_LOCK:
        _CACHE[key] = result
    return result


def shard_files(fmt, pattern):
    """``{'train': [shards], 'val': [shards]}`` of a directory written by :func:`pack`, or ``{'all': [...]}``
    of a glob (sorted); a ``ConfigError`` when nothing matches."""
    if os.path.isdir(pattern):
        def match(prefix):
            return sorted(p for p in globlib.glob(os.path.join(globlib.escape(pattern), prefix + "-*"))
                          if os.path.isfile(p))

        train = match("train")
        held = match("val") or match("test")
        if train and held:
            return {"train": train, "val": held}
        if train:
            return {"all": train}
        example = os.path.join(pattern, "*" + EXTENSIONS[fmt])
        raise ConfigError(f"{fmt}:{pattern}: a directory holding no train-* shards; expected `crossframe data pack`'s "
                          f"OUT (train-*, val-* shards) or a glob such as {example}")
    files = sorted(p for p in globlib.glob(pattern) if os.path.isfile(p) and os.path.basename(p) != CLASSES_FILE)
    if not files:
        raise ConfigError(f"{fmt}:{pattern}: matches no files")
    return {"all": files}


def read_classes(directory):
    """The class names of the ``classes.json`` in ``directory``, or None when there is none."""
    path = os.path.join(directory, CLASSES_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            side = json.load(f)
        classes = side["classes"] if isinstance(side, dict) else side
        if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
            raise ValueError("expected {\"classes\": [name, ...]}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{path}: unreadable class list ({err.__class__.__name__}: {err})") from None
    return classes


def _sidecar_dir(pattern, files):
    if os.path.isdir(pattern):
        return pattern
    dirs = {os.path.dirname(os.path.abspath(p)) for p in files}
    return dirs.pop() if len(dirs) == 1 else None


def load_split(fmt, files):
    """``(shards, refs, labels)``: the shard readers, ``(shard, record)`` of each example, int64 labels."""
    shards, refs, labels = [], [], []
    for s, (shard, y) in enumerate(images.pool().map(lambda p: open_shard(p, fmt), files)):
        shards.append(shard)
        refs.append(np.stack([np.full(len(y), s, np.int64), np.arange(len(y), dtype=np.int64)], axis=1))
        labels.append(y)
    refs = np.concatenate(refs) if refs else np.zeros((0, 2), np.int64)
    return shards, refs, (np.concatenate(labels) if labels else np.zeros(0, np.int64))


def check_labels(shards, refs, labels, num_classes, why):
    """A ``ConfigError`` naming the first record whose label is outside ``[0, num_classes)``."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        s, k = refs[bad[0]]
        hint = (" (labels are used as stored: 1-based labels, as the Inception converter writes, need "
                "num_classes + 1 or relabelling)" if labels[bad[0]] == num_classes else "")
        raise ConfigError(f"{shards[s].path}: record {k}: label {labels[bad[0]]} outside [0, {num_classes}) "
                          f"({why}){hint}")


def source(fmt, pattern):
    """Everything about ``fmt:pattern`` but the images: ``{'splits': {name: (shards, refs, labels)},
    'classes': names or None, 'num_classes': n}``, labels checked."""
    found = shard_files(fmt, pattern)
    splits = {name: load_split(fmt, files) for name, files in found.items()}
    classes = read_classes(_sidecar_dir(pattern, [p for f in found.values() for p in f]) or "")
    if classes is not None:
        n, why = len(classes), f"{CLASSES_FILE} lists {len(classes)} classes"
    else:
        n = int(max((int(y.max()) for _, _, y in splits.values() if len(y)), default=-1)) + 1
        why = f"no {CLASSES_FILE}: the class count is 1 + the largest label"
    if n < 1:
        raise ConfigError(f"{fmt}:{pattern}: holds no records")
    for shards, refs, labels in splits.values():
        check_labels(shards, refs, labels, n, why)
    return {"splits": splits, "classes": classes, "num_classes": n}


class Records(images.ImageSet):
    """Encoded images in record shards (``refs[i] = (shard, record)``), decoded and transformed exactly
    as :class:`images.Images` decodes and transforms files."""

    def __init__(self, shards, refs, input_shape, mean, std, seed=0):
        self.shards, self.refs = list(shards), np.asarray(refs, np.int64)
        super().__init__(len(self.refs), input_shape, mean, std, seed)

    def source(self, index):
        s, k = self.refs[index]
        shard = self.shards[s]
        where = f"{shard.path}: record {k}"
        return image_and_label(shard.read(int(k)), where)[0], where


# ----------------------------------------------------------------------------- writing (crossframe data pack)

class ArrayRecordWriter:
    def __init__(self, path):
        from array_record.python.array_record_module import ArrayRecordWriter as Writer

        self.path, self.count = path, 0
        self.writer = Writer(str(path), ARRAYRECORD_WRITER_OPTIONS)

    def write(self, data):
        self.writer.write(bytes(data))
        self.count += 1

    def close(self):
        self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def writer(path, fmt):
    return TFRecordWriter(path) if fmt == TFRECORD else ArrayRecordWriter(path)


IMAGE_FORMATS = {".png": b"png", ".jpg": b"jpeg", ".jpeg": b"jpeg"}


def file_example(data, label, filename):
    """The Example :func:`crossframe data pack` writes for the bytes ``data`` of image file ``filename``
    (its path relative to the class folders' root) of class ``label``."""
    # keys in sorted order (TensorFlow's deterministic serialization): the label comes before the image,
    # so reading a label takes one small read
    return encode_example({"image/class/label": int(label), "image/encoded": data,
                           "image/filename": filename.replace(os.sep, "/"),
                           "image/format": IMAGE_FORMATS[os.path.splitext(filename)[1].lower()]})
