"""Extraction tables and figures (msa_lib.extract.plots) on small synthetic inputs."""
import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from msa_lib.extract import plots as xp
from msa_lib.extract.audio import feature_names as audio_feature_names
from msa_lib.extract.visual import EXPRESSION_LABELS, visual_feature_names
from msa_lib.data.schema import DatasetMeta, ModalitySpec, MultimodalDataset
from msa_lib.data.labels import SIMS_SCHEME


def _audio(n=200, voiced_from=50, f0=200.0):
    names = audio_feature_names()
    x = np.zeros((n, len(names)), np.float32)
    x[voiced_from:, names.index("voiced")] = 1.0
    x[voiced_from:, names.index("log_f0")] = np.log(f0)
    x[:, names.index("rms_db")] = np.linspace(-80, -20, n)
    return x, names


def _vision(n=10, no_face=(2, 3)):
    names, _ = visual_feature_names()
    x = np.zeros((n, len(names)), np.float32)
    cols = [names.index(f"expr_{label}") for label in EXPRESSION_LABELS]
    x[:, cols] = 1.0 / len(cols)
    x[list(no_face)] = np.nan  # masked frames hold NaN, as the extractor writes them
    return x, names


def _dataset():
    meta = DatasetMeta("t", {"audio": ModalitySpec(1, None, {}, "sequence", 100.0)}, SIMS_SCHEME)
    extra = [{"timings": {"decode": 0.5, "asr": 1.0, "vision": 0.25}, "wall_s": 2.0, "duration": 4.0,
              "language_probability": 0.9876, "language_source": "detected", "transcript_source": "asr",
              "face_ratio": 0.8, "n_frames": 20},
             {"timings": {"decode": 0.2, "text": 0.1, "custom": 0.05}, "duration": 1.0, "cached": True}]
    return MultimodalDataset.build(meta, ["a", "b"], {"audio": [np.zeros((3, 1)), np.zeros((2, 1))]},
                                   language=["en", "zh"], raw_text=["hello there", "你好"], extra=extra)


def test_prosody_curves_hide_unvoiced_frames():
    x, names = _audio()
    curves = xp.prosody_curves(x, names, frame_rate_hz=100.0)
    assert list(curves.columns) == ["time_s", "f0_hz", "energy_db"] and len(curves) == 200
    assert curves.f0_hz[:50].isna().all() and np.allclose(curves.f0_hz[50:], 200.0, rtol=1e-4)
    assert curves.time_s.iloc[100] == pytest.approx(1.0)
    with pytest.raises(xp.PlotInputError, match="T x"):
        xp.prosody_curves(x[:, :5], names)


def test_expression_curves_mark_faceless_frames():
    x, names = _vision()
    curves = xp.expression_curves(x, names, frame_rate_hz=5.0)
    assert curves.face.tolist() == [True, True, False, False] + [True] * 6
    assert curves.loc[curves.face, list(EXPRESSION_LABELS)].sum(axis=1).round(6).eq(1.0).all()
    assert curves.loc[~curves.face, "happy"].isna().all() and curves.time_s.iloc[5] == pytest.approx(1.0)


def test_figures_are_drawn():
    import matplotlib.pyplot as plt

    a, an = _audio()
    v, vn = _vision()
    figs = [xp.plot_pitch_energy({"a": a, "b": a[:80]}, an),
            xp.plot_expression_probabilities({"a": v, "b": v[:4]}, vn, frame_rate_hz=5.0),
            xp.plot_images({"x": np.zeros((40, 60, 3), np.uint8), "y": np.full((40, 60, 3), 255, np.uint8)}),
            xp.plot_stage_timings(xp.timing_table(_dataset()), target=0.5)]
    assert [len(f.axes) for f in figs[:2]] == [4, 2]  # pitch panels carry a twin energy axis
    for fig in figs:
        plt.close(fig)
    with pytest.raises(xp.PlotInputError):
        xp.plot_pitch_energy({}, an)
    with pytest.raises(xp.PlotInputError, match="stage"):
        xp.plot_stage_timings(pd.DataFrame({"duration_s": [1.0]}))


def test_timing_table_sums_stages_and_normalises_by_duration():
    table = xp.timing_table(_dataset())
    assert list(table.index) == ["a", "b", "total"]
    assert table.loc["a", "stages_s"] == pytest.approx(1.75) and table.loc["a", "wall_per_video_s"] == pytest.approx(0.5)
    # no wall time recorded (an older cache entry): the stage sum stands in
    assert table.loc["b", "wall_per_video_s"] == pytest.approx(0.35) and table.loc["b", "asr"] == 0.0
    assert "custom" in table.columns and table.loc["total", "duration_s"] == pytest.approx(5.0)
    assert table.loc["total", "decode"] == pytest.approx(0.7) and bool(table.loc["b", "cached"])


def test_clip_table_puts_reference_next_to_transcript():
    table = xp.clip_table(_dataset(), references={"a": "Hello there."})
    assert list(table.clip_id) == ["a", "b"]
    assert table.loc[0, "reference"] == "Hello there." and table.loc[1, "reference"] == ""
    assert table.loc[0, "language_probability"] == pytest.approx(0.988) and np.isnan(table.loc[1, "language_probability"])
    assert xp.clip_table(_dataset()).columns.tolist()[:5] == ["clip_id", "language", "language_probability",
                                                             "language_source", "transcript"]


def test_frame_with_landmarks_draws_on_the_face(face_video):
    image, t, ratio = xp.frame_with_landmarks(face_video, fps=5.0, max_side=256)
    assert image.dtype == np.uint8 and image.ndim == 3 and max(image.shape[:2]) == 256
    assert ratio > 0.5 and 0.0 <= t <= 1.0
    from msa_lib.extract.media import extract_frames

    frames, times = extract_frames(face_video, fps=5.0, max_side=256)
    k = int(np.argmin(np.abs(times - t)))
    changed = np.any(image != frames[k], axis=2)
    assert 0.001 < changed.mean() < 0.5  # landmarks drawn on the face, not over the whole frame
