"""MCTN: the Multimodal Cyclic Translation Network (Pham, Liang, Manzini, Morency and Poczos, AAAI 2019).

A sequence-to-sequence model with attention translates the *source* modality into a *target*
modality; a cycle translates the translation back into the source. The encoder's states over the
source are the joint representation: a prediction RNN reads them and the shared head predicts. The
training loss is ``prediction + lambda_t * translation + lambda_c * cycle`` (mean squared errors over
the real steps of the translated sequences), handed to the trainer as the fusion's ``aux_loss``;
the paper's weights are 0.5 / 0.5 for two modalities and 0.3 / 0.3 for three.

Variants (``MCTNConfig``):

- bimodal (``trimodal="none"``): source -> target, cycle target -> source. ``shared_encoder``: the
  cycle re-encodes the translation with the *same* encoder that read the source (one encoder, two
  decoders: the paper's formulation, in which that encoder learns one representation for both
  modalities); otherwise the back-translation has an encoder of its own;
- ``trimodal="hierarchical"``: the bimodal MCTN source <-> target, then a second seq2seq translates
  the first encoder's states into ``second_target`` (no cycle: the joint states have no ground
  truth); the prediction RNN reads the second encoder's states.

Widths. The modalities differ in width (and the source enters through its own encoder of the model),
so instead of the paper's zero padding into separate subspaces each sequence entering the seq2seq
encoder passes a linear projection of its own (source: its encoder's output width; translated target:
the target's raw width) into the common ``dim``, and each decoder ends in a linear layer of its
target's raw width. Translations are compared with the *raw* (standardised) features of the target
(``EncodedModality.inputs``), never with learned encodings (those could collapse to make the loss
trivial). Decoders run free (each step reads the previous step's output), for as many steps as the
target has.

At test time only the source is needed: the prediction path reads the source alone, so a batch
without the target modalities (or with them absent) gives the same prediction; translation losses
are computed only where a sample has the target.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from msa_lib.models.encoders import last_real_index, masked_mean
from msa_lib.models.fusion import Fusion, FusionConfig, FusionOutput

MCTN_TRIMODAL = ("none", "hierarchical")
PAPER_WEIGHTS = {"bimodal": (0.5, 0.5), "trimodal": (0.3, 0.3)}  # (lambda_t, lambda_c)


@dataclass
class MCTNConfig(FusionConfig):
    """``dim``: width of the seq2seq encoder and decoder states; ``heads`` is unused."""

    source: str = "text"
    target: str = "audio"
    second_target: str = "vision"  # the third modality of the hierarchical variant
    trimodal: str = "none"  # "none" (bimodal) or "hierarchical"
    shared_encoder: bool = False  # the cycle re-encodes the translation with the source's encoder
    translation_weight: float | None = None  # lambda_t; None: the paper's (0.5 bimodal, 0.3 trimodal)
    cycle_weight: float | None = None  # lambda_c; None: the paper's (0.5 bimodal, 0.3 trimodal)
    predictor_hidden: int = 64  # width of the prediction RNN (its last state is the fused vector)

    def __post_init__(self):
        if self.trimodal not in MCTN_TRIMODAL:
            raise ValueError(f"MCTN trimodal must be one of {MCTN_TRIMODAL}, got {self.trimodal!r}")

    def weights(self) -> tuple[float, float]:
        lt, lc = PAPER_WEIGHTS["bimodal" if self.trimodal == "none" else "trimodal"]
        return (lt if self.translation_weight is None else self.translation_weight,
                lc if self.cycle_weight is None else self.cycle_weight)


def real_lengths(mask: Tensor) -> Tensor:
    """Steps up to the last real one (at least 1, so that an absent sequence still packs)."""
    return torch.where(mask.any(1), last_real_index(mask) + 1, torch.ones_like(mask[:, 0], dtype=torch.long))


class Seq2SeqEncoder(nn.Module):
    """Bidirectional LSTM whose two directions are summed (as the MCTN code merges them); states at
    padded steps are zero."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        packed = pack_padded_sequence(x * mask[..., None].to(x.dtype), real_lengths(mask).cpu(), batch_first=True,
                                      enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        d = out.shape[-1] // 2
        return self.drop(out[..., :d] + out[..., d:]) * mask[..., None].to(x.dtype)


class AttentionDecoder(nn.Module):
    """LSTM decoder with (Luong, general) attention over the encoder states: step ``t`` reads the
    previous output and attention context, attends with its new state, and emits a vector of
    ``out_dim`` (the target's raw width)."""

    def __init__(self, out_dim: int, dim: int):
        super().__init__()
        self.out_dim = out_dim
        self.init = nn.Linear(dim, dim)
        self.cell = nn.LSTMCell(out_dim + dim, dim)
        self.score = nn.Linear(dim, dim, bias=False)
        self.out = nn.Linear(2 * dim, out_dim)

    def forward(self, states: Tensor, mask: Tensor, steps: int) -> Tensor:
        b = states.shape[0]
        h = torch.tanh(self.init(masked_mean(states, mask)))
        c = torch.zeros_like(h)
        y = states.new_zeros(b, self.out_dim)
        ctx = states.new_zeros(b, states.shape[-1])
        ignore = ~mask
        ignore[~mask.any(1), 0] = False  # a sample without states attends to one zero state
        outputs = []
        for _ in range(steps):
            h, c = self.cell(torch.cat([y, ctx], -1), (h, c))
            scores = torch.einsum("btd,bd->bt", states, self.score(h)).masked_fill(ignore, float("-inf"))
            ctx = torch.einsum("bt,btd->bd", scores.softmax(-1), states)
            y = self.out(torch.cat([h, ctx], -1))
            outputs.append(y)
        return torch.stack(outputs, 1)


def sequence_mse(pred: Tensor, target: Tensor, mask: Tensor, valid: Tensor) -> Tensor | None:
    """Mean squared error over the real steps (``mask``) of the samples in ``valid``; None when none."""
    keep = mask & valid[:, None]
    if not keep.any():
        return None
    return F.mse_loss(pred[keep], target[keep])


class MCTN(Fusion):
    """Multimodal Cyclic Translation Network (see the module docstring). Modalities in ``dims`` other
    than the source and the targets are not read."""

    config_class = MCTNConfig

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        c = self.config
        needed = [c.source, c.target] + ([c.second_target] if c.trimodal == "hierarchical" else [])
        missing = [m for m in needed if m not in dims]
        if missing or len(set(needed)) < len(needed):
            raise ValueError(f"MCTN ({c.trimodal}) translates {' -> '.join(needed)}: needs these distinct modalities "
                             f"among the inputs {list(dims)}" + (f"; missing {missing}" if missing else ""))
        d = c.dim
        self.source_in = nn.Linear(dims[c.source], d)  # the source as its encoder in the model outputs it
        self.target_in = nn.Linear(self.input_dims[c.target], d)  # a translated target re-entering an encoder
        self.encoder = Seq2SeqEncoder(d, self.dropout)
        self.cycle_encoder = None if c.shared_encoder else Seq2SeqEncoder(d, self.dropout)
        self.to_target = AttentionDecoder(self.input_dims[c.target], d)
        self.to_source = AttentionDecoder(self.input_dims[c.source], d)
        if c.trimodal == "hierarchical":
            self.encoder2 = Seq2SeqEncoder(d, self.dropout)
            self.to_second = AttentionDecoder(self.input_dims[c.second_target], d)
        self.predictor = nn.LSTM(d, c.predictor_hidden, batch_first=True)
        self.out_dim = c.predictor_hidden

    def _predict(self, states: Tensor, mask: Tensor, present: Tensor) -> Tensor:
        packed = pack_padded_sequence(states, real_lengths(mask).cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.predictor(packed)
        return h[-1] * present[:, None].to(states.dtype)

    def forward(self, encoded, return_attention=False):
        c = self.config
        src = encoded[c.source]
        s_mask = src.mask
        states = self.encoder(self.source_in(src.sequence), s_mask)
        if c.trimodal == "hierarchical":
            joint = self.encoder2(states, s_mask)
        else:
            joint = states
        fused = self._predict(joint, s_mask, src.present)

        lt, lc = c.weights()
        terms = []
        tgt = encoded[c.target]
        with_target = src.present & tgt.present
        if with_target.any() and (lt or lc):  # translation and cycle: training signal only, never the prediction
            translated = self.to_target(states, s_mask, tgt.mask.shape[1])
            terms.append((lt, sequence_mse(translated, tgt.inputs, tgt.mask, with_target)))
            if lc:
                cycle_encoder = self.encoder if self.cycle_encoder is None else self.cycle_encoder
                back_states = cycle_encoder(self.target_in(translated), tgt.mask)
                back = self.to_source(back_states, tgt.mask, s_mask.shape[1])
                terms.append((lc, sequence_mse(back, src.inputs, s_mask, with_target)))
        if c.trimodal == "hierarchical" and lt:
            second = encoded[c.second_target]
            with_second = src.present & second.present
            if with_second.any():
                translated2 = self.to_second(joint, s_mask, second.mask.shape[1])
                terms.append((lt, sequence_mse(translated2, second.inputs, second.mask, with_second)))
        weighted = [w * t for w, t in terms if t is not None and w]
        return FusionOutput(fused, aux_loss=sum(weighted[1:], weighted[0]) if weighted else None)
