"""Latency of ``msa predict`` on a ~10-second clip: cold, beside the previous start-up, and warm.

* cold: a fresh Python process imports msa_lib, loads the default model, and predicts the clip (the
  wall time of the whole process, as a user running the command sees it, its CPU seconds, and the
  part spent inside it from the first import on). Four start-ups run interleaved, ``--rounds``
  times each, in a rotating order so that a change in the machine's load hits them alike:

  - ``msa predict``: the command line, ``msa predict CLIP --json`` (the bar of issue 19 is on this
    one; it exits without tearing the loaded models down, see ``msa_lib.app.cli``);
  - ``default``: this code through the Python API (``Predictor.load(...).predict``, then a normal
    interpreter exit) (models load in background threads while the first clip decodes; the
    default e5 text encoder runs in numpy, so neither torch nor transformers is imported);
  - ``previous loading``: this code with the start-up it replaced (every model loaded one after
    another before the clip, the text encoder through transformers);
  - ``before (git <commit>)``: the code of the commit before this change, exported with
    ``git archive`` into a temporary folder (read-only for the repository) and run with its own
    default model; skipped with the reason when that export cannot predict.

* warm: a loaded :class:`~msa_lib.predict.predictor.Predictor` in this process, median of 3 predictions
  (one untimed prediction first, so one-off first-call costs are excluded).

The clip is the shipped English MOSI clip ``mosi_0h-zjBukYpk_2.mp4`` (12.3 s) trimmed with ffmpeg to
10.0 s in a temporary folder. The per-clip extraction cache is off, so every prediction does the full
work (decode, ASR, text, prosody, face). The machine's load average is recorded with every run.
Writes ``reports/benchmarks/predict.json``.

    python benchmarks/bench_predict.py [--rounds 3] [--seconds 10] [--before 9326d6c]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
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
TARGET_COLD_S = 8.0
TARGET_WARM_S = 5.0
BEFORE_COMMIT = "9326d6c"  # the commit before the start-up work of issue 19 (item 10)

COLD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
mode, clip, model_dir = sys.argv[1], sys.argv[2], sys.argv[3] or None
from msa_lib.predict.predictor import Predictor
p = Predictor.load(model_dir)
if mode == "previous":
    from dataclasses import replace
    cfg = p.extract_config
    p.extract_config = replace(cfg, text=replace(cfg.text, runtime="torch"))
    p.warm_up()  # every model, one after another, before the clip
elif mode == "before":
    p.warm_up() if hasattr(p, "warm_up") else None
r = p.predict([clip])[0]
print("RESULT " + json.dumps({"inside_s": time.perf_counter() - t0, "status": r["status"], "label": r.get("label"),
                              "error": r.get("error"), "transcript": r.get("transcript"),
                              "heavy_modules": [m for m in ("torch", "transformers", "sklearn") if m in sys.modules]}))
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


def children_cpu_s() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def export_commit(commit: str, out_dir: Path) -> Path:
    """The files of ``commit`` in ``out_dir`` (``git archive``: reads the repository, changes nothing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out_dir)], input=archive, check=True)
    return out_dir


def _timed_process(cmd: list[str], code_root: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """Run ``cmd`` in a fresh process on the code in ``code_root``: the process and its wall / CPU
    seconds and the load average before and after."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "MSA_CACHE_DIR": str(ROOT / ".cache")}
    load_before = load_average()
    cpu0 = children_cpu_s()
    start = time.perf_counter()
    # cwd = the code's own folder, so that `import msa_lib` finds that copy first
    proc = subprocess.run(cmd, cwd=code_root, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    return proc, {"wall_s": round(wall, 3), "cpu_s": round(children_cpu_s() - cpu0, 3),
                  "load_average_before": load_before, "load_average_after": load_average()}


def _failed(proc: subprocess.CompletedProcess) -> dict:
    return {"ok": False, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}


def cold_run(mode: str, clip: Path, model_dir: str | None, code_root: Path) -> dict:
    """One fresh process predicting ``clip``: wall, CPU and inside-process seconds, load before/after."""
    proc, timing = _timed_process([sys.executable, "-c", COLD_SCRIPT, mode, str(clip), model_dir or ""], code_root)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        return _failed(proc)
    result = json.loads(line[len("RESULT "):])
    return {"ok": result["status"] == "ok", **timing, "inside_process_s": round(result["inside_s"], 3),
            "label": result.get("label"), "error": result.get("error"),
            "heavy_modules_imported": result["heavy_modules"], "transcript": result.get("transcript")}


def cold_cli_run(clip: Path, model_dir: str | None, code_root: Path) -> dict:
    """One fresh ``msa predict CLIP --json`` (the command line a user types, ``python -m
    msa_lib.app.cli``): wall and CPU seconds until the process has exited."""
    proc, timing = _timed_process([sys.executable, "-m", "msa_lib.app.cli", "predict", str(clip), "--json",
                                   *(["--model", model_dir] if model_dir else [])], code_root)
    try:
        result = json.loads(proc.stdout)[0]
    except (ValueError, IndexError, KeyError):
        return _failed(proc)
    return {"ok": proc.returncode == 0 and result.get("status") == "ok", **timing, "inside_process_s": None,
            "label": result.get("label"), "error": result.get("error"), "heavy_modules_imported": None,
            "transcript": result.get("transcript")}


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return {"runs": runs, "skipped": runs[0].get("error") if runs else "not run"}
    walls = [r["wall_s"] for r in ok]
    return {"cold_s_median": round(statistics.median(walls), 3), "cold_s_min": round(min(walls), 3),
            "cpu_s_median": round(statistics.median(r["cpu_s"] for r in ok), 3),
            "inside_process_s_median": round(statistics.median(r["inside_process_s"] for r in ok), 3)
            if all(r["inside_process_s"] is not None for r in ok) else None,
            "load_average_1min_mean": round(statistics.mean(r["load_average_before"][0] for r in ok), 2)
            if all(r["load_average_before"] for r in ok) else None,
            "heavy_modules_imported": ok[0]["heavy_modules_imported"], "runs": runs}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="cold runs of each start-up (interleaved)")
    ap.add_argument("--repeat", type=int, default=3, help="warm predictions (median)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--model-dir", default=None, help="default model of this code (default: models/default)")
    ap.add_argument("--before", default=BEFORE_COMMIT, help="commit whose start-up is measured beside ('' to skip)")
    ap.add_argument("--out", default=str(BENCHMARKS_DIR / "predict.json"))
    args = ap.parse_args(argv)

    import numpy as np

    from msa_lib.predict.predictor import Predictor

    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        clip = trim(SOURCE_CLIP, args.seconds, Path(tmp))
        clip_s = duration(clip)
        load_start = load_average()
        variants = {"msa predict": ("cli", ROOT, args.model_dir), "default": ("default", ROOT, args.model_dir),
                    "previous loading": ("previous", ROOT, args.model_dir)}
        if args.before:
            before_root = export_commit(args.before, Path(tmp) / "before")
            variants[f"before (git {args.before})"] = ("before", before_root, None)  # with its own models/default
        names = list(variants)
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for round_ in range(args.rounds):
            order = names[round_ % len(names):] + names[: round_ % len(names)]
            for name in order:
                mode, code_root, model_dir = variants[name]
                runs[name].append(cold_cli_run(clip, model_dir, code_root) if mode == "cli"
                                  else cold_run(mode, clip, model_dir, code_root))
            print(f"  round {round_ + 1}/{args.rounds}: " + ", ".join(
                f"{n} {runs[n][-1].get('wall_s', 'failed')}" for n in names) + f" (load {load_average()})", flush=True)
        cold = {name: summarize(runs[name]) for name in names}

        # warm: loaded predictor, one untimed run, then the median of --repeat runs
        t0 = time.perf_counter()
        predictor = Predictor.load(args.model_dir)
        model_load_s = predictor.warm_up()
        load_s = time.perf_counter() - t0
        first = predictor.predict([str(clip)])[0]
        warm_runs, results = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            r = predictor.predict([str(clip)])[0]
            warm_runs.append(time.perf_counter() - t)
            results.append(r)
        warm_s = statistics.median(warm_runs)

    default_cold = cold["msa predict"].get("cold_s_median")  # the bar is on the command line a user types
    report = {
        "command": "python benchmarks/bench_predict.py" + "".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "clip": f"{SOURCE_CLIP.relative_to(ROOT)} trimmed to {args.seconds:g} s (ffmpeg, libx264/aac)",
        "clip_seconds": round(clip_s, 3),
        "cold": cold,
        "cold_s": default_cold,
        "target_cold_s": TARGET_COLD_S,
        "meets_cold_target": bool(default_cold is not None and default_cold <= TARGET_COLD_S),
        "warm_s": round(warm_s, 3),
        "warm_runs_s": [round(x, 3) for x in warm_runs],
        "warm_real_time_factor": round(warm_s / clip_s, 3),
        "target_warm_s": TARGET_WARM_S,
        "meets_target": bool(warm_s <= TARGET_WARM_S),
        "model_load_s": {"total_in_process": round(load_s, 3), **model_load_s},
        "stage_s_last_warm_run": results[-1].get("extract_s"),
        "prediction": {k: first.get(k) for k in ("status", "label", "score", "language", "transcript")},
        "settings": {"face_fps": predictor.extract_config.media.fps, "asr": "faster-whisper base",
                     "extraction_cache": False, "modalities": ["text", "audio", "face"],
                     "model_dir": str(predictor.model_dir)},
        "machine": machine_info(versions={"numpy": np.__version__}),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "headline": {
            f"predict: cold s, `msa predict` of a {args.seconds:g}-s clip (target <= {TARGET_COLD_S:g})": default_cold,
            **{f"predict: cold s, {'Python API' if name == 'default' else name}": c.get("cold_s_median", "skipped")
               for name, c in cold.items() if name != "msa predict"},
            "predict: cold CPU s": cold["msa predict"].get("cpu_s_median"),
            "predict: warm s": round(warm_s, 3),
            "predict: load average during run": (load_start or [None])[0],
        },
        "note": ("2-core machine shared with other jobs during the run: compare the load averages "
                 "(runnable processes) and CPU seconds, which depend far less on the load than wall seconds"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps({"clip_seconds": report["clip_seconds"],
                      "cold": {n: {k: v for k, v in c.items() if k != "runs"} for n, c in cold.items()},
                      "warm_s": report["warm_s"], "meets_cold_target": report["meets_cold_target"],
                      "load_average_start": load_start, "load_average_end": report["load_average_end"]}, indent=2))
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
