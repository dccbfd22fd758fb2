"""Extraction time and peak memory against clip length (issue 19, item 3); writes
``reports/benchmarks/extract_length.json``.

    .venv/bin/python benchmarks/bench_length.py                  # 1, 5, 10 and 30 minutes
    .venv/bin/python benchmarks/bench_length.py --minutes 1 5    # a subset

Each clip is the shipped 12.3-s MOSI clip (``data/clips/mosi_0h-zjBukYpk_2.mp4``, real speech and a
real face) looped with ``ffmpeg -stream_loop`` to the length, copied without re-encoding. Each length
runs ``msa_lib.extract.pipeline.extract`` (the code path of ``msa extract``: models loading while the
clip decodes, frames streamed into the face models) in a fresh Python process with the per-clip cache
off, and reports the whole process's wall seconds, the clip's stage timings, and the peak resident
memory of that process (``ru_maxrss``; the ffmpeg processes are small, and a child's ``ru_maxrss``
counts the parent's pages it was forked with, so it is not reported). The bars: peak memory flat in the
length (frames are streamed; the 16-kHz waveform is mapped from a temporary file and read a block at a
time, ``msa_lib.extract.waveform``; what still grows is the feature arrays, about 1 MB per minute),
time linear (``seconds_per_video_second`` about constant). Looping repeats the same two sentences:
the ASR decodes every second of it (in windows, ``ASRConfig.decode_window_s``) but drops part of it as
repetitive (Whisper's compression-ratio check, ``ASRConfig.drop_unreliable_segments``); the windowed
encoding of long transcripts is tested in ``tests/test_text_windows.py``. The load average is recorded with every
run: other processes on the machine slow wall time down.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import _machine  # noqa: E402
from msa_lib.core.paths import BENCHMARKS_DIR, DATA_DIR, project_path  # noqa: E402

SOURCE_CLIP = DATA_DIR / "clips" / "mosi_0h-zjBukYpk_2.mp4"

# what runs in the fresh process: one extraction, then its measurements as one JSON line
CHILD = r"""
import json, resource, sys, time
started = time.perf_counter()
from msa_lib.extract.pipeline import ExtractConfig, extract
ds = extract([sys.argv[1]], ExtractConfig(use_cache=False), progress=False)
extra = ds.extra[0] if len(ds) else {}
print(json.dumps({
    "ok": len(ds) == 1, "failures": [f["error"] for f in ds.failures],
    "process_wall_s": time.perf_counter() - started,
    "clip_wall_s": extra.get("wall_s"), "stage_s": extra.get("timings"),
    "model_load_s": ds.meta.extra.get("model_load_s"),
    "n_frames": extra.get("n_frames"), "transcript_chars": len(ds.raw_text[0] or "") if len(ds) else 0,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def make_clip(minutes: float, folder: Path) -> Path:
    out = folder / f"looped_{minutes:g}min.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "-1", "-i", str(SOURCE_CLIP),
                    "-t", f"{minutes * 60:g}", "-c", "copy", str(out)], check=True)
    return out


def run_length(clip: Path, minutes: float) -> dict:
    before = _machine.load_average()
    proc = subprocess.run([sys.executable, "-c", CHILD, str(clip)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"minutes": minutes, "ok": False, "error": proc.stderr.strip().splitlines()[-3:]}
    row = json.loads(lines[-1])
    row.update(minutes=minutes, video_s=minutes * 60, load_average_before=before,
               load_average_after=_machine.load_average())
    row["seconds_per_video_second"] = round(row["clip_wall_s"] / row["video_s"], 4) if row["clip_wall_s"] else None
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10, 30])
    parser.add_argument("--out", default=None, help="default: reports/benchmarks/extract_length.json")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_length_") as tmp:
        for minutes in args.minutes:
            clip = make_clip(minutes, Path(tmp))
            row = run_length(clip, minutes)
            rows.append(row)
            print(f"  {minutes:g} min: wall {row.get('clip_wall_s')} s, {row.get('seconds_per_video_second')} s per s, "
                  f"peak {row.get('peak_rss_mb')} MB, load {row.get('load_average_before')}", flush=True)
    ok = [r for r in rows if r.get("ok")]
    peaks = [r["peak_rss_mb"] for r in ok]
    rates = [r["seconds_per_video_second"] for r in ok]
    result = {
        "command": "python benchmarks/bench_length.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": _machine.machine_info(),
        "source_clip": str(SOURCE_CLIP.relative_to(PROJECT_ROOT)), "runs": rows,
        "headline": {
            "peak memory, shortest -> longest clip (MB)": [round(p) for p in peaks],
            "peak memory growth, longest / shortest": round(peaks[-1] / peaks[0], 3) if len(peaks) > 1 else None,
            "wall s per video s, shortest -> longest clip": rates,
        },
    }
    out = project_path(args.out or BENCHMARKS_DIR / "extract_length.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["headline"], indent=1))
    print(f"wrote {out}")
    return 0 if len(ok) == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
