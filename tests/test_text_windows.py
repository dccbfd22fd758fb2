"""Long transcripts are encoded in windows over the whole text, with both text encoders."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msa_lib.extract.text_types import TextEncoderConfig
from msa_lib.extract.text_windows import encode_windowed, split_windows, window_capacity

MOSI = Path(__file__).resolve().parents[1] / "data" / "mosi" / "transcripts.csv.gz"


@pytest.fixture(scope="module")
def long_text() -> str:
    """About 60 real MOSI utterances of one video in a row: a monologue far past 128 tokens."""
    frame = pd.read_csv(MOSI, header=None, names=["id", "text", "n", "label"])
    return " ".join(frame["text"].str.lower().head(60))


@pytest.fixture(scope="module", params=["numpy", "transformers"])
def encoder(request):
    from msa_lib.extract.text_numpy import text_encoder_for_extraction

    config = TextEncoderConfig(show_progress=False)
    if request.param == "numpy":
        return text_encoder_for_extraction(config)
    from msa_lib.extract.text import TextEncoder

    return TextEncoder(config)


def test_a_short_text_is_one_unchanged_pass(encoder):
    text = "it was really really awesome"
    assert split_windows(encoder, text) == [text]
    seqs, pooled, windows = encode_windowed(encoder, [text])
    ref_seqs, ref_pooled = encoder.encode_with_pooled([text])
    assert windows == [1] and np.array_equal(pooled, ref_pooled)
    assert np.array_equal(seqs.embeddings[0], ref_seqs.embeddings[0])


def test_a_long_text_is_covered_to_its_end(encoder, long_text):
    pieces = split_windows(encoder, long_text)
    assert len(pieces) > 2
    assert "".join(pieces).replace(" ", "") == long_text.replace(" ", "")  # every character, in order
    for piece in pieces:  # each window fits: nothing is truncated inside a window
        assert len(encoder.encode_with_pooled([piece])[0].tokens[0]) <= window_capacity(encoder) + 1
    seqs, pooled, windows = encode_windowed(encoder, [long_text, "short one"])
    truncated = encoder.encode_with_pooled([long_text])[0]
    assert windows == [len(pieces), 1]
    assert len(seqs.tokens[0]) > 3 * len(truncated.tokens[0])  # the whole monologue, not its first 128 tokens
    assert np.isclose(np.linalg.norm(pooled[0]), 1.0, atol=1e-5)
    assert not np.allclose(pooled[0], encoder.encode_with_pooled([long_text])[1][0], atol=1e-3)
