"""Latency of ``msa predict`` (Python API) on a ~10-second clip: cold and warm.

* cold: a fresh Python subprocess imports msa_lib, loads the default model and every extraction model,
  and predicts the clip (the wall time of the whole subprocess, as a user running the command sees it,
  and the part spent inside it from the import on);
* warm: a loaded :class:`~msa_lib.predict.predictor.Predictor` in this process, median of 3 predictions
  (one untimed prediction first, so one-off first-call costs are excluded).

The clip is the shipped English MOSI clip ``mosi_0h-zjBukYpk_2.mp4`` (12.3 s) trimmed with ffmpeg to
10.0 s in a temporary folder. The per-clip extraction cache is off, so every prediction does the full
work (decode, ASR, text, prosody, face). Writes ``reports/benchmarks/predict.json``.

    python benchmarks/bench_predict.py [--repeat 3] [--seconds 10]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _machine import load_average, machine_info  # noqa: E402
from msa_lib.core.paths import BENCHMARKS_DIR, DATA_DIR  # noqa: E402

SOURCE_CLIP = DATA_DIR / "clips" / "mosi_0h-zjBukYpk_2.mp4"
TARGET_WARM_S = 5.0

COLD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
from msa_lib.predict.predictor import Predictor
p = Predictor.load(sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None)
r = p.predict([sys.argv[1]])[0]
print("RESULT " + json.dumps({"inside_s": time.perf_counter() - t0, "status": r["status"], "label": r.get("label"),
                              "error": r.get("error")}))
"""


def trim(src: Path, seconds: float, out_dir: Path) -> Path:
    out = out_dir / f"{src.stem}_{seconds:g}s.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(src), "-t", f"{seconds}",
                    "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out)], check=True)
    return out


def duration(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--out", default=str(BENCHMARKS_DIR / "predict.json"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from msa_lib.predict.predictor import Predictor

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        clip = trim(SOURCE_CLIP, args.seconds, Path(tmp))
        clip_s = duration(clip)
        load_start = load_average()

        # cold: fresh interpreter, nothing loaded (the OS file cache is warm: this is not a first-boot time)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", COLD_SCRIPT, str(clip), args.model_dir or ""], cwd=ROOT,
                              capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        cold_s = time.perf_counter() - start
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stderr[-3000:], file=sys.stderr)
            raise SystemExit("cold run failed")
        cold = json.loads(line[len("RESULT "):])

        # warm: loaded predictor, one untimed run, then the median of --repeat runs
        t0 = time.perf_counter()
        predictor = Predictor.load(args.model_dir)
        model_load_s = predictor.warm_up()
        load_s = time.perf_counter() - t0
        first = predictor.predict([str(clip)])[0]
        runs, results = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            r = predictor.predict([str(clip)])[0]
            runs.append(time.perf_counter() - t)
            results.append(r)
        warm_s = statistics.median(runs)

    report = {
        "command": "python benchmarks/bench_predict.py" + (f" --repeat {args.repeat}" if args.repeat != 3 else ""),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "clip": f"{SOURCE_CLIP.relative_to(ROOT)} trimmed to {args.seconds:g} s (ffmpeg, libx264/aac)",
        "clip_seconds": round(clip_s, 3),
        "cold_s": round(cold_s, 3),
        "cold_inside_process_s": round(cold["inside_s"], 3),
        "warm_s": round(warm_s, 3),
        "warm_runs_s": [round(x, 3) for x in runs],
        "warm_real_time_factor": round(warm_s / clip_s, 3),
        "target_warm_s": TARGET_WARM_S,
        "meets_target": bool(warm_s <= TARGET_WARM_S),
        "model_load_s": {"total_in_process": round(load_s, 3), **model_load_s},
        "stage_s_last_warm_run": results[-1].get("extract_s"),
        "prediction": {k: first.get(k) for k in ("status", "label", "score", "language", "transcript")},
        "settings": {"face_fps": predictor.extract_config.media.fps, "asr": "faster-whisper base",
                     "extraction_cache": False, "modalities": ["text", "audio", "face"]},
        "machine": machine_info(versions={"torch": torch.__version__, "numpy": np.__version__}),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "note": "2-core machine shared with other jobs during the run: see load averages",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({k: report[k] for k in ("clip_seconds", "cold_s", "warm_s", "warm_runs_s", "meets_target",
                                              "load_average_start", "load_average_end")}, indent=2))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
