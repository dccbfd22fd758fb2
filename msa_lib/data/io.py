"""The project's feature file, and safe reading and writing of files in general.

**Feature file** (``write_features`` / ``read_features``): one ``.npz`` archive (a zip of ``.npy``
arrays plus one JSON document) that holds a :class:`MultimodalDataset` and can be opened without
``msa_lib`` (``numpy.load(path)``). Nothing in it can run code when it is read: arrays are read with
``allow_pickle=False`` and the metadata is JSON. Layout::

    metadata.json   {"format": "msa_lib.data", "version": 2, "n_samples": N,
                     "meta": {...DatasetMeta as dict...},
                     "samples": {"id", "split", "language", "raw_text", "group": [N str],
                                 "extra": [N dicts]},
                     "failures": [{"clip", "stage", "error", ...}, ...],
                     "arrays": {"scores": "scores", "labels": "labels",
                                "features": {modality: {"values": "features_000",
                                                        "lengths": "lengths_000"}}}}
    scores.npy      float64 (N,)   NaN = unknown
    labels.npy      int64 (N,)     -1 = unknown
    features_k.npy  float32 (sum of T_i, D)  every sample's T_i x D sequence, one after the other
    lengths_k.npy   int64 (N,)     T_i (0 = modality missing for that sample)

Files of version 1 (a pickle) are read only with ``read_features(path, trust=True)``: a pickle can run
code when it is opened, so only open one you made.

**Third-party pickles** (MMSA, the seed format, the shipped RAVDESS vectors) go through
:func:`load_pickle`, a restricted unpickler that builds numpy arrays and plain containers only and
refuses anything else with a :class:`FeatureFormatError`.

**Writing**: every writer goes through :func:`atomic_write` (temporary file in the same folder, then
``os.replace``: a reader sees the old file or the new one, never half of one) under
:func:`output_lock` (an advisory ``fcntl`` lock on ``<file>.lock``: a second process writing the same
output is refused with one message naming the first).
"""
from __future__ import annotations

import _compat_pickle
import contextlib
import fcntl
import io
import json
import os
import pickle
import socket
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from msa_lib.core.paths import input_path, user_path
from msa_lib.data.schema import DatasetMeta, FeatureFormatError, MultimodalDataset

FORMAT_NAME = "msa_lib.data"
FORMAT_VERSION = 2  # 2: .npz + JSON; 1: a pickle (read with trust=True only)
LEGACY_FORMAT_NAMES = (FORMAT_NAME, "msa_lib.features")  # version-1 pickles (before and after the package move)
FEATURE_SUFFIX = ".npz"
METADATA_MEMBER = "metadata.json"
SAMPLE_KEYS = ("id", "split", "language", "raw_text", "group", "scores", "labels", "features")
STRING_COLUMNS = ("id", "split", "language", "raw_text", "group")
_FEATURE_FILE = "an msa_lib feature file (.npz: numpy arrays + metadata.json)"


# ----------------------------------------------------------------------------------------- errors
class OutputInUseError(RuntimeError):
    """Another process holds the output lock of a file this process wants to write."""

    def __init__(self, path: Path, holder: dict):
        self.path, self.holder = path, holder
        who = f"pid {holder['pid']}" if holder.get("pid") else "another process"
        if holder.get("host") and holder.get("host") != socket.gethostname():
            who += f" on {holder['host']}"
        if holder.get("command"):
            who += f", `{holder['command']}`"
        if holder.get("since"):
            who += f", since {holder['since']}"
        super().__init__(f"{path}: another process is writing this file ({who}); wait for it to finish "
                         f"or choose another output path")


@contextlib.contextmanager
def format_guard(source, expected: str) -> Iterator[None]:
    """Turn a stray ``KeyError`` / ``IndexError`` / ``TypeError`` ... met while reading a file's
    internals into the same :class:`FeatureFormatError` every other bad file gives."""
    try:
        yield
    except FeatureFormatError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
        raise FeatureFormatError(source, "<structure>", expected, f"{type(exc).__name__}: {exc}") from exc


# ----------------------------------------------------------------------------------------- writing
_HELD_LOCKS: dict[str, list] = {}  # output path -> [lock fd, depth]: re-entrant within one process
_HELD_GUARD = threading.Lock()


def lock_path_for(path: str | os.PathLike) -> Path:
    target = user_path(path)
    return target.with_name(f"{target.name}.lock")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold the advisory lock of output ``path`` (``<path>.lock``, ``fcntl.flock``) for the block.

    A second process asking for the same output gets :class:`OutputInUseError` at once (no waiting);
    the same process may nest the lock (``msa extract`` holds it for the whole run and
    ``write_features`` asks again). The lock dies with its process, so a crash never leaves a stale one.
    """
    target = user_path(path)
    key = str(target)
    with _HELD_GUARD:
        if key in _HELD_LOCKS:
            _HELD_LOCKS[key][1] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield target
        finally:
            with _HELD_GUARD:
                _HELD_LOCKS[key][1] -= 1
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    lock_file = lock_path_for(target)
    fd = _acquire(lock_file, target)
    with _HELD_GUARD:
        _HELD_LOCKS[key] = [fd, 1]
    try:
        yield target
    finally:
        with _HELD_GUARD:
            del _HELD_LOCKS[key]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_file)  # while still holding it; a waiter that opened it sees the inode change
        os.close(fd)


def _acquire(lock_file: Path, target: Path) -> int:
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputInUseError(target, holder) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(lock_file).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # the previous holder removed this lock file after we opened it: take a fresh one
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200] if sys.argv else ""}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(info).encode())
    return fd


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 4096).decode() or "{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(fh)`` on a temporary file next to ``path``, then rename it over ``path``: an
    interrupted or failed write leaves the previous file (or none), never a broken one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes it private (0600); give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _file_mode(path: Path) -> int:
    """The mode a plain ``open(path, "w")`` would give: the existing file's, else 0666 minus the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_pickle(obj, path: Path) -> None:
    """Pickle ``obj`` atomically. For the project's own caches and for formats that are pickles by
    definition (MMSA, seed); the feature file is never a pickle."""
    atomic_write(path, lambda fh: pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL))


# ----------------------------------------------------------------------------------------- feature file
def write_features(ds: MultimodalDataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` as an ``.npz`` feature file (layout in the module docstring), atomically and under
    the output lock. ``path`` is relative to the current folder and must end in ``.npz``."""
    path = user_path(path)
    if path.suffix.lower() != FEATURE_SUFFIX:
        raise ValueError(f"{path}: feature files are {FEATURE_SUFFIX} archives (numpy arrays + JSON, nothing "
                         f"in them runs when read); name it {path.with_suffix(FEATURE_SUFFIX).name}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name such as {path / ('features' + FEATURE_SUFFIX)}")
    ds.validate(str(path))
    arrays: dict[str, np.ndarray] = {"scores": ds.scores.astype(np.float64), "labels": ds.labels.astype(np.int64)}
    layout: dict[str, dict] = {}
    for k, (modality, seqs) in enumerate(ds.features.items()):
        dim = ds.meta.modalities[modality].dim
        lengths = np.array([len(a) for a in seqs], dtype=np.int64)
        parts = [np.asarray(a, np.float32).reshape(-1, dim) for a in seqs]
        values = np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)
        arrays[f"features_{k:03d}"], arrays[f"lengths_{k:03d}"] = values, lengths
        layout[modality] = {"values": f"features_{k:03d}", "lengths": f"lengths_{k:03d}"}
    metadata = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "n_samples": len(ds),
        "meta": ds.meta.to_dict(),
        "samples": {**{c: [str(v) for v in getattr(ds, _column(c))] for c in STRING_COLUMNS},
                    "extra": [dict(e) for e in ds.extra]},
        "failures": list(ds.failures),
        "arrays": {"scores": "scores", "labels": "labels", "features": layout},
    }
    try:
        document = json.dumps(metadata, ensure_ascii=False, default=_json_value).encode("utf-8")
    except TypeError as exc:
        raise ValueError(f"{path}: cannot write the dataset's metadata: {exc}") from exc

    def write(fh):
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(METADATA_MEMBER, document)
            for name, arr in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)

    with output_lock(path):
        atomic_write(path, write)
    return path


def read_features(path: str | os.PathLike, trust: bool = False) -> MultimodalDataset:
    """Read a feature file. ``path`` is relative to the current folder (a relative path that exists only
    inside the project, e.g. ``data/features/clips_features.npz``, is the project's file).

    ``trust=True`` also opens version-1 files (pickles): only for files you or this project wrote,
    because opening a pickle can run code. Save them again with :func:`write_features`.
    """
    path = input_path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such feature file")
    if path.is_dir():
        raise FeatureFormatError(path, "<file>", _FEATURE_FILE, "a folder")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head.startswith(b"PK"):
        return _read_npz(path)
    if trust:
        return _from_pickle_payload(load_pickle(path, trust=True), path)
    if head[:1] == b"\x80":
        raise FeatureFormatError(
            path, "<file>", _FEATURE_FILE,
            "a pickle (an old msa_lib feature file?), not opened because a pickle can run code when it is "
            "read. If you or this project wrote it: read_features(path, trust=True), then write_features(ds, "
            f"'{path.with_suffix(FEATURE_SUFFIX).name}') to convert it")
    raise FeatureFormatError(path, "<file>", _FEATURE_FILE, "neither an .npz (zip) archive nor an old pickle")


def _read_npz(path: Path) -> MultimodalDataset:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise FeatureFormatError(path, "<file>", f"a readable {FEATURE_SUFFIX} archive", f"{type(exc).__name__}: {exc}") from exc
    with archive, format_guard(path, _FEATURE_FILE):
        if METADATA_MEMBER not in archive.files:
            raise FeatureFormatError(path, METADATA_MEMBER, f"present ({_FEATURE_FILE})", "missing")
        raw = archive[METADATA_MEMBER]
        try:
            doc = json.loads(bytes(raw).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as exc:
            raise FeatureFormatError(path, METADATA_MEMBER, "a UTF-8 JSON document", f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            found = repr(doc.get("format")) if isinstance(doc, dict) else type(doc).__name__
            raise FeatureFormatError(path, "format", f"'{FORMAT_NAME}' ({_FEATURE_FILE})", found)
        if doc.get("version") != FORMAT_VERSION:
            raise FeatureFormatError(path, "version", str(FORMAT_VERSION), repr(doc.get("version")))
        for key in ("meta", "samples", "arrays", "n_samples"):
            if key not in doc:
                raise FeatureFormatError(path, key, "present", "missing")
        n = doc["n_samples"]
        if not isinstance(n, int) or n < 0:
            raise FeatureFormatError(path, "n_samples", "a sample count", repr(n))
        samples = doc["samples"]
        if not isinstance(samples, dict):
            raise FeatureFormatError(path, "samples", "a dict of per-sample columns", type(samples).__name__)
        for key in (*STRING_COLUMNS, "extra"):
            column = samples.get(key)
            if not isinstance(column, list) or len(column) != n:
                found = f"{len(column)} entries" if isinstance(column, list) else ("missing" if column is None else type(column).__name__)
                raise FeatureFormatError(path, f"samples.{key}", f"a list of {n} entries (one per sample)", found)
        refs = doc["arrays"]

        def array(name, key, ndim, kind):
            if not isinstance(name, str) or name not in archive.files:
                raise FeatureFormatError(path, key, f"an array member ({name!r})", "missing")
            try:
                arr = archive[name]
            except ValueError as exc:  # e.g. an object array: would need pickle
                raise FeatureFormatError(path, key, "a numeric array (no pickled objects)", str(exc)) from exc
            if arr.ndim != ndim or arr.dtype.kind not in kind:
                raise FeatureFormatError(path, key, f"a {ndim}-d numeric array", f"dtype {arr.dtype}, shape {arr.shape}")
            return arr

        scores = array(refs.get("scores"), "scores", 1, "fiu")
        labels = array(refs.get("labels"), "labels", 1, "iu")
        for key, arr in (("scores", scores), ("labels", labels)):
            if len(arr) != n:
                raise FeatureFormatError(path, key, f"{n} values (one per sample)", str(len(arr)))
        features = {}
        for modality, where in refs.get("features", {}).items():
            values = array(where.get("values"), f"features.{modality}", 2, "fiu")
            lengths = array(where.get("lengths"), f"features.{modality}.lengths", 1, "iu")
            if len(lengths) != n or (lengths < 0).any() or int(lengths.sum()) != len(values):
                raise FeatureFormatError(path, f"features.{modality}.lengths",
                                         f"{n} non-negative lengths summing to the {len(values)} rows of the values",
                                         f"{len(lengths)} lengths summing to {int(lengths.sum())}")
            features[modality] = np.split(values.astype(np.float32, copy=False), np.cumsum(lengths)[:-1]) if n else []
        meta = _meta(doc["meta"], path)
        return MultimodalDataset.build(
            meta, samples["id"], features, split=samples["split"], language=samples["language"],
            raw_text=samples["raw_text"], group=samples["group"], scores=scores, labels=labels,
            failures=doc.get("failures", []), extra=samples["extra"], source=str(path))


def _from_pickle_payload(payload, path: Path) -> MultimodalDataset:
    """A version-1 feature file (a pickled dict of containers and arrays)."""
    if not isinstance(payload, dict) or payload.get("format") not in LEGACY_FORMAT_NAMES:
        raise FeatureFormatError(path, "format", f"'{FORMAT_NAME}' (an msa_lib feature file)",
                                 repr(payload.get("format")) if isinstance(payload, dict) else type(payload).__name__)
    if payload.get("version") != 1:
        raise FeatureFormatError(path, "version", "1 (a pickled feature file)", repr(payload.get("version")))
    with format_guard(path, "an msa_lib feature file of version 1"):
        for key in ("meta", "samples"):
            if key not in payload:
                raise FeatureFormatError(path, key, "present", "missing")
        samples = payload["samples"]
        for key in SAMPLE_KEYS:
            if key not in samples:
                raise FeatureFormatError(path, f"samples.{key}", "present", "missing")
        return MultimodalDataset.build(
            _meta(payload["meta"], path), samples["id"], samples["features"], split=samples["split"],
            language=samples["language"], raw_text=samples["raw_text"], group=samples["group"],
            scores=samples["scores"], labels=samples["labels"], failures=payload.get("failures", []),
            extra=samples.get("extra"), source=str(path))


def _meta(d, path: Path) -> DatasetMeta:
    try:
        return DatasetMeta.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FeatureFormatError(path, "meta", "name, modalities and labels of a DatasetMeta", str(exc)) from exc


def _column(name: str) -> str:
    return "ids" if name == "id" else name


def _json_value(value):
    """JSON for the values numpy and pathlib put into metadata; anything else is refused."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    raise TypeError(f"a {type(value).__name__} value, which a feature file cannot hold (JSON values and numpy arrays only)")


# ----------------------------------------------------------------------------------------- pickles
# What numpy arrays, dtypes and scalars need to unpickle (numpy 1.x writes numpy.core.*, 2.x numpy._core.*),
# plus the few plain values pickle builds by calling a type. Nothing here can run a command or import code.
SAFE_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # how protocol-2 pickles store bytes (array buffers)
})
_NUMPY_2 = int(np.__version__.split(".")[0]) >= 2
_SAFE_CONTENT = "a pickle of numpy arrays and plain containers (dict, list, tuple, str, numbers)"


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle names a function or class outside :data:`SAFE_PICKLE_GLOBALS`."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain Python containers only; any other global is refused."""

    def find_class(self, module: str, name: str):
        # Python-2-style names (protocol 2 writes __builtin__.set ...), mapped as pickle itself maps them
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) not in SAFE_PICKLE_GLOBALS:
            raise RefusedGlobalError(f"{module}.{name}")
        if module.startswith(("numpy.core.", "numpy._core.")):
            native = "numpy._core." if _NUMPY_2 else "numpy.core."
            module = native + module.split(".", 2)[2]  # the same function under this numpy's own name
        return super().find_class(module, name)


def load_pickle(path: str | os.PathLike, trust: bool = False):
    """Load a pickle with :class:`RestrictedUnpickler` (numpy arrays and plain containers only).
    ``trust=True`` uses the standard loader, which runs whatever the file says: only for files you made."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh) if trust else RestrictedUnpickler(fh).load()
    except RefusedGlobalError as exc:
        raise FeatureFormatError(path, "<file>", _SAFE_CONTENT,
                                 f"a reference to {exc}, which is not allowed (loading it could run code); "
                                 "the file was not loaded") from exc
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError, TypeError, IndexError,
            KeyError, MemoryError, OverflowError) as exc:
        raise FeatureFormatError(path, "<file>", "a readable pickle", f"{type(exc).__name__}: {exc}") from exc

