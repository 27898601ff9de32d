"""What every file format shares: provenance metadata, hashing, staged (atomic) writes, strict checks.

Imports no deep-learning framework.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import threading
from pathlib import Path

import numpy as np

from ..errors import WeightError

SIDECAR_SUFFIX = ".json"  # metadata of formats that have no room for it: DST + ".json"
TMP_PREFIX = ".crossframe-tmp-"
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")


def crossframe_version():
    try:
        from importlib.metadata import version
        return version("crossframe")
    except Exception:  # a source tree that was not pip-installed
        return "0.1.0+src"


def flat_metadata(metadata):
    """``{str: str}`` (safetensors and HDF5 attributes hold strings): None dropped, the rest str()."""
    return {str(k): (v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v))
            for k, v in (metadata or {}).items() if v is not None}


def sidecar(path):
    """The JSON file that carries the metadata of ``path`` (for .pt/.pth and msgpack files)."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise WeightError(str(path), other=[f"not a readable metadata JSON file ({err})"]) from None
    return data if isinstance(data, dict) else {}


# -- hashing -------------------------------------------------------------------------------------

def sha256_file(path, chunk=1 << 22):
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(chunk)
        view = memoryview(buf)
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(view[:n])  # hashlib releases the GIL on large buffers: runs beside the parsing
    return h.hexdigest()


def sha256_path(path):
    """SHA-256 of a file; of a directory, SHA-256 over its files' relative paths and SHA-256s, sorted."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


# -- staged writes -------------------------------------------------------------------------------

# A temporary is ``.crossframe-tmp-<pid>-<host><random>-<name>``: the writer's PID and a tag of this
# host let a later writer sweep what a killed one (SIGKILL, power loss) left behind, and only that.
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:4]
HOLD_ENV = "CROSSFRAME_TEST_HOLD_STAGED"  # tests: seconds to sleep with the temporaries written


def _owned_re(prefix):
    return re.compile(re.escape(prefix) + r"(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{4})[0-9a-f]{8}-.")


def owned_prefix(prefix=TMP_PREFIX):
    """``prefix``, this process's PID and host tag and a random part: the start of a temporary's name that
    :func:`sweep_stale` (with the same ``prefix``) removes once this process is gone."""
    return f"{prefix}{os.getpid()}-{_HOST_TAG}{secrets.token_hex(4)}-"


def temp_name(path):
    """A fresh name next to ``path`` that keeps its suffixes (Keras and torch look at them)."""
    path = Path(path)
    return path.with_name(owned_prefix() + path.name)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def sweep_stale(directory, prefix=TMP_PREFIX):
    """Remove our temporaries in ``directory`` whose writer is dead: names of exactly our pattern
    (:func:`owned_prefix`), made on this host, by a PID that no longer runs. Returns the paths removed.
    Never touches anything else."""
    removed = []
    pattern = _owned_re(prefix)
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if not m or m["host"] != _HOST_TAG:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        remove(entry.path)
        removed.append(Path(entry.path))
    return removed


def remove(path):
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


_RENAME_EXCHANGE = 2


def _exchange(a, b):
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace(tmp, dst):
    """Move ``tmp`` onto ``dst`` atomically: ``os.replace`` for files; a directory is swapped with the old
    one in one step where the system can (``renameat2``), else the old one is renamed aside first; the
    old one is then removed."""
    tmp, dst = Path(tmp), Path(dst)
    check_replaceable(tmp, dst)
    if tmp.is_dir():
        if dst.exists():
            if _exchange(tmp, dst):  # tmp now holds the old checkpoint
                shutil.rmtree(tmp, ignore_errors=True)
                return
            old = temp_name(dst)
            os.rename(dst, old)
            os.rename(tmp, dst)
            shutil.rmtree(old, ignore_errors=True)
            return
        os.rename(tmp, dst)
    else:
        os.replace(tmp, dst)


def check_replaceable(tmp, dst):
    """Refuse a rename of ``tmp`` onto ``dst`` that would fail or replace the wrong kind of thing."""
    tmp, dst = Path(tmp), Path(dst)
    if tmp.is_dir():
        if (dst.exists() or dst.is_symlink()) and (not dst.is_dir() or dst.is_symlink()):
            raise WeightError(str(dst), other=["exists and is not a directory; not replaced by a checkpoint "
                                               "directory"])
    elif dst.is_dir() and not dst.is_symlink():
        raise WeightError(str(dst), other=["is a directory; expected a file name"])


@contextlib.contextmanager
def signals_deferred(signums=(signal.SIGINT, signal.SIGTERM)):
    """Hold SIGINT/SIGTERM until the block ends, then deliver them to the previous handlers.

    Python runs signal handlers in the main thread between bytecodes, whichever thread the kernel
    delivered the signal to, so ``pthread_sigmask`` on this thread alone would not keep a handler's
    exception out of a sequence of renames: the handlers themselves are swapped for a recorder.
    Off the main thread no handler can interrupt the block, and nothing is changed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught, previous = [], {}
    for signum in signums:
        try:
            previous[signum] = signal.signal(signum, lambda n, frame: caught.append((n, frame)))
        except (ValueError, OSError):
            pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        for signum, frame in caught[:1]:
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, frame)  # e.g. raises KeyboardInterrupt / archspec.Interrupted
            elif handler in (signal.SIG_DFL, None):
                signal.raise_signal(signum)


class Staged:
    """Write to temporary names next to ``dst`` (and its sidecar), then commit with renames.

    ``with Staged(dst, sidecar=True) as s: write(s.path); write_json(s.sidecar, ...); s.commit()``.
    Leaving the block without ``commit()`` (an error, Ctrl-C, SIGTERM through the CLI) removes every
    temporary: no file, never a half-written one, at the destination. Entering sweeps the stale
    temporaries of dead writers from ``dst``'s directory. ``commit`` renames the sidecar first, then
    ``dst``, with SIGINT/SIGTERM held: a signal leaves the new complete pair, and only a SIGKILL
    between the two renames can leave a new sidecar beside the old ``dst``.
    """

    def __init__(self, dst, sidecar=False):
        self.dst = Path(dst)
        self.dst.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(self.dst.parent)
        self.path = temp_name(self.dst)
        self.sidecar = temp_name(globals()["sidecar"](self.dst)) if sidecar else None
        self.committed = False

    def __enter__(self):
        return self

    def hold(self):
        """Tests only: sleep ``$CROSSFRAME_TEST_HOLD_STAGED`` seconds with the temporaries written."""
        seconds = float(os.environ.get(HOLD_ENV) or 0)
        if seconds > 0:
            import time

            time.sleep(seconds)

    def commit(self):
        self.hold()
        check_replaceable(self.path, self.dst)  # before the sidecar moves: a refusal changes nothing
        with signals_deferred():
            if self.sidecar is not None:
                os.replace(self.sidecar, sidecar(self.dst))
            replace(self.path, self.dst)
            self.committed = True
        return self.written()

    def written(self):
        return [self.dst] + ([sidecar(self.dst)] if self.sidecar is not None else [])

    def __exit__(self, *exc):
        if not self.committed:
            for own in (self.path, self.sidecar):
                if own is not None:
                    remove(own)
                    # and what a writer staged beside it under our name (Orbax's "<name>.orbax-checkpoint-tmp-N")
                    with contextlib.suppress(OSError):
                        for entry in os.scandir(own.parent):
                            if entry.name.startswith(own.name):
                                remove(entry.path)
        return False


# -- checks --------------------------------------------------------------------------------------

def check_layout(where, found, expected, names=None):
    """One WeightError listing every missing, unexpected and mis-shaped entry of a file.

    ``found`` and ``expected`` map the file's own keys to shapes; ``names`` (optional) maps a
    file key to the canonical name, shown beside it so the user can find it in the spec.
    """
    def label(key):
        if names and names.get(key) not in (None, key):
            return f"{key} ({names[key]})"
        return key

    missing = [label(k) for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    mismatched = [(label(k), tuple(found[k]), tuple(expected[k])) for k in expected
                  if k in found and tuple(found[k]) != tuple(expected[k])]
    if missing or unexpected or mismatched:
        raise WeightError(where, missing, unexpected, mismatched)


def dtype_name(array):
    return np.dtype(array.dtype).name


def check_floating(where, arrays):
    """Refuse non-floating weights (an int tensor where a kernel belongs), listing them all."""
    bad = [f"{k}: dtype {dtype_name(v)}, expected a floating dtype" for k, v in arrays.items()
           if dtype_name(v) not in FLOAT_DTYPES]
    if bad:
        raise WeightError(where, other=bad)


def nonfinite(weights):
    """``[(name, n_nan, n_inf)]`` for every tensor with a NaN or an infinity."""
    out = []
    for name, a in weights.items():
        a = np.asarray(a)
        if a.dtype.itemsize < 8:
            # A float64 sum of float32/16 values cannot overflow and is NaN/Inf exactly when a value
            # is: one vectorised pass with no boolean array per tensor.
            with np.errstate(all="ignore"):  # Inf - Inf is NaN: still "not finite", no warning
                if np.isfinite(np.sum(a, dtype=np.float64)):
                    continue
            a = a.astype(np.float32)
        finite = np.isfinite(a)
        if not finite.all():
            n_nan = int(np.isnan(a).sum())
            out.append((name, n_nan, int(a.size - finite.sum()) - n_nan))
    return out


NONFINITE_HINT = "pass --allow-nonfinite / allow_nonfinite=True to accept them"


def refuse_nonfinite(where, weights, what="non-finite values"):
    """The one finiteness check of every entry point: refuse NaN/Inf naming the tensors (and how
    to accept them anyway); returns ``[]``."""
    from ._errors import FormatError

    bad = nonfinite(weights)
    if bad:
        raise FormatError(where, f"{what} in {len(bad)} tensor(s): {describe_nonfinite(bad)} ({NONFINITE_HINT})")
    return bad


def describe_nonfinite(bad, limit=5):
    parts = []
    for name, n_nan, n_inf in bad[:limit]:
        what = ", ".join(s for s in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} Inf" if n_inf else "") if s)
        parts.append(f"{name} ({what})")
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    return f"{', '.join(parts)}{more}"


def bfloat16():
    import ml_dtypes
    return np.dtype(ml_dtypes.bfloat16)


def as_dtype(name):
    """numpy dtype for a name of FLOAT_DTYPES (bfloat16 through ml_dtypes)."""
    if name == "bfloat16":
        return bfloat16()
    if name not in FLOAT_DTYPES:
        raise WeightError("dtype", other=[f"{name!r}: expected one of {', '.join(FLOAT_DTYPES)}"])
    return np.dtype(name)


def check_spec_name(where, metadata, spec):
    """Refuse a file whose own metadata says it was made for another spec."""
    made_for = (metadata or {}).get("spec_name")
    if made_for not in (None, "", spec.name):
        raise WeightError(where, other=[f"made for spec {made_for!r}, expected {spec.name!r}"])


def safetensors_set_metadata(path, metadata):
    """Replace the ``__metadata__`` of a safetensors file in place (header rewritten, data copied as is)."""
    import struct

    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(path, "rb") as src:
            (n,) = struct.unpack("<Q", src.read(8))
            header = json.loads(src.read(n))
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
            text = json.dumps(header, separators=(",", ":")).encode()
            text += b" " * (-len(text) % 8)  # safetensors aligns the data on 8 bytes
            with open(tmp, "wb") as dst:
                dst.write(struct.pack("<Q", len(text)))
                dst.write(text)
                shutil.copyfileobj(src, dst, 1 << 22)
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise


# -- reading: what a source may be, and what it may declare -------------------------------------

def check_readable(path, kind="file"):
    """Refuse, before anything opens it, a source that is not a regular file: a FIFO would block the
    reader (and the hash beside it) forever, ``/dev/zero`` never ends, a socket cannot be read.

    ``kind``: ``"file"`` (a regular file, after symlinks), ``"directory"`` (an Orbax checkpoint:
    a directory whose entries are regular files and directories) or ``"any"`` (either).
    """
    import stat

    from archspec.paths import special_kind

    from ._errors import FormatError

    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FormatError(str(path), "no such file or directory") from None
    except OSError as err:
        raise FormatError(str(path), f"cannot be read ({err.strerror or type(err).__name__})") from None
    if stat.S_ISREG(mode):
        if kind == "directory":
            raise FormatError(str(path), "is a file; expected a checkpoint directory")
        return
    if stat.S_ISDIR(mode):
        if kind == "file":
            raise FormatError(str(path), "is a directory; expected a checkpoint file")
        for root, dirs, files in os.walk(path):
            for name in files:  # os.walk lists FIFOs, devices and sockets with the files
                inner = Path(root) / name
                try:
                    inner_mode = os.stat(inner).st_mode
                except OSError:
                    continue  # a dangling link: the reader reports what it misses
                if not stat.S_ISREG(inner_mode) and not stat.S_ISDIR(inner_mode):
                    raise FormatError(str(path), f"holds {inner.relative_to(path)}, which is "
                                                 f"{special_kind(inner_mode)}, not a regular file")
        return
    raise FormatError(str(path), f"is {special_kind(mode)}, not a regular file: checkpoints are read from "
                                 "regular files only")


def check_declared(where, declared, expected, names=None):
    """Check what a file *declares* (``{key: (shape, dtype name)}``) before any tensor data is read:
    every missing, unexpected and mis-shaped entry (one WeightError), then the dtypes (floating only).

    A crafted file can declare a tensor of terabytes in a few bytes (a compressed HDF5 dataset, a
    zip member, a safetensors header): refusing it here means it is never allocated.
    """
    from ._errors import FormatError

    check_layout(where, {k: shape for k, (shape, _) in declared.items()}, expected, names)
    bad = [f"tensor {k} has dtype {declared[k][1]}, expected a floating dtype of {'/'.join(FLOAT_DTYPES)}"
           for k in expected if declared[k][1] not in FLOAT_DTYPES]
    if bad:
        raise FormatError(where, *bad[:8], *([f"and {len(bad) - 8} more"] if len(bad) > 8 else []))


def expected_nbytes(spec, itemsize=8, slack=1 << 20):
    """An upper bound on the bytes of ``spec``'s tensors in any floating dtype (float64 at most)."""
    return sum(int(np.prod(t.shape)) for t in spec.tensors()) * itemsize + slack


def read_capped(stream, cap, where, what):
    """Read ``stream`` to its end, refusing (FormatError) more than ``cap`` bytes: a zip member whose
    header lies about its size cannot grow past the cap."""
    from ._errors import FormatError

    chunks, total = [], 0
    while True:
        chunk = stream.read(min(1 << 22, cap + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            raise FormatError(where, f"{what} holds more than {cap} bytes, more than its weights can need")
        chunks.append(chunk)


_SAFETENSORS_DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64",
                       "I8": "int8", "I16": "int16", "I32": "int32", "I64": "int64", "U8": "uint8",
                       "U16": "uint16", "U32": "uint32", "U64": "uint64", "BOOL": "bool",
                       "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "C64": "complex64"}
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "int8": 1, "int16": 2, "int32": 4,
             "int64": 8, "uint8": 1, "uint16": 2, "uint32": 4, "uint64": 8, "bool": 1, "float8_e4m3fn": 1,
             "float8_e5m2": 1, "complex64": 8}
_SAFETENSORS_MAX_HEADER = 100 << 20  # the safetensors library's own limit


def safetensors_declared(path):
    """``{name: (shape, dtype name)}`` from a safetensors file's header, read without its data, after
    checking that every tensor's bytes lie inside the file (a header cannot declare more)."""
    import struct

    from ._errors import FormatError

    where = str(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise FormatError(where, f"not a safetensors file ({size} bytes: shorter than its header length)")
        (n,) = struct.unpack("<Q", head)
        if n > min(_SAFETENSORS_MAX_HEADER, size - 8):
            raise FormatError(where, f"not a readable safetensors file (its header declares {n} bytes, "
                                     f"in a file of {size})")
        try:
            header = json.loads(f.read(n))
        except ValueError as err:
            raise FormatError(where, f"not a readable safetensors file (its header is no JSON: {err})") from None
    if not isinstance(header, dict):
        raise FormatError(where, "not a readable safetensors file (its header is no JSON object)")
    data = size - 8 - n
    out, bad = {}, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            shape = tuple(int(d) for d in shape)
            if not all(isinstance(v, int) and v >= 0 for v in (*shape, start, end)):
                raise ValueError
        except (TypeError, KeyError, ValueError):
            bad.append(f"tensor {name}: a malformed header entry")
            continue
        dtype = _SAFETENSORS_DTYPES.get(str(dtype), str(dtype))
        itemsize = _ITEMSIZE.get(dtype)
        if itemsize is None:
            bad.append(f"tensor {name}: unknown dtype {dtype}")
            continue
        if not start <= end <= data or end - start != int(np.prod(shape, dtype=object)) * itemsize:
            bad.append(f"tensor {name}: {shape} {dtype} declares bytes {start}..{end} of {data}")
            continue
        out[name] = (shape, dtype)
    if bad:
        raise FormatError(where, "not a readable safetensors file", *bad[:5],
                          *([f"and {len(bad) - 5} more"] if len(bad) > 5 else []))
    return out
