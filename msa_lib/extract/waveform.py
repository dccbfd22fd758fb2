"""Waveforms that live in a file, not in memory: what keeps the peak memory of a long clip flat.

:func:`~msa_lib.extract.media.extract_audio` decodes into a temporary float32 file and returns it as
a read-only array *mapped* from that file (:func:`map_waveform`). Every pass over it (silence check,
voice activity, ASR windows, prosody blocks) reads it a block at a time and calls
:func:`release_pages`, which hands the pages it read back to the kernel's page cache: the process
never holds more than a block, however long the clip (115 MB of samples for 30 minutes at 16 kHz).
For an ordinary in-memory array both helpers are no-ops, so every function taking a waveform still
takes a plain ``np.ndarray``. The file is on the temporary folder's disk (``TMPDIR``); where that is
a RAM disk (tmpfs) the samples are in RAM anyway, only not counted against the process.
"""
from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Iterator

import numpy as np

BLOCK_SAMPLES = 1 << 20  # 65 s at 16 kHz: one block's pages in memory at a time


def map_waveform(path: str | os.PathLike) -> np.ndarray:
    """The float32 samples of the raw little-endian file ``path`` as a read-only array backed by the
    file. Non-finite samples become 0 (+-inf: +-1) and samples are clipped to [-1, 1], in the file,
    block by block. The file may be deleted once this returns: the mapping keeps its data."""
    size = Path(path).stat().st_size
    if size < 4:
        return np.zeros(0, np.float32)
    with open(path, "r+b") as f:
        mapping = mmap.mmap(f.fileno(), size - size % 4, access=mmap.ACCESS_WRITE)
    y = np.frombuffer(mapping, dtype="<f4")
    for block in blocks(y):
        if not np.isfinite(block).all():
            np.nan_to_num(block, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        if block.size and np.abs(block).max() > 1.0:
            np.clip(block, -1.0, 1.0, out=block)
    release_pages(y)
    y.flags.writeable = False
    return y


def _mapping(y) -> mmap.mmap | None:
    base = y
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    return base


def is_file_backed(y: np.ndarray) -> bool:
    return _mapping(y) is not None


def release_pages(y: np.ndarray) -> None:
    """Drop from this process the pages of a file-backed waveform (or of any view of one) that were
    read so far; they are read again from the page cache when next used. No-op for other arrays."""
    mapping = _mapping(y)
    if mapping is not None and not mapping.closed:
        mapping.madvise(mmap.MADV_DONTNEED)


def blocks(y: np.ndarray, size: int = BLOCK_SAMPLES) -> Iterator[np.ndarray]:
    """Consecutive views of at most ``size`` samples; the pages of a file-backed waveform are
    released after each block."""
    for start in range(0, y.shape[0], size):
        yield y[start: start + size]
        release_pages(y)


def writable(y: np.ndarray) -> np.ndarray:
    """``y``, or an in-memory copy when it is read-only (a mapped waveform): for libraries that turn
    arrays into torch tensors (openai-whisper), which warns about, and may write to, read-only memory."""
    return y if y.flags.writeable else np.array(y)


def segment(y: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``y[start:stop]`` as a float32 copy, with zeros where the range runs past either end of ``y``."""
    out = np.zeros(stop - start, dtype=np.float32)
    lo, hi = max(start, 0), min(stop, len(y))
    if hi > lo:
        out[lo - start: hi - start] = y[lo:hi]
    return out


def peak_abs(y: np.ndarray) -> float:
    """``max |y|`` (0 for an empty array), block by block."""
    return max((float(np.abs(b).max()) for b in blocks(y) if b.size), default=0.0)


def all_finite(y: np.ndarray) -> bool:
    return all(np.isfinite(b).all() for b in blocks(y))
