"""What every benchmark records about the machine it ran on (imported by the bench_*.py scripts)."""
from __future__ import annotations

import os
import platform


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (runnable processes; compare with ``cpu_count``)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(**extra) -> dict:
    """CPU count and model, torch threads, platform and Python, plus ``extra`` fields."""
    import torch

    cpu_model = ""
    try:
        cpu_model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu_count": os.cpu_count(), "cpu_model": cpu_model, "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), **extra}
