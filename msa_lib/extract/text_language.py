"""Language of a written sentence (``msa predict --text``), where no audio exists for Whisper to hear.

langid.py (Lui & Baldwin, 2012: a naive Bayes model over byte n-grams, 97 languages, shipped in the
package) gives the most likely language and its normalised probability. A sentence made mostly of Han
characters is Chinese without asking the model: one- or two-character Chinese inputs ("真的") are
common in reviews and too short for n-gram statistics, and Japanese (kana) is excluded by the rule.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from msa_lib.core.cache import shared
from msa_lib.core.utils import normalize_language

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
KANA = re.compile(r"[\u3040-\u30ff]")
LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
HAN_SHARE_FOR_CHINESE = 0.5  # of the letters; mixed "我觉得ok" is still Chinese


@dataclass(frozen=True)
class TextLanguage:
    language: str  # normalised code ("zh", "en", "fr", ...)
    probability: float
    source: str  # "han characters" or "langid"


def _identifier():
    def build():
        from langid.langid import LanguageIdentifier, model

        return LanguageIdentifier.from_modelstring(model, norm_probs=True)

    return shared(("extract.langid",), build)


def detect_text_language(text: str) -> TextLanguage | None:
    """The language of ``text``; None when it has no letters at all (digits, punctuation, emoji)."""
    letters = LETTER.findall(text)
    if not letters:
        return None
    han = len(HAN.findall(text))
    if han / len(letters) >= HAN_SHARE_FOR_CHINESE and not KANA.search(text):
        return TextLanguage("zh", 1.0, "han characters")
    code, prob = _identifier().classify(text)
    return TextLanguage(normalize_language(code), float(prob), "langid")


__all__ = ["TextLanguage", "detect_text_language"]
