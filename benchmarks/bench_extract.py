"""Extraction speed: wall seconds per second of video, per stage, for both ASR backends and several
frame rates, on the shipped clips (``data/clips``); writes ``reports/benchmarks/extract.json``.

    .venv/bin/python benchmarks/bench_extract.py            # full grid (a few minutes on 2 cores)
    .venv/bin/python benchmarks/bench_extract.py --quick    # default vs naive on two short clips
                                                            # (-> reports/benchmarks/extract_quick.json)

Everything is measured warm: models are loaded first (their one-off load times are reported
separately) and each setting runs one untimed warm-up clip. The per-clip cache is bypassed
(``use_cache=False``). Per clip, ``extract_clip`` records the wall time of each stage on the clip's
critical path (``decode`` = probe + audio + *waiting* for the frames, which the default decodes in the
background while ASR runs) and the clip's whole wall time ``wall_s``; the target is judged on
``sum(wall_s) / sum(duration)``.

Settings: ``default`` = ``ExtractConfig()`` (faster-whisper int8 with one encoder pass per clip, 5 fps,
frames decoded in the background); ``naive`` = openai-whisper fp32, every frame, decoded in sequence
(the straightforward pipeline). Ablations isolate each speed-up: faster-whisper as shipped (its
``transcribe`` encodes the first 30-s window twice), sequential decoding, and the frame rate.
The target (issue 3): default <= 0.5 wall s per video s on 2 CPU cores and >= 2x faster than naive.

Cold, start-up included (issue 19, item 10; ``--cold-only`` runs just this part into
``reports/benchmarks/extract_cold.json``): ``msa extract`` of a 61-s clip (the shipped 12.3-s MOSI clip
looped with ffmpeg) in a fresh process, whole-process wall seconds per second of video (target <= 0.5),
beside the previous start-up (every model loaded one after another, text encoder through
transformers) and the code of the commit before the change (``git archive`` into a temporary folder);
and the same three on four 15-s cuts with ``--workers 1`` and ``--workers 2``.

The settings run interleaved (clip by clip, in a rotating order, ``--repeat`` rounds, fastest run per
clip) so that a change in the machine's load hits them alike. The load average is recorded with every
run, and CPU seconds (this process's threads + its ffmpeg children) next to wall seconds: other
processes slow wall time down far more than they change CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import _machine  # noqa: E402
from _machine import load_average  # noqa: E402
from msa_lib.extract.asr import DecodedSegment, Transcriber, _top  # noqa: E402
from msa_lib.extract.executors import threads_per_worker  # noqa: E402
from msa_lib.extract.media import MediaConfig, extract_audio, extract_frames, probe  # noqa: E402
from msa_lib.extract.pipeline import (  # noqa: E402
    ExtractConfig, extract_clip, init_worker, load_models, resolve_inputs)
from msa_lib.extract.registry import get_extractor  # noqa: E402
from msa_lib.core.paths import BENCHMARKS_DIR, DATA_DIR, project_path  # noqa: E402

STAGES = ("decode", "asr", "text", "audio", "vision")
TARGET_S_PER_S = 0.5
TARGET_SPEEDUP = 2.0


# ----------------------------------------------------------------------------------------- settings
def settings_grid(quick: bool) -> list[dict]:
    """name -> how the setting differs from ExtractConfig()."""
    grid = [
        dict(name="default", backend="faster-whisper", fps=5.0, overlap=True, stock_asr=False),
        dict(name="naive", backend="openai-whisper", fps=None, overlap=False, stock_asr=False),
    ]
    if quick:
        return grid
    for backend in ("faster-whisper", "openai-whisper"):
        for fps in (2.0, 5.0, 10.0, None):
            name = f"{backend} fps={'all' if fps is None else f'{fps:g}'}"
            if (backend, fps) == ("faster-whisper", 5.0):
                continue  # that is the default
            grid.append(dict(name=name, backend=backend, fps=fps, overlap=True, stock_asr=False))
    grid += [
        dict(name="default, faster-whisper as shipped (2 encoder passes)", backend="faster-whisper", fps=5.0,
             overlap=True, stock_asr=True),
        dict(name="default, sequential decode", backend="faster-whisper", fps=5.0, overlap=False, stock_asr=False),
        dict(name="default, 1 ASR thread", backend="faster-whisper", fps=5.0, overlap=True, stock_asr=False,
             asr_threads=1),
    ]  # ("openai-whisper fps=all" is the naive setting with background decoding)
    return grid


def make_config(setting: dict) -> ExtractConfig:
    base = ExtractConfig()
    asr = replace(base.asr, backend=setting["backend"], num_threads=setting.get("asr_threads", base.asr.num_threads))
    return replace(base, use_cache=False, overlap_decode=setting["overlap"], media=replace(base.media, fps=setting["fps"]),
                   asr=asr)


@contextmanager
def faster_whisper_as_shipped():
    """faster-whisper's own ``transcribe`` with its own language detection (encodes the first window
    twice): the behaviour before ``Transcriber`` reused the detection pass."""
    original = Transcriber._run_faster_whisper

    def stock(self, samples, task, forced, accept=None, min_probability=0.5, progress=None, speech=None):
        c = self.config
        segments, info = self.model.transcribe(
            samples, language=forced, task=task, beam_size=c.beam_size, best_of=c.best_of,
            temperature=list(c.temperature), compression_ratio_threshold=c.compression_ratio_threshold,
            vad_filter=c.vad_filter, condition_on_previous_text=c.condition_on_previous_text,
            no_speech_threshold=c.no_speech_threshold, log_prob_threshold=c.log_prob_threshold,
            initial_prompt=c.initial_prompt)
        decoded = [DecodedSegment(float(s.start), float(s.end), s.text, float(s.avg_logprob), float(s.no_speech_prob),
                                  float(s.compression_ratio)) for s in segments]
        if forced is not None:
            return decoded, forced, None, [], ""
        top = _top(info.all_language_probs or [])
        rejection = Transcriber._accept(info.language, info.language_probability, top, accept, min_probability)
        return decoded, info.language, float(info.language_probability), top, rejection

    Transcriber._run_faster_whisper = stock
    try:
        yield
    finally:
        Transcriber._run_faster_whisper = original


# ----------------------------------------------------------------------------------------- measuring
def load_all_models(configs: list[ExtractConfig]) -> dict[str, float]:
    """Load every model the settings need, once, and time each load (one-off costs)."""
    loads: dict[str, float] = {}
    for cfg in configs:
        for name, seconds in load_models(cfg).items():
            loads[name] = max(loads.get(name, 0.0), seconds)  # 0 when an earlier setting loaded it
    return loads


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its finished children (ffmpeg/ffprobe)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed_clip(clip, cfg) -> dict:
    """``extract_clip`` plus the CPU seconds it used: unlike wall time, hardly changed by other
    processes on the machine (the per-clip wall time is in ``record["wall_s"]``)."""
    cpu0 = cpu_seconds()
    record = extract_clip((clip, cfg, None))
    record["cpu_s"] = cpu_seconds() - cpu0
    return record


def run_interleaved(grid: list[dict], clips, durations: dict[str, float], repeat: int) -> list[dict]:
    """Every setting on every clip, ``repeat`` rounds, interleaved (clip by clip, the settings in a
    rotating order) so that a change in the machine's load hits all settings alike; per clip the
    fastest of the ``repeat`` runs counts."""
    configs = {s["name"]: make_config(s) for s in grid}
    whisper_models = {s["name"]: get_extractor("text").transcriber(configs[s["name"]]).model for s in grid}
    patch = {s["name"]: faster_whisper_as_shipped if s["stock_asr"] else nullcontext for s in grid}
    runs: dict[str, dict[str, list[dict]]] = {s["name"]: {c.clip_id: [] for c in clips} for s in grid}
    first_call = {}
    shortest = min(clips, key=lambda c: durations[c.clip_id])
    for s in grid:  # warm-up: first-call allocations of each backend / frame size
        with patch[s["name"]]():
            t0 = time.perf_counter()
            extract_clip((shortest, configs[s["name"]], None))
            first_call[s["name"]] = round(time.perf_counter() - t0, 3)
    step = 0
    for round_ in range(repeat):
        for clip in clips:
            order = grid[step % len(grid):] + grid[: step % len(grid)]
            step += 1
            for s in order:
                name, model = s["name"], whisper_models[s["name"]]
                passes0 = getattr(model, "encoder_passes", None)
                load = load_average()
                with patch[name]():
                    record = timed_clip(clip, configs[name])
                if record["status"] != "ok":
                    raise RuntimeError(f"{clip.path}: extraction failed in setting {name}: {record['error']}")
                record["encoder_passes"] = None if passes0 is None else model.encoder_passes - passes0
                record["load_average_1min"] = load[0] if load else None
                runs[name][clip.clip_id].append(record)
        print(f"  round {round_ + 1}/{repeat} done (load average {load_average()})", flush=True)
    return [summarize(s, runs[s["name"]], first_call[s["name"]]) for s in grid]


def summarize(setting: dict, runs: dict[str, list[dict]], first_call: float) -> dict:
    per_clip = []
    for clip_id, clip_runs in runs.items():
        best = min(clip_runs, key=lambda r: r["wall_s"])  # best of N: robust to other processes' bursts
        per_clip.append({
            "clip_id": clip_id, "duration_s": round(best["duration"], 3),
            "stages_s": {k: round(v, 4) for k, v in best["timings"].items()},
            "wall_s": round(best["wall_s"], 4), "cpu_s": round(best["cpu_s"], 4),
            "wall_s_all_runs": [round(r["wall_s"], 4) for r in clip_runs],
            "load_average_1min": best["load_average_1min"], "asr_encoder_passes": best["encoder_passes"],
            "language": best.get("language"), "language_probability": best.get("language_probability"),
            "transcript": best.get("transcript"), "frames": best.get("n_frames"),
            "face_ratio": best.get("face_ratio"),
        })
    video_s = sum(c["duration_s"] for c in per_clip)
    seen = {k for c in per_clip for k in c["stages_s"]}
    stages = [s for s in STAGES if s in seen] + sorted(seen - set(STAGES))
    stage_s = {s: round(sum(c["stages_s"].get(s, 0.0) for c in per_clip), 4) for s in stages}
    wall = sum(c["wall_s"] for c in per_clip)
    cpu = sum(c["cpu_s"] for c in per_clip)
    passes = [c["asr_encoder_passes"] for c in per_clip]
    loads = [c["load_average_1min"] for c in per_clip if c["load_average_1min"] is not None]
    return {
        **{k: setting[k] for k in ("name", "backend")},
        "fps": setting["fps"] if setting["fps"] is not None else "every frame",
        "overlap_decode": setting["overlap"],
        "asr_threads": setting.get("asr_threads", "default (min(4, cores))"),
        # counted for faster-whisper (openai-whisper: not counted; it detects, then encodes again)
        "asr_encoder_passes_per_clip": None if None in passes else sum(passes) / len(passes),
        "video_s": round(video_s, 3),
        "stages_s": stage_s,
        "stages_s_per_video_s": {s: round(v / video_s, 4) for s, v in stage_s.items()},
        "wall_s": round(wall, 3),
        "wall_s_per_video_s": round(wall / video_s, 4),
        "cpu_s": round(cpu, 3),
        "cpu_s_per_video_s": round(cpu / video_s, 4),
        "first_call_s": round(first_call, 3),
        "load_average_mean": round(sum(loads) / len(loads), 2) if loads else None,
        "per_clip": per_clip,
    }


def decode_only(clips, durations: dict[str, float], fps_values, repeat: int) -> dict:
    """ffmpeg decoding alone (probe + 16-kHz audio + frames), per frame rate: what ``decode`` costs
    when nothing overlaps it."""
    out = {}
    video_s = sum(durations[c.clip_id] for c in clips)
    for fps in fps_values:
        total = {"probe": 0.0, "audio": 0.0, "frames": 0.0}
        n_frames = 0
        for clip in clips:
            best = None
            for _ in range(repeat):
                t0 = time.perf_counter()
                info = probe(clip.path)
                t1 = time.perf_counter()
                extract_audio(clip.path, info=info)
                t2 = time.perf_counter()
                frames, _ = extract_frames(clip.path, fps=fps, max_side=MediaConfig().max_side, info=info)
                t3 = time.perf_counter()
                run = (t1 - t0, t2 - t1, t3 - t2)
                best = run if best is None or sum(run) < sum(best) else best
            for key, value in zip(total, best):
                total[key] += value
            n_frames += len(frames)
        name = "every frame" if fps is None else f"fps={fps:g}"
        seconds = sum(total.values())
        out[name] = {"s": {k: round(v, 4) for k, v in total.items()}, "total_s": round(seconds, 4),
                     "s_per_video_s": round(seconds / video_s, 4), "frames": n_frames}
    return out


def machine_info(threads: int) -> dict:
    import ctranslate2
    import faster_whisper
    import mediapipe
    import numpy
    import torch
    import transformers
    import whisper

    import subprocess

    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.splitlines()[:1]
    return _machine.machine_info(
        cpus_available=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        ctranslate2_threads=threads,
        versions={"torch": torch.__version__, "ctranslate2": ctranslate2.__version__,
                  "faster_whisper": faster_whisper.__version__, "openai_whisper": whisper.__version__,
                  "mediapipe": mediapipe.__version__, "transformers": transformers.__version__,
                  "numpy": numpy.__version__, "ffmpeg": ffmpeg[0] if ffmpeg else None})


# ----------------------------------------------------------------------------------------- cold
COLD_TARGET_S_PER_S = 0.5
BEFORE_COMMIT = "9326d6c"  # the commit before the start-up work of issue 19 (item 10)

PREVIOUS_SCRIPT = """
import sys
from dataclasses import replace
from msa_lib.extract.pipeline import ExtractConfig, extract, init_worker, load_models, threads_per_worker
out, workers, clips = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
base = ExtractConfig(use_cache=False, workers=workers)
cfg = replace(base, text=replace(base.text, runtime="torch"))  # the text encoder through transformers
if workers <= 1:  # the previous start-up: every model, one after another, before the first clip
    init_worker(threads_per_worker(1))
    load_models(cfg)
ds = extract(clips, cfg, out=out, progress=False)
print("CLIPS", len(ds))
"""


def _children_cpu_s() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


def export_commit(commit: str, out_dir: Path) -> Path:
    """The files of ``commit`` in ``out_dir`` (``git archive``: reads the repository, changes nothing)."""
    import subprocess

    out_dir.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(PROJECT_ROOT), "archive", commit], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(out_dir)], input=archive, check=True)
    return out_dir


def make_cold_clips(tmp: Path) -> tuple[Path, list[Path]]:
    """A 61-s clip (the shipped 12.3-s MOSI clip looped) and four 15-s cuts of it."""
    import subprocess

    src = DATA_DIR / "clips" / "mosi_0h-zjBukYpk_2.mp4"
    long_clip = tmp / "mosi_looped_61s.mp4"
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-stream_loop", "4", "-i", str(src), "-t", "61",
                    *enc, str(long_clip)], check=True)
    cuts = []
    for i in range(4):
        cut = tmp / f"mosi_looped_cut{i}.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-ss", f"{15 * i}", "-i", str(long_clip),
                        "-t", "15", *enc, str(cut)], check=True)
        cuts.append(cut)
    return long_clip, cuts


def cold_extract(variant: str, code_root: Path, clips: list[Path], workers: int, out: Path) -> dict:
    """One fresh process extracting ``clips`` (start-up included): wall and CPU seconds, load averages."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(code_root), "MSA_CACHE_DIR": str(PROJECT_ROOT / ".cache")}
    if variant == "previous loading":
        cmd = [sys.executable, "-c", PREVIOUS_SCRIPT, str(out), str(workers), *map(str, clips)]
    else:  # the command a user runs
        cmd = [sys.executable, "-m", "msa_lib.app.cli", "extract", *map(str, clips), "--out", str(out),
               "--no-cache", "--quiet", "--workers", str(workers)]
    load_before = load_average()
    cpu0 = _children_cpu_s()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=code_root, env=env, capture_output=True, text=True)  # cwd: that code's msa_lib
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"ok": False, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return {"ok": True, "wall_s": round(wall, 3), "cpu_s": round(_children_cpu_s() - cpu0, 3),
            "load_average_before": load_before, "load_average_after": load_average()}


def run_cold(rounds: int, before: str | None) -> dict:
    """Cold ``msa extract`` of the 61-s clip and of four 15-s clips with 1 and 2 workers, three start-ups."""
    import statistics
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench_extract_cold_") as tmp_name:
        tmp = Path(tmp_name)
        long_clip, cuts = make_cold_clips(tmp)
        video_long = probe(long_clip).duration
        video_cuts = sum(probe(c).duration for c in cuts)
        variants = {"default": PROJECT_ROOT, "previous loading": PROJECT_ROOT}
        if before:
            variants[f"before (git {before})"] = export_commit(before, tmp / "before")
        jobs = [(name, "61-s clip, 1 worker", [long_clip], 1, video_long) for name in variants]
        jobs += [(name, f"4 x 15-s clips, {w} worker{'s' * (w > 1)}", cuts, w, video_cuts)
                 for w in (1, 2) for name in variants]
        runs: dict[tuple[str, str], list[dict]] = {(j[0], j[1]): [] for j in jobs}
        for round_ in range(rounds):
            order = jobs[round_ % len(jobs):] + jobs[: round_ % len(jobs)]
            for name, case, clips, workers, _ in order:
                runs[(name, case)].append(cold_extract(name, variants[name], clips, workers, tmp / "out.npz"))
                last = runs[(name, case)][-1]
                print(f"  cold {case:<26} {name:<24} {last.get('wall_s', last.get('error'))} s "
                      f"(load {load_average()})", flush=True)
        table = []
        for name, case, _, workers, video_s in jobs:
            ok = [r for r in runs[(name, case)] if r["ok"]]
            row = {"case": case, "start_up": name, "workers": workers, "video_s": round(video_s, 3),
                   "runs": runs[(name, case)]}
            if ok:
                wall = statistics.median(r["wall_s"] for r in ok)
                row.update(wall_s=round(wall, 3), wall_s_per_video_s=round(wall / video_s, 4),
                           cpu_s=round(statistics.median(r["cpu_s"] for r in ok), 3),
                           load_average_1min_mean=round(statistics.mean(r["load_average_before"][0] for r in ok), 2))
            table.append(row)
    default_long = next(r for r in table if r["start_up"] == "default" and r["case"].startswith("61"))
    return {"rounds": rounds, "clip": "data/clips/mosi_0h-zjBukYpk_2.mp4 looped to 61 s (ffmpeg -stream_loop 4)",
            "results": table, "target_wall_s_per_video_s": COLD_TARGET_S_PER_S,
            "target_met": default_long.get("wall_s_per_video_s", 1e9) <= COLD_TARGET_S_PER_S}


# ----------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="default vs naive only, on the two shortest clips")
    parser.add_argument("--clips", default=str(DATA_DIR / "clips"), help="folder (or files) of clips")
    parser.add_argument("--out", default=None,
                        help="default: reports/benchmarks/extract.json (--quick: extract_quick.json, so a quick "
                             "check never overwrites the full results)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="rounds over all settings and clips; per clip the fastest run counts (default 2, --quick 1)")
    parser.add_argument("--threads", type=int, default=threads_per_worker(1),
                        help="torch threads (CTranslate2 uses min(4, cores)); default: the pipeline's own")
    parser.add_argument("--cold-only", action="store_true",
                        help="only the cold start-up runs (-> reports/benchmarks/extract_cold.json)")
    parser.add_argument("--cold-rounds", type=int, default=1, help="rounds of the cold runs (median)")
    parser.add_argument("--before", default=BEFORE_COMMIT, help="commit measured beside the cold runs ('' to skip)")
    args = parser.parse_args(argv)

    if args.cold_only:
        result = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(min(4, os.cpu_count() or 1)),
                  "load_average_start": load_average(), "cold": run_cold(args.cold_rounds, args.before or None)}
        result["load_average_end"] = load_average()
        rows = {(r["case"], r["start_up"]): r for r in result["cold"]["results"]}
        result["headline"] = {
            f"extract cold: {case}, {name}, wall s per video s": row.get("wall_s_per_video_s", "failed")
            for (case, name), row in rows.items()}
        out = project_path(args.out or BENCHMARKS_DIR / "extract_cold.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
        print(f"-> {out}")
        return 0

    args.repeat = args.repeat or (1 if args.quick else 2)
    init_worker(args.threads)  # what extract() does for one worker
    clips = resolve_inputs(args.clips)
    durations = {clip.clip_id: probe(clip.path).duration for clip in clips}
    if args.quick:  # on the shipped clips: one Mandarin and one English clip
        clips = sorted(clips, key=lambda c: durations[c.clip_id])[:2]
    grid = settings_grid(args.quick)
    configs = [make_config(s) for s in grid]
    threads_ct2 = configs[0].asr.num_threads or min(4, os.cpu_count() or 1)
    result = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "quick": args.quick,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_info(threads_ct2),
              "load_average_start": load_average(),
              "clips": [{"clip_id": c.clip_id, "duration_s": round(durations[c.clip_id], 3)} for c in clips],
              "video_s": round(sum(durations[c.clip_id] for c in clips), 3), "repeat": args.repeat}
    print(f"{len(clips)} clips, {result['video_s']:.1f} s of video; load average {result['load_average_start']}",
          flush=True)
    result["model_load_s"] = load_all_models(configs)
    print("model load (one-off):", result["model_load_s"], flush=True)
    if not args.quick:
        result["decode_only"] = decode_only(clips, durations, (2.0, 5.0, 10.0, None), args.repeat)
        print("decode only:", {k: v["s_per_video_s"] for k, v in result["decode_only"].items()}, flush=True)
    result["settings"] = run_interleaved(grid, clips, durations, args.repeat)
    if not args.quick:
        result["cold"] = run_cold(args.cold_rounds, args.before or None)
    for row in result["settings"]:
        print(f"{row['name']:<56} {row['wall_s_per_video_s']:.3f} s/s (cpu {row['cpu_s_per_video_s']:.3f})  "
              + "  ".join(f"{k} {v:.3f}" for k, v in row["stages_s_per_video_s"].items())
              + f"  (load {row['load_average_mean']})", flush=True)
    by_name = {row["name"]: row for row in result["settings"]}
    default, naive = by_name["default"], by_name["naive"]
    speedup = naive["wall_s_per_video_s"] / default["wall_s_per_video_s"]
    result.update(
        load_average_end=load_average(),
        default={k: default[k] for k in ("name", "wall_s_per_video_s", "cpu_s_per_video_s")},
        naive={k: naive[k] for k in ("name", "wall_s_per_video_s", "cpu_s_per_video_s")},
        speedup_default_vs_naive=round(speedup, 3),
        cpu_speedup_default_vs_naive=round(naive["cpu_s"] / default["cpu_s"], 3),
        target={"max_wall_s_per_video_s": TARGET_S_PER_S, "min_speedup_vs_naive": TARGET_SPEEDUP,
                "s_per_s_met": default["wall_s_per_video_s"] <= TARGET_S_PER_S,
                "speedup_met": speedup >= TARGET_SPEEDUP},
        note="Wall times on a shared machine: compare load_average_* (runnable processes; this machine "
             "has machine.cpu_count cores) before reading them. cpu_s (this process's threads + ffmpeg) "
             "hardly depends on the load: on an idle machine wall >= cpu_s / cores.",
    )
    result["headline"] = {
        "extract: default wall s per video s (target <= %g)" % TARGET_S_PER_S: default["wall_s_per_video_s"],
        "extract: default CPU s per video s": default["cpu_s_per_video_s"],
        "extract: speed-up vs naive (target >= %gx)" % TARGET_SPEEDUP: round(speedup, 2),
        "extract: load average during run": result["load_average_end"][0],
    }
    if "cold" in result:
        cold = next(r for r in result["cold"]["results"] if r["start_up"] == "default" and r["case"].startswith("61"))
        result["headline"]["extract: cold 61-s clip incl. start-up, wall s per video s (target <= %g)"
                           % COLD_TARGET_S_PER_S] = cold.get("wall_s_per_video_s")
    out = project_path(args.out or BENCHMARKS_DIR / ("extract_quick.json" if args.quick else "extract.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    os.replace(tmp, out)
    print(f"default {default['wall_s_per_video_s']:.3f} s/s (target <= {TARGET_S_PER_S}: "
          f"{'met' if result['target']['s_per_s_met'] else 'NOT met'}); naive {naive['wall_s_per_video_s']:.3f} s/s; "
          f"speedup {speedup:.2f}x (target >= {TARGET_SPEEDUP:g}x: {'met' if result['target']['speedup_met'] else 'NOT met'})")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
