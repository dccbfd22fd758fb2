"""A new representation is one registered class: it flows through extract_clip, load_models,
modality_specs and the batch on a real shipped clip without any change to the pipeline, and joins
the per-clip cache key only when selected."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from msa_lib.data.schema import ModalitySpec
from msa_lib.extract.media import extract_frames
from msa_lib.extract.pipeline import ExtractConfig, cache_key, extract, extract_clip, load_models, modality_specs, \
    resolve_inputs
from msa_lib.extract.registry import (
    Extractor,
    ExtractorRegistryError,
    get_extractor,
    register_extractor,
    registered,
    unregister_extractor,
)

CLIP = "mosi_0h-zjBukYpk_1.mp4"


@dataclass
class BrightnessConfig:
    scale: float = 1.0
    num_threads: int = 1  # a runtime setting: not part of the cache key


class FrameBrightness(Extractor):
    """Mean luminance of each sampled frame (a 1-column vision representation)."""

    name = "brightness"
    modality = "vision"
    outputs = ("vision_brightness",)
    record_keys = ("brightness_frames",)
    config_class = BrightnessConfig

    def load(self, cfg, timed, need_asr=True):
        timed("brightness weights", lambda: self.weights(cfg))

    def weights(self, cfg):
        # ITU-R BT.601 luma weights, built once per process through the shared model cache
        return self.shared_model("brightness", self.settings(cfg), lambda s: np.array([0.299, 0.587, 0.114]) * s.scale)

    def extract(self, clip):
        luma = clip.timed("vision_brightness", lambda: clip.frames.astype(np.float64) @ self.weights(clip.config))
        clip.record["brightness_frames"] = int(len(luma))
        return {"vision_brightness": luma.mean(axis=(1, 2))[:, None].astype(np.float32)}

    def specs(self, cfg, records):
        return {"vision_brightness": ModalitySpec(1, ["luma_mean"], {"luma": [0]}, "sequence", cfg.media.fps,
                                                  {"name": "frame brightness", "scale": self.settings(cfg).scale})}


@pytest.fixture
def brightness():
    register_extractor(FrameBrightness)
    yield get_extractor("brightness")
    unregister_extractor("brightness")


@pytest.fixture(scope="module")
def clip(clips_dir):
    return resolve_inputs([clips_dir / CLIP])[0]


def expected_brightness(path, cfg: ExtractConfig, scale: float = 1.0) -> np.ndarray:
    frames, _ = extract_frames(path, fps=cfg.media.fps, max_side=cfg.media.max_side)
    luma = frames.astype(np.float64) @ (np.array([0.299, 0.587, 0.114]) * scale)
    return luma.mean(axis=(1, 2))[:, None].astype(np.float32)


def test_a_registered_representation_flows_through_extract_clip(brightness, clip):
    cfg = ExtractConfig(modalities=("vision",), face_features=("brightness",), use_cache=False)
    assert [e.name for e in registered("vision")] == ["face", "blendshapes", "brightness"]
    assert set(load_models(cfg)) == {"brightness weights"}  # its load step, timed apart from the clip
    record = extract_clip((clip, cfg, None))
    assert record["status"] == "ok" and set(record["features"]) == {"vision_brightness"}
    values = record["features"]["vision_brightness"]
    np.testing.assert_allclose(values, expected_brightness(clip.path, cfg), rtol=1e-6)
    assert record["brightness_frames"] == len(values) > 0 and "vision_brightness" in record["timings"]

    specs = modality_specs(cfg, [record])
    assert list(specs) == ["vision_brightness"] and specs["vision_brightness"].feature_names == ["luma_mean"]


def test_it_runs_beside_the_built_ins_and_reaches_the_dataset(brightness, clip, tmp_path):
    cfg = ExtractConfig(modalities=("audio", "vision"), face_features=("brightness",), cache_folder=str(tmp_path),
                        extractor_settings={"brightness": BrightnessConfig(scale=2.0)})
    ds = extract([clip.path], cfg, progress=False)
    assert list(ds.meta.modalities) == ["audio", "vision_brightness"]
    assert ds.meta.modalities["vision_brightness"].extractor["scale"] == 2.0
    np.testing.assert_allclose(ds.features["vision_brightness"][0], expected_brightness(clip.path, cfg, 2.0), rtol=1e-6)
    assert ds.features["audio"][0].shape[0] > 0  # the built-in prosody alongside
    assert ds.extra[0]["brightness_frames"] == len(ds.features["vision_brightness"][0])
    again = extract([clip.path], cfg, progress=False)  # the per-clip cache holds the new feature too
    assert again.extra[0]["cached"] is True
    np.testing.assert_array_equal(again.features["vision_brightness"][0], ds.features["vision_brightness"][0])


def test_the_cache_key_changes_only_when_the_representation_is_selected(brightness, clip):
    default = ExtractConfig()
    legacy_form = set(default.settings_for_cache())
    assert not {"face_features", "text_features", "extractors", "extractor_settings"} & legacy_form
    # registering it (or giving it settings) without selecting it changes nothing
    assert cache_key(clip, replace(default, extractor_settings={"brightness": BrightnessConfig(scale=3.0)})) \
        == cache_key(clip, default)
    both = replace(default, face_features=("face", "brightness"))
    assert both.settings_for_cache()["extractors"]["brightness"] == {"version": 1, "settings": {"scale": 1.0}}
    assert cache_key(clip, both) != cache_key(clip, default)
    scaled = replace(both, extractor_settings={"brightness": BrightnessConfig(scale=3.0)})
    threads = replace(both, extractor_settings={"brightness": BrightnessConfig(num_threads=4)})
    assert cache_key(clip, scaled) != cache_key(clip, both) and cache_key(clip, threads) == cache_key(clip, both)


def test_selections_are_checked_against_the_registry():
    with pytest.raises(ValueError, match=r"face_features must be among \('face', 'blendshapes'\).*'brightness'"):
        ExtractConfig(face_features=("brightness",))  # not registered here
    with pytest.raises(ValueError, match="audio_features must be among"):
        ExtractConfig(audio_features=("mfcc",))
    with pytest.raises(ExtractorRegistryError, match="already written by 'face'"):
        register_extractor(type("Clash", (FrameBrightness,), {"name": "clash", "outputs": ("vision",)}))
    with pytest.raises(ExtractorRegistryError, match="modality"):
        register_extractor(type("Smell", (FrameBrightness,), {"name": "smell", "modality": "olfaction"}))
    assert "clash" not in [e.name for e in registered()]
