"""Check a clip manifest before any long work starts (extraction can take minutes per clip).

:func:`check_clip_manifest` looks at every row of a manifest read by
:func:`msa_lib.data.sources.read_clip_manifest` and raises one :class:`InputError` that names the
manifest, each bad row (its line in the CSV file, the header being line 1) and the fix: a clip file
that does not exist, a language the models do not support, a label outside the label scale.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from msa_lib.core.utils import normalize_language

SUPPORTED_LANGUAGES = ("zh", "en")
SCALE_RANGES = {"sims": (-1.0, 1.0), "mosi": (-3.0, 3.0)}
AUTO_LANGUAGE = ("", "auto", "detect")
MAX_LISTED = 10  # problems listed in one message; the rest are counted


class InputError(ValueError):
    """Bad input found before the work started. The message names the file, the row and the fix."""


def check_clip_manifest(manifest: pd.DataFrame, source: str | os.PathLike, label_scale: str = "sims",
                        languages: tuple[str, ...] = SUPPORTED_LANGUAGES, require_files: bool = True,
                        scale_option: str = "--label-scale") -> pd.DataFrame:
    """Raise :class:`InputError` listing every bad row of ``manifest`` (columns of ``read_clip_manifest``);
    return the manifest unchanged when all rows are usable. ``scale_option`` is how the caller's user
    sets the label scale (``--label-scale`` on the command line, ``label_scale=`` in Python)."""
    if label_scale not in SCALE_RANGES:
        raise ValueError(f"label_scale must be one of {sorted(SCALE_RANGES)}, got {label_scale!r}")
    low, high = SCALE_RANGES[label_scale]
    problems: list[str] = []
    for i, row in enumerate(manifest.itertuples(index=False)):
        where = f"row {i + 2}"
        path = Path(row.path)
        if require_files and not path.exists():
            problems.append(f"{where}: clip {path} does not exist; fix the path (a relative path is read "
                            f"from the manifest's folder) or remove the row")
        elif require_files and path.is_dir():
            problems.append(f"{where}: {path} is a folder, not a clip; name a video or audio file")
        language = str(row.language if row.language is not None else "").strip()
        if language.lower() not in AUTO_LANGUAGE:
            code = normalize_language(language)
            if code not in languages:
                problems.append(f"{where}: language {language!r} is not supported; use "
                                f"{', '.join(languages)} or auto (detect it), or leave it empty")
        label = row.label
        if label is not None and not (isinstance(label, float) and np.isnan(label)):
            if not np.isfinite(label) or not low <= label <= high:
                if label_scale == "sims" and -3.0 <= label <= 3.0:
                    fix = f"if the labels are scores in [-3, 3], pass {scale_option} mosi"
                else:
                    fix = (f"fix the label: a score in [{low:g}, {high:g}]"
                           + (f" (or in [-3, 3] with {scale_option} mosi)" if label_scale == "sims" else "")
                           + ", or Negative / Neutral / Positive")
                problems.append(f"{where}: label {getattr(row, 'label_raw', label)!r} is outside [{low:g}, {high:g}] "
                                f"({scale_option} {label_scale}); {fix}")
    if problems:
        raise InputError(format_problems(source, problems))
    return manifest


def format_problems(source, problems: list[str]) -> str:
    """One message: ``source: problem`` for one problem, else a count and one indented line each."""
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    listed = problems[:MAX_LISTED]
    more = len(problems) - len(listed)
    tail = f"\n  ... and {more} more" if more else ""
    return f"{source}: {len(problems)} problems, nothing was extracted:\n  " + "\n  ".join(listed) + tail
