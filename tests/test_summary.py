"""The results summary copies numbers from the result files into Markdown (nothing typed by hand)."""
import json

import pandas as pd

from msa_lib.app import summary


def test_summary_renders_result_tables_and_benchmark_headlines(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "benchmarks").mkdir()
    pd.DataFrame({"model": ["text_only"], "n_seeds": [5], "acc2": ["80.1 ± 0.5"], "f1_macro": ["79.0 ± 0.4"],
                  "f1_weighted": ["80.0 ± 0.5"]}).to_csv(tmp_path / "results" / "mosi_fusion_summary.csv", index=False)
    (tmp_path / "benchmarks" / "train.json").write_text(json.dumps({"headline": {"s/epoch": 1.25}}))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\nrest\n")
    summary.write(tmp_path, readme=readme)
    text = readme.read_text()
    assert "| text_only | 5 | 80.1 ± 0.5 | 79.0 ± 0.4 | 80.0 ± 0.5 |" in text
    assert "| train | s/epoch | 1.25 |" in text
    assert "old" not in text and text.startswith("intro") and text.endswith("rest\n")
    assert (tmp_path / "SUMMARY.md").exists()


def test_replace_block_leaves_files_without_markers_alone(tmp_path):
    path = tmp_path / "x.md"
    path.write_text("no markers")
    assert summary.replace_block(path, "predict", "new") is False
    assert path.read_text() == "no markers"
