"""The seed system's per-language text path: a frozen encoder per language, a trainable projection per
language into a shared 256-d space, plus a learned language embedding (:class:`PerLanguageTextEncoder`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import torch

from msa_lib.core.pretrained import ModelNotAvailable
from msa_lib.core.utils import as_text_list, get_logger, normalize_language
from msa_lib.extract.text import TextEncoder, TextEncoderConfig, TextInputError
from msa_lib.extract.text_loading import DEFAULT_ENGLISH_ID, DEFAULT_MULTILINGUAL_ID

log = get_logger("extract.text")

MULTILINGUAL_KEY = "multilingual"


class UnknownLanguageError(ValueError):
    """No text encoder is configured for the language (and no multilingual fallback was enabled)."""


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
        wanted = {normalize_language(lang, UnknownLanguageError): model_id for lang, model_id in cfg.encoders.items()}
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
        lang = normalize_language(language, UnknownLanguageError)
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
    "MULTILINGUAL_KEY",
    "UnknownLanguageError",
    "PerLanguageTextConfig",
    "ProjectedTokens",
    "PerLanguageTextEncoder",
]
