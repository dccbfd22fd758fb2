"""Translators: the offline CC-CEDICT dictionary in both directions, code-switching, the on-disk cache,
and the clear 'not available' error of the transformers backend (no network in tests)."""
import pytest

from msa_lib.extract.translate import (DictionaryTranslator, Seq2SeqTranslator, TranslationCache, TranslationError,
                                            TranslatorNotAvailable, WhisperSpeechTranslator, make_translator)


@pytest.fixture(scope="module")
def dictionary():
    return DictionaryTranslator(cache=False)


def test_known_words_zh_to_en(dictionary):
    out = dictionary.translate(["电影", "喜欢", "酒店很好", "不错"], "zh", "en")
    assert out[0] == "movie"
    assert "like" in out[1]
    assert "hotel" in out[2] and "good" in out[2]
    assert out[3] == "pretty good" or "not bad" in out[3]


def test_known_words_en_to_zh(dictionary):
    out = dictionary.translate(["movie", "happy", "i do not like this movie", "good"], "en", "zh")
    assert out[0] == "电影"
    assert out[1] in {"高兴", "快乐", "幸福", "开心", "愉快"}
    assert "不" in out[2] and "喜欢" in out[2] and "电影" in out[2]
    assert out[3] == "好"


def test_unknown_words_are_kept_and_languages_normalised(dictionary):
    out = dictionary.translate(["the zorblax movie"], "English", "zh-CN")
    assert "zorblax" in out[0] and "电影" in out[0]


def test_code_switching_is_partial_and_deterministic():
    text = "i really liked this movie because the actors were great and the story was funny"
    half = DictionaryTranslator(cache=False, code_switch=0.5, seed=1)
    a, b = half.translate([text], "en", "zh")[0], half.translate([text], "en", "zh")[0]
    assert a == b
    assert any(w in a for w in ("movie", "actors", "story", "great", "funny", "liked", "really", "because"))
    assert any("\u4e00" <= ch <= "\u9fff" for ch in a)


def test_bad_input_is_one_clear_error(dictionary):
    with pytest.raises(TranslationError, match="list of texts"):
        dictionary.translate("a single string", "en", "zh")
    with pytest.raises(TranslationError, match="not supported"):
        dictionary.translate(["bonjour"], "fr", "zh")


def test_translations_are_cached_on_disk(tmp_path):
    cache = TranslationCache(tmp_path / "tr.sqlite")
    tr = DictionaryTranslator(cache=cache)
    first = tr.translate(["this movie is good", "this movie is good"], "en", "zh")
    assert len(cache) == 1
    # a second translator with the same settings reads the cache instead of translating
    again = DictionaryTranslator(cache=TranslationCache(tmp_path / "tr.sqlite"))
    again._translate_uncached = lambda *a, **k: pytest.fail("should have come from the cache")
    assert again.translate(["this movie is good"], "en", "zh") == first[:1]
    # other settings are a different cache key
    DictionaryTranslator(cache=cache, code_switch=0.5).translate(["this movie is good"], "en", "zh")
    assert len(cache) == 2


def test_seq2seq_model_not_available_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("MSA_ALLOW_DOWNLOAD", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TranslatorNotAvailable, match="dictionary"):
        Seq2SeqTranslator(model="Helsinki-NLP/opus-mt-en-zh-not-cached", cache=False)
    with pytest.raises(TranslatorNotAvailable):
        make_translator(str(tmp_path), cache=False)  # an empty local folder is no model


def test_whisper_translator_only_targets_english(tmp_path):
    tr = WhisperSpeechTranslator(cache=False)  # the model loads lazily: nothing is run here
    with pytest.raises(TranslationError, match="English"):
        tr.translate(["x.wav"], "zh", "zh")
    with pytest.raises(TranslationError, match="not found"):
        WhisperSpeechTranslator(cache=TranslationCache(tmp_path / "c.sqlite")).translate([str(tmp_path / "missing.wav")], "zh", "en")
