"""The process-wide model cache (msa_lib.core.cache) and the one language-code normaliser."""
from __future__ import annotations

import threading
import time

import pytest

from msa_lib.core import cache
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
