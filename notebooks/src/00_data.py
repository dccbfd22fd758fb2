# %% [markdown]
# # 00 · The default data
#
# Loads every dataset shipped in `data/` (provenance and licences: `data/README.md`), shows sizes and
# label distributions per split and language, and saves them to `reports/`.
#
# | dataset | modalities | labels | split |
# |---|---|---|---|
# | CMU-MOSI (bc-LSTM release) | text-CNN, openSMILE audio, 3D-CNN video, transcripts | binary | speaker-independent, as shipped |
# | ChnSentiCorp hotel reviews | Chinese text | binary | fixed stratified 70/10/20 |
# | RAVDESS `au_mfcc.pkl` | 35 OpenFace AUs + 259 MFCC values | 8 emotions | actors 21-24 held out |
# | RAVDESS speech | 1440 recordings (Opus) | 8 emotions | actors 21-24 held out |
# | demo clips | 2 Mandarin + 2 English videos | manifest | — |

# %% tags=["parameters"]
smoke = False
reports_dir = "reports"  # project-relative

# %%
import pandas as pd

from msa_lib.data import sources
from msa_lib.data.splits import group_validation_split
from msa_lib.core.plots import plot_histograms, plot_label_distribution, results_dir, save_figure

mosi = group_validation_split(sources.load_mosi(), valid_fraction=0.15, seed=0)
zh = sources.load_zh_reviews()
ravdess = group_validation_split(sources.load_ravdess_au_mfcc(), valid_fraction=0.2, seed=0)
recordings = sources.ravdess_recordings()
clips = sources.read_clip_manifest("data/clips/manifest.csv")

# %% [markdown]
# ## Sizes and label distributions
# Validation data is always taken out of *train* by group (MOSI: video; RAVDESS: actor), never from test.

# %%
tables = {"CMU-MOSI": mosi.summary(), "ChnSentiCorp": zh.summary(), "RAVDESS AU+MFCC": ravdess.summary()}
for name, table in tables.items():
    print(name)
    display(table)

summary = pd.concat({name: t["n"] for name, t in tables.items()}, names=["dataset"]).reset_index()
summary.to_csv(results_dir(reports_dir) / "data_summary.csv", index=False)
save_figure(plot_label_distribution(tables), "data_label_distribution", reports_dir)

# %% [markdown]
# ## Groups, text lengths and the raw media

# %%
print("MOSI videos per split:", {s: len(set(mosi.group[mosi.split == s])) for s in ("train", "valid", "test")})
print("RAVDESS actors per split:", {s: sorted(set(ravdess.group[ravdess.split == s])) for s in ("train", "valid", "test")})
print("RAVDESS recordings per emotion:", recordings.groupby("emotion_name").size().to_dict())
lengths = {"MOSI transcript (words)": [len(t.split()) for t in mosi.raw_text],
           "ChnSentiCorp review (characters / 10)": [len(t) / 10 for t in zh.raw_text]}
save_figure(plot_histograms(lengths, "length", bins=40), "data_text_lengths", reports_dir)
clips[["clip_id", "language", "label", "transcript"]]
