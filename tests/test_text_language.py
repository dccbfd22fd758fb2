"""Language of typed sentences (``msa predict --text``): the Han rule, langid, and input without letters."""
from msa_lib.extract.text_language import detect_text_language


def test_chinese_by_han_characters_even_when_short_or_mixed():
    for text in ("真的", "我觉得ok", "房间很大，整体感觉经济实惠不错!"):
        found = detect_text_language(text)
        assert (found.language, found.source) == ("zh", "han characters"), text


def test_other_languages_come_from_langid():
    assert detect_text_language("It was really really awesome, I loved it.").language == "en"
    assert detect_text_language("Ce film est vraiment magnifique, je le recommande.").language == "fr"
    japanese = detect_text_language("この映画はとても面白かったです")  # kana: not taken for Chinese
    assert japanese.language == "ja" and japanese.source == "langid"


def test_no_letters_gives_none():
    assert detect_text_language("12345 !!! :-)") is None
