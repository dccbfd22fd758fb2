"""Start-up, workers and a quiet first contact (issue 19, items 9 and 10), on real clips cut with ffmpeg.

* the extraction stage (and ``msa predict``'s import path) never imports torch, transformers or
  scikit-learn: the default e5 text encoder runs in numpy with the same outputs as transformers;
* inputs are checked before any model loads: a batch whose only input is missing loads nothing;
* pool workers get one thread each in every library's pool (no oversubscription on 2 cores);
* the command line prints no native chatter (absl / MediaPipe / TensorFlow Lite notes), no hub
  connection attempt and no weights progress bar, while real errors still reach stderr.

Timings are not asserted here (a shared machine); ``benchmarks/bench_predict.py`` and
``benchmarks/bench_extract.py`` measure them.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import media_factory as mf

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sklearn")


def _python(code: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def short_real_clip(tmp_path_factory, clips_dir) -> Path:
    mf.require_ffmpeg()
    return mf.cut_clip(clips_dir / "mosi_0h-zjBukYpk_2.mp4", tmp_path_factory.mktemp("startup"), start=0.0,
                       duration=2.5, name="mosi_first_2.5s.mp4")


@pytest.mark.slow
def test_numpy_text_encoder_matches_transformers(clip_manifest):
    from msa_lib.extract.text import TextEncoder
    from msa_lib.extract.text_numpy import NumpyTextEncoder, text_encoder_for_extraction
    from msa_lib.extract.text_types import TextEncoderConfig

    transcripts = [row["text"] for row in clip_manifest]  # the clips' reference lines, Mandarin and English
    texts = transcripts + ["", "great " * 300]  # an empty transcript and one truncated at max_length
    for layer in (None, 6):
        cfg = TextEncoderConfig(show_progress=False, hidden_layer=layer)
        fast, ref = text_encoder_for_extraction(cfg), TextEncoder(cfg)
        assert isinstance(fast, NumpyTextEncoder)
        (seqs, toks), pooled = fast.encode_with_pooled(texts)
        (ref_seqs, ref_toks), ref_pooled = ref.encode_with_pooled(texts)
        np.testing.assert_allclose(pooled, ref_pooled, atol=1e-5)
        assert toks == ref_toks
        for a, b in zip(seqs, ref_seqs):
            assert a.shape == b.shape and a.dtype == np.float32
            np.testing.assert_allclose(a, b, atol=1e-4)
    forced = text_encoder_for_extraction(TextEncoderConfig(show_progress=False, runtime="torch"))
    assert isinstance(forced, TextEncoder)


def test_missing_input_loads_no_model(tmp_path):
    code = """
import json, sys
from msa_lib.extract.pipeline import ExtractConfig, extract
ds = extract([sys.argv[1]], ExtractConfig(use_cache=False), progress=False)
print("RESULT " + json.dumps({"n": len(ds), "failures": ds.failures, "model_load_s": ds.meta.extra["model_load_s"],
                              "loaded": [m for m in ("faster_whisper", "ctranslate2", "mediapipe", "librosa", "tokenizers")
                                         if m in sys.modules]}))
"""
    proc = _python(code, str(tmp_path / "no_such_clip.mp4"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert result["n"] == 0 and "no_such_clip.mp4" in result["failures"][0]["error"]
    assert result["loaded"] == [] and result["model_load_s"] == {}


def test_pool_workers_get_one_thread_each():
    from msa_lib.extract.pipeline import ExtractConfig, cache_key, pinned_config, resolve_inputs, threads_per_worker

    import os

    cores = os.cpu_count() or 1
    assert threads_per_worker(cores) == 1 and threads_per_worker(1) == cores
    cfg = ExtractConfig()
    pinned = pinned_config(cfg, 1)
    assert pinned.asr.num_threads == 1 and pinned.whisper_encoder.num_threads == 1 and pinned.visual.num_threads == 1
    clip = resolve_inputs([str(PROJECT_ROOT / "data" / "clips" / "mosi_0h-zjBukYpk_1.mp4")])[0]
    assert cache_key(clip, pinned) == cache_key(clip, cfg)  # thread counts never change a clip's cache entry
    code = """
import json, os
import numpy  # BLAS already loaded, as in a pool worker that unpickled its job
from msa_lib.extract.pipeline import init_worker
init_worker(1)
from threadpoolctl import threadpool_info
print("RESULT " + json.dumps({"pools": [p["num_threads"] for p in threadpool_info()],
                              "env": [os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")]}))
"""
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert result["pools"] and set(result["pools"]) == {1}
    if cores > 1:
        assert result["env"] == ["1", "1"]


def test_native_chatter_filter_keeps_real_messages():
    from msa_lib.core.quiet import is_chatter

    assert is_chatter(b"W0000 00:00:1796193535.995139   31678 inference_feedback_manager.cc:114] Feedback manager")
    assert is_chatter(b"I0000 00:00:1796196385.161943   18013 task_runner.cc:85] GPU suport is not available")
    assert is_chatter(b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.")
    assert is_chatter(b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not is_chatter(b"E0000 00:00:1796196385.161943   18013 graph.cc:85] a real native error")
    assert not is_chatter(b"msa: error: clip.mp4: file not found")
    code = r"""
import os, sys
from msa_lib.core.quiet import filter_native_stderr
filter_native_stderr()
os.write(2, b"W0000 00:00:1796193535.995139   31678 inference_feedback_manager.cc:114] chatter\n")
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
os.write(2, b"E0000 00:00:1796196385.161943   18013 graph.cc:85] kept native error\n")
print("kept python message", file=sys.stderr)
sys.stderr.write("\rprogress 50%")
"""
    proc = _python(code)
    assert proc.returncode == 0
    assert "chatter" not in proc.stderr and "XNNPACK" not in proc.stderr
    assert "kept native error" in proc.stderr and "kept python message" in proc.stderr and "progress 50%" in proc.stderr


@pytest.mark.slow
def test_command_line_is_quiet_and_torch_free(short_real_clip, tmp_path):
    """``msa extract`` as a user runs it (a fresh process, the bundled models, the face models): nothing on
    stderr (no absl / TFLite / MediaPipe notes, no hub attempt, no weights bar), every modality
    extracted, and neither it nor ``msa predict``'s import path imports torch, transformers or sklearn."""
    out = tmp_path / "quiet.npz"
    code = """
import json, sys
from msa_lib.app.cli import main
clip, out = sys.argv[1], sys.argv[2]
sys.argv = ["msa", "extract", clip, "--out", out, "--no-cache", "--quiet"]
rc = main()
import msa_lib.predict.predictor  # msa predict's import path
print("RESULT " + json.dumps({"rc": rc, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)
    proc = _python(code, str(short_real_clip), str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert result == {"rc": 0, "heavy": []}, result
    assert "1 clip(s) extracted" in proc.stdout and "missing" not in proc.stdout  # text, audio and face
    noise = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert noise == [], noise

    from msa_lib.data.io import read_features

    ds = read_features(out)
    assert ds.raw_text[0] and {"text", "text_pooled", "audio", "vision"} <= set(ds.features)


@pytest.mark.slow
def test_msa_predict_exits_fast_with_its_whole_output_and_exit_code(short_real_clip, garbage_file):
    """``msa predict`` ends the process without the model teardown (``_exit_without_teardown``): the
    JSON on stdout is still complete, the exit code still says whether any clip was predicted."""
    cli = [sys.executable, "-m", "msa_lib.app.cli", "predict", "--json"]
    proc = subprocess.run([*cli, str(short_real_clip), str(garbage_file)], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert [r["status"] for r in results] == ["ok", "error"] and results[0]["label"]
    failed = subprocess.run([*cli, str(garbage_file)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert failed.returncode == 1 and "no clip could be predicted" in failed.stderr
    assert json.loads(failed.stdout)[0]["status"] == "error"
