"""Convert a CTranslate2 Whisper model (faster-whisper's ``model.bin``) into an openai-whisper checkpoint.

No openai-whisper checkpoint can be downloaded on an offline machine, but the bundled faster-whisper
**base** model holds the very same weights: CTranslate2's ``WhisperSpec`` maps one-to-one onto
openai-whisper's module names (the only reshaping is splitting the fused q/k/v projections). The
result is the ``{"dims": {...}, "model_state_dict": {...}}`` dict that ``whisper.load_model(path)``
reads.

``model.bin`` layout (``ctranslate2/specs/model_spec.py: ModelSpec._serialize``, little endian)::

    uint32 binary_version            (6 for current CTranslate2)
    string spec_name                 ("WhisperSpec")
    uint32 spec_revision
    uint32 n_variables
    n_variables x:
        string name, uint8 rank, uint32 dims[rank], uint8 dtype_id, uint32 n_bytes, bytes data
    uint32 n_aliases
    n_aliases x: string alias, string target_variable

    string = uint16 length (incl. the trailing NUL), utf-8 bytes, NUL

dtype ids follow ``ctranslate2/types.h``: float32, int8, int16, int32, float16, bfloat16.
"""
from __future__ import annotations

import os
import re
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Bump when the produced checkpoint changes, so stale cached conversions are rebuilt.
CONVERTER_VERSION = 1

_CT2_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")
_SUPPORTED_BINARY_VERSIONS = range(3, 7)
WHISPER_AUDIO_CTX = 1500  # encoder positions of every Whisper size (30 s at 50 frames/s)  # versions whose layout matches the parser below


class WhisperConversionError(RuntimeError):
    """The file is not a CTranslate2 Whisper model this converter understands."""


@dataclass
class CT2Model:
    """Variables of a CTranslate2 ``model.bin``: name -> array (scalars as 0-d arrays)."""

    spec_name: str
    spec_revision: int
    binary_version: int
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


def _to_array(raw: bytes, dtype_name: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype_name == "bfloat16":
        # numpy has no bfloat16: widen the 16 bits to the top half of a float32
        as_u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return as_u16.view(np.float32).reshape(shape)
    return np.frombuffer(raw, dtype=np.dtype(dtype_name).newbyteorder("<")).reshape(shape)


def read_ctranslate2_model(path: str | os.PathLike) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (or a model folder holding one) into numpy arrays."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise WhisperConversionError(f"{path}: no CTranslate2 model.bin found")
    data = memoryview(path.read_bytes())
    pos = 0

    def take(n: int) -> memoryview:
        nonlocal pos
        if pos + n > len(data):
            raise WhisperConversionError(f"{path}: truncated CTranslate2 model file (at byte {pos})")
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    def u(fmt: str) -> int:
        return struct.unpack("<" + fmt, take(struct.calcsize(fmt)))[0]

    def string() -> str:
        raw = bytes(take(u("H")))
        return raw[:-1].decode("utf-8")

    version = u("I")
    if version not in _SUPPORTED_BINARY_VERSIONS:
        raise WhisperConversionError(
            f"{path}: unsupported CTranslate2 binary version {version} "
            f"(expected {_SUPPORTED_BINARY_VERSIONS.start}..{_SUPPORTED_BINARY_VERSIONS.stop - 1})"
        )
    model = CT2Model(spec_name=string(), spec_revision=u("I"), binary_version=version)
    for _ in range(u("I")):
        name = string()
        rank = u("B")
        shape = tuple(u("I") for _ in range(rank))
        dtype_id = u("B")
        if dtype_id >= len(_CT2_DTYPES):
            raise WhisperConversionError(f"{path}: variable {name} has unknown dtype id {dtype_id}")
        n_bytes = u("I")
        model.variables[name] = _to_array(bytes(take(n_bytes)), _CT2_DTYPES[dtype_id], shape)
    for _ in range(u("I")):
        alias = string()
        model.aliases[alias] = string()
    return model


def _float_weight(variables: dict[str, np.ndarray], name: str) -> np.ndarray:
    """A float weight, dequantising CTranslate2's int8/int16 per-row quantisation when present."""
    w = variables[name]
    scale_name = name + "_scale"
    if w.dtype.kind in "iu" and scale_name in variables:
        scale = variables[scale_name].astype(np.float32)
        scale = scale.reshape(-1, *([1] * (w.ndim - 1))) if scale.ndim else scale
        return w.astype(np.float32) / scale
    if w.dtype.kind != "f":
        raise WhisperConversionError(f"variable {name} has non-float dtype {w.dtype} and no scale")
    return w


def _count_layers(variables: dict[str, np.ndarray], prefix: str) -> int:
    indices = {int(m.group(1)) for k in variables if (m := re.match(rf"{prefix}/layer_(\d+)/", k))}
    if indices != set(range(len(indices))):
        raise WhisperConversionError(f"non-contiguous {prefix} layer indices: {sorted(indices)}")
    return len(indices)


def ct2_to_openai_whisper(model: CT2Model, dtype: str = "float16") -> dict:
    """Build openai-whisper's checkpoint dict (``dims`` + ``model_state_dict`` of torch tensors)."""
    import torch

    if model.spec_name != "WhisperSpec":
        raise WhisperConversionError(f"expected a WhisperSpec model, got {model.spec_name!r}")
    v = model.variables
    torch_dtype = getattr(torch, dtype)

    def t(name: str) -> "torch.Tensor":
        # copy: the arrays are read-only views of the file buffer
        return torch.from_numpy(np.array(_float_weight(v, name), copy=True)).to(torch_dtype)

    n_audio_layer = _count_layers(v, "encoder")
    n_text_layer = _count_layers(v, "decoder")
    conv1 = v["encoder/conv1/weight"]
    enc_pos_name = "encoder/position_encodings/encodings"
    if enc_pos_name in v:
        n_audio_ctx = int(v[enc_pos_name].shape[0])
    else:
        # Optional in the CTranslate2 spec (it then uses the same sinusoids Whisper does)
        from whisper.model import sinusoids

        n_audio_ctx = WHISPER_AUDIO_CTX
        v = {**v, enc_pos_name: sinusoids(n_audio_ctx, int(conv1.shape[0])).numpy()}
    dims = {
        "n_mels": int(conv1.shape[1]),
        "n_audio_ctx": n_audio_ctx,
        "n_audio_state": int(conv1.shape[0]),
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": n_audio_layer,
        "n_vocab": int(v["decoder/embeddings/weight"].shape[0]),
        "n_text_ctx": int(v["decoder/position_encodings/encodings"].shape[0]),
        "n_text_state": int(v["decoder/embeddings/weight"].shape[1]),
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": n_text_layer,
    }
    for prefix in ("encoder", "decoder"):
        ffn = v[f"{prefix}/layer_0/ffn/linear_0/weight"].shape
        if ffn[0] != 4 * ffn[1]:  # openai-whisper hard-codes an MLP 4x the model width
            raise WhisperConversionError(f"{prefix} MLP width {ffn[0]} is not 4 x {ffn[1]}: not a Whisper model")
    if bool(v.get("decoder/scale_embeddings", np.int8(0))):
        raise WhisperConversionError("decoder/scale_embeddings is set: not a standard Whisper model")
    state: dict[str, "torch.Tensor"] = {}

    def linear(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = t(f"{src}/weight")
        state[f"{dst}.bias"] = t(f"{src}/bias")

    def layer_norm(dst: str, src: str) -> None:
        state[f"{dst}.weight"] = t(f"{src}/gamma")
        state[f"{dst}.bias"] = t(f"{src}/beta")

    def split_fused(dst_prefix: str, src: str, names: tuple[str, ...]) -> None:
        """Split a fused projection; openai-whisper's key projection has no bias (CT2 stores zeros)."""
        weights = torch.chunk(t(f"{src}/weight"), len(names), dim=0)
        biases = torch.chunk(t(f"{src}/bias"), len(names), dim=0)
        for name, w, b in zip(names, weights, biases):
            state[f"{dst_prefix}.{name}.weight"] = w.clone()
            if name == "key":
                if float(b.abs().max()) > 1e-6:
                    raise WhisperConversionError(f"{src}: non-zero key bias, cannot map to openai-whisper")
            else:
                state[f"{dst_prefix}.{name}.bias"] = b.clone()

    def block(dst: str, src: str, cross: bool) -> None:
        layer_norm(f"{dst}.attn_ln", f"{src}/self_attention/layer_norm")
        split_fused(f"{dst}.attn", f"{src}/self_attention/linear_0", ("query", "key", "value"))
        linear(f"{dst}.attn.out", f"{src}/self_attention/linear_1")
        if cross:
            layer_norm(f"{dst}.cross_attn_ln", f"{src}/attention/layer_norm")
            linear(f"{dst}.cross_attn.query", f"{src}/attention/linear_0")
            split_fused(f"{dst}.cross_attn", f"{src}/attention/linear_1", ("key", "value"))
            linear(f"{dst}.cross_attn.out", f"{src}/attention/linear_2")
        layer_norm(f"{dst}.mlp_ln", f"{src}/ffn/layer_norm")
        linear(f"{dst}.mlp.0", f"{src}/ffn/linear_0")
        linear(f"{dst}.mlp.2", f"{src}/ffn/linear_1")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    state["encoder.positional_embedding"] = t("encoder/position_encodings/encodings")
    for i in range(n_audio_layer):
        block(f"encoder.blocks.{i}", f"encoder/layer_{i}", cross=False)
    layer_norm("encoder.ln_post", "encoder/layer_norm")

    state["decoder.token_embedding.weight"] = t("decoder/embeddings/weight")
    state["decoder.positional_embedding"] = t("decoder/position_encodings/encodings")
    for i in range(n_text_layer):
        block(f"decoder.blocks.{i}", f"decoder/layer_{i}", cross=True)
    layer_norm("decoder.ln", "decoder/layer_norm")

    # Whisper ties the output projection to the token embedding; refuse untied models.
    proj = model.aliases.get("decoder/projection/weight")
    if proj is None and "decoder/projection/weight" in v:
        if not np.array_equal(v["decoder/projection/weight"], v["decoder/embeddings/weight"]):
            raise WhisperConversionError("output projection is not tied to the token embedding")
    return {"dims": dims, "model_state_dict": state}


def convert_ctranslate2_whisper(
    model_dir_or_bin: str | os.PathLike,
    out_path: str | os.PathLike,
    dtype: str = "float16",
    extra_info: dict | None = None,
) -> Path:
    """Write the openai-whisper checkpoint for a CTranslate2 Whisper model, atomically.

    float16 halves the file (openai's own checkpoints are float16 too); ``whisper.load_model`` casts
    into its float32 modules on load. ``extra_info`` (plain str/int values) is stored under
    ``"conversion"`` so a cache can tell which source and converter version produced the file.
    """
    import torch

    ckpt = ct2_to_openai_whisper(read_ctranslate2_model(model_dir_or_bin), dtype=dtype)
    ckpt["conversion"] = {"converter_version": CONVERTER_VERSION, "source": str(model_dir_or_bin),
                          **(extra_info or {})}
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache may be shared
        os.replace(tmp, out_path)  # atomic on one filesystem: readers never see a partial file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out_path
