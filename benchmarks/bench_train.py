"""Training cost per model: wall seconds per epoch and peak resident memory on CPU, for every model of
the fusion comparison (notebook 03) on the MOSI inputs it uses; writes ``reports/benchmarks/train.json``.

    .venv/bin/python benchmarks/bench_train.py              # all models, 2 timed epochs each
    .venv/bin/python benchmarks/bench_train.py --quick      # 3 models, 1 epoch, 64 training clips

Each model runs in a fresh spawned process so that its peak RSS (``ru_maxrss``) is its own; the
baseline RSS of that process after loading the data (before building the model) is reported next to
it, so ``peak_rss_mb - baseline_rss_mb`` is what the model and its training add. Inputs are the frozen
e5 token states (the cached text features), so the numbers measure the fusion models, not e5.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _machine import load_average, machine_info  # noqa: E402

OUT = ROOT / "reports" / "benchmarks" / "train.json"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _measure(name: str, epochs: int, max_videos, threads: int, queue) -> None:
    import torch

    from msa_lib.studies.recipes import MOSI_MODEL_INPUTS, model_config, prepare_mosi
    from msa_lib.train.trainer import TrainConfig, train_model

    torch.set_num_threads(threads)
    ds = prepare_mosi(max_videos=max_videos)
    baseline = _rss_mb()
    cfg = TrainConfig(max_epochs=epochs, patience=epochs + 1, progress=False, seed=0)
    start = time.perf_counter()
    model, result = train_model(name, ds, model_config(), cfg, modalities=list(MOSI_MODEL_INPUTS[name]))
    queue.put({"model": name, "inputs": "+".join(MOSI_MODEL_INPUTS[name]), "epochs": result.epochs_run,
               "seconds_per_epoch": round(float(result.seconds_per_epoch), 3),
               "train_seconds": round(time.perf_counter() - start, 2),
               "parameters": int(sum(p.numel() for p in model.parameters())),
               "n_train": int((ds.split == "train").sum()),
               "baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(_rss_mb(), 1)})


def main(argv=None) -> int:
    from msa_lib.studies.recipes import MOSI_MODEL_INPUTS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    names = ["text_only", "early_concat", "mult"] if args.quick else list(MOSI_MODEL_INPUTS)
    epochs = args.epochs or (1 if args.quick else 2)
    max_videos = 16 if args.quick else None
    out = Path(args.out) if args.out else (OUT.with_name("train_quick.json") if args.quick else OUT)

    ctx = mp.get_context("spawn")
    rows = []
    for name in names:
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(name, epochs, max_videos, args.threads, queue))
        proc.start()
        row = queue.get()
        proc.join()
        print(json.dumps(row), flush=True)
        rows.append(row)
    fastest = min(rows, key=lambda r: r["seconds_per_epoch"])
    slowest = max(rows, key=lambda r: r["seconds_per_epoch"])
    result = {
        "command": "python benchmarks/bench_train.py" + (" --quick" if args.quick else ""),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_info(torch_threads=args.threads),  # threads of the spawned training processes
        "load_average": load_average(),
        "device": "cpu",
        "models": rows,
        "headline": {
            "train: fastest model s/epoch": f"{fastest['model']} {fastest['seconds_per_epoch']}",
            "train: slowest model s/epoch": f"{slowest['model']} {slowest['seconds_per_epoch']}",
            "train: max peak RSS (MB)": max(r["peak_rss_mb"] for r in rows),
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
