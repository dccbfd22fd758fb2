"""The feature extractors of the pipeline: one class per representation, found through a registry.

:func:`msa_lib.extract.pipeline.extract_clip`, :func:`~msa_lib.extract.pipeline.load_models` and
:func:`~msa_lib.extract.pipeline.modality_specs` loop over the extractors a config selects; none of
them names a representation. The built-in ones live in :mod:`msa_lib.extract.extractors`:

===============  ========  ====================================================  ==================
name             modality  features (record keys)                                selected by
===============  ========  ====================================================  ==================
``text``         text      ``text`` (token states), ``text_pooled``              ``text_features``
``prosody``      audio     ``audio`` (librosa prosody frames)                    ``audio_features``
``whisper``      audio     ``audio_whisper`` (Whisper-encoder states)            ``audio_features``
``egemaps``      audio     ``audio_egemaps`` (openSMILE eGeMAPSv02 functionals)  ``audio_features``
``face``         vision    ``vision`` (landmarks, head pose, AUs, HoG, FER)      ``face_features``
``blendshapes``  vision    ``vision_blendshapes`` (52 named MediaPipe scores),   ``face_features``
                           ``vision_blendshapes_pooled`` (clip functionals)
===============  ========  ====================================================  ==================

``blendshapes`` lives in its own module, :mod:`msa_lib.extract.blendshapes` (imported by
``extractors.py``); the example below is a simplified version of it.

Adding a representation (say MediaPipe face blendshapes) is one class in
``msa_lib/extract/extractors.py``; nothing else changes::

    @dataclass
    class BlendshapeConfig:                      # its settings (part of the per-clip cache key)
        num_threads: int = 1

    @register_extractor
    class FaceBlendshapes(Extractor):
        name = "blendshapes"                     # ExtractConfig(face_features=("face", "blendshapes"))
        modality = "vision"                      # reads the sampled frames; gaps are reported as "vision"
        outputs = ("vision_blendshapes",)        # the feature key(s) it writes
        config_class = BlendshapeConfig          # ExtractConfig(extractor_settings={"blendshapes": ...})

        def load(self, cfg, timed, need_asr=True):
            timed("blendshape model", lambda: self.model(cfg))

        def model(self, cfg):                    # loaded once per process (msa_lib.core.cache)
            return self.shared_model("blendshapes", self.settings(cfg), BlendshapeModel)

        def extract(self, clip):                 # clip: ClipData (frames, timestamps, samples, record)
            return {"vision_blendshapes": clip.timed("vision_blendshapes", self.model(clip.config).run,
                                                     clip.frames)}

        def specs(self, cfg, records):
            return {"vision_blendshapes": ModalitySpec(52, NAMES, {"blendshapes": list(range(52))},
                                                       "sequence", cfg.media.fps, {"name": "blendshapes"})}

The modality decides what the pipeline decodes and when the extractor runs: ``audio`` extractors get
``clip.samples`` (never called on a clip without audio or with a silent track, which the pipeline
already recorded as missing), ``vision`` extractors get ``clip.iter_frames()`` (``(frame, timestamp)``
pairs streamed from ffmpeg, one frame in memory at a time; ``clip.frames`` / ``clip.timestamps``
hold them all at once, for extractors that need that, at a memory cost that grows with the clip) (never
called without frames), ``text`` extractors always run and handle a missing transcript themselves.
An extractor notes a gap of its own with ``clip.missing(self.modality, why)`` and returns no
features. Per-clip metadata it adds to the record (``record_keys``) end up in ``dataset.extra``.
``tests/test_extractor_registry.py`` registers a small working example (frame brightness).

Selection and cache keys: ``ExtractConfig.text_features`` / ``audio_features`` / ``face_features``
name the extractors per modality (checked against this registry). A representation whose settings
live in an ExtractConfig field (``config_field``, the built-ins) is keyed through that field; any
other adds its name, ``version`` and settings to ``settings_for_cache()`` only when selected, so the
keys of clips cached before it existed stay valid. Bump ``version`` when its output changes. On the
command line ``msa extract --audio-features prosody,whisper`` fills ``audio_features`` and
``--face-features face,blendshapes`` ``face_features``; the text selection has no flag of its own yet
(``ExtractConfig`` in Python).

Worker processes (``workers > 1``, dask, ray) import this package afresh: an extractor must be
defined in a module they import (``extractors.py`` is always imported); one registered only inside
a script or test runs in-process (``workers=1``) only.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator

import numpy as np

from msa_lib.core.cache import shared
from msa_lib.data.schema import ModalitySpec

if TYPE_CHECKING:  # the pipeline imports this module
    from msa_lib.extract.media import MediaInfo
    from msa_lib.extract.pipeline import ClipInput, ExtractConfig

MODALITIES = ("text", "audio", "vision")
# which ExtractConfig field selects the extractors of each modality
SELECTION_FIELDS = {"text": "text_features", "audio": "audio_features", "vision": "face_features"}
# settings that change speed, not output: never part of a cache key
RUNTIME_SETTINGS = ("device", "show_progress", "batch_size", "num_threads")

LoadTimer = Callable[[str, Callable[[], Any]], None]


class ExtractorRegistryError(ValueError):
    """An extractor class is malformed, or a config names an extractor that is not registered."""


@dataclass
class ClipData:
    """What the pipeline decoded for one clip, handed to every extractor's :meth:`Extractor.extract`."""

    clip: "ClipInput"
    config: "ExtractConfig"
    record: dict  # the clip's record: extractors may add metadata (their ``record_keys``)
    info: "MediaInfo | None"  # what ffprobe found (set right after probing)
    samples: np.ndarray | None = None  # mono float32 at config.media.sample_rate, or None
    silent: bool = False
    # the sampled frames as a re-iterable of (frame, timestamp) pairs, decoded afresh on each pass
    # (a media.FrameStream: one frame in memory at a time), or None when the clip has no video
    frame_stream: Iterable | None = None
    timings: dict = field(default_factory=dict)  # wall seconds per stage on the clip's critical path
    show_progress: bool = False  # per-stage bars within the clip (only when drawing on a terminal)
    _frames: np.ndarray | None = field(default=None, repr=False)
    _timestamps: np.ndarray | None = field(default=None, repr=False)

    @property
    def sample_rate(self) -> int:
        return self.config.media.sample_rate

    def set_frames(self, frames: np.ndarray, timestamps: np.ndarray) -> None:
        """Frames decoded all at once (``ExtractConfig(overlap_decode=False)``, or tests)."""
        self._frames, self._timestamps = frames, np.asarray(timestamps, np.float64)

    def iter_frames(self) -> Iterator[tuple[np.ndarray, float]]:
        """``(frame, timestamp)`` pairs, one at a time (bounded memory however long the clip is)."""
        if self._frames is not None:
            return zip(self._frames, self._timestamps)
        if self.frame_stream is None:
            return iter(())
        return iter(self.frame_stream)

    @property
    def frames(self) -> np.ndarray | None:
        """All sampled frames at once, ``N x H x W x 3`` uint8 RGB (decoded on first use and kept: memory
        grows with the clip's length; the built-in extractors use :meth:`iter_frames`)."""
        if self._frames is None and self.frame_stream is not None:
            from msa_lib.extract.media import stack_frames

            self.set_frames(*stack_frames(self.frame_stream))
        return self._frames

    @property
    def timestamps(self) -> np.ndarray | None:
        """Seconds of each of :attr:`frames`."""
        return self._timestamps if self.frames is not None else None

    @property
    def expected_frames(self) -> int | None:
        if self._frames is not None:
            return len(self._frames)
        return getattr(self.frame_stream, "expected_frames", None)

    def stage_progress(self, stage: str, total: float | None, unit: str):
        """A progress bar for one stage of this clip (disabled unless :attr:`show_progress`)."""
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"  {stage}", unit=unit, leave=False, disable=not self.show_progress)

    def timed(self, stage: str, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)``, its wall time added to ``timings[stage]``."""
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start

    def missing(self, modality: str, why: str) -> None:
        """Record that ``modality`` has no features for this clip, and why (goes to the failures table)."""
        self.record["missing"][modality] = why


class Extractor:
    """One feature representation: how to load its model, extract it from a clip and describe it.

    Subclasses set the class attributes and implement :meth:`extract` and :meth:`specs`; see the
    module docstring for a complete example."""

    name: ClassVar[str]  # what ExtractConfig.<modality>_features lists
    modality: ClassVar[str]  # "text" | "audio" | "vision"
    outputs: ClassVar[tuple[str, ...]]  # the feature keys extract() returns
    record_keys: ClassVar[tuple[str, ...]] = ()  # per-clip metadata it writes into the record
    config_field: ClassVar[str | None] = None  # built-ins: the ExtractConfig field of their settings
    config_class: ClassVar[type | None] = None  # others: the dataclass of their settings
    version: ClassVar[int] = 1  # bump when the output changes (invalidates the clips cached with it)
    # whether settings_for_cache() adds {version, settings} when selected (False: the built-ins, whose
    # settings are ExtractConfig fields keyed since before the registry)
    cache_key_entry: ClassVar[bool] = True

    # -- settings
    def settings(self, cfg: "ExtractConfig") -> Any:
        """This extractor's settings in ``cfg``: its ExtractConfig field, else
        ``cfg.extractor_settings[name]``, else ``config_class()`` (None without a config class)."""
        if self.config_field is not None:
            return getattr(cfg, self.config_field)
        if self.name in cfg.extractor_settings:
            return cfg.extractor_settings[self.name]
        return self.config_class() if self.config_class is not None else None

    def cache_settings(self, cfg: "ExtractConfig") -> dict:
        """What of this extractor's settings changes its output (runtime settings dropped)."""
        settings = self.settings(cfg)
        d = asdict(settings) if is_dataclass(settings) else dict(settings or {})
        for key in RUNTIME_SETTINGS:
            d.pop(key, None)
        return {"version": self.version, "settings": d}

    # -- models
    @staticmethod
    def shared_model(kind: str, config: Any, factory: Callable[[Any], Any]) -> Any:
        """``factory(config)``, built once per process for each (kind, settings) (msa_lib.core.cache)."""
        key = f"{kind}:{json.dumps(asdict(config) if is_dataclass(config) else config, sort_keys=True, default=str)}"
        return shared(("extract.models", key), lambda: factory(config))

    def load(self, cfg: "ExtractConfig", timed: LoadTimer, need_asr: bool = True) -> None:
        """Load (once per process) what :meth:`extract` needs, each step as ``timed(label, fn)`` so its
        seconds are reported apart from any clip's timings. ``need_asr`` is False when every clip of
        the batch comes with a transcript. Default: nothing to load."""

    def needs_audio(self, clip: "ClipInput") -> bool:
        """Whether this extractor needs the clip's audio decoded."""
        return self.modality == "audio"

    # -- per clip
    def extract(self, clip: ClipData) -> dict[str, np.ndarray]:
        """Features of one clip (keys among ``outputs``). Bad media raises an ExtractionError; a gap of
        this representation only is ``clip.missing(modality, why)`` and an empty dict."""
        raise NotImplementedError

    # -- description
    def specs(self, cfg: "ExtractConfig", records: list[dict]) -> dict[str, ModalitySpec]:
        """Feature names, groups, rate and settings of each output (``records``: the extracted clips,
        for sizes known only after extraction)."""
        raise NotImplementedError


_REGISTRY: dict[str, Extractor] = {}


def register_extractor(cls: type[Extractor]) -> type[Extractor]:
    """Class decorator: make ``cls`` selectable by its ``name``. Re-registering a name replaces it."""
    _ensure_builtins()  # built-ins first, so the order (and thus the feature order) never depends on imports
    for attr in ("name", "modality", "outputs"):
        if not getattr(cls, attr, None):
            raise ExtractorRegistryError(f"extractor {cls.__name__} must set `{attr}`")
    if cls.modality not in MODALITIES:
        raise ExtractorRegistryError(f"extractor {cls.name!r}: modality must be one of {MODALITIES}, "
                                     f"got {cls.modality!r}")
    taken = {out: other.name for other in _REGISTRY.values() if other.name != cls.name for out in other.outputs}
    clash = sorted(set(cls.outputs) & set(taken))
    if clash:
        raise ExtractorRegistryError(f"extractor {cls.name!r}: output {clash[0]!r} is already written by "
                                     f"{taken[clash[0]]!r}")
    _REGISTRY[cls.name] = cls()
    return cls


def unregister_extractor(name: str) -> None:
    """Forget an extractor (tests register temporary ones)."""
    _REGISTRY.pop(name, None)


def _ensure_builtins() -> None:
    import msa_lib.extract.extractors  # noqa: F401  (registers the built-in extractors on import)


def registered(modality: str | None = None) -> list[Extractor]:
    """Every registered extractor (of one modality), in registration order."""
    _ensure_builtins()
    return [e for e in _REGISTRY.values() if modality is None or e.modality == modality]


def names(modality: str) -> tuple[str, ...]:
    return tuple(e.name for e in registered(modality))


def get_extractor(name: str) -> Extractor:
    _ensure_builtins()
    if name not in _REGISTRY:
        raise ExtractorRegistryError(f"no extractor named {name!r} (registered: {', '.join(_REGISTRY)})")
    return _REGISTRY[name]


def check_selection(modality: str, selected: Iterable[str]) -> None:
    """Raise a clear error when a config selects names that are not extractors of ``modality``."""
    known = names(modality)
    bad = set(selected) - set(known)
    if bad:
        raise ValueError(f"{SELECTION_FIELDS[modality]} must be among {known}, got {sorted(bad)}")


def selected_extractors(cfg: "ExtractConfig", modality: str | None = None) -> list[Extractor]:
    """The extractors ``cfg`` runs, modality by modality (text, audio, vision) and within a modality
    in registration order (not the order of the selection, so reordering a selection changes nothing)."""
    out = []
    for m in MODALITIES if modality is None else (modality,):
        if m not in cfg.modalities:
            continue
        chosen = set(getattr(cfg, SELECTION_FIELDS[m]))
        out.extend(e for e in registered(m) if e.name in chosen)
    return out


__all__ = ["MODALITIES", "SELECTION_FIELDS", "ClipData", "Extractor", "ExtractorRegistryError", "register_extractor",
           "unregister_extractor", "registered", "names", "get_extractor", "check_selection", "selected_extractors"]
