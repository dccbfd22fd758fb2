"""Small cross-cutting helpers: seeding, device choice, logging, transcript and language-code normalisation."""
from __future__ import annotations

import logging
import math
import os
import random
import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: torch is imported where it is used
    import torch

LOGGER_NAME = "msa_lib"


def get_logger(name: str | None = None) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME if name is None else f"{LOGGER_NAME}.{name}")
    root = logging.getLogger(LOGGER_NAME)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("MSA_LOG_LEVEL", "INFO"))
    return logger


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) for repeatable runs."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # torch-free callers (data tools) still get numpy/python seeding
        return
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(device: str | None = "auto") -> "torch.device":
    """``auto`` picks CUDA when present, else CPU; anything else is passed to torch."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def normalize_transcript(text: str) -> str:
    """Whitespace collapsed; an ALL-CAPS transcript (the CMU-MOSI release) lower-cased, because cased
    sub-word vocabularies split capitals into many rare pieces."""
    text = re.sub(r"\s+", " ", str(text or "")).strip()
    return text.lower() if text.isupper() else text


LANGUAGE_ALIASES = {"english": "en", "eng": "en", "chinese": "zh", "mandarin": "zh", "cmn": "zh", "zho": "zh",
                    "chi": "zh"}


def normalize_language(code: str, error: type[Exception] = ValueError) -> str:
    """One language code for every spelling: 'EN', 'en-US', 'english' -> 'en'; 'zh-CN', 'zh_Hans',
    'zh-TW', 'cmn', 'Chinese' -> 'zh'; any other code -> its lower-cased base ('fr-CA' -> 'fr').
    Callers check the result against what they support; anything but a non-empty string raises
    ``error`` (each stage passes its own error type)."""
    if not isinstance(code, str) or not code.strip():
        raise error(f"language code must be a non-empty string, got {code!r}")
    c = code.strip().lower().replace("_", "-")
    c = LANGUAGE_ALIASES.get(c, c)
    base = c.split("-")[0]
    return LANGUAGE_ALIASES.get(base, base)


def as_text_list(texts, error: type[Exception] = ValueError) -> list[str]:
    """``texts`` as a list of strings (None / NaN -> ""); anything else raises ``error``."""
    if isinstance(texts, (str, bytes)):
        raise error("expected a list of texts, got a single string; wrap it in a list")
    try:
        items = list(texts)
    except TypeError as exc:
        raise error(f"expected a list of texts, got {type(texts).__name__}") from exc
    out = []
    for i, t in enumerate(items):
        if t is None or (isinstance(t, float) and math.isnan(t)):
            out.append("")  # a missing transcript (e.g. NaN from pandas) is empty text
        elif isinstance(t, str):
            out.append(t)
        else:
            raise error(f"text #{i} is a {type(t).__name__} ({t!r:.60}), expected a string")
    return out
