# %% [markdown]
# # 06 · Interpretability and the attention explorer
#
# What do the multimodal models look at, and does attention agree with attribution? Every number and
# figure here comes from a model trained in this notebook on the shipped data; nothing is illustrative.
#
# **The setup, and what it cannot show.** The project has no frame-level *labelled* face data, so the
# questions are split over two honest setups:
#
# | | (a) CMU-MOSI, token level | (b) RAVDESS speech, frame level |
# |---|---|---|
# | task | binary sentiment | 8 acted emotions |
# | text | transcript tokens: e5 layer-8 states → the top 4 e5 layers fine-tuned in the model (`pretrained_top`) | the scripted statement (2 sentences, known from the file name) as e5 tokens |
# | audio | shipped openSMILE vector (73-d, **one per utterance**) | the project's 43 prosodic/spectral features, averaged to 25 Hz, with named groups (MFCC, pitch, voicing, energy, ZCR, spectral, HNR) |
# | face | shipped 3D-CNN vector (100-d, **one per utterance**) | shipped OpenFace action units (35, clip means; groups AU intensity / AU presence) — RAVDESS speech files have **no video frames** |
# | fusion | cross-attention (+ neighbouring utterances' text as `text_context`) | cross-attention; AdaMML gating for utilisation |
# | used for | token attributions (LayerIntegratedGradients on e5's embedding layer), modality contributions across the test set, attention vs attribution | cross-attention maps text tokens × audio frames, integrated gradients per audio feature group and time step, AdaMML utilisation |
#
# Consequences, stated up front:
# * In (a) audio and vision are single vectors, so attention *from* text *to* them is 1 by construction and
#   says nothing; attention *from* them *to* the tokens (one query row over the tokens) is informative.
# * RAVDESS's two sentences are spoken in every emotion, so text carries no emotion information *by design*:
#   a correct attribution method must give text ≈ 0 there — a built-in sanity check on real data.
# * **No map of text tokens against face frames can be shown honestly**: no model here is trained on
#   frame-level face features (the shipped MOSI/RAVDESS face features are utterance vectors). For the four
#   demo clips, which do have face frames, we show what exists — the per-frame expression probabilities of
#   the face extractor — and pass their text and audio through the RAVDESS model (out of domain).
#
# Attributions explain one scalar per sample: MOSI, the 2-class log-odds; RAVDESS, the logit of the
# predicted emotion. Modality contribution = output − output with that modality removed (Captum
# `FeatureAblation`, one mask group per modality; "removed" = masked out as the model does for a missing
# modality, which it was trained on through modality dropout).

# %% tags=["parameters"]
smoke = False
reports_dir = "reports"  # project-relative
seed = 0
max_epochs = 4  # MOSI model (fine-tunes 4 e5 layers: the expensive one)
ravdess_epochs = 20
n_explain = 120  # MOSI test utterances with token attributions (12 e5 layers per IG step)
ig_steps = 32  # integration steps of every (layer) integrated-gradients call
mosi_per_split = None  # e.g. {"train": 160, "valid": 48, "test": 48} for a quick run
ravdess_per_actor = None  # recordings per actor (None: all 1440)
demo_clips = True  # the four shipped clips: face timelines, text+audio through the RAVDESS model
num_threads = 1

# %%
import json
import time

import numpy as np
import pandas as pd
import torch

from msa_lib.explain import attention as A
from msa_lib.explain import attribution as X
from msa_lib.explain import explorer as E
from msa_lib.explain import plots as P
from msa_lib.studies import interpretability as setups
from msa_lib.data.sampling import cap_splits
from msa_lib.core.paths import cache_dir, project_path
from msa_lib.core.plots import plt, results_dir, save_figure
from msa_lib.train.trainer import TrainConfig, evaluate, make_loader, train_model
from msa_lib.core.utils import set_seed

torch.set_num_threads(num_threads)
set_seed(seed)
results, started, summary = results_dir(reports_dir), time.time(), {}
timings = {}

# %% [markdown]
# ## (a) MOSI: data and model
# Validation videos are taken out of the training videos (whole videos); the test videos are the
# shipped speaker-independent test split. One seed, a few epochs: the point is to explain a working
# model, not to tune it (notebooks 02/03 compare models).

# %%
t0 = time.time()
mosi = setups.mosi_token_dataset(mosi_per_split, seed=seed, progress=not smoke)
print({s: int((mosi.split == s).sum()) for s in ("train", "valid", "test")}, "utterances;",
      "text tokens per utterance (median, incl. special and 'query:' tokens):", int(np.median(mosi.lengths("text"))))
mosi_model, mosi_fit = train_model("cross_attention", mosi, setups.mosi_model_config(),
                                   TrainConfig(max_epochs=max_epochs, patience=2, lr=2e-4, batch_size=32, seed=seed,
                                               progress=not smoke))
mosi_test = mosi.get_split("test")
mosi_loader = make_loader(mosi_test, mosi_model.modalities, batch_size=32)
mosi_metrics = evaluate(mosi_model, mosi_loader)
timings["mosi_data_and_training_s"] = time.time() - t0
summary["mosi_test_acc2"], summary["mosi_test_f1"] = mosi_metrics["acc2"], mosi_metrics["f1_weighted"]
print(f"best epoch {mosi_fit.best_epoch}; test acc2 {mosi_metrics['acc2']:.3f}, weighted F1 {mosi_metrics['f1_weighted']:.3f} "
      f"(n={mosi_metrics['n']}); {timings['mosi_data_and_training_s']:.0f} s")

# %% [markdown]
# ### Attention weights on request, padding masked
# `model(batch, return_attention=True)` returns every map. For each one we check on a test batch that
# every real query row sums to one over the real keys, padded keys get nothing and padded query rows are
# zero (the largest violation of the three is shown).

# %%
check_batch = next(iter(make_loader(mosi_test, mosi_model.modalities, batch_size=16)))
maps, _ = A.attention_maps(mosi_model, check_batch)
checks = pd.DataFrame([{"map": k, "shape (B x heads x Tq x Tk)": tuple(v.shape),
                        **A.row_sum_errors(v, *A.query_key_masks(A.parse_key(k), check_batch, mosi_model.modalities))}
                       for k, v in maps.items()])
summary["attention_max_row_error"] = float(checks[["row_sum", "masked_keys", "padded_queries"]].to_numpy().max())
checks

# %% [markdown]
# ### Modality contributions across the whole test set (FeatureAblation)

# %%
t0 = time.time()
mosi_contrib = X.with_predictions(X.modality_ablation_loader(mosi_model, mosi_loader, progress=not smoke),
                                  mosi_model, mosi_loader)
mosi_contrib_base = X.modality_ablation_loader(mosi_model, mosi_loader, mode="baseline")
mosi_mods = [X.CSV_NAMES.get(m, m) for m in mosi_model.modalities]
timings["mosi_ablation_s"] = time.time() - t0

fig = P.plot_modality_heatmap(mosi_contrib, mosi_mods, sort_by=("label", "prediction"), label_names=("NEG", "POS"),
                              title="MOSI test set: modality contribution to the 2-class log-odds "
                                    "(output − output without the modality)")
save_figure(fig, "attribution_modality_heatmap", reports_dir)
contrib_table = X.contribution_summary(mosi_contrib, mosi_mods, mosi_contrib_base)
for m in mosi_mods:
    summary[f"mosi_mean_abs_contribution_{m}"] = float(contrib_table.loc[m, "mean |contribution|"])
contrib_table.round(3)

# %% [markdown]
# The last column compares the two ways of removing a modality: masking it out (the model's missing-modality
# path) and replacing its features with the training mean (zeros after standardisation; for text, zero
# hidden states — off-manifold, so expect that column to be least reliable for text).

# %% [markdown]
# ### Token attributions: LayerIntegratedGradients on e5's embedding layer
# Token ids run through e5's embeddings and its frozen layers 0-7 (`TokenAttributor` reproduces the cached
# layer-8 features to ~1e-6) and then through the trained model. The baseline replaces the transcript
# tokens by the pad token and keeps `<s>`, `query:` and `</s>` (which therefore get exactly 0). The
# convergence delta is Captum's: Σ attributions − (f(x) − f(baseline)).

# %%
t0 = time.time()
explain_rows = cap_splits(mosi_test.split, mosi_test.labels, {"test": n_explain}, seed)
explain_set = mosi_test.subset(explain_rows)
explain_loader = make_loader(explain_set, mosi_model.modalities, batch_size=4)
attributor = X.TokenAttributor(mosi_model, mosi.meta.modalities["text"].extractor, n_steps=ig_steps)
token_results = attributor.attribute_loader(explain_loader, progress=not smoke)
timings["mosi_token_ig_s"] = time.time() - t0
deltas = pd.DataFrame({"abs_delta": [abs(r.delta) for r in token_results],
                       "relative_delta": [r.relative_delta for r in token_results],
                       "gap": [r.prediction - r.baseline_prediction for r in token_results]})
summary.update(token_ig_samples=len(token_results), token_ig_steps=ig_steps,
               token_ig_median_abs_delta=float(deltas["abs_delta"].median()),
               token_ig_max_abs_delta=float(deltas["abs_delta"].max()),
               token_ig_median_relative_delta=float(deltas["relative_delta"].median()))
X.token_frame(token_results).to_csv(results / "token_attribution_mosi.csv", index=False)
print(f"{len(token_results)} utterances, {ig_steps} steps, {timings['mosi_token_ig_s']:.0f} s; convergence delta: "
      f"median |δ| {deltas['abs_delta'].median():.2e}, max {deltas['abs_delta'].max():.2e}; "
      f"median |δ| / |f(x) − f(baseline)| = {deltas['relative_delta'].median():.3f}")

# %%
by_conf = sorted(token_results, key=lambda r: r.prediction)
examples = by_conf[:3] + by_conf[-3:]
truth = dict(zip(explain_set.ids, explain_set.labels))
items = [{"tokens": r.content_tokens()[0], "scores": r.content_tokens()[1],
          "title": f"{r.sample_id} · label {'POS' if truth[r.sample_id] == 1 else 'NEG'} · log-odds {r.prediction:+.2f} "
                   f"(baseline {r.baseline_prediction:+.2f}, δ {r.delta:+.1e})"} for r in examples]
fig = P.token_attribution_figure(items, "MOSI test utterances, most negative and most positive predictions: "
                                        "red raises, blue lowers the positive log-odds")
save_figure(fig, "attribution_tokens_mosi", reports_dir)

# %% [markdown]
# ### Does attention agree with attribution?
# Per test utterance, Spearman ρ over its transcript tokens between |token attribution| and
# * the attention **rollout** of the 4 fine-tuned e5 layers (Abnar & Zuidema, 2020),
# * the attention the tokens **receive** in the top layer,
# * the **cross-attention** from the audio vector, the face vector and the context to the tokens
#   (each a single query row: a genuine distribution over the tokens).

# %%
bundle = E.build_bundle(mosi_model, explain_set, token_results=token_results, contributions=mosi_contrib,
                        notes={"setup": "MOSI (a)", "target": "2-class log-odds"})
agreement, agree_table = X.token_agreement_table(bundle.samples, token_results)
methods = list(agree_table.index)
for m in methods:
    summary[f"rho_tokens_{m}_median"] = float(agree_table.loc[m, "median"])
fig, ax = plt.subplots(figsize=(7, 3.4))
P.plot_correlation_hist({m: agreement[m] for m in methods}, ax,
                        "MOSI: attention-based token importance vs |LayerIntegratedGradients| (per utterance)")
save_figure(fig, "attention_vs_attribution", reports_dir)
agree_table.round(3)

# %%
best = agree_table["median"].idxmax()
print(f"Agreement is at best moderate: the highest median ρ is {agree_table.loc[best, 'median']:+.2f} ({best}); "
      + "; ".join(f"{m}: median ρ {agree_table.loc[m, 'median']:+.2f}, ρ > 0 in {100 * agree_table.loc[m, 'share_positive']:.0f} %"
                  for m in methods)
      + ". Where ρ is near 0 attention weights are no proxy for what changes the prediction.")

# %% [markdown]
# A second, modality-level cross-check: per test utterance, the FeatureAblation contribution of
# `text_context`, `audio` and `visual` against the sum of their integrated gradients (zero baseline). Two
# different attribution methods should rank samples alike.

# %%
t0 = time.time()
ig_parts = X.integrated_gradients_loader(mosi_model, explain_loader, ["text_context", "audio", "vision"], ig_steps)
timings["mosi_modality_ig_s"] = time.time() - t0
merged = X.modality_sums(ig_parts, ["text_context", "audio", "vision"]).merge(
    mosi_contrib, on="sample_id", suffixes=("_ig", "_ablation"))
cross_check = pd.Series({m: X.spearman(merged[f"{m}_ig"], merged[f"{m}_ablation"])
                         for m in ["text_context", "audio", "visual"]}, name="ρ(IG sum, ablation)")
summary.update({f"rho_ig_vs_ablation_{m}": float(v) for m, v in cross_check.items()})
cross_check.round(3)

# %% [markdown]
# ### Bilingual check: the demo transcripts through the MOSI model
# The model was trained on English only; e5 is multilingual, so the two Mandarin demo transcripts can be
# attributed too (text only: audio, face and context are absent for them — the model's missing-modality
# path). This is zero-shot cross-lingual use, not a validated prediction.

# %%
manifest = pd.read_csv(project_path("data/clips/manifest.csv"))
demo_text = setups.mosi_text_inputs(manifest["text"].tolist(), manifest["clip_id"].tolist(), manifest["lang"].tolist(),
                                    mosi)
demo_tokens = attributor.attribute_loader(make_loader(demo_text, ["text"], batch_size=4))
fig = P.token_attribution_figure(
    [{"tokens": r.content_tokens()[0], "scores": r.content_tokens()[1],
      "title": f"{r.sample_id} · {r.language} · log-odds {r.prediction:+.2f} (δ {r.delta:+.1e}) · manifest label "
               f"{manifest.set_index('clip_id').loc[r.sample_id, 'label']}"} for r in demo_tokens],
    "Demo clips, text only through the MOSI model (Han characters shown as pinyin when no CJK font is installed)")
save_figure(fig, "attribution_tokens_demo_clips", reports_dir)
summary["demo_token_ig_max_abs_delta"] = float(max(abs(r.delta) for r in demo_tokens))

# %% [markdown]
# ## (b) RAVDESS: frame-level audio
# Actors 21-24 are the test set; validation actors come out of the training actors. The audio features
# come from the project's extraction pipeline (cached per recording).

# %%
t0 = time.time()
ravdess, ravdess_std = setups.ravdess_dataset(ravdess_per_actor, seed=seed, progress=not smoke)
emotions = list(ravdess.meta.labels.class_names)
print({s: int((ravdess.split == s).sum()) for s in ("train", "valid", "test")}, "recordings;",
      f"audio frames per recording (median, 25 Hz): {int(np.median(ravdess.lengths('audio')))};",
      f"recordings without AUs: {int((ravdess.lengths('vision') == 0).sum())}")
rav_config = TrainConfig(max_epochs=ravdess_epochs, patience=5, lr=1e-3, batch_size=32, seed=seed, progress=not smoke)
rav_model, rav_fit = train_model("cross_attention", ravdess, setups.ravdess_model_config(), rav_config)
rav_test = ravdess.get_split("test")
rav_loader = make_loader(rav_test, rav_model.modalities, batch_size=32)
rav_metrics = evaluate(rav_model, rav_loader)
timings["ravdess_data_and_training_s"] = time.time() - t0
summary["ravdess_test_acc"], summary["ravdess_test_f1_macro"] = rav_metrics["acc"], rav_metrics["f1_macro"]
print(f"test accuracy {rav_metrics['acc']:.3f} (chance 0.125), macro F1 {rav_metrics['f1_macro']:.3f}, n={rav_metrics['n']}")

# %% [markdown]
# ### Modality contributions on RAVDESS: text should be ~0

# %%
rav_contrib = X.with_predictions(X.modality_ablation_loader(rav_model, rav_loader), rav_model, rav_loader)
rav_mods = [X.CSV_NAMES.get(m, m) for m in rav_model.modalities]
fig = P.plot_modality_heatmap(rav_contrib, rav_mods, sort_by=("label", "prediction"), label_names=emotions,
                              title="RAVDESS test actors: contribution to the predicted emotion's logit")
save_figure(fig, "attribution_modality_heatmap_ravdess", reports_dir)
rav_table = X.contribution_by_class(rav_contrib, rav_mods, emotions)
for m in rav_mods:
    summary[f"ravdess_mean_abs_contribution_{m}"] = float(rav_table.loc["all", m])
rav_table.round(3)

# %% [markdown]
# ### Cross-attention: text tokens against audio frames
# Each row is one token of the statement querying the 25-Hz audio frames (mean over heads). The model can
# only use text to tell the two sentences apart, so these maps show *where in time* the text tokens read
# the audio, not a word alignment (nothing trains one).

# %%
shown = [int(np.flatnonzero(rav_test.labels == k)[0]) for k in range(len(emotions)) if (rav_test.labels == k).any()][:4]
rav_bundle = E.build_bundle(rav_model, rav_test, shown, contributions=rav_contrib)
fig, axes = plt.subplots(len(shown), 1, figsize=(11, 2.1 * len(shown)), squeeze=False)
for ax, s in zip(axes[:, 0], rav_bundle.samples):
    P.plot_attention_map(A.head_select(s.attention["cross/text->audio"], None), s.axis_labels["text"],
                         s.axis_labels["audio"], ax, f"{s.sample_id} · {s.label} → predicted {s.prediction}",
                         "text token", "audio frame (s)")
fig.tight_layout()
save_figure(fig, "attention_cross_text_audio", reports_dir)

# %% [markdown]
# ### Integrated gradients per audio feature group and time step
# IntegratedGradients on the audio frames and the AU vector (zero baseline = training mean), summed per
# named feature group; text is held fixed. Completeness: Σ attributions + δ = f(x) − f(baseline).

# %%
t0 = time.time()
audio_groups = ravdess.meta.modalities["audio"].groups
au_groups = ravdess.meta.modalities["vision"].groups
step_s = 1.0 / ravdess.meta.modalities["audio"].rate_hz
rav_ig = X.integrated_gradients_loader(rav_model, make_loader(rav_test, rav_model.modalities, batch_size=16),
                                       ["audio", "vision"], ig_steps, progress=not smoke)
timings["ravdess_ig_s"] = time.time() - t0
audio_totals = X.group_totals(rav_ig, "audio", audio_groups)
au_totals = X.group_totals(rav_ig, "vision", au_groups)
audio_totals["emotion"] = au_totals["emotion"] = [emotions[k] for k in rav_test.labels]
rav_relative_delta = X.relative_deltas(rav_ig)
summary["ravdess_ig_median_relative_delta"] = float(np.median(rav_relative_delta))
group_time = X.group_time_by_sample(rav_ig, "audio", audio_groups, step_s)
fig, axes = plt.subplots(len(shown), 1, figsize=(11, 2.2 * len(shown)), squeeze=False)
for ax, s in zip(axes[:, 0], rav_bundle.samples):
    names, values, step = group_time[s.sample_id]["audio"]
    P.plot_group_time(values, names, step, ax, f"{s.sample_id} · {s.label} → predicted {s.prediction}")
fig.tight_layout()
save_figure(fig, "attribution_audio_groups_time", reports_dir)
fig, axes = plt.subplots(1, 2, figsize=(13, 3.4), gridspec_kw={"width_ratios": [3, 1]})
P.plot_group_totals(audio_totals, list(audio_groups), by="emotion", ax=axes[0],
                    title="audio: mean |IG| per feature group (test actors)")
P.plot_group_totals(au_totals, list(au_groups), by=None, ax=axes[1], title="face (OpenFace AUs): mean |IG| per group")
fig.tight_layout()
save_figure(fig, "attribution_audio_groups", reports_dir)
group_share = audio_totals[list(audio_groups)].sum() / audio_totals[list(audio_groups)].sum().sum()
summary.update({f"ravdess_audio_group_share_{g}": float(v) for g, v in group_share.items()})
print(f"IG on {len(rav_relative_delta)} recordings in {timings['ravdess_ig_s']:.0f} s; median |δ| / |f(x) − f(baseline)| = "
      f"{summary['ravdess_ig_median_relative_delta']:.3f}")
group_share.sort_values(ascending=False).round(3).to_frame("share of total |IG| (audio)")

# %% [markdown]
# Frame-level agreement: per recording, Spearman ρ between the attention each audio frame receives from the
# text tokens (mean over tokens and heads) and that frame's |IG| (summed over features).

# %%
rav_all_bundle = E.build_bundle(rav_model, rav_test, contributions=rav_contrib, group_time=group_time)
frame_rho = X.frame_attention_agreement(rav_all_bundle.samples, rav_ig, "cross/text->audio", "audio")
frame_summary = X.summarize_correlations(frame_rho)
summary.update({f"rho_frames_text_attention_vs_ig_{k}": v for k, v in frame_summary.items()})
print("text→audio attention received per frame vs |IG| per frame:",
      {k: round(v, 3) if isinstance(v, float) else v for k, v in frame_summary.items()})

# %% [markdown]
# ### AdaMML: which modality does the gate keep?
# The same data through an AdaMML-style gated fusion (4 time windows per recording): the policy decides per
# window whether each modality is used. Text cannot help with emotions here; does the gate learn to drop it?

# %%
t0 = time.time()
ada_model, ada_fit = train_model("adamml", ravdess, setups.ravdess_model_config(), rav_config)
ada_model.reset_state()  # count the test passes only
ada_metrics = evaluate(ada_model, rav_loader)
utilisation = ada_model.utilization(reset=True)
ids, gates = A.adamml_gates(ada_model, rav_loader)
timings["adamml_s"] = time.time() - t0
usage = pd.DataFrame(gates.mean(1), columns=ada_model.modalities)
usage["emotion"] = [emotions[k] for k in rav_test.labels]
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), gridspec_kw={"width_ratios": [3, 1.2]})
P.plot_utilization(usage, ada_model.modalities, by="emotion", ax=axes[0],
                   title=f"AdaMML on RAVDESS test actors (acc {ada_metrics['acc']:.2f}): share of windows each modality is kept")
P.plot_window_gates(gates.mean(0), ada_model.modalities, axes[1], "mean gate per window")
fig.tight_layout()
save_figure(fig, "attention_adamml_utilization", reports_dir)
summary.update({f"adamml_utilization_{m}": float(v) for m, v in utilisation.items()})
summary["adamml_test_acc"] = ada_metrics["acc"]
print("utilisation (share of available windows kept):", {m: round(v, 3) for m, v in utilisation.items()},
      f"| test accuracy {ada_metrics['acc']:.3f}")

# %% [markdown]
# ## Demo clips: face frames, and text × audio maps on real bilingual clips
# The demo clips go through the full extraction pipeline (transcripts from the manifest). Their face
# track is frame-level, but no model here was trained on frame-level face features, so there is no
# text→face attention to show; the per-frame expression probabilities of the face extractor are what the
# face frames carry. Their text and audio go through the RAVDESS model: the maps are real, the emotion
# predictions are out of domain (acted English sentences vs. film/TV speech, two of them Mandarin).

# %%
if demo_clips:
    t0 = time.time()
    clips = setups.demo_clips("data/clips/manifest.csv", progress=not smoke)
    vis_spec = clips.meta.modalities["vision"]
    expr_idx = vis_spec.groups["expression"]
    expr_names = [vis_spec.feature_names[i].replace("expr_", "") for i in expr_idx]
    fig, axes = plt.subplots(len(clips), 1, figsize=(10, 2.2 * len(clips)), squeeze=False)
    for ax, i in zip(axes[:, 0], range(len(clips))):
        frames = clips.features["vision"][i]
        times = np.arange(len(frames)) / vis_spec.rate_hz
        P.plot_expression_timeline(frames[:, expr_idx], times, expr_names, ax,
                                   f"{clips.ids[i]} · {clips.language[i]} · face found in "
                                   f"{100 * np.isfinite(frames).all(1).mean():.0f} % of frames · "
                                   f"{P.display_token(P.shorten(clips.raw_text[i], 50))}")
    fig.suptitle("Face frames of the demo clips: per-frame expression probabilities (no model is trained on face "
                 "frames, so no text→face attention map exists)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, "attention_face_frames_demo", reports_dir)

    demo_rav = setups.as_ravdess_inputs(clips, ravdess, ravdess_std)
    demo_bundle = E.build_bundle(rav_model, demo_rav)
    fig, axes = plt.subplots(len(demo_bundle), 1, figsize=(11, 2.3 * len(demo_bundle)), squeeze=False)
    for ax, s in zip(axes[:, 0], demo_bundle.samples):
        P.plot_attention_map(A.head_select(s.attention["cross/text->audio"], None), s.axis_labels["text"],
                             s.axis_labels["audio"], ax, f"{s.sample_id} · {s.language} · RAVDESS model says "
                             f"{s.prediction} (out of domain)", "text token", "audio frame (s)")
    fig.tight_layout()
    save_figure(fig, "attention_cross_text_audio_demo", reports_dir)
    timings["demo_clips_s"] = time.time() - t0

# %% [markdown]
# ## Results table
# `modality_attribution.csv`: one row per test sample of both setups (`dataset` column), signed
# contributions per modality (`visual` = the face modality; `text_context` = neighbouring utterances'
# text, MOSI only), the explained output, the label and the prediction.

# %%
table = pd.concat([mosi_contrib.assign(dataset="mosi"), rav_contrib.assign(dataset="ravdess")], ignore_index=True)
cols = ["dataset", "sample_id", "language", "text", "audio", "visual", "text_context", "prediction", "label", "predicted"]
table[cols].to_csv(results / "modality_attribution.csv", index=False)
table[cols].head()

# %% [markdown]
# ## The attention explorer
# Choose a sample (id, language and transcript are shown), a direction (a modality's self-attention or one
# cross-attention direction), a layer and a head: the heat map, the token attributions and the modality bars
# follow. It reads a precomputed bundle (saved to the cache), so it responds without running the model. The
# static figure below is the default selection, saved for headless runs.

# %%
from msa_lib.explain.widgets import AttentionExplorer  # noqa: E402

bundle_path = bundle.save(cache_dir() / "explain" / ("mosi_explorer_smoke.pkl" if smoke else "mosi_explorer.pkl"))
fig = E.explorer_figure(bundle, 0)
save_figure(fig, "attention_explorer_default", reports_dir)
plt.close(fig)
explorer = AttentionExplorer(bundle)
explorer.widget

# %% [markdown]
# The same explorer on the RAVDESS test recordings (text × audio frames, with the audio IG per feature group).

# %%
AttentionExplorer(rav_all_bundle).widget

# %%
timings["total_s"] = time.time() - started
summary.update({k: round(v, 1) for k, v in timings.items()})
summary.update(smoke=smoke, seed=seed, max_epochs=max_epochs, ravdess_epochs=ravdess_epochs, n_explain=len(token_results))
(results / "interpretability_summary.json").write_text(json.dumps(summary, indent=1, default=float))
pd.Series(summary).to_frame("value")
