# %% [markdown]
# # 01 · Extraction: raw video to text, audio and face features
#
# The seed system's upstream stage on the four shipped real clips (`data/clips`: two Mandarin CH-SIMS
# clips, two English CMU-MOSI clips). Per clip, `msa_lib.extract.extract`:
#
# 1. **decodes** 16-kHz mono audio and frames sampled at `fps` with ffmpeg (frames in the background
#    while the audio path runs);
# 2. runs **Whisper ASR** with the language detected afresh for each clip (faster-whisper by default;
#    openai-whisper is the reference implementation), Chinese output in simplified characters;
# 3. encodes the transcript with **multilingual-e5-small** (token sequence + pooled vector);
# 4. computes 43 named frame-level **prosodic and spectral** features (MFCC, F0/voicing, energy, HNR, ...);
# 5. runs **MediaPipe** face detection + face mesh on each sampled frame: landmark geometry, head
#    pose, action-unit proxies, HoG and facial-expression probabilities, with a face-present mask.
#
# The manifest's transcripts are *not* given to the pipeline here (they would override ASR): they are
# shown next to the ASR output instead. Clips that cannot be used end up in a failures table.

# %% tags=["parameters"]
smoke = False
reports_dir = "reports"  # project-relative
asr_backends = ["faster-whisper", "openai-whisper"]  # features of the first backend are saved
fps = 5.0  # video frames sampled per second for the face features
use_cache = False  # True reuses finished clips (their timings are then those of the run that made them)

# %%
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from msa_lib.data import sources
from msa_lib.extract import plots as xp
from msa_lib.extract.pipeline import ClipInput, ExtractConfig, extract
from msa_lib.core.paths import project_path
from msa_lib.core.plots import results_dir, save_figure

# the feature file is .npz (arrays + JSON metadata: opening it cannot run code); project paths are explicit
features_out = project_path(f"{reports_dir}/features/clips_features.npz" if smoke else "data/features/clips_features.npz")
manifest = sources.read_clip_manifest(project_path("data/clips/manifest.csv"))
# language "auto" and no transcript: ASR and language detection run; the manifest label is kept
clips = [ClipInput(row.path, Path(row.path).stem, label=row.label) for row in manifest.itertuples()]
references = {Path(row.path).stem: row.transcript for row in manifest.itertuples()}
base = ExtractConfig(use_cache=use_cache)
base = replace(base, media=replace(base.media, fps=fps))

# %% [markdown]
# ## Extraction with each ASR backend
# Models are loaded once before the first clip (`ds.meta.extra["model_load_s"]`), so the per-clip
# stage timings below are warm. The first backend's batch is saved as the feature file, with its
# failures table next to it (`<file>.failures.csv`).

# %%
batches = {}
for i, backend in enumerate(asr_backends):
    cfg = replace(base, asr=replace(base.asr, backend=backend))
    batches[backend] = extract(clips, cfg, out=features_out if i == 0 else None, progress=False)
    print(f"{backend}: {len(batches[backend])} clips; model load (one-off) {batches[backend].meta.extra['model_load_s']}")
ds = batches[asr_backends[0]]
print("feature file:", project_path(features_out), "| modalities:",
      {m: spec.dim for m, spec in ds.meta.modalities.items()})

# %% [markdown]
# ## Language and transcript per clip
# `language_probability` is Whisper's probability of the detected language (from the first 30 s);
# the reference is the manifest transcript (CH-SIMS: burned-in subtitle; MOSI: its transcript).

# %%
clip_tables = pd.concat({b: xp.clip_table(d, references) for b, d in batches.items()}, names=["asr", "row"])
clip_tables.droplevel("row")

# %% [markdown]
# ## Failures table
# The batch's own table first (empty when every shipped clip gave every modality). A clip with no
# audio, no video, no face, silence or a corrupt file is listed there (kind `failed`, or `modality
# missing` when the other modalities were kept) while the rest of the batch goes on. Below it, the
# same kind of record for two deliberately broken inputs (a truncated copy of a clip and a missing file):

# %%
display(pd.DataFrame(ds.failures, columns=["clip_id", "kind", "stage", "error"]))
with tempfile.TemporaryDirectory() as tmp:
    truncated = Path(tmp) / "truncated.mp4"
    truncated.write_bytes(Path(clips[0].path).read_bytes()[:20_000])  # the index (moov atom) is cut off
    broken = extract([truncated, Path(tmp) / "missing.mp4"], replace(base, modalities=("audio",)), progress=False)
pd.DataFrame(broken.failures, columns=["clip_id", "kind", "stage", "error"])

# %% [markdown]
# ## Prosody: pitch and energy over time
# F0 is drawn on voiced frames only (the feature `log_f0` is 0 on unvoiced frames and is always read
# with `voiced`); energy is the frame RMS in dBFS (10-ms hop).

# %%
audio_spec = ds.meta.modalities["audio"]
fig = xp.plot_pitch_energy({c: ds.features["audio"][i] for i, c in enumerate(ds.ids)}, audio_spec.names(),
                           frame_rate_hz=audio_spec.rate_hz)
save_figure(fig, "extraction_pitch_energy", reports_dir)

# %% [markdown]
# ## Face mesh on a frame
# The frame with a face closest to the middle of each clip: the 478 mesh points (green), the 29 key
# landmarks whose normalised geometry is in the features (red), and the detected face box.

# %%
drawn = {clip.clip_id: xp.frame_with_landmarks(clip.path, fps=fps) for clip in clips}
fig = xp.plot_images({f"{c}  (t = {t:.1f} s)": image for c, (image, t, _) in drawn.items()}, ncols=2)
save_figure(fig, "extraction_landmarks", reports_dir)

# %% [markdown]
# ## Facial-expression probabilities over time
# The bundled FER model's seven probabilities per sampled frame (stacked); grey frames have no face
# and are masked in the features rather than zero-filled. The face-present ratio is in the title (and
# in the clip table above).

# %%
vision_spec = ds.meta.modalities["vision"]
fig = xp.plot_expression_probabilities({c: ds.features["vision"][i] for i, c in enumerate(ds.ids)},
                                       vision_spec.names(), frame_rate_hz=vision_spec.rate_hz)
save_figure(fig, "extraction_expressions", reports_dir)

# %% [markdown]
# ## Time per stage
# Wall seconds per stage on each clip's critical path (`decode` = probe + audio + waiting for the
# frames decoded in the background) and the clip's whole wall time, per second of video. Whisper
# always encodes a 30-s window, so short clips cost relatively more. The target (issue 3) is
# ≤ 0.5 s per second of video with the default settings on 2 cores; `benchmarks/bench_extract.py`
# measures it properly (warm, several frame rates, both backends, against the naive setting).

# %%
timings = pd.concat({b: xp.timing_table(d) for b, d in batches.items()}, names=["asr", "clip_id"])
timings.to_csv(results_dir(reports_dir) / "extraction_timings.csv")
display(timings)
fig = xp.plot_stage_timings(timings.set_axis([" · ".join(i) for i in timings.index]), target=0.5,
                            title=f"extraction time per stage ({fps:g} fps)")
save_figure(fig, "extraction_timings", reports_dir)

# %% [markdown]
# The benchmark's last results, when it has been run (`.venv/bin/python benchmarks/bench_extract.py`):

# %%
bench_file = project_path("reports/benchmarks/extract.json")
if bench_file.is_file():
    bench = json.loads(bench_file.read_text())
    display(pd.DataFrame(bench["settings"])[["name", "wall_s_per_video_s", "cpu_s_per_video_s", "load_average_mean"]])
    print("speedup default vs naive:", bench["speedup_default_vs_naive"], "| target:", bench["target"])
else:
    print("no benchmark results yet:", bench_file)
