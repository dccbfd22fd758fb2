"""Long transcripts: encode in windows that each fit the text encoder, pooled over the whole text.

The encoder reads at most ``max_length`` tokens (128 for the default e5, prefix and special tokens
included), so a 10-minute transcript would be scored from its first sentence or two. Here a text
longer than that is cut at token boundaries into consecutive windows (no overlap); each window is
encoded on its own, the token sequences are concatenated in order and the pooled vector is the
token-weighted mean of the windows' pooled vectors (renormalised when the encoder normalises). A text
that fits is encoded exactly as before, in one pass.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from msa_lib.extract.text_types import TokenSequences

SPECIAL_TOKENS = 2  # <s> ... </s> (CLS ... SEP)


def _token_spans(encoder, text: str) -> list[tuple[int, int]]:
    """Character spans of every token of ``text`` (no special tokens, no truncation)."""
    tok = encoder.tokenizer
    if hasattr(tok, "backend_tokenizer"):  # transformers fast tokenizer
        return [tuple(s) for s in tok(text, add_special_tokens=False, truncation=False,
                                      return_offsets_mapping=True)["offset_mapping"]]
    full = getattr(encoder, "_untruncated_tokenizer", None)
    if full is None:  # a tokenizers.Tokenizer with truncation switched on: an untruncated copy, once
        from tokenizers import Tokenizer

        full = Tokenizer.from_str(tok.to_str())
        full.no_truncation()
        encoder._untruncated_tokenizer = full
    return list(full.encode(text, add_special_tokens=False).offsets)


def window_capacity(encoder) -> int:
    """Content tokens per window: ``max_length`` minus the special tokens and the prefix (and one
    token of slack: the prefix and the text may merge at their boundary)."""
    prefix = len(_token_spans(encoder, encoder.prefix)) if encoder.prefix else 0
    return max(1, int(encoder.config.max_length) - SPECIAL_TOKENS - prefix - 1)


def split_windows(encoder, text: str, cap: int | None = None) -> list[str]:
    """``text`` as consecutive pieces that each fit the encoder (one piece when it already fits);
    ``cap``: :func:`window_capacity`, when the caller already has it."""
    spans = [s for s in _token_spans(encoder, text) if s[1] > s[0]]
    cap = window_capacity(encoder) if cap is None else cap
    if len(spans) <= cap:
        return [text]
    return [text[spans[i][0]:spans[min(i + cap, len(spans)) - 1][1]] for i in range(0, len(spans), cap)]


def encode_windowed(encoder, texts: Sequence[str]) -> tuple[TokenSequences, np.ndarray, list[int]]:
    """``encoder.encode_with_pooled`` for texts of any length: (token sequences over the whole text,
    pooled vectors, number of windows per text)."""
    cap = window_capacity(encoder)
    pieces = [split_windows(encoder, t, cap) for t in texts]
    flat = [p for ps in pieces for p in ps]
    seqs, pooled = encoder.encode_with_pooled(flat)
    out_seqs, out_toks = [], []
    out_pooled = np.zeros((len(texts), pooled.shape[1]), np.float32)
    k = 0
    for i, ps in enumerate(pieces):
        rows = range(k, k + len(ps))
        k += len(ps)
        if len(ps) == 1:
            out_seqs.append(seqs.embeddings[rows[0]])
            out_toks.append(seqs.tokens[rows[0]])
            out_pooled[i] = pooled[rows[0]]
            continue
        out_seqs.append(np.concatenate([seqs.embeddings[r] for r in rows]).astype(np.float32))
        out_toks.append([t for r in rows for t in seqs.tokens[r]])
        weights = np.array([len(seqs.tokens[r]) for r in rows], np.float64)
        vec = (pooled[list(rows)].astype(np.float64) * weights[:, None]).sum(0) / weights.sum()
        if encoder.config.normalize:
            vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
        out_pooled[i] = vec
    return TokenSequences(out_seqs, out_toks), out_pooled, [len(ps) for ps in pieces]


__all__ = ["encode_windowed", "split_windows", "window_capacity"]
