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
_TMP_RE = re.compile(re.escape(TMP_PREFIX) + r"(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{4})[0-9a-f]{8}-.")
HOLD_ENV = "CROSSFRAME_TEST_HOLD_STAGED"  # tests: seconds to sleep with the temporaries written


def temp_name(path):
    """A fresh name next to ``path`` that keeps its suffixes (Keras and torch look at them)."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{_HOST_TAG}{secrets.token_hex(4)}-{path.name}")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def sweep_stale(directory):
    """Remove our temporaries in ``directory`` whose writer is dead: names of exactly our pattern, made on
    this host, by a PID that no longer runs. Returns the paths removed. Never touches anything else."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        m = _TMP_RE.match(entry.name)
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
