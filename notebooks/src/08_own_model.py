# ---
# jupyter:
#   jupytext:
#     formats: ipynb,src//py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Your own model: `msa extract` → `msa train` → `msa evaluate` → `msa predict --model`
#
# The workflow a researcher follows with their own clips, on real recordings: the shipped RAVDESS speech
# recordings (24 actors, 8 emotions, raw audio).
#
# 1. **A manifest** with the columns `path, label, split, group, language, transcript`: label = the emotion
#    (a class name, so the file becomes an 8-class dataset), group = the actor, split = `train` for actors
#    1-20 and `test` for actors 21-24 (no `dev`: `msa train` draws validation actors from the training actors,
#    whole actors only).
# 2. **`msa extract`** turns the raw audio into Whisper-encoder states (the output of encoder block 2, the
#    layer notebook 07 chose on its *validation* actors), one 512-d frame per 100 ms, with a 10-s encoder
#    window (every recording is shorter; notebook 07 used Whisper's own 30 s, three times the cost).
# 3. **`msa train --task classes`** trains a model of the zoo (`audio_only` here) for several seeds and
#    writes a run folder; **`msa evaluate`** scores it on the test actors; **`msa predict --model`** runs it on
#    held-out recordings from the raw files.
#
# Every step below is the command a user types (run as a subprocess); the last cell trains again through the
# Python API (`msa_lib.train.runs.train_run`) and checks that both give the same numbers.

# %% tags=["parameters"]
smoke = False
reports_dir = "reports"  # project-relative
work_dir = ".cache/own_model"  # manifest and feature file (large: not part of the reports)
per_actor = None  # None: all 60 recordings of every actor; a number: a few per actor (smoke runs)
model = "audio_only"
seeds = "0,1,2"
epochs = 40
select_settings = True  # compare encoder / learning-rate settings on the validation actors first (one seed each)
whisper_layer = 2
whisper_window = 10.0  # seconds: the recordings are 3-5 s long, so a 10-s window holds each one (3x cheaper than 30 s)
audio_features = "whisper"  # smoke runs: "prosody" (fast)
reextract = False  # False: keep a feature file this command already wrote (extraction is the slow step)

# %%
import json

import pandas as pd
from IPython.display import Image, Markdown, display

from msa_lib.core.paths import project_path
from msa_lib.studies import own_model as own

work = project_path(work_dir)
reports = project_path(reports_dir)
run_dir = reports / "own_model" / "ravdess_audio_run"
api_dir = work / "api_run"
manifest_path = work / ("ravdess_manifest_smoke.csv" if smoke else "ravdess_manifest.csv")
features = work / ("ravdess_speech_smoke.npz" if smoke else "ravdess_speech.npz")
for stale in (run_dir, api_dir):  # a rerun trains afresh (msa train refuses to overwrite a run)
    if stale.exists():
        import shutil

        shutil.rmtree(stale)

# %% [markdown]
# ## 1 · The manifest

# %%
manifest = own.ravdess_manifest(manifest_path, per_actor=per_actor)
display(manifest.head())
print(manifest.groupby("split")["group"].nunique().rename("actors").to_string())
print(manifest["split"].value_counts().rename("recordings").to_string())

# %% [markdown]
# ## 2 · `msa extract` (cached per clip: a rerun reads the cache; an existing feature file is kept unless `reextract`)

# %%
if reextract or not features.exists():
    done = own.msa("extract", manifest_path, "--out", features, "--modalities", "audio", "--audio-features", audio_features,
                   "--whisper-layer", whisper_layer, "--whisper-window", whisper_window, "--name", "ravdess_speech", "--quiet")
    print(done.stdout[-800:])
from msa_lib.data.io import read_features

extracted = read_features(features)
print(f"{features.name}: {len(extracted)} recordings, modalities {extracted.meta.modalities['audio_whisper'].dim if 'audio_whisper' in extracted.meta.modalities else list(extracted.meta.modalities)}-d"
      f" audio; {len(manifest) - len(extracted)} skipped by the extractor (see {features.with_suffix('.failures.csv').name})")
print(extracted.meta.extra["extract_config"]["whisper_encoder"] if audio_features == "whisper" else extracted.meta.extra["extract_config"]["audio_features"])

# %% [markdown]
# ## 3 · Settings chosen on the validation actors
# `msa train` draws validation actors from actors 1-20; each candidate trains once (seed 0) and is ranked by
# validation macro F1 (the run's own monitor). The encoders: `mlp` = a per-frame MLP, then the masked mean
# over time; `stats` = statistics pooling (mean and standard deviation of every Whisper dimension over the
# recording, as x-vector speech-emotion models do), then an MLP. A transformer encoder costs ~10x more per
# epoch on 2 cores. The test actors are not read here.

# %%
if select_settings:
    ranking = own.choose_settings_on_validation(features, work, model, epochs)
    display(ranking.round(4))
    chosen = ranking["settings"].iloc[0]
else:
    chosen = "stats, lr 1e-3"
print(f"chosen on validation: {chosen}")

# %% [markdown]
# ## 4 · `msa train --task classes` on actors 1-20 with the chosen settings

# %%
run_json = work / "run.json"  # the settings msa train does not take as flags (encoder kind, learning rate)
run_json.write_text(json.dumps(own.run_settings(own.SETTINGS_CANDIDATES[chosen], epochs)))
done = own.msa("train", features, "--model", model, "--task", "classes", "--seeds", seeds, "--epochs", epochs,
               "--config", run_json, "--out", run_dir)
print(done.stdout)
metrics = json.loads((run_dir / "metrics.json").read_text())
per_seed = pd.DataFrame([{"seed": r["seed"], "best_epoch": r["best_epoch"], "valid acc": r["valid"]["acc"],
                          "test acc": r["test"]["acc"], "test macro F1": r["test"]["f1_macro"]} for r in metrics["per_seed"]])
display(per_seed.round(4))
test = metrics["summary"]["test"]["acc"]
reference = own.decision_fusion_reference(reports_dir)
print(f"test actors, mean over seeds {seeds}: acc {100 * test['mean']:.1f} ± {100 * test['std']:.1f} %"
      + (f" (notebook 07's Whisper-encoder audio branch: {reference})" if reference else ""))
display(Image(str(run_dir / "curves.png")))

# %% [markdown]
# ## 5 · `msa evaluate` on the test actors (21-24)

# %%
done = own.msa("evaluate", run_dir, features, "--split", "test", "--json")
evaluated = json.loads(done.stdout)
print(f"test actors: acc {100 * evaluated['acc']:.1f} %, macro F1 {100 * evaluated['f1_macro']:.1f} % "
      f"(saved model = seed {metrics['chosen_seed']}, n = {evaluated['n']}; chance 12.5 %)")
display(Image(str(run_dir / "confusion.png")))
display(Markdown((run_dir / "MODEL_CARD.md").read_text()))

# %% [markdown]
# ## 6 · `msa predict --model` on held-out recordings (raw audio in, emotion out)

# %%
clips = own.held_out_recordings(manifest, n=4)
done = own.msa("predict", "--model", run_dir, *clips, "--json")
predicted = own.predictions_table(json.loads(done.stdout))
predicted["true label"] = manifest.set_index("path").loc[clips, "label"].to_numpy()
display(predicted)
print(own.msa("predict", "--model", run_dir, *clips).stdout)

# %% [markdown]
# ## 7 · The same run through the Python API
# `train_run` with the run's own `config.json` settings: the test numbers equal the command line's.

# %%
check = own.api_check(features, run_dir, api_dir)
comparison = pd.DataFrame({k: {"cli": check["cli"][k]["mean"], "api": check["api"][k]["mean"]} for k in ("acc", "f1_macro")}).T
display(comparison)
assert (comparison["cli"] == comparison["api"]).all(), "the Python API and the command line disagree"
results = reports / "results"
results.mkdir(parents=True, exist_ok=True)
pd.DataFrame([{"model": model, "task": "classes", "settings": chosen, "features": f"{audio_features} (block {whisper_layer})" if audio_features == "whisper" else audio_features, **{k: r["test"][k] for k in ("acc", "f1_macro", "f1_weighted")},
               "seed": r["seed"]} for r in metrics["per_seed"]]).to_csv(results / "own_model_ravdess.csv", index=False)
