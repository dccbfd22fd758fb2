"""The process-wide model cache (msa_lib.core.cache), the one language-code normaliser and the one rule
that picks a hyper-parameter from held-out scores (msa_lib.core.selection)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from msa_lib.core import cache
from msa_lib.core.selection import best_setting
from msa_lib.core.utils import normalize_language


@pytest.fixture
def owner():
    name = "tests.shared-helpers"
    yield name
    cache.clear(name)


def test_a_factory_runs_once_even_when_threads_ask_together(owner):
    calls = []

    def slow_factory():
        calls.append(1)
        time.sleep(0.05)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.shared((owner, "model"), slow_factory)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(r) for r in results}) == 1
    assert cache.contains((owner, "model")) and cache.keys(owner) == [(owner, "model")]


def test_a_failing_factory_stores_nothing_and_clear_forgets_one_owner(owner):
    def broken():
        raise RuntimeError("no weights")

    with pytest.raises(RuntimeError):
        cache.shared((owner, "broken"), broken)
    assert not cache.contains((owner, "broken"))
    first = cache.shared((owner, "a"), object)
    other = cache.shared(("tests.someone-else", "b"), object)
    assert cache.clear(owner) == 1 and not cache.contains((owner, "a"))
    assert cache.shared(("tests.someone-else", "b"), object) is other  # another owner's entry stays
    assert cache.shared((owner, "a"), object) is not first  # rebuilt after clear
    cache.clear("tests.someone-else")


@pytest.mark.parametrize("spelling, code", [
    ("en", "en"), ("EN", "en"), ("en-US", "en"), ("en_GB", "en"), ("English", "en"), ("eng", "en"),
    ("zh", "zh"), ("zh-CN", "zh"), ("zh_Hans", "zh"), ("zh-TW", "zh"), ("zh-hant", "zh"), ("Chinese", "zh"),
    ("Mandarin", "zh"), ("cmn", "zh"), ("zho", "zh"), ("chi", "zh"), (" fr-CA ", "fr"), ("ja", "ja"),
])
def test_every_spelling_the_three_stages_accepted(spelling, code):
    assert normalize_language(spelling) == code


def test_each_stage_keeps_its_error_type():
    from msa_lib.extract.asr import ASRConfig, whisper_language
    from msa_lib.extract.errors import ASRConfigError
    from msa_lib.extract.translate import DictionaryTranslator, TranslationError

    with pytest.raises(KeyError, match="non-empty"):
        normalize_language("  ", KeyError)
    with pytest.raises(ValueError):
        normalize_language(None)
    assert whisper_language("auto") is None and whisper_language(None) is None and whisper_language("") is None
    assert whisper_language("zh_Hans") == "zh" and ASRConfig(language="English").language == "en"
    with pytest.raises(ASRConfigError, match="not a Whisper language"):
        whisper_language("klingon")
    translator = DictionaryTranslator(cache=False)
    with pytest.raises(TranslationError, match="non-empty"):
        translator.translate(["hello"], "", "zh")
    with pytest.raises(TranslationError, match="not supported"):
        translator.translate(["hello"], "fr", "zh")


def test_best_setting_takes_the_best_score_and_the_smallest_setting_on_a_tie():
    assert best_setting({0.01: 0.70, 0.1: 0.75, 1.0: 0.72}) == 0.1
    assert best_setting({1.0: 0.75, 0.1: 0.75, 10.0: 0.60}) == 0.1  # grid order does not matter
    assert best_setting({0.1: 0.30, 1.0: 0.25, 3.0: 0.25}, lower_is_better=True) == 1.0  # an error: lowest wins
    assert best_setting({0.1: float("nan"), 1.0: 0.5}) == 1.0  # NaN never wins
    assert best_setting({0.1: float("nan")}) == 0.1
    with pytest.raises(ValueError, match="at least one"):
        best_setting({})


def test_best_setting_agrees_with_the_expressions_it_replaced():
    """The studies and the default model used ``max(grid, key=lambda c: (s[c], -c))``, the first maximum
    of an ascending grid, and ``min(grid, key=lambda a: (s[a], a))``; on ascending grids with many ties
    ``best_setting`` picks the same settings."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        grid = sorted(set(np.round(rng.uniform(0.001, 10.0, rng.integers(1, 7)), 3).tolist()))
        scores = {c: float(rng.integers(0, 4)) / 4 for c in grid}  # few distinct values: ties are common
        assert best_setting(scores) == max(grid, key=lambda c: (scores[c], -c))
        assert best_setting(scores) == grid[int(np.argmax([scores[c] for c in grid]))]
        assert best_setting(scores, lower_is_better=True) == min(grid, key=lambda a: (scores[a], a))
