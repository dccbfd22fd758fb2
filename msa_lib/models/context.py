"""Utterance context over a whole video: the contextual LSTM (bc-LSTM, Poria et al., ACL 2017) and
AdaMML's policy network in front of it.

Both fusions read *video batches* (:func:`msa_lib.data.torch_data.make_video_loader`): ordinary
batches of utterances that hold whole videos, with ``batch["context"]`` saying which video of the
batch each utterance belongs to and where it sits in it. The model's encoders run per utterance as
for any fusion; the fusion then lays the per-utterance vectors out as one sequence per video
(:class:`VideoLayout`; the video's utterances are the sequence axis, shorter videos are padded and
packed, so padding never reaches the LSTM), runs a bidirectional LSTM over it and returns, for every
utterance, the LSTM output at its own position: many-to-one per utterance, one prediction per
utterance. The context is exactly the batch's utterances of the same video, and a loader is built
from one split's utterances, so a test utterance never enters a train video's context (and
``make_video_loader`` refuses data in which a video spans splits). A batch without ``context``
(a single clip, a plain loader) is read as videos of one utterance each: no context.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from msa_lib.models.encoders import masked_mean
from msa_lib.models.fusion import AdaMMLConfig, AdaMMLGate, Fusion, FusionConfig, FusionOutput, join_with_presence, presence


# ---------------------------------------------------------------------------------------------- layout
@dataclass
class VideoLayout:
    """Where each of N utterances sits: ``video`` (N, index into the batch's videos) and ``position``
    (N, place in its video); ``lengths`` (V) utterances per video."""

    video: Tensor
    position: Tensor
    lengths: Tensor

    @classmethod
    def of(cls, context: dict | None, n: int, device: torch.device) -> "VideoLayout":
        if context is None:  # no video structure: every utterance is a video of its own
            video = torch.arange(n, device=device)
            return cls(video, torch.zeros_like(video), torch.ones(n, dtype=torch.long, device=device))
        video, position = context["video"].to(device), context["position"].to(device)
        if video.shape != (n,) or position.shape != (n,):
            raise ValueError(f"batch context has {tuple(video.shape)} videos / {tuple(position.shape)} positions "
                             f"for {n} utterances")
        lengths = torch.bincount(video)
        if (lengths == 0).any() or not bool((position < lengths[video]).all()):
            raise ValueError("batch context: videos must be numbered 0..V-1 and positions 0..length-1")
        return cls(video, position, lengths)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.lengths), int(self.lengths.max())

    def scatter(self, x: Tensor) -> Tensor:
        """N x D utterance rows -> V x U x D video sequences (zeros after each video's end)."""
        v, u = self.shape
        out = x.new_zeros(v, u, x.shape[-1])
        out[self.video, self.position] = x
        return out

    def gather(self, seq: Tensor) -> Tensor:
        """V x U x D -> N x D: each utterance's own step."""
        return seq[self.video, self.position]

    def run(self, rnn: nn.RNNBase, x: Tensor) -> Tensor:
        """``rnn`` (batch_first) over each video's utterances in order; N x D in, N x H out. Steps after a
        video's last utterance are packed away, so they never influence any output."""
        packed = pack_padded_sequence(self.scatter(x), self.lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=self.shape[1])
        return self.gather(out)


class ContextLSTM(nn.Module):
    """bc-LSTM's contextual unit: a bidirectional LSTM over the video's utterances, then a dense layer
    (tanh) with dropout applied to each utterance's output. ``skip``: the utterance's own input joins the
    LSTM output before the dense layer, so the context adds to what the utterance says rather than
    having to carry it through the LSTM."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float, skip: bool = False):
        super().__init__()
        self.drop_in = nn.Dropout(dropout)
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.skip = skip
        self.dense = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden + (in_dim if skip else 0), out_dim),
                                   nn.Tanh())
        self.out_dim = out_dim

    def forward(self, x: Tensor, layout: VideoLayout) -> Tensor:
        x = self.drop_in(x)
        h = layout.run(self.lstm, x)
        return self.dense(torch.cat([h, x], -1) if self.skip else h)


# ---------------------------------------------------------------------------------------------- contextual LSTM
@dataclass
class ContextualLSTMConfig(FusionConfig):
    """``dim``: width of the dense layer after each BiLSTM; ``heads`` is unused."""

    hidden: int = 64  # LSTM units per direction
    hierarchical: bool = True  # one BiLSTM per modality, then one over their concatenation (bc-LSTM's hierarchy)
    skip: bool = True  # each utterance's own vector also goes around the LSTMs (see ContextLSTM)


class ContextualLSTM(Fusion):
    """bc-LSTM (Poria et al., 2017): each utterance's vector per modality (its encoder's pooled output)
    enters a bidirectional LSTM over the utterances of its video; the prediction for an utterance reads
    that LSTM's output at its position. ``hierarchical``: per-modality contextual LSTMs first, their
    outputs (with presence flags) joined and passed through a second contextual LSTM -- the paper's
    hierarchical fusion, here trained end to end rather than level by level; otherwise the joined
    utterance vectors go through one contextual LSTM. A modality an utterance lacks enters as zeros
    with its presence flag off."""

    config_class = ContextualLSTMConfig
    uses_video_context = True

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        c = self.config
        m = len(dims)
        if c.hierarchical:
            self.unimodal = nn.ModuleDict({k: ContextLSTM(d, c.hidden, c.dim, self.dropout, c.skip)
                                           for k, d in dims.items()})
            joined = m * c.dim + m
        else:
            self.unimodal = None
            joined = sum(dims.values()) + m
        self.context = ContextLSTM(joined, c.hidden, c.dim, self.dropout, c.skip)
        self.out_dim = c.dim

    def forward(self, encoded, return_attention=False, context=None):
        present = presence(encoded, self.modalities)
        pooled = [encoded[k].pooled for k in self.modalities]
        layout = VideoLayout.of(context, present.shape[0], present.device)
        if self.unimodal is not None:
            p = present.to(pooled[0].dtype)
            pooled = [self.unimodal[k](v * p[:, i:i + 1], layout) for i, (k, v) in enumerate(zip(self.modalities, pooled))]
        return FusionOutput(self.context(join_with_presence(pooled, present), layout))


# ---------------------------------------------------------------------------------------------- AdaMML + cLSTM
@dataclass
class AdaMMLContextConfig(AdaMMLConfig):
    """AdaMML's settings (``windows`` is unused: the windows are the video's utterances) plus the
    contextual LSTM's ``hidden`` units per direction; ``dim``: width of the per-modality features and
    of the contextual LSTM's dense layer."""

    hidden: int = 64
    skip: bool = True  # the kept features also go around the contextual LSTM (see ContextLSTM)


class AdaMMLContext(AdaMMLGate):
    """AdaMML (Panda et al., 2021) with the contextual LSTM as its fusion, the windows being the
    utterances of a video. Per utterance, the policy (per-modality linear maps of the mean *raw*
    features, a GRU running over the video's utterances in order) gives keep / skip logits per
    modality; decisions are Gumbel-softmax samples, straight-through hard in training, the hard argmax
    in evaluation. The kept modalities' features (skipped ones zero) and the decisions enter a
    bidirectional LSTM over the video (:class:`ContextLSTM`). The decision loss pushes the expected
    number of modalities kept per utterance towards ``target_modalities`` (a parameter; None: M - 1).
    ``gates`` are N x 1 x M; ``utilization()`` is the share of available utterances in which each
    modality was kept in evaluation passes."""

    config_class = AdaMMLContextConfig
    uses_video_context = True

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        c = self.config
        m = len(dims)
        self.context = ContextLSTM(m * c.dim + m, c.hidden, c.dim, self.dropout, c.skip)
        self.out_dim = c.dim

    def forward(self, encoded, return_attention=False, context=None):
        summaries, features, available = [], [], []
        for k in self.modalities:
            enc = encoded[k]
            avail = enc.present & enc.mask.any(1)
            raw = enc.inputs if enc.inputs is not None else enc.sequence
            summaries.append(F.relu(self.summary[k](masked_mean(raw, enc.mask))) * avail[:, None])
            features.append(self.norm(self.feature[k](enc.pooled)))
            available.append(avail)
        avail = torch.stack(available, -1)  # N x M
        avail_f = avail.to(features[0].dtype)
        layout = VideoLayout.of(context, avail.shape[0], avail.device)
        h = layout.run(self.policy_rnn, torch.cat(summaries + [avail_f], -1))
        logits = self.policy_out(h).view(*avail.shape, 2)  # [..., 1] = keep
        gates = self.decide(logits, avail_f)
        kept = [f * gates[:, i:i + 1] for i, f in enumerate(features)]
        fused = self.context(torch.cat(kept + [gates], -1), layout)
        return FusionOutput(fused, gates=gates[:, None, :], aux_loss=self.decision_loss(logits, avail_f))
